"""``jestbench leaderboard``: render a leaderboard from the run files of the work directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.workdir import add_work_argument, work_dir

DESCRIPTION = """\
Render a leaderboard from completed runs: leaderboard.md, leaderboard.csv, a self-contained
leaderboard.html (sortable tables, embedded figures, no network), figures/*.png, the rows it was
built from (rows.csv) and leaderboard.json (what `jestbench publish` checks). One row per
configuration (a run config without its seed), ranked by the final mean score on the eval split,
with a 95% interval over seeds, a paired test over seeds against uniform at f = 0 (Holm-corrected
over the configurations compared), the paper's speedups against uniform (examples and FLOPs at which
the mean curve first reaches uniform's final score, and 75% and 50% of the way to it, over what
uniform's own curve needed) and what each strategy selected by noise kind. Failed and unfinished runs
are listed, never averaged in.

--rows FILE renders from a leaderboard's rows.csv instead of run files, e.g. the committed one:
  jestbench leaderboard --rows results/leaderboard/rows.csv --out results/leaderboard
Its title and note are those of the leaderboard.json beside FILE unless --title/--note say otherwise.

Output goes to WORK/leaderboards/NAME, replaced whole, or to --out DIR.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "leaderboard",
        help="render a leaderboard (tables, figures, a web page) from completed runs",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--runs", nargs="+", metavar="RUN_ID", help="the runs to include, by id")
    which.add_argument("--all", action="store_true", help="every run in the work directory (the default)")
    which.add_argument(
        "--rows",
        type=Path,
        metavar="FILE",
        help="render from a leaderboard's rows.csv (e.g. results/leaderboard/rows.csv), not from run files",
    )
    parser.add_argument("--title", help="the leaderboard's title (default: jestbench leaderboard)")
    parser.add_argument("--note", help="a line under the title, e.g. 'one-seed leaderboard'")
    parser.add_argument(
        "--name",
        help="its name under WORK/leaderboards (default: 'all', 'rows' with --rows, or 'runs-' and a hash "
        "of --runs)",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="write here instead of WORK/leaderboards/NAME"
    )
    add_work_argument(parser)
    parser.set_defaults(handler=run)


def default_name(run_ids: list[str] | None) -> str:
    """'all', or a name that differs for different selections of runs, so one never overwrites another."""
    from harness.records import config_hash

    return "all" if run_ids is None else f"runs-{config_hash({'runs': sorted(set(run_ids))})[:8]}"


def run(args: argparse.Namespace) -> int:
    from harness.leaderboard import (
        DEFAULT_TITLE,
        build_leaderboard,
        leaderboard_dir,
        ranking,
        write_leaderboard,
    )
    from harness.leaderboard.render import manifest_of
    from harness.results import read_rows_csv, read_runs

    work = work_dir(args)
    title, note = args.title, args.note
    if args.rows is not None:
        board = build_leaderboard(read_rows_csv(args.rows))
        beside = manifest_of(args.rows.parent)
        title = title or beside.get("title")
        note = note if note is not None else beside.get("note")
        name = args.name or "rows"
    else:
        board = build_leaderboard(read_runs(work, args.runs))
        name = args.name or default_name(args.runs)
    out = args.out or leaderboard_dir(work, name)
    files = write_leaderboard(board, out, title=title or DEFAULT_TITLE, note=note)
    print("\n".join(ranking(board)))
    print(
        f"wrote {files.markdown.name}, {files.html.name}, {files.csv.name} and figures/ in {files.directory}"
    )
    return 0
