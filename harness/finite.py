"""One check for NaN and infinities, so that a diverged run stops with a message naming what broke
and where, instead of feeding NaN into selection (where every score ties) or into the optimiser."""

from __future__ import annotations

import torch

from harness.errors import UserError


class NonFiniteError(UserError, ValueError):
    """A tensor that must be finite holds NaN or ±inf; usually a diverged run (lower the learning rate)."""


def require_finite(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """Return ``tensor`` unchanged if every entry is finite; otherwise raise :class:`NonFiniteError`
    saying ``what`` it is, how many entries are NaN or infinite, and the first rows affected."""
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return tensor
    bad = ~finite
    n_nan = int(torch.isnan(tensor).sum())
    n_inf = int(bad.sum()) - n_nan
    where = ""
    if tensor.ndim >= 1:
        rows = bad.reshape(tensor.shape[0], -1).any(dim=1).nonzero().flatten()
        shown = ", ".join(str(r) for r in rows[:5].tolist())
        where = f" in rows {shown}{', ...' if rows.numel() > 5 else ''} of {tensor.shape[0]}"
    raise NonFiniteError(
        f"{what} is not finite: {n_nan} NaN and {n_inf} infinite value(s){where}; a diverged model "
        "(try a lower learning rate) or bad input data"
    )
