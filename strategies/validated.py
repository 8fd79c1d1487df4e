"""The contract every strategy is held to, built-in or plugin, checked around each selection.

:class:`ValidatedStrategy` is what the registry hands out. Before a selection it refuses sizes the
strategy cannot serve; during it, the view refuses reads the strategy did not declare; after it, the
result must be exactly ``b`` distinct in-range indices as a LongTensor. Every error names the strategy,
so a broken plugin is found by its name and not by a shape error three calls later.
"""

from __future__ import annotations

from typing import Any

import torch

from strategies.protocol import (
    Embeddings,
    ModelName,
    Needs,
    ScoreKind,
    Strategy,
    StrategyError,
    SuperBatchView,
    TrainingPlan,
    UndeclaredNeedError,
)


class GuardedView:
    """A :class:`SuperBatchView` that lets through only what ``needs`` declares."""

    def __init__(self, view: SuperBatchView, needs: Needs, owner: str) -> None:
        self._view = view
        self._needs = needs
        self._owner = owner

    @property
    def size(self) -> int:
        return self._view.size

    def _require(self, model: ModelName) -> None:
        declared = self._needs.learner if model == "learner" else self._needs.reference
        if not declared:
            raise UndeclaredNeedError(
                f"strategy {self._owner!r} read the {model}'s embeddings but its needs do not declare "
                f"{model}=True; declare it in `needs` so the harness computes and charges it"
            )

    def _require_score(self, kind: ScoreKind) -> None:
        wanted = Needs.for_score(kind)
        if wanted.learner:
            self._require("learner")
        if wanted.reference:
            self._require("reference")

    def embeddings(self, model: ModelName) -> Embeddings:
        self._require(model)
        return self._view.embeddings(model)

    def unconditional_losses(self, model: ModelName) -> torch.Tensor:
        self._require(model)
        return self._view.unconditional_losses(model)

    def scores(self, kind: ScoreKind) -> torch.Tensor:
        self._require_score(kind)
        return self._view.scores(kind)

    def score_rows(self, kind: ScoreKind, index: torch.Tensor) -> torch.Tensor:
        self._require_score(kind)
        return self._view.score_rows(kind, index)

    def score_columns(self, kind: ScoreKind, index: torch.Tensor) -> torch.Tensor:
        self._require_score(kind)
        return self._view.score_columns(kind, index)


class ValidatedStrategy:
    """A strategy wrapped in the selection contract; the registry returns these."""

    def __init__(self, strategy: Strategy, name: str) -> None:
        self.strategy = strategy
        self.name = name

    @property
    def config(self) -> dict[str, Any]:
        return self.strategy.config

    @property
    def needs(self) -> Needs:
        return self.strategy.needs

    @property
    def training(self) -> TrainingPlan:
        return self.strategy.training

    def check_sizes(self, batch_size: int, super_batch_size: int) -> None:
        """Refuse a sub-batch size ``b`` and super-batch size ``B`` that cannot be served."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise StrategyError(
                f"strategy {self.name!r}: the sub-batch size b must be an int, got {batch_size!r}"
            )
        if batch_size < 1:
            raise StrategyError(f"strategy {self.name!r}: the sub-batch size b={batch_size} must be >= 1")
        if batch_size > super_batch_size:
            raise StrategyError(
                f"strategy {self.name!r}: cannot select b={batch_size} from a super-batch of "
                f"B={super_batch_size}; b must be <= B"
            )
        parts = len(self.training.resolutions)
        if batch_size % parts:
            raise StrategyError(
                f"strategy {self.name!r}: trains at {parts} resolutions, so b={batch_size} must be a "
                f"multiple of {parts}"
            )
        try:
            self.strategy.check_sizes(batch_size, super_batch_size)
        except StrategyError as err:
            raise StrategyError(f"strategy {self.name!r}: {err}") from None

    def select(self, view: SuperBatchView, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Select ``batch_size`` indices from ``view``, holding the strategy to its contract."""
        self.check_sizes(batch_size, view.size)
        index = self.strategy.select(GuardedView(view, self.needs, self.name), batch_size, generator)
        self._check_result(index, batch_size, view.size)
        return index

    def _check_result(self, index: object, batch_size: int, super_batch_size: int) -> None:
        broke = f"strategy {self.name!r} broke the selection contract:"
        if not isinstance(index, torch.Tensor):
            raise StrategyError(f"{broke} returned {type(index).__name__}, not a torch.Tensor")
        if index.dtype != torch.long:
            raise StrategyError(f"{broke} returned dtype {index.dtype}, not torch.long")
        if index.shape != (batch_size,):
            raise StrategyError(f"{broke} returned shape {tuple(index.shape)}, expected ({batch_size},)")
        if batch_size and (int(index.min()) < 0 or int(index.max()) >= super_batch_size):
            raise StrategyError(f"{broke} returned indices outside [0, {super_batch_size})")
        distinct = int(torch.unique(index).numel())
        if distinct != batch_size:
            raise StrategyError(f"{broke} returned {batch_size - distinct} repeated indices")

    def __repr__(self) -> str:
        return f"ValidatedStrategy({self.strategy!r})"
