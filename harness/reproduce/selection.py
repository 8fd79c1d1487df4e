"""Selection quality on real super-batches (JEST paper Fig. 2): the joint learnability of the
sub-batch each method selects, from the learner's and the reference's embeddings.

The joint learnability of a sub-batch ``S`` of ``b`` is ``(1/b) Σ_{S×S} (L(θ) − L(θ*))``: the
learner's SigLIP batch loss on ``S`` minus the reference's (paper §3.1; ``M = g·`` this matrix). The
methods: uniform, independent top-k of the diagonal, JEST with N chunks (:func:`joint_sample`) and the
brute-force Gibbs yardstick (:func:`gibbs_sample`, started from uniform and run until it converges,
its trace kept).
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


@dataclass(frozen=True)
class GibbsChain:
    """A Gibbs chain run to convergence: its final sub-batch, the proposals it took, and whether it
    converged before the cap."""

    index: torch.Tensor
    proposals: int
    converged: bool


# A chain has converged when a block of proposals raises its joint learnability by less than this
# share of its rise since the start.
GIBBS_TOLERANCE = 0.01


def gibbs_to_convergence(
    matrix: torch.Tensor,
    batch_size: int,
    *,
    gain: float,
    block: int,
    max_blocks: int,
    generator: torch.Generator,
    trace: list[float] | None = None,
) -> GibbsChain:
    """The Gibbs yardstick (:func:`gibbs_sample` on ``gain · matrix``) from a uniform start, run in
    blocks of ``block`` proposals, each continuing the chain, until a block adds less than
    :data:`GIBBS_TOLERANCE` of the chain's rise so far, or ``max_blocks`` blocks. ``trace`` receives
    the chain's joint learnability after every proposal."""
    size = matrix.shape[0]
    index = torch.randperm(size, generator=generator)[:batch_size]
    start = previous = joint_learnability(matrix, index)
    on_swap = functools.partial(_record, trace, gain * batch_size) if trace is not None else None
    for blocks in range(1, max_blocks + 1):
        index = gibbs_sample(gain * matrix, batch_size, block, generator, init=index, on_swap=on_swap)
        current = joint_learnability(matrix, index)
        if current - previous <= GIBBS_TOLERANCE * max(current - start, 0.0):
            return GibbsChain(index, blocks * block, True)
        previous = current
    return GibbsChain(index, max_blocks * block, False)


@dataclass
class PointResult:
    """One point of training: per method, the joint learnability of each super-batch (mean over
    draws); and the Gibbs traces (score against proposals) of the first super-batch."""

    label: str
    scores: dict[str, list[float]] = field(default_factory=dict)
    gibbs_traces: list[list[float]] = field(default_factory=list)
    gibbs_chains: list[GibbsChain] = field(default_factory=list)

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
    gibbs_block: float,
    gibbs_max_blocks: int,
    seed: int = 0,
) -> PointResult:
    """Fig. 2 (middle) at one point of training: every method on every super-batch (the first
    ``B = b/(1−f)`` samples of each), ``draws`` samplings of each random method averaged; Gibbs in
    blocks of ``gibbs_block · b · (B − b)`` proposals (the number of possible single swaps) until
    converged or ``gibbs_max_blocks`` blocks."""
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
            chain = gibbs_to_convergence(
                matrix,
                batch_size,
                gain=gain,
                block=max(1, round(gibbs_block * batch_size * (size - batch_size))),
                max_blocks=gibbs_max_blocks,
                generator=generator,
                trace=trace if number == 0 else None,
            )
            values.append(joint_learnability(matrix, chain.index))
            result.gibbs_chains.append(chain)
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
