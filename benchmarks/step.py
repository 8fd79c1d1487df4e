"""Step time of the harness loop: its overhead over a bare loop, each strategy against the cost
model's prediction, and the loader's margin over what the loop consumes.

On the quick suite's data and reference (built or trained if missing, into the work directory):

- bare loop: stream ``b`` samples, one optimiser step on them (the same model, loss and optimiser),
  nothing else;
- harness, uniform at f = 0: the loop's own step (:meth:`harness.step.Stepper.step`: the view, the
  selection, the step, the ledger and the bookkeeping), evaluations excluded;
- every built-in strategy at f = 0.8: its step time over uniform's, against the cost model's
  predicted FLOP ratio;
- the loader: reading and decoding one super-batch, against the step that consumes it.

Each figure is the median over ``--steps`` steps after ``--warmup`` steps. Prints a table and writes
results/bench/step.csv.

    python benchmarks/step.py --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import torch
from table import write_table

from harness.data import SuperBatchStream
from harness.runner import prepare
from harness.step import make_optimizer, train_step
from harness.suites import load_suite
from harness.train import Run
from strategies import BUILTIN_STRATEGIES

RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench" / "step.csv"


def _median_seconds(step, steps: int, warmup: int) -> float:
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per figure (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--work", type=Path, default=Path("work"), help="work directory (default ./work)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="CSV to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    suite = load_suite("quick")
    configs = {c.strategy: c for c in prepare(suite, args.work.resolve(), show_progress=True)}
    uniform_config = configs["uniform"]
    rows: list[dict[str, object]] = []

    # The bare loop: the same model, data and optimiser step, nothing else.
    run = Run(uniform_config, args.work.resolve(), checkpoint_seconds=1e9)
    optimizer = make_optimizer(run.model, uniform_config.optim)
    stream = iter(SuperBatchStream(run.dataset, "raw", uniform_config.batch_size, seed=1))

    def bare_step() -> None:
        batch = next(stream)
        train_step(run.model, optimizer, batch.images, batch.tokens, run.strategy.training, 1.0)

    bare = _median_seconds(bare_step, args.steps, args.warmup)

    times: dict[str, float] = {}
    predicted: dict[str, float] = {}
    loader: dict[str, float] = {}
    for name in BUILTIN_STRATEGIES:
        strategy_run = Run(configs[name], args.work.resolve(), checkpoint_seconds=1e9)
        batches = iter(strategy_run.stream())
        times[name] = _median_seconds(
            lambda r=strategy_run, b=batches: r.step(next(b)), args.steps, args.warmup
        )
        predicted[name] = strategy_run.predicted.total
        reader, numbers = strategy_run.stream(), itertools.count()
        loader[name] = _median_seconds(lambda s=reader, n=numbers: s.read(next(n)), args.steps, 1)

    header = f"{'':<26}{'step (s)':>10}{'vs uniform':>12}{'predicted':>11}{'deviation':>11}{'read (s)':>10}{'margin':>8}"
    print(
        f"b = {uniform_config.batch_size}, preset {uniform_config.preset}, {args.threads} threads, "
        f"median of {args.steps} steps"
    )
    print(header)
    print(f"{'bare loop (uniform, f=0)':<26}{bare:>10.4f}")
    overhead = times["uniform"] / bare - 1
    for name in BUILTIN_STRATEGIES:
        ratio = times[name] / times["uniform"]
        model = predicted[name] / predicted["uniform"]
        margin = times[name] / loader[name]
        label = f"{name} (f={configs[name].filter_ratio:g})"
        print(
            f"{label:<26}{times[name]:>10.4f}{ratio:>11.2f}x{model:>10.2f}x{ratio / model - 1:>+10.0%}"
            f"{loader[name]:>10.4f}{margin:>7.1f}x"
        )
        rows.append(
            {
                "strategy": name,
                "filter_ratio": configs[name].filter_ratio,
                "batch_size": uniform_config.batch_size,
                "step_seconds": f"{times[name]:.5f}",
                "ratio_to_uniform": f"{ratio:.3f}",
                "predicted_flop_ratio": f"{model:.3f}",
                "read_seconds": f"{loader[name]:.5f}",
                "loader_margin": f"{margin:.2f}",
                "threads": args.threads,
            }
        )
    print(f"harness overhead over the bare loop for uniform: {overhead:+.1%}")
    rows.append(
        {
            "strategy": "bare loop",
            "filter_ratio": 0.0,
            "batch_size": uniform_config.batch_size,
            "step_seconds": f"{bare:.5f}",
            "threads": args.threads,
        }
    )
    write_table(args.out, rows)


if __name__ == "__main__":
    main()
