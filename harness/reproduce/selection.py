"""Selection quality on real super-batches (JEST paper Fig. 2): the joint learnability of the
sub-batch each method selects, from the learner's and the reference's embeddings.

The joint learnability of a sub-batch ``S`` of ``b`` is ``(1/b) Σ_{S×S} (L(θ) − L(θ*))``: the
learner's SigLIP batch loss on ``S`` minus the reference's (paper §3.1; ``M = g·`` this matrix). The
methods: uniform, independent top-k of the diagonal, JEST with N chunks (:func:`joint_sample`) and the
brute-force Gibbs yardstick (:func:`gibbs_sample`, started from uniform, its trace kept).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.batching import BatchShape
from harness.data import SuperBatch
from harness.models import DualEncoder
from harness.view import EmbeddingView, dense_scores
from strategies.sampling import gibbs_sample, joint_sample, subset_score


def learnability_view(model: DualEncoder, batch: SuperBatch, size: int | None = None) -> EmbeddingView:
    """The view of the first ``size`` samples of ``batch``: the learner's embeddings at full
    resolution and the reference's cached ones."""
    assert batch.reference is not None, "super-batches for selection analyses carry reference embeddings"
    n = size or len(batch)
    with torch.no_grad():
        learner = model.embeddings(batch.images[:n], batch.tokens[:n], "full")
    reference = batch.reference
    return EmbeddingView(
        learner,
        type(reference)(reference.image[:n], reference.text[:n], reference.scale, reference.bias),
    )


def joint_learnability(matrix: torch.Tensor, index: torch.Tensor) -> float:
    """``(1/b) Σ_{S×S} M``: learner batch loss minus reference batch loss on the sub-batch."""
    return subset_score(matrix, index) / len(index)


@dataclass
class PointResult:
    """One point of training: per method, the joint learnability of each super-batch (mean over
    draws); and the Gibbs traces (score against proposals) of the first super-batch."""

    label: str
    scores: dict[str, list[float]] = field(default_factory=dict)
    gibbs_traces: list[list[float]] = field(default_factory=list)

    def add(self, method: str, value: float) -> None:
        self.scores.setdefault(method, []).append(value)


def chunks_label(n: int) -> str:
    return f"JEST N={n}"


def selection_quality(
    model: DualEncoder,
    batches: list[SuperBatch],
    *,
    label: str,
    batch_size: int,
    filter_ratio: float,
    chunk_counts: tuple[int, ...],
    gain: float,
    draws: int,
    gibbs_swaps: int,
    seed: int = 0,
) -> PointResult:
    """Fig. 2 (middle) at one point of training: every method on every super-batch (the first
    ``B = b/(1−f)`` samples of each), ``draws`` samplings of each random method averaged."""
    size = BatchShape.from_filter_ratio(batch_size, filter_ratio).super_batch_size
    result = PointResult(label)
    generator = torch.Generator().manual_seed(seed)
    for number, batch in enumerate(batches):
        view = learnability_view(model, batch, size)
        matrix = dense_scores(view, "learnability").double()
        result.add(
            "uniform", _mean(lambda: torch.randperm(size, generator=generator)[:batch_size], matrix, draws)
        )
        result.add("top-k", joint_learnability(matrix, torch.topk(matrix.diagonal(), batch_size).indices))
        for n in chunk_counts:
            if batch_size % n:
                continue
            result.add(
                chunks_label(n),
                _mean(
                    functools.partial(joint_sample, view, "learnability", batch_size, n, gain, generator),
                    matrix,
                    draws,
                ),
            )
        values = []
        for _draw in range(draws):
            trace: list[float] = []
            index = gibbs_sample(
                gain * matrix,
                batch_size,
                gibbs_swaps * size,
                generator,
                on_swap=functools.partial(_record, trace, gain * batch_size) if number == 0 else None,
            )
            values.append(joint_learnability(matrix, index))
            if trace:
                result.gibbs_traces.append(trace[:: max(1, len(trace) // 400)])
        result.add("Gibbs", float(np.mean(values)))
    return result


def _record(trace: list[float], scale: float, _: int, score: float) -> None:
    """Gibbs's ``on_swap``: the chain's subset score as joint learnability per example."""
    trace.append(score / scale)


def _mean(draw: Callable[[], torch.Tensor], matrix: torch.Tensor, draws: int) -> float:
    return float(np.mean([joint_learnability(matrix, draw()) for _ in range(draws)]))


def filter_ratio_sweep(
    model: DualEncoder,
    batches: list[SuperBatch],
    *,
    batch_size: int,
    filter_ratios: tuple[float, ...],
    n_chunks: int,
    gain: float,
    draws: int,
    seed: int = 0,
) -> dict[float, list[float]]:
    """Fig. 2 (right): JEST's joint learnability at each filter ratio, per super-batch (nested
    prefixes of the same super-batches, so the comparison between ratios is paired)."""
    generator = torch.Generator().manual_seed(seed)
    out: dict[float, list[float]] = {f: [] for f in filter_ratios}
    for batch in batches:
        for f in filter_ratios:
            size = BatchShape.from_filter_ratio(batch_size, f).super_batch_size
            view = learnability_view(model, batch, size)
            matrix = dense_scores(view, "learnability").double()
            draw = functools.partial(
                joint_sample, view, "learnability", batch_size, n_chunks, gain, generator
            )
            out[f].append(_mean(draw, matrix, draws))
    return out


def sorted_matrix(
    model: DualEncoder, batch: SuperBatch, *, batch_size: int, filter_ratio: float, n_chunks: int, gain: float
) -> tuple[np.ndarray, torch.Tensor, float, float]:
    """Fig. 2 (left): the learnability matrix of one super-batch, rows and columns sorted by JEST's
    selection order (the chosen sub-batch first, in draw order, then the rest); also the mean entry of
    the chosen block and of the whole matrix."""
    size = BatchShape.from_filter_ratio(batch_size, filter_ratio).super_batch_size
    view = learnability_view(model, batch, size)
    matrix = dense_scores(view, "learnability").double()
    index = joint_sample(view, "learnability", batch_size, n_chunks, gain, torch.Generator().manual_seed(0))
    rest = torch.tensor([i for i in range(size) if i not in set(index.tolist())], dtype=torch.long)
    order = torch.cat([index, rest])
    block = float(matrix[index][:, index].mean())
    return matrix[order][:, order].numpy(), index, block, float(matrix.mean())
