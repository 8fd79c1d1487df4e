"""What global and local selection choose, and what it scores: JEST over 2 ranks, both scopes.

With global selection the ranks gather the whole super-batch's embeddings and select jointly over all
B candidates (what one process selects); with local selection each rank selects b/2 out of its own
B/2, a different algorithm. This trains JEST (the suite defaults: learnability scores, gain 100,
16 chunks, f = 0.8, b = 128, `small` preset) on the built-in `shapes` data over 2 CPU processes with
each scope, at the same seeds, and compares them seed by seed: the final mean score on `eval` (a
paired t-test over the seeds, two-sided; "not separable" when p >= 0.05), the share of each noise
kind among the selected examples, and the repeated captions per selected batch. The data and the
reference (the `full` suite's first, 500 steps) are built in the work directory if missing; runs
already complete there are reused.

    python benchmarks/selection_scope.py --work work     # results/bench/selection_scope.csv
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from table import write_table

from harness.data import RECORDED_NOISE_KINDS
from harness.leaderboard.stats import Interval, paired_t
from harness.records import RunFile
from harness.runconfig import RunConfig
from harness.runner import prepare, run_suite
from harness.suites import load_suite

SCOPES = ("global", "local")
SUITE = """
name = "selection-scope"
[run]
preset = "small"
batch_size = 128
filter_ratio = 0.8
{sections}
[reference]
batch_size = 128
budget = "500 steps"
"""
SECTION = """
[[sections]]
name = "{scope}"
data = {{ data = "shapes" }}
run = {{ budget = "{budget}", seeds = {seeds}, eval_every = 0.5, selection_scope = "{scope}" }}
[[sections.strategies]]
name = "jest"
"""


def final_row(run: RunFile) -> dict[str, Any]:
    return max((r for r in run.rows if r["split"] == "eval"), key=lambda r: r["evaluation"])


def describe(run: RunFile) -> dict[str, Any]:
    """A run's final score, its selection mix by noise kind and repeated captions per batch."""
    row = final_row(run)
    selected = {kind: row[f"selected_{kind}"] for kind in RECORDED_NOISE_KINDS}
    total = sum(selected.values())
    return {
        "scope": RunConfig.from_dict(run.config).selection_scope,  # the config file omits defaults
        "seed": run.config["seed"],
        "score": row["mean"],
        **{f"share_{kind}": count / total for kind, count in selected.items()},
        "repeats_per_batch": row["selected_repeats"] / row["steps"],
        "steps": row["steps"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("work"), help="work directory (default ./work)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per scope (default 5)")
    parser.add_argument("--budget", default="500 steps", help="each run's budget (default 500 steps)")
    parser.add_argument("--out", type=Path, default=Path("results/bench/selection_scope.csv"))
    args = parser.parse_args()

    sections = "".join(
        SECTION.format(scope=scope, budget=args.budget, seeds=list(range(args.seeds))) for scope in SCOPES
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "selection-scope.toml"
        path.write_text(SUITE.format(sections=sections))
        suite = load_suite(str(path)).placed(nproc=2)
        result = run_suite(suite, args.work, threads=1, show_progress=False)
        if result.failed:
            raise SystemExit(f"runs failed: {result.failed}")
        plans = prepare(suite, args.work, show_progress=False)
    rows = [describe(RunFile.load_complete(args.work, c.run_id)) for plan in plans for c in plan.configs]
    write_table(args.out, rows)

    by_scope = {
        scope: sorted((r for r in rows if r["scope"] == scope), key=lambda r: r["seed"]) for scope in SCOPES
    }
    kinds = [k for k in RECORDED_NOISE_KINDS if any(r[f"share_{k}"] for r in rows)]  # kinds the data holds
    columns = ["score", *(f"share_{k}" for k in kinds), "repeats_per_batch"]
    print(f"| | {' | '.join(columns)} |\n|---|{'---|' * len(columns)}")
    for scope, runs in by_scope.items():
        cells = []
        for column in columns:
            i = Interval.of([r[column] for r in runs])
            cells.append(f"{i.mean:.3f} [{i.low:.3f}, {i.high:.3f}]")
        print(f"| {scope} (n = {len(runs)}) | {' | '.join(cells)} |")
    cells = []
    for column in columns:
        test = paired_t(
            [g[column] - lo[column] for g, lo in zip(by_scope["global"], by_scope["local"], strict=True)]
        )
        low, high = test.interval()
        mark = "" if test.p < 0.05 else ", not separable"
        cells.append(
            f"{float(test.difference):+.3f} [{float(low):+.3f}, {float(high):+.3f}] p = {float(test.p):.2g}{mark}"
        )
    print(f"| global − local (paired) | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
