"""``jestbench reproduce``: the JEST paper's claims re-measured, REPORT.md plus figures."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.data.arguments import add_data_arguments, dataset_from_args
from harness.workdir import add_threads_argument, add_work_argument, set_threads, work_dir

DESCRIPTION = """\
Re-measure the claims of the JEST paper (Fig. 1-4, Flexi-JEST, the mechanism): train or reuse the
runs each claim needs (complete runs in the work directory are not trained again; --jobs N trains
them N at a time first), analyse real super-batches, and write REPORT.md and figures/ into --out
(default WORK/reproduce/SCALE). Each claim
gets one row: the paper's statement and number, ours with its interval, the seeds and data, and a
verdict computed from paired tests with Holm's correction (docs/REPRODUCE.md).

The full scale is the `shapes` section of the full suite (small preset, b = 128, 1,500 uniform-
equivalent steps, five seeds; its runs are reused): hours on 2 cores (docs/REPRODUCE.md). --quick runs every claim with the tiny preset at a few steps (minutes; for
CI: its numbers mean little).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="re-measure the JEST paper's claims; REPORT.md with a verdict per claim",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="every claim at a tiny scale (CI)")
    parser.add_argument(
        "--claims",
        type=int,
        nargs="+",
        metavar="K",
        help="only these claim numbers (default: all eight); the other claims of the report already in "
        "--out, if it is of the same scale and data, are kept as measured before",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="report directory (default WORK/reproduce/SCALE)"
    )
    parser.add_argument(
        "--jobs", "-j", type=int, default=1, help="runs at once, in separate processes (default 1)"
    )
    add_data_arguments(parser)
    add_work_argument(parser)
    add_threads_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.errors import UserError
    from harness.reproduce import CLAIMS, FULL, QUICK, Context, reproduce

    set_threads(args)
    scale = QUICK if args.quick else FULL
    numbers = {c.number for c in CLAIMS}
    chosen = set(args.claims or numbers)
    if chosen - numbers:
        raise UserError(
            f"--claims {sorted(chosen - numbers)}: claims are numbered {min(numbers)} to {max(numbers)}"
        )
    work = work_dir(args)
    out = (args.out or work / "reproduce" / scale.name).resolve()
    ctx = Context(work, dataset_from_args(args, work), scale, out)
    reports = reproduce(ctx, [c for c in CLAIMS if c.number in chosen], jobs=args.jobs, threads=args.threads)
    for r in reports:
        print(f"claim {r.claim.number} ({r.claim.figure}): {r.outcome.verdict.verdict}")
    print(f"report: {out / 'REPORT.md'}")
    return 0
