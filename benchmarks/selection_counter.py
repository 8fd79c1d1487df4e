"""The cost of counting what a selection runs: ``jest``'s selection with and without
:func:`harness.view.select_counted` (``FlopCounterMode`` around ``select``, the view's own work under
a nested counter), at the ``small`` preset and the quick and full suites' shape (b = 128, f = 0.8,
B = 640).

The view is the training loop's: its learner source runs the ``small`` learner (random weights) over
the super-batch without gradients, the reference embeddings are given (as when cached). Each figure
is the median over ``--repeats`` selections, each on a fresh view (so the learner pass is included,
as in a step). Prints one line per figure.

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
from harness.view import EmbeddingView, select_counted
from strategies import Embeddings, default_registry


def _median_ms(run: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        run()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


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

    plain = _median_ms(lambda: jest.select(view(), b, generator), args.repeats)
    counted = _median_ms(lambda: select_counted(jest, view(), b, generator), args.repeats)
    _, own = select_counted(jest, view(), b, generator)
    print(f"jest selection, small preset, b={b}, B={B}, {args.threads} thread(s), median of {args.repeats}:")
    print(f"  plain select            {plain:8.2f} ms")
    print(
        f"  select_counted          {counted:8.2f} ms  (+{counted - plain:.2f} ms, {counted / plain - 1:+.1%})"
    )
    print(f"  own multiply-adds counted: {own}")


if __name__ == "__main__":
    main()
