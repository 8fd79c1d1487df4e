"""Super-batch views: the harness's implementation of :class:`strategies.SuperBatchView`.

:class:`EmbeddingView` computes everything from embeddings with the loss math of
:mod:`harness.losses`, lazily and memoised, and counts the multiply-adds of the pairwise products it
actually ran so that the ledger charges them (docs/DESIGN.md §4). The training loop gives it callables that
run the learner's forward pass on demand; tests, benchmarks and plugin authors give it tensors.
:func:`select_counted` runs a selection on it and counts, with torch's own FLOP counter, the tensor
work the strategy did itself, outside the view (a plugin's own matrix product), so that it is
charged too; the view's own work is left out of that count, being charged as its own kinds.
:class:`DenseScoreView` serves a given dense score matrix instead (benchmarks, small diagnostics).
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode

from harness.losses import pair_losses, unconditional_losses
from harness.opcount import FLOPS_PER_MULTIPLY_ADD, flop_counter
from strategies import Embeddings, ModelName, ScoreKind, ValidatedStrategy

EmbeddingSource = Embeddings | Callable[[], Embeddings]
T = TypeVar("T")

# Sign of each model's loss in a score kind (docs/DESIGN.md §2): M = g·L(θ), -g·L(θ*), g·(L(θ) - L(θ*)).
_SIGNS: dict[ScoreKind, tuple[tuple[ModelName, float], ...]] = {
    "hard": (("learner", 1.0),),
    "easy": (("reference", -1.0),),
    "learnability": (("learner", 1.0), ("reference", -1.0)),
}


def _view_work(method: Callable[..., T]) -> Callable[..., T]:
    """Marks a view method's work as the view's own (see :meth:`EmbeddingView._own`)."""

    @functools.wraps(method)
    def run(view: EmbeddingView, *args: Any, **kwargs: Any) -> T:
        with view._own():
            return method(view, *args, **kwargs)

    return run


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
        self._selection: _SelectionCount | None = None  # set inside select_counted
        self._own_depth = 0
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

    @_view_work
    def embeddings(self, model: ModelName) -> Embeddings:
        if model not in self._embeddings:
            source = self._sources[model]
            if source is None:
                raise LookupError(f"this super-batch has no {model} embeddings")
            embeddings = source if isinstance(source, Embeddings) else source()
            self._check_size(embeddings)
            self._embeddings[model] = embeddings
        return self._embeddings[model]

    @_view_work
    def unconditional_losses(self, model: ModelName) -> torch.Tensor:
        if model not in self._diagonal:
            e = self.embeddings(model)
            self._diagonal[model] = unconditional_losses(e.image, e.text, e.scale, e.bias)
            self.pairwise_macs += e.image.numel()
        return self._diagonal[model]

    @_view_work
    def scores(self, kind: ScoreKind) -> torch.Tensor:
        return _combine(sign * self.unconditional_losses(model) for model, sign in _SIGNS[kind])

    @_view_work
    def score_rows(self, kind: ScoreKind, index: torch.Tensor) -> torch.Tensor:
        return _combine(sign * self._block(model, rows=index) for model, sign in _SIGNS[kind])

    @_view_work
    def score_columns(self, kind: ScoreKind, index: torch.Tensor) -> torch.Tensor:
        return _combine(sign * self._block(model, columns=index) for model, sign in _SIGNS[kind])

    def _block(
        self, model: ModelName, rows: torch.Tensor | None = None, columns: torch.Tensor | None = None
    ) -> torch.Tensor:
        e = self.embeddings(model)
        block = pair_losses(e.image, e.text, e.scale, e.bias, rows=rows, columns=columns)
        self.pairwise_macs += block.numel() * e.image.shape[1]
        return block

    @contextlib.contextmanager
    def _own(self) -> Iterator[None]:
        """The view's own work (model passes, pairwise products, combining scores), charged as its
        own kinds: during :func:`select_counted` the counter is paused for it, so it is neither
        counted twice nor slowed down by the counter."""
        outermost = self._selection is not None and self._own_depth == 0
        self._own_depth += 1
        try:
            if outermost:
                assert self._selection is not None
                self._selection.pause()
                try:
                    yield
                finally:
                    self._selection.resume()
            else:
                yield
        finally:
            self._own_depth -= 1


class _SelectionCount:
    """``FlopCounterMode`` around a selection, paused while the view works: one counter per stretch of
    the strategy's own code, their totals summed (a counter cannot be re-entered)."""

    def __init__(self) -> None:
        self.flops = 0  # FlopCounterMode's convention: 2 per multiply-add
        self._counter: FlopCounterMode | None = None
        self._stack = contextlib.ExitStack()

    def resume(self) -> None:
        self._counter = self._stack.enter_context(flop_counter())

    def pause(self) -> None:
        if self._counter is not None:
            self._stack.close()
            self.flops += self._counter.get_total_flops()
            self._counter = None


def select_counted(
    strategy: ValidatedStrategy, view: EmbeddingView, batch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, int]:
    """``strategy.select(view, batch_size, generator)`` and the multiply-adds the strategy ran itself.

    Everything inside ``select`` runs under ``FlopCounterMode`` (:mod:`harness.opcount`) except what
    the view computes for it (model passes, score products), during which the counter is paused:
    that work is charged as its own kinds (``pairwise_macs``, scoring passes). A plugin's own
    ``image @ text.T`` on the embeddings it read is counted; the view's products are not counted
    twice. Element-wise ops count zero, as in every FLOP count of jestbench (docs/FLOPS.md).
    """
    count = _SelectionCount()
    view._selection = count
    count.resume()
    try:
        index = strategy.select(view, batch_size, generator)
    finally:
        count.pause()
        view._selection = None
    return index, count.flops // FLOPS_PER_MULTIPLY_ADD


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
