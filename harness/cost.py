"""The cost model of docs/DESIGN.md §4: what one training step of a strategy costs, in FLOPs, by kind; the
JEST paper's idealised figure beside it; the ledger that the training loop charges; and the one place
where a budget in uniform-equivalent steps becomes FLOPs.

All figures are forward-pass FLOPs counted by fvcore (:mod:`harness.flops`; 1 FLOP = 1 multiply-add),
with a training step on one example costing ``3F`` (backward ≈ 2x forward). With super-batch ``B``,
sub-batch ``b``, ``F = F_img + F_txt`` and ``A = F_img,coarse / F_img``, a step costs (as charged):

- training: ``3·Σ_r (b/k)·(F_txt + F_img(r))`` over the ``k`` resolutions ``r`` of the strategy's
  :class:`~strategies.TrainingPlan` (``3F·b`` for one full-resolution part; Flexi-JEST's halves give
  ``3b·(F_txt + F_img·(1 + A)/2)``, paper §3.3);
- learner scoring, if ``needs.learner``: one forward pass over ``B`` without gradients at
  ``needs.learner_resolution``: ``B·(F_txt + F_img(r))`` (``F·B``; Flexi-JEST ``B·(F_txt + A·F_img)``);
- reference, if ``needs.reference``: 0 with embeddings cached beside the pool (paper A.5), or
  ``F_ref·B`` per step uncached;
- pairwise products: the image·text products that scoring ran (``B x b x d``-sized blocks per model),
  counted by the view (``EmbeddingView.pairwise_macs``);
- selection: the tensor work a strategy's ``select`` runs itself, outside the view (a plugin's own
  matrix product on the embeddings), counted by ``FlopCounterMode`` (:func:`harness.view.select_counted`);
  0 for every built-in;
- FlexiViT resize: once per step that uses the coarse patch size (its forward FLOPs; 3x when a
  training part runs coarse, since the backward then runs through it too).

So a learner-scored strategy costs ``(F·B + 3F·b) / 3F·b = (B/b + 3)/3`` of uniform: 2.67 at
``f = 0.8``. The paper's appendix A.4 instead reuses the scoring pass for the gradient step,
``F·(B + 2b)`` = 2.33x, and applies ``A`` to the whole model (Flexi-JEST ≈ 1.10x). In PyTorch the
backward through a pass over ``B`` costs ~2F·B even when only ``b`` rows carry loss, so the reuse does
not pay here: :meth:`CostModel.step_cost` charges what runs and :meth:`CostModel.paper_step_cost` gives
the paper's formula, to be shown in its own column. Everything is driven by a strategy's ``needs``
and ``training`` and the batch shape, never by its name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict

import torch

from harness.batching import BatchShape
from harness.conformance import random_embeddings
from harness.errors import UserError
from harness.flops import ModelFlops
from harness.view import EmbeddingView, select_counted
from strategies import Needs, Resolution, TrainingPlan, ValidatedStrategy

CostKind = Literal["training", "learner_scoring", "reference", "pairwise", "selection", "resize"]
COST_KINDS: tuple[CostKind, ...] = (
    "training",
    "learner_scoring",
    "reference",
    "pairwise",
    "selection",
    "resize",
)


class BudgetError(UserError, ValueError):
    """A budget that cannot be read or used."""


@dataclass(frozen=True)
class StepCost:
    """FLOPs of one training step by kind (1 FLOP = 1 multiply-add). Integers, so budgets add exactly."""

    training: int = 0
    learner_scoring: int = 0
    reference: int = 0
    pairwise: int = 0
    selection: int = 0
    resize: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_kind().values())

    def by_kind(self) -> dict[CostKind, int]:
        """``{kind: flops}`` in :data:`COST_KINDS` order."""
        return {kind: getattr(self, kind) for kind in COST_KINDS}


def _split(batch_size: int, parts: int) -> list[int]:
    """``batch_size`` split into ``parts`` near-equal integer parts (the loop requires exact halves)."""
    base, extra = divmod(batch_size, parts)
    return [base + (i < extra) for i in range(parts)]


def _resize_passes(needs: Needs, training: TrainingPlan) -> int:
    """Multiples of the resize's forward FLOPs one step costs: 0 without the coarse patch size, 1 when
    only scoring uses it, 3 when training does (gradients flow back through it to the base weights)."""
    if "coarse" in training.resolutions:
        return 3
    return 1 if needs.learner and needs.learner_resolution == "coarse" else 0


@dataclass(frozen=True)
class CostModel:
    """Per-step costs from the learner's (and reference's) per-example tower FLOPs.

    Args:
        learner: the learner's :class:`ModelFlops`.
        reference: the reference's; the learner's when ``None`` (one architecture for both, as in
            the paper).
        reference_cached: reference embeddings cached beside the pool (paper A.5); ``False`` charges
            a reference forward pass over ``B`` every step.
    """

    learner: ModelFlops
    reference: ModelFlops | None = None
    reference_cached: bool = True

    @property
    def reference_flops(self) -> ModelFlops:
        return self.learner if self.reference is None else self.reference

    def step_cost(
        self,
        needs: Needs,
        training: TrainingPlan,
        shape: BatchShape,
        *,
        pairwise: int = 0,
        selection: int = 0,
    ) -> StepCost:
        """What one step runs, by kind (docs/DESIGN.md §4). ``pairwise`` is the step's pairwise products (the
        count a view reported) and ``selection`` the strategy's own work (what
        :func:`harness.view.select_counted` counted); :func:`measure_selection` predicts both."""
        b, B = shape.batch_size, shape.super_batch_size
        parts = zip(_split(b, len(training.resolutions)), training.resolutions, strict=True)
        return StepCost(
            training=3 * sum(n * self.learner.forward(resolution) for n, resolution in parts),
            learner_scoring=B * self.learner.forward(needs.learner_resolution) if needs.learner else 0,
            reference=B * self.reference_flops.full if needs.reference and not self.reference_cached else 0,
            pairwise=int(pairwise),
            selection=int(selection),
            resize=self.learner.resize * _resize_passes(needs, training),
        )

    def paper_step_cost(self, needs: Needs, training: TrainingPlan, shape: BatchShape) -> float:
        """The JEST paper's idealised per-step FLOPs (appendix A.4), for comparison only.

        - the coarse model costs ``A·F`` (``A`` applied to the whole model, not the image tower);
        - a scoring pass over ``B`` at the one resolution the whole sub-batch trains at is reused for
          the gradient step, which then costs ``2F`` per example: ``F·(B + 2b)`` (2.33x at f = 0.8);
          Flexi-JEST, scoring coarse and training at two resolutions, reuses nothing:
          ``A·F·B + 3b·F·(1 + A)/2`` (≈ 1.10x at f = 0.8 with A = 0.28);
        - an uncached reference costs ``F_ref·B`` (learnability then ≈ 4x at f = 0.8);
        - pairwise products and the FlexiViT resize are not counted.
        """
        b, B = shape.batch_size, shape.super_batch_size
        whole: Mapping[Resolution, float] = {
            "full": self.learner.full,
            "coarse": self.learner.coarse_ratio * self.learner.full,
        }
        reused = needs.learner and set(training.resolutions) == {needs.learner_resolution}
        per_example = 2 if reused else 3
        parts = zip(_split(b, len(training.resolutions)), training.resolutions, strict=True)
        cost = sum(per_example * n * whole[resolution] for n, resolution in parts)
        if needs.learner:
            cost += B * whole[needs.learner_resolution]
        if needs.reference and not self.reference_cached:
            cost += B * self.reference_flops.full
        return cost

    def strategy_step_cost(
        self, strategy: ValidatedStrategy, shape: BatchShape, *, seed: int = 0
    ) -> StepCost:
        """The predicted cost of one step of ``strategy``, with its pairwise products and its own
        selection work measured by running its selection once on random embeddings of the learner's
        dimension."""
        measured = measure_selection(strategy, shape, self.learner.embed_dim, seed=seed)
        return self.step_cost(
            strategy.needs, strategy.training, shape, pairwise=measured.pairwise, selection=measured.selection
        )

    def reference_pool_flops(self, pool_size: int) -> int:
        """One-off: the reference's forward pass over the pool, whose embeddings are then cached (A.5)."""
        return pool_size * self.reference_flops.full

    def reference_training_flops(self, examples: int) -> int:
        """One-off: training the reference on ``examples`` examples (``3·F_ref`` each)."""
        return 3 * examples * self.reference_flops.full


