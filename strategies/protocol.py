"""What a selection strategy is, what it may ask of a super-batch, and what it returns.

A strategy is a selection rule over tensors: given a *view* of a super-batch of ``B`` candidates it
returns ``b`` distinct indices. It imports nothing from the harness; the harness implements
:class:`SuperBatchView` (from model outputs in training, from given embeddings in tests and
benchmarks) and reads a strategy's :class:`Needs` and :class:`TrainingPlan` as data, so that it
computes and charges only what the strategy uses and never branches on a strategy's name.

Terms follow docs/DESIGN.md §2 and the JEST paper (Evans et al. 2024, §3.1): for a score kind the score matrix
is ``M = g·L(θ)`` (``hard``), ``M = -g·L(θ*)`` (``easy``) or ``M = g·(L(θ) - L(θ*))``
(``learnability``), where ``L`` is the per-pair sigmoid-contrastive loss matrix. The view returns
these matrices *without* the gain ``g``; the strategy applies its gain once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch

ScoreKind = Literal["hard", "easy", "learnability"]
SCORE_KINDS: tuple[ScoreKind, ...] = ("hard", "easy", "learnability")
ModelName = Literal["learner", "reference"]
Resolution = Literal["full", "coarse"]


class StrategyError(ValueError):
    """A strategy was misused or broke its contract; the message names the strategy."""


class UndeclaredNeedError(StrategyError):
    """A strategy read from the view something that its :class:`Needs` did not declare."""


class ParameterError(StrategyError):
    """A parameter value is outside its declared type or range."""


@dataclass(frozen=True)
class Embeddings:
    """L2-normalised image and text embeddings of one model over the super-batch.

    ``scale`` is the logit scale ``a`` (already exponentiated) and ``bias`` the logit bias ``c``:
    the pair logit is ``a * image[i] · text[j] + c`` (docs/DESIGN.md §2).
    """

    image: torch.Tensor
    text: torch.Tensor
    scale: float
    bias: float

    def __post_init__(self) -> None:
        if self.image.ndim != 2 or self.image.shape != self.text.shape:
            raise ValueError(
                f"image and text embeddings must both be (B, d); got {tuple(self.image.shape)} "
                f"and {tuple(self.text.shape)}"
            )
        if not (math.isfinite(self.scale) and math.isfinite(self.bias)):
            raise ValueError(f"logit scale and bias must be finite; got {self.scale} and {self.bias}")


@dataclass(frozen=True)
class Needs:
    """What a strategy reads from the super-batch; the harness computes and charges only this.

    ``learner_resolution`` says at which patch size the learner's image tower scores the
    super-batch: ``"coarse"`` is Flexi-JEST's approximate scoring (paper §3.3).
    """

    learner: bool = False
    reference: bool = False
    learner_resolution: Resolution = "full"

    @staticmethod
    def for_score(kind: ScoreKind, learner_resolution: Resolution = "full") -> Needs:
        """The needs of a score kind: hard reads the learner, easy the reference, learnability both."""
        return Needs(
            learner=kind in ("hard", "learnability"),
            reference=kind in ("easy", "learnability"),
            learner_resolution=learner_resolution,
        )


@dataclass(frozen=True)
class TrainingPlan:
    """How the training loop trains on the selected sub-batch.

    The sub-batch is split into equal parts, one per entry of ``resolutions``, each trained at that
    patch size (Flexi-JEST's half-and-half training, paper §3.3 and Algorithm 2).
    """

    resolutions: tuple[Resolution, ...] = ("full",)


@dataclass(frozen=True)
class Param:
    """A strategy parameter: its type, default, valid range or choices, and what it does."""

    name: str
    type: type[Any]
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None

    def validate(self, value: Any, owner: str) -> Any:
        """Return ``value`` converted to this parameter's type, or raise naming owner, name and range."""
        try:
            if self.type is bool and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                converted: Any = value.lower() in ("true", "1", "yes")
            elif self.type is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            else:
                converted = self.type(value)
        except (TypeError, ValueError):
            raise ParameterError(
                f"{owner}: parameter {self.name}={value!r} is not a valid {self.type.__name__} "
                f"(valid: {self.valid_range()})"
            ) from None
        if isinstance(converted, float) and not math.isfinite(converted):
            raise ParameterError(
                f"{owner}: parameter {self.name}={value!r} must be finite ({self.valid_range()})"
            )
        if self.choices is not None and converted not in self.choices:
            raise ParameterError(
                f"{owner}: parameter {self.name}={value!r} must be one of {self.valid_range()}"
            )
        if (self.low is not None and converted < self.low) or (
            self.high is not None and converted > self.high
        ):
            raise ParameterError(f"{owner}: parameter {self.name}={value!r} is outside {self.valid_range()}")
        return converted

    def valid_range(self) -> str:
        """The valid values, as shown in errors and in ``jestbench strategies``."""
        if self.choices is not None:
            return "{" + ", ".join(str(c) for c in self.choices) + "}"
        if self.low is None and self.high is None:
            return self.type.__name__
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"[{low}, {high}]"


@runtime_checkable
class SuperBatchView(Protocol):
    """Lazy, memoised access to what a strategy may read about a super-batch of ``B`` candidates.

    Implementations refuse access to what the strategy did not declare in its :class:`Needs`
    (:class:`UndeclaredNeedError`). Score methods return ``M / g`` for the given kind; rows and
    columns against a subset are computed from the embeddings, so a dense ``B x B`` need not exist.
    """

    @property
    def size(self) -> int:
        """``B``, the number of candidates."""
        ...

    def embeddings(self, model: ModelName) -> Embeddings:
        """The learner's or the reference's embeddings over the super-batch."""
        ...

    def unconditional_losses(self, model: ModelName) -> torch.Tensor:
        """``L_ii`` per candidate, shape ``(B,)``: each example's loss given no other (docs/DESIGN.md §2)."""
        ...

    def scores(self, kind: ScoreKind) -> torch.Tensor:
        """The diagonal ``M_ii / g``, shape ``(B,)``."""
        ...

    def score_rows(self, kind: ScoreKind, index: torch.Tensor) -> torch.Tensor:
        """``M[index, :] / g``, shape ``(len(index), B)``."""
        ...

    def score_columns(self, kind: ScoreKind, index: torch.Tensor) -> torch.Tensor:
        """``M[:, index] / g``, shape ``(B, len(index))``."""
        ...


class Strategy:
    """Base class of selection strategies.

    Subclasses declare ``params`` (typed, with defaults and ranges) and implement :meth:`select`.
    ``needs`` and ``training`` are properties because they may depend on parameters (a score kind
    decides which models are read). ``self.config`` holds the validated parameters.
    """

    name: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()

    def __init__(self, **params: Any) -> None:
        owner = self.name or type(self).__name__
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            valid = ", ".join(known) or "none"
            raise ParameterError(f"{owner}: unknown parameter(s) {', '.join(unknown)} (valid: {valid})")
        self.config: dict[str, Any] = {
            name: spec.validate(params.get(name, spec.default), owner) for name, spec in known.items()
        }

    @property
    def needs(self) -> Needs:
        """What :meth:`select` reads from the view."""
        return Needs()

    @property
    def training(self) -> TrainingPlan:
        """How the loop trains on the selection."""
        return TrainingPlan()

    def check_sizes(self, batch_size: int, super_batch_size: int) -> None:
        """Refuse a ``(b, B)`` this strategy cannot serve, before any work; the base accepts all."""

    def select(self, view: SuperBatchView, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Return ``batch_size`` distinct indices in ``[0, view.size)`` as a LongTensor."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{self.name or type(self).__name__}({args})"
