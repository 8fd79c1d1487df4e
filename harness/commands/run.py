"""``jestbench run [SUITE]``: the main job — a suite of runs and its leaderboard."""

from __future__ import annotations

import argparse
from typing import Any

from harness.device import add_device_arguments
from harness.workdir import add_work_argument, work_dir

DESCRIPTION = """\
Run a suite: build its data and train its reference if missing, run every (strategy, parameters,
seed) to the suite's FLOP budget, and render the leaderboard (Markdown, CSV, HTML, figures) into
WORK/leaderboards/SUITE. Rerunning skips complete runs and resumes the one in flight; a failed run
is recorded with its error and the suite goes on. `jestbench publish SUITE` copies the leaderboard
into results/.

SUITE is a built-in suite (quick: every strategy once, minutes; full: three seeds, the committed
leaderboard) or a suite TOML file of your own (docs/SUITES.md).

--nproc K trains each run over K processes (one per GPU, or K CPU processes with gloo), started
through torchrun's API; the suite's selection_scope key says whether they select jointly over the
whole super-batch (global, the default) or each from its own share (docs/DISTRIBUTED.md).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a suite and render its leaderboard (the main job)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "suite", nargs="?", default="quick", help="built-in suite name or TOML file (default quick)"
    )
    parser.add_argument(
        "--jobs", "-j", type=int, default=1, help="runs at once, in separate processes (default 1)"
    )
    parser.add_argument(
        "--nproc", type=int, default=1, help="processes per run, through torchrun's API (default 1)"
    )
    add_device_arguments(parser, suite=True)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    add_work_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.leaderboard import build_leaderboard, ranking
    from harness.results import read_runs
    from harness.runner import run_suite
    from harness.suites import load_suite

    suite = load_suite(args.suite).placed(device=args.device, precision=args.precision, nproc=args.nproc)
    work = work_dir(args)
    result = run_suite(suite, work, jobs=args.jobs, show_progress=not args.quiet)
    minutes = result.seconds / 60
    print(
        f"suite {suite.name}: {len(result.run_ids)} runs in {minutes:.1f} min ({len(result.skipped)} were already complete)"
    )
    if result.leaderboard is not None:
        for line in ranking(build_leaderboard(read_runs(work, result.run_ids))):
            print(line)
        print(f"leaderboard: {result.leaderboard.markdown}  (and .html, .csv, figures/)")
    for run_id, error in result.failed.items():
        print(f"failed: {run_id}: {error}")
    return 1 if result.failed else 0