@dataclass(frozen=True)
class MeasuredSelection:
    """What one selection ran beside the model passes (multiply-adds = FLOPs): the view's pairwise
    products and the strategy's own tensor work."""

    pairwise: int
    selection: int


def measure_selection(
    strategy: ValidatedStrategy, shape: BatchShape, embed_dim: int, *, seed: int = 0
) -> MeasuredSelection:
    """The pairwise products and own work of one selection of ``strategy`` at ``shape``, run on random
    learner and reference embeddings of dimension ``embed_dim``: the view counts the products it ran,
    :func:`harness.view.select_counted` the rest. It covers plugins too: whatever a strategy runs is
    counted."""
    generator = torch.Generator().manual_seed(seed)
    size = shape.super_batch_size
    view = EmbeddingView(
        random_embeddings(size, generator, dim=embed_dim), random_embeddings(size, generator, dim=embed_dim)
    )
    _, selection = select_counted(strategy, view, shape.batch_size, generator)
    return MeasuredSelection(pairwise=view.pairwise_macs, selection=selection)


@dataclass(frozen=True)
class UniformStep:
    """The budget unit "one step of ``uniform`` at the run's ``b``": a forward-and-backward pass over
    ``b`` examples at full resolution and nothing else (``3F·b``). The one place where budgets convert
    between FLOPs and steps."""

    flops: int

    @classmethod
    def of(cls, cost: CostModel, batch_size: int) -> UniformStep:
        shape = BatchShape(batch_size, batch_size)
        return cls(cost.step_cost(Needs(), TrainingPlan(), shape).total)

    def to_flops(self, steps: float) -> int:
        return math.floor(steps * self.flops)

    def to_steps(self, flops: float) -> float:
        return flops / self.flops


