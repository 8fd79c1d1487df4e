"""The run's batch shape: sub-batch ``b``, super-batch ``B`` and the filter ratio ``f = 1 - b/B``.

``b`` and ``f`` belong to the run, not to a strategy (docs/DESIGN.md §2). The run gives ``b`` and a nominal
``f``; ``B = round(b / (1 - f))`` and the effective ``f`` is what gets recorded. ``f = 0`` (B = b)
is uniform's baseline and legal for every strategy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.errors import UserError


class BatchShapeError(UserError, ValueError):
    """A sub-batch size or filter ratio that no run can use."""


@dataclass(frozen=True)
class BatchShape:
    """``batch_size`` (b) selected out of ``super_batch_size`` (B) each step."""

    batch_size: int
    super_batch_size: int

    @property
    def filter_ratio(self) -> float:
        """The effective filter ratio ``1 - b/B``."""
        return 1.0 - self.batch_size / self.super_batch_size

    @classmethod
    def from_filter_ratio(cls, batch_size: int, filter_ratio: float) -> BatchShape:
        """``B = round(b / (1 - f))`` for ``f`` in ``[0, 1)``; refuses anything else, naming it."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise BatchShapeError(f"batch size b={batch_size!r} must be an integer >= 1")
        if not (
            isinstance(filter_ratio, int | float) and math.isfinite(filter_ratio) and 0 <= filter_ratio < 1
        ):
            raise BatchShapeError(
                f"filter ratio f={filter_ratio!r} is outside [0, 1): f is the fraction of each super-batch "
                "discarded, so f=0 keeps everything and f=1 would keep nothing"
            )
        return cls(batch_size, max(batch_size, round(batch_size / (1.0 - filter_ratio))))
