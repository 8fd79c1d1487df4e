"""Super-batch views: the harness's implementation of :class:`strategies.SuperBatchView`.

:class:`EmbeddingView` computes everything from embeddings with the loss math of
:mod:`harness.losses`, lazily and memoised, and counts the multiply-adds of the pairwise products it
actually ran so that the ledger charges them (docs/DESIGN.md §4). The training loop gives it callables that
run the learner's forward pass on demand; tests, benchmarks and plugin authors give it tensors.
:class:`DenseScoreView` serves a given dense score matrix instead (benchmarks, small diagnostics).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable

import torch

from harness.losses import pair_losses, unconditional_losses
from strategies import Embeddings, ModelName, ScoreKind

EmbeddingSource = Embeddings | Callable[[], Embeddings]

# Sign of each model's loss in a score kind (docs/DESIGN.md §2): M = g·L(θ), -g·L(θ*), g·(L(θ) - L(θ*)).
_SIGNS: dict[ScoreKind, tuple[tuple[ModelName, float], ...]] = {
    "hard": (("learner", 1.0),),
    "easy": (("reference", -1.0),),
    "learnability": (("learner", 1.0), ("reference", -1.0)),
}


class EmbeddingView:
    """A super-batch view over learner and/or reference embeddings.

    Args:
        learner: the learner's embeddings, or a callable computing them when first asked.
        reference: likewise for the reference model.
        size: ``B``; needed only when neither model is given (a strategy that reads nothing).

    ``pairwise_macs`` counts the multiply-adds of the image·text products computed so far (one per
    element of each ``d``-dimensional dot product), for the FLOP ledger.
    """

    def __init__(
        self,
        learner: EmbeddingSource | None = None,
        reference: EmbeddingSource | None = None,
        *,
        size: int | None = None,
    ) -> None:
        self._sources: dict[ModelName, EmbeddingSource | None] = {"learner": learner, "reference": reference}
        self._embeddings: dict[ModelName, Embeddings] = {}
        self._diagonal: dict[ModelName, torch.Tensor] = {}
        self._size: int | None = size
        self.pairwise_macs = 0
        for source in (learner, reference):
            if isinstance(source, Embeddings):
                self._check_size(source)

    def _check_size(self, embeddings: Embeddings) -> None:
        n = embeddings.image.shape[0]
        if self._size is None:
            self._size = n
        elif n != self._size:
            raise ValueError(
                f"learner and reference embeddings cover {self._size} and {n} examples; they must match"
            )

    @property
    def size(self) -> int:
        if self._size is None:
            models: tuple[ModelName, ...] = ("learner", "reference")
            for model in models:
                if self._sources[model] is not None:
                    return self.embeddings(model).image.shape[0]
            raise ValueError("an EmbeddingView needs learner or reference embeddings")
        return self._size

    def embeddings(self, model: ModelName) -> Embeddings:
        if model not in self._embeddings:
            source = self._sources[model]
            if source is None:
                raise LookupError(f"this super-batch has no {model} embeddings")
            embeddings = source if isinstance(source, Embeddings) else source()
            self._check_size(embeddings)
            self._embeddings[model] = embeddings
        return self._embeddings[model]

    def unconditional_losses(self, model: ModelName) -> torch.Tensor:
        if model not in self._diagonal:
            e = self.embeddings(model)
            self._diagonal[model] = unconditional_losses(e.image, e.text, e.scale, e.bias)
            self.pairwise_macs += e.image.numel()
        return self._diagonal[model]

    def scores(self, kind: ScoreKind) -> torch.Tensor:
        return _combine(sign * self.unconditional_losses(model) for model, sign in _SIGNS[kind])

    def score_rows(self, kind: ScoreKind, index: torch.Tensor) -> torch.Tensor:
        return _combine(sign * self._block(model, rows=index) for model, sign in _SIGNS[kind])

    def score_columns(self, kind: ScoreKind, index: torch.Tensor) -> torch.Tensor:
        return _combine(sign * self._block(model, columns=index) for model, sign in _SIGNS[kind])

    def _block(
        self, model: ModelName, rows: torch.Tensor | None = None, columns: torch.Tensor | None = None
    ) -> torch.Tensor:
        e = self.embeddings(model)
        block = pair_losses(e.image, e.text, e.scale, e.bias, rows=rows, columns=columns)
        self.pairwise_macs += block.numel() * e.image.shape[1]
        return block


class DenseScoreView:
    """A super-batch view over given dense per-pair loss matrices ``L(θ)`` and/or ``L(θ*)``.

    For benchmarks and small diagnostics where the dense matrix already exists; it has no
    embeddings to hand out.
    """

    def __init__(self, learner: torch.Tensor | None = None, reference: torch.Tensor | None = None) -> None:
        self._losses: dict[ModelName, torch.Tensor | None] = {"learner": learner, "reference": reference}
        present = [m for m in (learner, reference) if m is not None]
        if not present:
            raise ValueError("a DenseScoreView needs a learner or a reference loss matrix")
        self._size = present[0].shape[0]

    @property
    def size(self) -> int:
        return self._size

    def _matrix(self, model: ModelName) -> torch.Tensor:
        matrix = self._losses[model]
        if matrix is None:
            raise LookupError(f"this super-batch has no {model} losses")
        return matrix

    def embeddings(self, model: ModelName) -> Embeddings:
        raise LookupError("a DenseScoreView holds loss matrices, not embeddings")

    def unconditional_losses(self, model: ModelName) -> torch.Tensor:
        return self._matrix(model).diagonal()

    def scores(self, kind: ScoreKind) -> torch.Tensor:
        return _combine(sign * self._matrix(model).diagonal() for model, sign in _SIGNS[kind])

    def score_rows(self, kind: ScoreKind, index: torch.Tensor) -> torch.Tensor:
        return _combine(sign * self._matrix(model)[index] for model, sign in _SIGNS[kind])

    def score_columns(self, kind: ScoreKind, index: torch.Tensor) -> torch.Tensor:
        return _combine(sign * self._matrix(model)[:, index] for model, sign in _SIGNS[kind])


def _combine(parts: Iterable[torch.Tensor]) -> torch.Tensor:
    return functools.reduce(operator.add, parts)


def dense_scores(view: EmbeddingView | DenseScoreView, kind: ScoreKind) -> torch.Tensor:
    """The whole ``M / g`` of a (small) view as a dense matrix: for the Gibbs yardstick and tests."""
    return view.score_rows(kind, torch.arange(view.size))