@dataclass(frozen=True)
class Budget:
    """A budget: ``flops`` FLOPs, ``uniform_steps`` steps of uniform at the run's ``b``, or ``examples``
    trained examples (the equal-examples track, the axis of the JEST paper's Fig. 2-3: every run stops
    after the same number of trained examples whatever its FLOPs, which are still charged and reported)."""

    flops: int | None = None
    uniform_steps: float | None = None
    examples: int | None = None

    def __post_init__(self) -> None:
        given = [v for v in (self.flops, self.uniform_steps, self.examples) if v is not None]
        if len(given) != 1:
            raise BudgetError(
                "give a budget in FLOPs, in uniform-equivalent steps or in trained examples: exactly one of the three"
            )
        if not (math.isfinite(given[0]) and given[0] > 0):
            raise BudgetError(f"a budget must be a finite amount > 0; got {given[0]!r}")

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``"2.5e12"`` or ``"2.5e12 flops"`` -> FLOPs; ``"400 steps"`` -> uniform-equivalent steps;
        ``"512000 examples"`` -> trained examples (a whole number)."""
        words = text.lower().split()
        units = {
            "flops": "flops",
            "flop": "flops",
            "steps": "steps",
            "step": "steps",
            "examples": "examples",
            "example": "examples",
        }
        try:
            amount = float(words[0])
            unit = units[words[1]] if len(words) == 2 else "flops"
            if len(words) > 2 or (unit == "examples" and amount != math.floor(amount)):
                raise ValueError(text)
        except (IndexError, KeyError, ValueError):
            raise BudgetError(
                f"cannot read the budget {text!r}: give FLOPs ('2.5e12' or '2.5e12 flops'), "
                "uniform-equivalent steps ('400 steps') or trained examples ('512000 examples')"
            ) from None
        if not (math.isfinite(amount) and amount > 0):
            raise BudgetError(f"a budget must be a finite amount > 0; got {text!r}")
        if unit == "steps":
            return cls(uniform_steps=amount)
        if unit == "examples":
            return cls(examples=int(amount))
        return cls(flops=math.floor(amount))

    def canonical(self) -> str:
        """One spelling per budget (``"400 steps"``, ``"400.5 steps"``, ``"2500000000000 flops"``,
        ``"128000 examples"``): what a run config stores, so that ``400``, ``400.0`` and ``4e2`` steps are
        one run id."""
        if self.flops is not None:
            return f"{self.flops} flops"
        if self.examples is not None:
            return f"{self.examples} examples"
        assert self.uniform_steps is not None
        steps = float(self.uniform_steps)
        return f"{int(steps)} steps" if steps.is_integer() else f"{steps!r} steps"

    def to_flops(self, unit: UniformStep) -> int:
        """The budget in FLOPs; uniform-equivalent steps convert through ``unit``. A budget in examples
        has no FLOP amount (each strategy spends what its steps cost)."""
        if self.examples is not None:
            raise BudgetError(f"a budget of {self.examples} examples is not an amount of FLOPs")
        if self.flops is not None:
            return self.flops
        assert self.uniform_steps is not None
        return unit.to_flops(self.uniform_steps)

    def ledger(self, unit: UniformStep, batch_size: int) -> Ledger:
        """The ledger that holds a run of ``batch_size`` examples per step to this budget."""
        if self.examples is not None:
            return Ledger(budget_examples=self.examples, batch_size=batch_size)
        return Ledger(self.to_flops(unit))


class LedgerState(TypedDict):
    """A :class:`Ledger` as plain ints, for checkpoints."""

    budget_flops: int | None
    budget_examples: NotRequired[int | None]  # absent from checkpoints written before examples budgets
    spent: dict[CostKind, int]
    steps: int
    evaluation_flops: int


class Ledger:
    """The FLOPs a run has spent, by kind, against its budget: the training loop asks :meth:`fits`
    before a step and :meth:`charge` s what the step ran after it. Evaluation FLOPs are recorded
    beside, never charged to the budget (docs/DESIGN.md §4).

    A budget in trained examples (``budget_examples``, with the ``batch_size`` every step trains on)
    stops on examples instead: a step fits while it would not pass the budget. FLOPs are charged the
    same either way. :attr:`used` and :attr:`limit` are in the budget's own unit, so the loop's
    schedule and evaluation points are fractions of whichever budget the run has.
    """

    def __init__(
        self,
        budget_flops: int | None = None,
        *,
        budget_examples: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        if (budget_flops is None) == (budget_examples is None):
            raise BudgetError("a ledger needs a budget in FLOPs or one in examples: exactly one of the two")
        if budget_flops is not None and budget_flops <= 0:
            raise BudgetError(f"the budget must be > 0 FLOPs; got {budget_flops}")
        if budget_examples is not None and (batch_size is None or batch_size < 1 or budget_examples <= 0):
            raise BudgetError(
                f"a budget of {budget_examples} examples needs a batch size >= 1 and > 0 examples; got b={batch_size}"
            )
        self.budget_flops = None if budget_flops is None else int(budget_flops)
        self.budget_examples = None if budget_examples is None else int(budget_examples)
        self.batch_size = batch_size or 0  # only an examples budget reads it
        self.spent: dict[CostKind, int] = dict.fromkeys(COST_KINDS, 0)
        self.steps = 0
        self.evaluation_flops = 0

    @property
    def total(self) -> int:
        """FLOPs charged to the budget so far (evaluation excluded)."""
        return sum(self.spent.values())

    @property
    def unit(self) -> str:
        """What the budget counts: ``"FLOP"`` or ``"example"``."""
        return "FLOP" if self.budget_examples is None else "example"

    @property
    def limit(self) -> int:
        """The budget in its own unit."""
        if self.budget_examples is not None:
            return self.budget_examples
        assert self.budget_flops is not None
        return self.budget_flops

    def measure(self, cost: StepCost) -> int:
        """One step of this cost in the budget's unit: its FLOPs, or the examples it trains on."""
        return cost.total if self.budget_examples is None else self.batch_size

    @property
    def used(self) -> int:
        """The budget spent so far, in its own unit (trained examples are ``b`` per step)."""
        return self.total if self.budget_examples is None else self.steps * self.batch_size

    @property
    def remaining(self) -> int:
        return self.limit - self.used

    def fraction_after(self, cost: StepCost) -> float:
        """The fraction of the budget spent once a step of this cost has run: the schedule's clock."""
        return (self.used + self.measure(cost)) / self.limit

    def fits(self, cost: StepCost) -> bool:
        """Whether a step of this (predicted) cost fits in what is left: the stop rule."""
        return self.used + self.measure(cost) <= self.limit

    def charge(self, cost: StepCost) -> None:
        """Charge one step that ran."""
        for kind, flops in cost.by_kind().items():
            self.spent[kind] += flops
        self.steps += 1

    def record_evaluation(self, flops: int) -> None:
        """Record evaluation FLOPs (reported beside the budget, not charged to it)."""
        self.evaluation_flops += int(flops)

    def state_dict(self) -> LedgerState:
        """Everything needed to resume: plain ints, safe for JSON and ``torch.save``."""
        return {
            "budget_flops": self.budget_flops,
            "budget_examples": self.budget_examples,
            "spent": dict(self.spent),
            "steps": self.steps,
            "evaluation_flops": self.evaluation_flops,
        }

    def load_state_dict(self, state: LedgerState) -> None:
        """Restore :meth:`state_dict`; refuses one written for another budget."""
        saved = (state["budget_flops"], state.get("budget_examples"))
        if saved != (self.budget_flops, self.budget_examples):
            was = f"{saved[0]} FLOPs" if saved[1] is None else f"{saved[1]} examples"
            raise BudgetError(
                f"the saved ledger was for a budget of {was}, this run's is {self.limit} "
                f"{self.unit}s; resume with the same budget"
            )
        # A checkpoint from before a kind existed has spent nothing on it.
        self.spent = {kind: int(state["spent"].get(kind, 0)) for kind in COST_KINDS}
        self.steps = int(state["steps"])
        self.evaluation_flops = int(state["evaluation_flops"])
