"""The sigmoid contrastive (SigLIP) loss, written once: batch loss, per-pair blocks, per-example losses.

With L2-normalised embeddings ``x`` (image) and ``y`` (text), logit scale ``a`` and bias ``c``
(docs/DESIGN.md §2; Zhai et al. 2023, Eq. 1)::

    L_ij = -log σ(z_ij · (a · x_i·y_j + c)),   z_ij = +1 if i == j else -1
    loss = (1/n) Σ_ij L_ij

The conditional loss of example ``i`` given the batch is its row ``Σ_j L_ij`` (JEST appendix A.6,
Eq. 2); its unconditional loss is ``L_ii``. Blocks of ``L`` against a subset of rows or columns come
from the embeddings directly, so no caller needs the dense ``n x n`` matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pair_losses(
    image: torch.Tensor,
    text: torch.Tensor,
    scale: torch.Tensor | float,
    bias: torch.Tensor | float,
    rows: torch.Tensor | None = None,
    columns: torch.Tensor | None = None,
    *,
    first_row: int = 0,
) -> torch.Tensor:
    """The block ``L[rows, columns]`` of per-pair losses (all rows / columns when ``None``).

    A pair is positive when its row and column refer to the same example of the batch. ``first_row``
    is the batch position of ``image``'s first row when ``image`` holds a contiguous share of the
    batch's rows and ``text`` the whole batch (one rank's share in a distributed step).
    """
    row_index = torch.arange(image.shape[0], device=image.device) if rows is None else rows
    if first_row:
        row_index = row_index + first_row
    col_index = torch.arange(text.shape[0], device=text.device) if columns is None else columns
    image_rows = image if rows is None else image[rows]
    text_cols = text if columns is None else text[columns]
    logits = scale * image_rows @ text_cols.T + bias
    positive = row_index[:, None] == col_index[None, :]
    # -log σ(z·x) is softplus(-x) for a positive pair (z = +1) and softplus(x) for a negative one.
    return F.softplus(torch.where(positive, -logits, logits))


def unconditional_losses(
    image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor | float, bias: torch.Tensor | float
) -> torch.Tensor:
    """``L_ii`` per example: the loss of each pair given no other example, O(n·d)."""
    return F.softplus(-(scale * (image * text).sum(dim=-1) + bias))


def conditional_losses(
    image: torch.Tensor,
    text: torch.Tensor,
    scale: torch.Tensor | float,
    bias: torch.Tensor | float,
    chunk_size: int = 4096,
) -> torch.Tensor:
    """Row sums ``Σ_j L_ij`` per example (JEST A.6, Eq. 2), computed ``chunk_size`` rows at a time."""
    n = image.shape[0]
    sums = [
        pair_losses(image, text, scale, bias, rows=torch.arange(start, min(start + chunk_size, n))).sum(dim=1)
        for start in range(0, n, chunk_size)
    ]
    return torch.cat(sums) if sums else image.new_zeros(0)


def sigmoid_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    scale: torch.Tensor | float,
    bias: torch.Tensor | float,
    chunk_size: int | None = None,
    *,
    first_row: int = 0,
) -> torch.Tensor:
    """The batch loss ``(1/n) Σ_ij L_ij``; with ``chunk_size`` the rows are summed in blocks.

    With ``first_row`` (rows ``first_row ..`` of a batch whose columns ``text`` holds whole), it is
    that share's rows' sum over ``n``, the share's row count: each of ``K`` equal shares is then ``K``
    times its part of the batch loss, which is what gradients averaged over ``K`` ranks need.
    """
    n = image.shape[0]
    if first_row:
        return pair_losses(image, text, scale, bias, first_row=first_row).sum() / n
    if chunk_size is None:
        return pair_losses(image, text, scale, bias).sum() / n
    return conditional_losses(image, text, scale, bias, chunk_size).sum() / n
