"""Sampling primitives over score tensors: exact draws without replacement, joint (JEST) sampling,
and the brute-force Gibbs sampler used as the selection-quality yardstick.

Everything here works on tensors and views; nothing imports the harness.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from strategies.protocol import ScoreKind, SuperBatchView


def gumbel_noise(
    shape: tuple[int, ...],
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log U)``, with ``U`` kept strictly inside (0, 1) so it is finite.

    ``U`` is drawn where ``generator`` lives (the CPU) and moved to ``device`` (the scores' device), so
    that a selection draws the same noise on any device from the same generator."""
    tiny = torch.finfo(dtype).tiny
    uniform = torch.rand(shape, generator=generator, dtype=dtype).clamp(
        min=tiny, max=1.0 - torch.finfo(dtype).eps
    )
    if device is not None:
        uniform = uniform.to(device)
    return -torch.log(-torch.log(uniform))


def gumbel_top_k(logits: torch.Tensor, k: int, noise: torch.Tensor) -> torch.Tensor:
    """Draw ``k`` indices without replacement with ``p ∝ exp(logits)``, given Gumbel ``noise``.

    Top-k of logits plus Gumbel noise is an exact draw of the successive-sampling (Plackett-Luce)
    distribution, and never exponentiates: it stays finite for any finite logits, however large.
    Entries at ``-inf`` are never drawn. Returns indices in draw order.
    """
    if torch.isnan(logits).any():
        raise ValueError("cannot sample: the logits contain NaN")
    available = int((logits > float("-inf")).sum())
    if available < k:
        raise ValueError(f"cannot draw {k} indices: only {available} candidates have finite logits")
    return torch.topk(logits + noise, k, sorted=True).indices


def joint_sample(
    view: SuperBatchView,
    kind: ScoreKind,
    batch_size: int,
    n_chunks: int,
    gain: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Joint example selection, the JEST paper's Algorithm 1 made exact (docs/DESIGN.md §3).

    The first chunk of ``b/N`` is drawn without replacement with ``p_i ∝ exp(M_ii)``; every later chunk
    with ``p_i ∝ exp(M_ii + Σ_{j∈chosen} (M_ij + M_ji))`` over the candidates not yet chosen, where
    ``M = gain · scores`` (paper Eq. 1's conditional learnability of ``i`` given the chosen set). The
    running sums take only the newest chunk's rows and columns from the view, so selection costs
    O(B·b) and never needs ``M`` whole.

    Raises:
        ValueError: ``b < 1``, ``N < 1`` or ``N`` not dividing ``b`` (chunks of ``⌊b/N⌋`` would return
            fewer than ``b`` indices without a word).
    """
    chunk = _chunk_size(batch_size, n_chunks)
    logits = gain * view.scores(kind)
    picks: list[torch.Tensor] = []
    for c in range(n_chunks):
        pick = gumbel_top_k(logits, chunk, gumbel_noise(logits.shape, generator, logits.dtype, logits.device))
        picks.append(pick)
        if c + 1 < n_chunks:
            cross = view.score_columns(kind, pick).sum(dim=1) + view.score_rows(kind, pick).sum(dim=0)
            logits = logits + gain * cross
            logits[pick] = float("-inf")
    return torch.cat(picks)


def _chunk_size(batch_size: int, n_chunks: int) -> int:
    """``b / N``, refused unless it is a whole positive number."""
    if batch_size < 1 or n_chunks < 1 or batch_size % n_chunks:
        raise ValueError(
            f"joint sampling cannot draw b={batch_size} in n_chunks={n_chunks} equal chunks: give b >= 1 "
            "and n_chunks >= 1 dividing b"
        )
    return batch_size // n_chunks


def joint_sample_transcribed(
    scores: torch.Tensor,
    batch_size: int,
    n_chunks: int,
    gain: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """The paper's Algorithm 1 transcribed directly: a dense ``M`` and full masked sums every chunk.

    As the paper writes it, each chunk recomputes ``logits_ij = (M * is_sampled[None, :]).sum(1)`` and
    ``logits_ji = (M * is_sampled[:, None]).sum(0)`` over the whole matrix: O(N·B²) time and O(B²)
    memory. It is the yardstick that :func:`joint_sample` must match index for index in float64 with
    the same generator (docs/DESIGN.md §3), and the baseline the selection benchmark times; never used to train.
    """
    matrix = gain * scores
    size = matrix.shape[0]
    is_sampled = torch.zeros(size, dtype=matrix.dtype)
    picks: list[torch.Tensor] = []
    chunk = _chunk_size(batch_size, n_chunks)
    for _ in range(n_chunks):
        logits_ij = (matrix * is_sampled[None, :]).sum(dim=1)
        logits_ji = (matrix * is_sampled[:, None]).sum(dim=0)
        logits = (matrix.diagonal() + logits_ij + logits_ji).masked_fill(is_sampled.bool(), float("-inf"))
        pick = gumbel_top_k(logits, chunk, gumbel_noise(logits.shape, generator, logits.dtype, logits.device))
        picks.append(pick)
        is_sampled[pick] = 1
    return torch.cat(picks)


def subset_score(scores: torch.Tensor, index: torch.Tensor) -> float:
    """The joint score of a sub-batch: the sum of ``M`` over ``S x S`` (paper §3.1)."""
    return float(scores[index][:, index].sum())


def gibbs_sample(
    scores: torch.Tensor,
    batch_size: int,
    n_swaps: int,
    generator: torch.Generator,
    *,
    init: torch.Tensor | None = None,
    on_swap: Callable[[int, float], None] | None = None,
) -> torch.Tensor:
    """Brute-force Metropolis sampling of sub-batches with target ``p(S) ∝ exp(Σ_{S×S} M)``.

    Single-swap moves (one chosen out, one candidate in), the paper's Fig. 2 yardstick for how close
    joint selection comes to the best sub-batches. ``scores`` is the dense ``M`` (gain applied). Each
    swap costs O(B): ``r_i = Σ_{j∈S} (M_ij + M_ji)`` is kept up to date. A diagnostic, not a strategy.
    ``on_swap(step, score)`` is called after every proposal with the current subset score.
    """
    size = scores.shape[0]
    if init is None:
        init = torch.randperm(size, generator=generator)[:batch_size]
    inside = torch.zeros(size, dtype=torch.bool)
    inside[init] = True
    matrix = scores
    mask = inside.to(matrix.dtype)
    row_col = matrix @ mask + mask @ matrix
    diag = matrix.diagonal()
    current = float(mask @ matrix @ mask)
    for step in range(n_swaps):
        members = inside.nonzero().squeeze(1)
        outsiders = (~inside).nonzero().squeeze(1)
        if outsiders.numel() == 0:
            break
        draw = torch.randint(0, 1 << 62, (2,), generator=generator)
        out_i = int(members[int(draw[0]) % members.numel()])
        in_j = int(outsiders[int(draw[1]) % outsiders.numel()])
        delta = float(row_col[in_j] - matrix[in_j, out_i] - matrix[out_i, in_j] + diag[in_j]) - float(
            row_col[out_i] - diag[out_i]
        )
        accept_log = torch.log(torch.rand((), generator=generator, dtype=torch.float64))
        if delta >= 0 or float(accept_log) < delta:
            inside[out_i] = False
            inside[in_j] = True
            row_col = row_col - matrix[:, out_i] - matrix[out_i, :] + matrix[:, in_j] + matrix[in_j, :]
            current += delta
        if on_swap is not None:
            on_swap(step, current)
    return inside.nonzero().squeeze(1)
