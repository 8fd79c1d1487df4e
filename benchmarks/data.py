"""Data benchmark: how fast the default dataset builds, and how many samples per second the
super-batch loader delivers with 0, 1 and 2 worker processes.

    python benchmarks/data.py                      # builds shapes (default size) in a temp dir
    python benchmarks/data.py --dataset DIR        # measures the loader on an existing dataset

Prints a table and writes results/bench/data.csv. The loader must not be what the training loop
waits on: compare ms per super-batch here with the loop's step time at the same B.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from harness.data import Dataset, SuperBatchStream, build_dataset, open_dataset

RESULTS = Path(__file__).resolve().parent.parent / "results" / "bench" / "data.csv"


@dataclasses.dataclass
class Row:
    what: str
    workers: int | None
    super_batch_size: int | None
    samples: int
    seconds: float
    super_batches: int | None = None

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds

    @property
    def ms_per_super_batch(self) -> float | None:
        return None if self.super_batches is None else 1000 * self.seconds / self.super_batches


def measure_build(out: Path) -> tuple[Dataset, Row]:
    started = time.perf_counter()
    dataset = build_dataset("shapes", out, seed=0)
    seconds = time.perf_counter() - started
    samples = sum(dataset.split_size(split) for split in dataset.splits)
    return dataset, Row("build shapes", None, None, samples, seconds)


def measure_loader(dataset: Dataset, workers: int, super_batch_size: int, batches: int) -> Row:
    iterator = iter(SuperBatchStream(dataset, "raw", super_batch_size, seed=0, workers=workers))
    next(iterator)  # start-up (indexing, worker processes, first reads) is not the steady state
    started = time.perf_counter()
    samples = sum(len(batch) for batch in itertools.islice(iterator, batches))
    seconds = time.perf_counter() - started
    del iterator
    return Row("load raw", workers, super_batch_size, samples, seconds, batches)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, help="measure the loader on this dataset (no build)")
    parser.add_argument("--super-batch-size", type=int, default=1280, help="B (default 1280: b=256 at f=0.8)")
    parser.add_argument("--batches", type=int, default=30, help="super-batches timed per worker count")
    parser.add_argument(
        "--csv", type=Path, default=RESULTS, help=f"where to write the table (default {RESULTS})"
    )
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset is None:
            dataset, row = measure_build(Path(tmp) / "shapes")
            rows.append(row)
        else:
            dataset = open_dataset(args.dataset)
        rows += [
            measure_loader(dataset, workers, args.super_batch_size, args.batches) for workers in (0, 1, 2)
        ]

    machine = f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"
    print(machine)
    print(
        f"{'what':<13} {'workers':>7} {'B':>5} {'samples':>8} {'seconds':>8} {'samples/s':>10} {'ms/super-batch':>15}"
    )
    for row in rows:
        per_batch = "" if row.ms_per_super_batch is None else f"{row.ms_per_super_batch:.1f}"
        print(
            f"{row.what:<13} {'' if row.workers is None else row.workers:>7} {row.super_batch_size or '':>5} "
            f"{row.samples:>8} {row.seconds:>8.2f} {row.samples_per_s:>10.0f} {per_batch:>15}"
        )
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "what",
                "workers",
                "super_batch_size",
                "samples",
                "seconds",
                "samples_per_s",
                "ms_per_super_batch",
                "machine",
            ]
        )
        for row in rows:
            per_batch = "" if row.ms_per_super_batch is None else round(row.ms_per_super_batch, 1)
            writer.writerow(
                [
                    row.what,
                    row.workers,
                    row.super_batch_size,
                    row.samples,
                    round(row.seconds, 3),
                    round(row.samples_per_s),
                    per_batch,
                    machine,
                ]
            )
    print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
