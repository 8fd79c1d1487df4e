"""Wall time of one training step of a model preset on random data: uniform (train on b) and
learner-scored (score B without gradients, select with JEST, train on b), as the loop runs them.

    python benchmarks/model_step.py --preset small --batch-size 256 --filter-ratio 0.8 --threads 2

Prints the median of ``--repeats`` steps after one warm-up step, per phase. A measurement of this
machine, not a product figure; tests never assert wall-clock time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from harness.batching import BatchShape
from harness.conformance import random_embeddings
from harness.losses import sigmoid_loss
from harness.models import build_model
from harness.view import EmbeddingView
from strategies import default_registry


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--filter-ratio", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vocab-size", type=int, default=512)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = BatchShape.from_filter_ratio(args.batch_size, args.filter_ratio)
    model = build_model(args.preset, vocab_size=args.vocab_size)
    cfg = model.config
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    strategy = default_registry().get_strategy("jest")
    generator = torch.Generator().manual_seed(0)
    size = shape.super_batch_size
    images = torch.randint(0, 256, (size, cfg.channels, cfg.image_size, cfg.image_size), dtype=torch.uint8)
    tokens = torch.randint(1, cfg.vocab_size, (size, cfg.context_length))
    reference = random_embeddings(size, generator, dim=cfg.embed_dim)

    def train(index: torch.Tensor) -> None:
        scale, bias = model.scale_bias()
        loss = sigmoid_loss(model.encode_image(images[index]), model.encode_text(tokens[index]), scale, bias)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    timings: dict[str, list[float]] = {"uniform step": [], "scoring B": [], "selection": [], "training b": []}
    for repeat in range(args.repeats + 1):
        start = time.perf_counter()
        train(torch.randperm(size, generator=generator)[: shape.batch_size])
        uniform = time.perf_counter() - start

        start = time.perf_counter()
        learner = model.embeddings(images, tokens)
        scored = time.perf_counter()
        index = strategy.select(EmbeddingView(learner, reference), shape.batch_size, generator)
        selected = time.perf_counter()
        train(index)
        trained = time.perf_counter()
        if repeat:  # the first round warms up
            timings["uniform step"].append(uniform)
            timings["scoring B"].append(scored - start)
            timings["selection"].append(selected - scored)
            timings["training b"].append(trained - selected)

    print(
        f"preset {args.preset}, b={shape.batch_size}, B={size}, {args.threads} threads, median of {args.repeats}:"
    )
    for name, values in timings.items():
        print(f"  {name:14s} {statistics.median(values):.3f} s")
    learner_scored = sum(statistics.median(timings[k]) for k in ("scoring B", "selection", "training b"))
    print(f"  {'learner-scored step':14s} {learner_scored:.3f} s")


if __name__ == "__main__":
    main()
