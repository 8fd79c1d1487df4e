"""``jestbench run [SUITE]``: the main job — a suite of runs and its leaderboard."""

from __future__ import annotations

import argparse
import json
from typing import Any

from harness.device import add_device_arguments
from harness.workdir import add_threads_argument, add_work_argument, set_threads, work_dir

DESCRIPTION = """\
Run a suite: build its data and train its references if missing, run every (strategy, parameters,
reference, seed) to its section's budget (FLOPs, or trained examples on the equal-examples track),
and render the leaderboard (Markdown, CSV, HTML, figures) into WORK/leaderboards/SUITE; a suite with
sections renders one per section into WORK/leaderboards/SUITE/SECTION beside an index (README.md).
Rerunning skips complete runs and resumes the one in flight; a failed run is recorded with its error
and the suite goes on, and the command then exits with status 1, naming each failed run.
`jestbench publish SUITE` copies the leaderboards into results/.

--threads N gives every run (and the data build and reference training) N torch threads; without it,
runs share the cores out (all of them with --jobs 1, cores / N each with --jobs N, cores / K for each
rank with --nproc K).

SUITE is a built-in suite (quick: every strategy once, minutes; full: the committed leaderboards, a
few hours on 2 cores with --jobs 2) or a suite TOML file of your own (docs/SUITES.md).

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
    add_threads_argument(
        parser,
        "torch's choice with --jobs 1, else the cores shared out between the jobs (or the ranks of --nproc)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.leaderboard import build_leaderboard, ranking
    from harness.progress import next_steps
    from harness.results import read_runs
    from harness.runner import describe_run, run_suite
    from harness.suites import load_suite

    set_threads(args)
    suite = load_suite(args.suite).placed(device=args.device, precision=args.precision, nproc=args.nproc)
    work = work_dir(args)
    result = run_suite(suite, work, jobs=args.jobs, threads=args.threads, show_progress=not args.quiet)
    minutes = result.seconds / 60
    print(
        f"suite {suite.name}: {len(result.run_ids)} runs in {minutes:.1f} min ({len(result.skipped)} were already complete)"
    )
    for name, board in result.leaderboards.items():
        if board is None:
            print(f"section {name}: no run completed, no leaderboard")
            continue
        if suite.sectioned:
            print(f"section {name}:")
        run_ids = json.loads(board.manifest.read_text())["runs"]
        for line in ranking(build_leaderboard(read_runs(work, [r["run_id"] for r in run_ids]))):
            print(line)
        print(f"leaderboard: {board.markdown}  (and .html, .csv, figures/)")
    if result.index is not None:
        print(f"sections: {result.index}")
    for run_id, error in result.failed.items():
        print(f"failed: {describe_run(result.configs[run_id])}: run {run_id}: {error}")
    if result.failed:
        print(f"{len(result.failed)} of {len(result.run_ids)} runs failed")
    shown = result.index or next((b.markdown for b in result.leaderboards.values() if b is not None), None)
    print(next_steps(suite.name, shown, len(result.failed), args.work))
    return 1 if result.failed else 0
