"""Steps per second of one run over 1 and 2 processes, global against local selection, and the share
of step time spent in collectives; with ``--device cuda``, GPU rows too.

CPU rows (gloo, one torch thread per process; 2 processes are started through torchrun's API, as
``jestbench run --nproc 2`` starts them): uniform at f = 0 and JEST (learner-scored, ``score=hard``,
so no reference is needed) at f = 0.8, on the ``shapes`` data (built into the work directory if
missing) or ``--data DIR``. Each configuration runs ``--repeats`` times, each time ``--warmup``
untimed steps then ``--steps`` timed ones; a run's figure is its median step, the row the median of
the runs' figures (with their min and max). The machine may be shared: the figures are noisy.

Collective time is this rank's wall time blocked in the explicit collectives (embedding and sample
exchange, the loss's text gather, scalars, bookkeeping) plus DDP's gradient all-reduce from each
bucket's launch to its end, which overlaps the backward pass: an upper bound.

GPU rows (``--device cuda``): training samples/s at the ``small`` and ``B/16`` presets in fp32 and
bf16 (one process, random uint8 images at the preset's size), and the time of JEST's joint selection
over B = 65,536 random embeddings on the GPU.

    python benchmarks/distributed.py                 # CPU rows, results/bench/distributed.csv
    python benchmarks/distributed.py --device cuda   # CPU and GPU rows
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from table import write_table

from harness.data import open_data, open_dataset
from harness.distributed import launch
from harness.runconfig import RunConfig
from harness.step import Stepper

RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench" / "distributed.csv"
CASES = (  # (label, strategy, params, filter ratio, processes, scope)
    ("uniform, 1 process", "uniform", {}, 0.0, 1, "global"),
    ("uniform, 2 processes", "uniform", {}, 0.0, 2, "global"),
    ("jest, 1 process", "jest", {"score": "hard"}, 0.8, 1, "global"),
    ("jest, 2 processes, global", "jest", {"score": "hard"}, 0.8, 2, "global"),
    ("jest, 2 processes, local", "jest", {"score": "hard"}, 0.8, 2, "local"),
)


def measure(config: dict[str, Any], work: str, steps: int, warmup: int, out: str) -> None:
    """One run's steps on this rank (the entry point of every rank); rank 0 writes the figures."""
    torch.set_num_threads(1)
    stepper = Stepper(RunConfig.from_dict(config), Path(work))
    stepper.ranks.time_gradients()
    batches = iter(stepper.stream())
    seconds = stepper.ranks.communication.seconds
    step_times, collective_times = [], []
    for i in range(warmup + steps):
        batch = next(batches)  # read outside the timing: the loader is benchmarked in step.py
        before = sum(seconds.values())
        start = time.perf_counter()
        stepper.step(batch)
        if i >= warmup:
            step_times.append(time.perf_counter() - start)
            collective_times.append(sum(seconds.values()) - before)
    if stepper.ranks.is_main:
        Path(out).write_text(
            json.dumps(
                {
                    "step": statistics.median(step_times),
                    "collectives": statistics.median(collective_times),
                    "bytes_per_step": stepper.ranks.communication.total / (warmup + steps),
                }
            )
        )
    stepper.ranks.close()


def cpu_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    work = args.work.resolve()
    dataset = open_dataset(args.data) if args.data else open_data(work, data="shapes")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, strategy, params, f, nproc, scope in CASES:
            if args.case and not any(wanted in label for wanted in args.case):
                continue
            config = RunConfig(
                dataset=str(dataset.root),
                dataset_id=dataset.content_id,
                preset=args.preset,
                strategy=strategy,
                params=params,
                batch_size=args.batch_size,
                filter_ratio=f,
                budget="1e18 flops",
                world_size=nproc,
                selection_scope=scope,
            )
            runs = []
            for repeat in range(args.repeats):
                out = Path(scratch) / f"{len(rows)}-{repeat}.json"
                call = (config.to_dict(), str(work), args.steps, args.warmup, str(out))
                if nproc == 1:
                    measure(*call)
                else:
                    launch(measure, call, nproc, f"bench-{len(rows)}-{repeat}")
                runs.append(json.loads(out.read_text()))
            steps = [1 / r["step"] for r in runs]
            shares = [r["collectives"] / r["step"] for r in runs]
            row = {
                "device": "cpu",
                "case": label,
                "preset": args.preset,
                "b": config.batch_size,
                "B": round(config.batch_size / (1 - f)),
                "processes": nproc,
                "selection_scope": scope if nproc > 1 else "",
                "steps_per_s": f"{statistics.median(steps):.3f}",
                "steps_per_s_min": f"{min(steps):.3f}",
                "steps_per_s_max": f"{max(steps):.3f}",
                "samples_per_s": f"{statistics.median(steps) * config.batch_size:.1f}",
                "collective_share": f"{statistics.median(shares):.3f}" if nproc > 1 else "",
                "bytes_per_step": f"{statistics.median(r['bytes_per_step'] for r in runs):.0f}",
                "repeats": args.repeats,
                "steps": args.steps,
            }
            print(
                f"{label:<28} {row['steps_per_s']:>8} steps/s [{row['steps_per_s_min']}, {row['steps_per_s_max']}]"
                f"  collectives {row['collective_share'] or '-':>6}  {row['bytes_per_step']} B/step"
            )
            rows.append(row)
    return rows


