"""Time and peak memory of joint selection (docs/DESIGN.md §3), against its floor and the paper's Algorithm 1.

For B of about 4k, 8k, 16k and 65k and f in {0.5, 0.8, 0.9} (b the multiple of N nearest B(1-f)),
N = 16, d = 256, float32, it measures:

- ``joint/embeddings``: ``jest`` from learner and reference embeddings (what training runs);
- ``joint/dense``: ``jest`` from dense B x B loss matrices, building them included;
- ``algorithm1``: a direct transcription of the paper's Algorithm 1, building B x B included;
- ``floor``: the products a joint selection cannot avoid: the B x b blocks against the chosen set in
  both directions, learner and reference, with the log-sigmoid (computed b/N rows at a time).

Each measurement runs in a fresh process so that its peak resident memory (above the process with
its embeddings loaded) is its own. Dense paths run only where B x B fits (up to B = 16k here).
Prints a table and writes results/bench/selection.csv.

    python benchmarks/selection.py            # the full table (about 15 minutes on 2 cores)
    python benchmarks/selection.py --quick    # B ~ 4k and 8k only
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from table import write_table

from harness.losses import pair_losses
from harness.view import DenseScoreView, EmbeddingView
from strategies import Embeddings, default_registry
from strategies.sampling import joint_sample_transcribed

N_CHUNKS = 16
DIM = 256
DENSE_LIMIT = 16_384
RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench" / "selection.csv"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _embeddings(size: int, seed: int) -> Embeddings:
    g = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(size, DIM, generator=g), dim=1)
    text = F.normalize(image + torch.randn(size, DIM, generator=g), dim=1)
    return Embeddings(image, text, 10.0, -8.0)


def _dense(e: Embeddings) -> torch.Tensor:
    return pair_losses(e.image, e.text, e.scale, e.bias)


def _floor(learner: Embeddings, reference: Embeddings, chosen: torch.Tensor) -> None:
    for e in (learner, reference):
        for part in chosen.split(len(chosen) // N_CHUNKS):
            F.logsigmoid(-(e.scale * e.image @ e.text[part].T + e.bias))
            F.logsigmoid(-(e.scale * e.image[part] @ e.text.T + e.bias))


def _measure(method: str, size: int, batch_size: int, repeats: int) -> tuple[float, float]:
    """Median seconds and peak MB above the loaded embeddings, in this (fresh) process."""
    torch.manual_seed(0)
    learner, reference = _embeddings(size, 0), _embeddings(size, 1)
    jest = default_registry().get_strategy("jest", n_chunks=N_CHUNKS, gain=1.0)
    chosen = torch.randperm(size)[:batch_size]
    baseline = _rss_mb()
    times = []
    for r in range(repeats):
        generator = torch.Generator().manual_seed(r)
        start = time.perf_counter()
        if method == "joint/embeddings":
            jest.select(EmbeddingView(learner, reference), batch_size, generator)
        elif method == "joint/dense":
            jest.select(DenseScoreView(_dense(learner), _dense(reference)), batch_size, generator)
        elif method == "algorithm1":
            joint_sample_transcribed(
                _dense(learner) - _dense(reference), batch_size, N_CHUNKS, 1.0, generator
            )
        else:
            _floor(learner, reference, chosen)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return statistics.median(times), max(0.0, peak - baseline)


def _batch_size(size: int, filter_ratio: float) -> int:
    return max(N_CHUNKS, round(size * (1 - filter_ratio) / N_CHUNKS) * N_CHUNKS)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="B of about 4k and 8k only")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per cell (median reported)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="CSV to write")
    args = parser.parse_args()

    sizes = (4096, 8192) if args.quick else (4096, 8192, 16_384, 65_536)
    ratios = (0.5, 0.8, 0.9)
    methods = ("floor", "joint/embeddings", "joint/dense", "algorithm1")
    context = multiprocessing.get_context("spawn")
    rows = []
    header = (
        f"{'B':>6} {'f':>4} {'b':>6}  " + "  ".join(f"{m:>22}" for m in methods) + "  joint/floor  alg1/joint"
    )
    print(
        f"selection time (median of {args.repeats}) and peak memory above the embeddings; N={N_CHUNKS}, d={DIM}, "
        f"float32, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(header)
    for size in sizes:
        for ratio in ratios:
            batch_size = _batch_size(size, ratio)
            cells: dict[str, tuple[float, float] | None] = {}
            for method in methods:
                if method in ("joint/dense", "algorithm1") and size > DENSE_LIMIT:
                    cells[method] = None
                    continue
                repeats = 1 if size > DENSE_LIMIT else args.repeats
                with context.Pool(1) as pool:
                    cells[method] = pool.apply(_measure, (method, size, batch_size, repeats))
            joint = cells["joint/embeddings"]
            floor = cells["floor"]
            alg1 = cells["algorithm1"]
            assert joint is not None and floor is not None
            versus_floor = joint[0] / floor[0]
            alg1_ratio = f"{alg1[0] / joint[0]:>9.1f}x" if alg1 else f"{'n/a':>10}"
            shown = "  ".join(
                f"{'does not fit':>22}" if c is None else f"{c[0]:>9.3f} s {c[1]:>7.0f} MB"
                for c in cells.values()
            )
            print(f"{size:>6} {ratio:>4} {batch_size:>6}  {shown}  {versus_floor:>10.2f}x  {alg1_ratio}")
            for method, cell in cells.items():
                rows.append(
                    {
                        "B": size,
                        "f": ratio,
                        "b": batch_size,
                        "n_chunks": N_CHUNKS,
                        "dim": DIM,
                        "method": method,
                        "seconds": "" if cell is None else f"{cell[0]:.4f}",
                        "peak_mb": "" if cell is None else f"{cell[1]:.0f}",
                        "threads": torch.get_num_threads(),
                    }
                )
    write_table(args.out, rows)


if __name__ == "__main__":
    main()
