"""Thread counts on a quiet and on a busy machine: joint selection and its floor (benchmarks/selection.py)
and a ``small``-preset training step, at 1 and 2 torch threads, with OpenMP's default wait policy and
with ``OMP_WAIT_POLICY=PASSIVE``, alone and beside CPU hogs (busy Python loops, one per hog).

Each cell runs in a fresh process (the wait policy is read when OpenMP starts) that times ``--repeats``
calls after one warm-up; ``--rounds`` such processes per cell run round-robin across the cells, so that
a change in the machine's other load falls on every cell, and the median is reported. A measurement of this machine for choosing defaults
(docs/PERFORMANCE.md says what was found), not a product figure; tests never assert wall-clock time.

    python benchmarks/threads.py                 # B = 4096, f = 0.8; 0 and 1 hog; 3 rounds
    python benchmarks/threads.py --hogs 0 2      # with two hogs instead of one
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from table import write_table

RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench" / "threads.csv"
HOG = "while True:\n    pass\n"


def _cell(threads: int, size: int, batch_size: int, repeats: int) -> dict[str, float]:
    """Median seconds of joint selection, its floor and a small-preset training step, in this process."""
    import torch
    from selection import N_CHUNKS, _embeddings, _floor  # benchmarks/selection.py, beside this file

    from harness.losses import sigmoid_loss
    from harness.models import build_model
    from harness.view import EmbeddingView
    from strategies import default_registry

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    learner, reference = _embeddings(size, 0), _embeddings(size, 1)
    jest = default_registry().get_strategy("jest", n_chunks=N_CHUNKS, gain=1.0)
    chosen = torch.randperm(size)[:batch_size]
    model = build_model("small", vocab_size=512)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cfg = model.config
    images = torch.randint(0, 256, (128, cfg.channels, cfg.image_size, cfg.image_size), dtype=torch.uint8)
    tokens = torch.randint(1, cfg.vocab_size, (128, cfg.context_length))

    def train_step() -> None:
        scale, bias = model.scale_bias()
        loss = sigmoid_loss(model.encode_image(images), model.encode_text(tokens), scale, bias)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    work = {
        "selection": lambda: jest.select(
            EmbeddingView(learner, reference), batch_size, torch.Generator().manual_seed(0)
        ),
        "floor": lambda: _floor(learner, reference, chosen),
        "train_step": train_step,
    }
    medians = {}
    for name, run in work.items():
        times = []
        for repeat in range(repeats + 1):
            start = time.perf_counter()
            run()
            if repeat:  # the first is a warm-up
                times.append(time.perf_counter() - start)
        medians[name] = statistics.median(times)
    return medians


def _measure(hogs: int, threads: int, policy: str, args: argparse.Namespace) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    hog_processes = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--cell", str(threads), "--size", str(args.size),
             "--batch-size", str(args.batch_size), "--repeats", str(args.repeats)],
            env=env, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
    finally:
        for hog in hog_processes:
            hog.kill()
            hog.wait()
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads (default 1 2)")
    parser.add_argument(
        "--hogs", type=int, nargs="+", default=[0, 1], help="competing busy processes (default 0 1)"
    )
    parser.add_argument(
        "--policies", nargs="+", default=["default", "PASSIVE"], help="OMP_WAIT_POLICY values"
    )
    parser.add_argument("--size", type=int, default=4096, help="super-batch B (default 4096)")
    parser.add_argument("--batch-size", type=int, default=816, help="sub-batch b (default 816: f = 0.8)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per process (median taken)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="processes per cell, interleaved (median reported)"
    )
    parser.add_argument("--cell", type=int, help=argparse.SUPPRESS)  # internal: one cell, JSON out
    parser.add_argument("--out", type=Path, default=RESULTS, help="CSV to write")
    args = parser.parse_args()
    if args.cell is not None:
        print(json.dumps(_cell(args.cell, args.size, args.batch_size, args.repeats)))
        return

    cells = [(h, t, p) for h in args.hogs for t in args.threads for p in args.policies]
    loads: list[float] = []
    runs: dict[tuple[int, int, str], list[dict[str, float]]] = {cell: [] for cell in cells}
    for _ in range(args.rounds):  # round-robin, so that a change in the machine's load hits every cell
        for cell in cells:
            loads.append(os.getloadavg()[0])
            runs[cell].append(_measure(*cell, args))
    print(
        f"B={args.size}, b={args.batch_size}: median over {args.rounds} processes of the median of {args.repeats} "
        f"timings; {os.cpu_count()} CPUs, load average {min(loads):.1f}-{max(loads):.1f} during the runs "
        "(other users' processes are hogs too)"
    )
    print(
        f"{'hogs':>4} {'threads':>7} {'OMP_WAIT_POLICY':>15} {'selection':>10} {'floor':>8} {'sel/floor':>9} {'train step':>10}"
    )
    rows: list[dict[str, Any]] = []
    for (hogs, threads, policy), measured in runs.items():
        median = {key: statistics.median(m[key] for m in measured) for key in measured[0]}
        ratio = median["selection"] / median["floor"]
        print(
            f"{hogs:>4} {threads:>7} {policy:>15} {median['selection']:>9.3f}s {median['floor']:>7.3f}s "
            f"{ratio:>8.2f}x {median['train_step']:>9.3f}s"
        )
        rows.append({"hogs": hogs, "threads": threads, "omp_wait_policy": policy, **median})
    write_table(args.out, rows)


if __name__ == "__main__":
    main()