def _cuda_seconds(fn: Any, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gpu_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Training samples/s per preset and precision, and joint selection at B = 65,536, on one GPU."""
    from harness.device import autocast, resolve_device
    from harness.models import build_model
    from harness.runconfig import OptimConfig
    from harness.step import make_optimizer, step_loss, train_step
    from harness.view import EmbeddingView
    from strategies import Embeddings, TrainingPlan, default_registry

    resolve_device("cuda")  # the one-line error without a GPU
    device = torch.device("cuda")
    rows = []
    for preset, batch in (("small", args.gpu_batch), ("B/16", args.gpu_batch)):
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            model = build_model(preset, vocab_size=32_000).to(device)
            cfg = model.config
            optimizer = make_optimizer(model, OptimConfig())
            images = torch.randint(
                0, 256, (batch, cfg.channels, cfg.image_size, cfg.image_size), dtype=torch.uint8
            )
            tokens = torch.randint(1, cfg.vocab_size, (batch, cfg.context_length))
            plan = TrainingPlan(("full",))

            def step(
                model=model, optimizer=optimizer, images=images, tokens=tokens, precision=precision, plan=plan
            ) -> None:
                def forward(i: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                    with autocast(device, precision):
                        return step_loss(model, i, t, plan)

                train_step(model, optimizer, images.to(device), tokens.to(device), plan, 1.0, forward=forward)

            seconds = _cuda_seconds(step, args.steps, args.warmup)
            rows.append(
                {
                    "device": torch.cuda.get_device_name(device),
                    "case": f"train step, {precision}",
                    "preset": preset,
                    "b": batch,
                    "processes": 1,
                    "samples_per_s": f"{batch / seconds:.1f}",
                    "steps_per_s": f"{1 / seconds:.3f}",
                    "repeats": 1,
                    "steps": args.steps,
                }
            )
            print(f"{preset:<6} {precision}: {batch / seconds:,.0f} samples/s")
    big, dim = 65_536, 768
    b = big // 5 // 16 * 16
    generator = torch.Generator().manual_seed(0)

    def random_embeddings() -> Embeddings:
        parts = [torch.randn(big, dim, generator=generator).to(device) for _ in range(2)]
        image, text = (torch.nn.functional.normalize(p, dim=1) for p in parts)
        return Embeddings(image, text, 10.0, -10.0)

    learner, reference = random_embeddings(), random_embeddings()
    jest = default_registry().get_strategy("jest")

    def select() -> None:
        jest.select(EmbeddingView(learner, reference), b, torch.Generator().manual_seed(1))

    seconds = _cuda_seconds(select, max(3, args.steps // 4), 1)
    rows.append(
        {
            "device": torch.cuda.get_device_name(device),
            "case": "jest joint selection (16 chunks, learnability)",
            "preset": f"d={dim}",
            "b": b,
            "B": big,
            "processes": 1,
            "selection_seconds": f"{seconds:.4f}",
            "repeats": 1,
            "steps": max(3, args.steps // 4),
        }
    )
    print(f"joint selection of {b} from {big}: {seconds:.3f} s")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: add the GPU rows")
    parser.add_argument("--preset", default="small", help="model preset of the CPU rows (default small)")
    parser.add_argument("-b", "--batch-size", type=int, default=128, help="b of the CPU rows (default 128)")
    parser.add_argument("--data", type=Path, help="dataset directory (default: shapes in the work directory)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per CPU configuration (default 3)")
    parser.add_argument(
        "--case", action="append", help="run only the CPU cases whose label contains this (repeatable)"
    )
    parser.add_argument("--gpu-batch", type=int, default=256, help="b of the GPU rows (default 256)")
    parser.add_argument("--work", type=Path, default=Path("work"), help="work directory (default ./work)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="CSV to write")
    args = parser.parse_args()
    rows = cpu_rows(args)
    if args.device == "cuda":
        rows += gpu_rows(args)
    write_table(args.out, rows)


if __name__ == "__main__":
    main()
