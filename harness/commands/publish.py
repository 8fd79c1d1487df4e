"""``jestbench publish``: copy a rendered leaderboard into the committed ``results/``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.workdir import add_work_argument, work_dir

DESCRIPTION = """\
Copy a rendered leaderboard (its tables, page, figures and rows as CSV) into RESULTS/leaderboard/,
replacing the leaderboard published there before and leaving everything else in RESULTS alone
(results/bench/, results/tuning/). SOURCE is a leaderboard directory or the name of one under
WORK/leaderboards (a suite's name: `jestbench run full` renders WORK/leaderboards/full).

A suite with sections (`jestbench run full`) renders one leaderboard per section beside an index;
publishing it puts each section at RESULTS/leaderboard/SECTION/ and the index at
RESULTS/leaderboard/README.md.

A leaderboard that left out failed or unfinished runs is refused: finish them (`jestbench run`
resumes a suite) and render again, or pass --allow-incomplete to publish it anyway.

--study NAME publishes a tuning study's report (WORK/studies/NAME, written by `jestbench tune`) to
RESULTS/tuning/NAME instead, replacing only that study's directory.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="copy a rendered leaderboard into the committed results/",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source",
        nargs="?",
        metavar="SOURCE",
        help="leaderboard directory or name (default: full)",
    )
    parser.add_argument(
        "--study", metavar="NAME", help="publish the report of tuning study NAME instead of a leaderboard"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="the results directory (default ./results)",
    )
    parser.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="publish even if the leaderboard left out failed or unfinished runs",
    )
    add_work_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.publish import find_leaderboard, publish

    if args.study is not None:
        return _publish_study(args)
    source = find_leaderboard(args.source or "full", work_dir(args))
    published = publish(source, args.results, allow_incomplete=args.allow_incomplete)
    verb = "replaced" if published.replaced else "created"
    print(f"{verb} {published.destination} from {published.source}")
    for run in published.left_out:
        print(f"published although it left out run {run}")
    return 0


def _publish_study(args: argparse.Namespace) -> int:
    from harness.errors import UserError
    from harness.tune import publish_study, study_dir

    if args.source is not None or args.allow_incomplete:
        raise UserError(
            "--study publishes a study report; give no leaderboard SOURCE or --allow-incomplete with it"
        )
    destination = publish_study(study_dir(work_dir(args), args.study), args.results)
    print(f"published study {args.study} to {destination}")
    return 0
