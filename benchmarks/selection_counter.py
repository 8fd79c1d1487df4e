"""The cost of counting what a selection runs: ``jest``'s selection with and without
:func:`harness.view.select_counted` (``FlopCounterMode`` around ``select``, the view's own work under
a nested counter), at the ``small`` preset and the quick and full suites' shape (b = 128, f = 0.8,
B = 640).

The view is the training loop's: its learner source runs the ``small`` learner (random weights) over
the super-batch without gradients, the reference embeddings are given (as when cached). Each figure
is the median over ``--repeats`` selections, each on a fresh view (so the learner pass is included,
as in a step), the variants timed in turn; a whole step (counted selection and the training step
on the picks) gives the overhead's share of a step. Prints one line per figure.

    python benchmarks/selection_counter.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from harness.batching import BatchShape
from harness.conformance import random_embeddings
from harness.models import build_model
from harness.runconfig import OptimConfig
from harness.step import make_optimizer, train_step
from harness.view import EmbeddingView, select_counted
from strategies import Embeddings, default_registry


def _median_ms(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median milliseconds of each of ``runs``, taken in turn (so that load on a shared machine falls
    on all of them alike)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(warmup + repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=30, help="timed selections per figure (default 30)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = BatchShape.from_filter_ratio(128, 0.8)
    B, b = shape.super_batch_size, shape.batch_size
    torch.manual_seed(0)
    model = build_model("small", vocab_size=512, image_size=32, channels=3, context_length=16).eval()
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (B, 3, 32, 32), dtype=torch.uint8, generator=generator)
    tokens = torch.randint(1, 512, (B, 16), generator=generator)
    reference = random_embeddings(B, generator, dim=model.config.embed_dim)
    jest = default_registry().get_strategy("jest")

    def view() -> EmbeddingView:
        def learner() -> Embeddings:
            return model.embeddings(images, tokens, "full")

        return EmbeddingView(learner, reference)

    optimizer = make_optimizer(model, OptimConfig())

    def step() -> None:
        index, _ = select_counted(jest, view(), b, generator)
        train_step(model, optimizer, images[index], tokens[index], jest.training, 1.0)

    times = _median_ms(
        {
            "plain": lambda: jest.select(view(), b, generator),
            "counted": lambda: select_counted(jest, view(), b, generator),
            "step": step,
        },
        args.repeats,
    )
    plain, counted = times["plain"], times["counted"]
    _, own = select_counted(jest, view(), b, generator)
    print(f"jest selection, small preset, b={b}, B={B}, {args.threads} thread(s), median of {args.repeats}:")
    print(f"  plain select            {plain:8.2f} ms")
    print(
        f"  select_counted          {counted:8.2f} ms  (+{counted - plain:.2f} ms, {counted / plain - 1:+.1%})"
    )
    print(
        f"  whole step, counted     {times['step']:8.2f} ms: the counter is {(counted - plain) / times['step']:.1%} of it"
    )
    print(f"  own multiply-adds counted: {own}")


if __name__ == "__main__":
    main()
