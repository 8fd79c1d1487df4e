"""The cost model of docs/DESIGN.md §4 on synthetic tower FLOPs, the pairwise products, the ledger's stop
rule and the one budget conversion."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction

import pytest
import torch

from harness.batching import BatchShape
from harness.cost import (
    Budget,
    BudgetError,
    CostModel,
    Ledger,
    StepCost,
    UniformStep,
    measure_selection,
)
from harness.flops import ModelFlops
from strategies import Needs, Strategy, SuperBatchView, TrainingPlan, ValidatedStrategy, default_registry

# F_img = 100, F_img,coarse = 25 (A = 1/4), F_txt = 20: F = 120.
TOWERS = ModelFlops(image_full=100, image_coarse=25, text=20, resize=7, embed_dim=8, text_length=4)
B_AT_08 = BatchShape.from_filter_ratio(256, 0.8)  # b = 256, B = 1280
UNIFORM = (Needs(), TrainingPlan())
LEARNER_SCORED = (Needs(learner=True, reference=True), TrainingPlan())
FLEXI = (Needs(learner=True, reference=True, learner_resolution="coarse"), TrainingPlan(("full", "coarse")))


def _ratio(cost: CostModel, plan: tuple[Needs, TrainingPlan], shape: BatchShape = B_AT_08) -> Fraction:
    step = cost.step_cost(*plan, shape).total
    return Fraction(step, UniformStep.of(cost, shape.batch_size).flops)


def _paper_ratio(cost: CostModel, plan: tuple[Needs, TrainingPlan], shape: BatchShape = B_AT_08) -> float:
    uniform = cost.paper_step_cost(*UNIFORM, BatchShape(shape.batch_size, shape.batch_size))
    return cost.paper_step_cost(*plan, shape) / uniform


def test_uniform_costs_3F_per_example() -> None:
    step = CostModel(TOWERS).step_cost(*UNIFORM, BatchShape(256, 256))
    assert step == StepCost(training=3 * 120 * 256)


def test_learner_scored_strategies_cost_B_over_b_plus_3_over_3() -> None:
    """F·B + 3F·b: (B/b + 3)/3 = 8/3 ≈ 2.67 at f = 0.8, whatever the towers."""
    cost = CostModel(TOWERS)
    assert _ratio(cost, LEARNER_SCORED) == Fraction(8, 3)
    step = cost.step_cost(*LEARNER_SCORED, B_AT_08)
    assert step.learner_scoring == 1280 * 120 and step.reference == 0 and step.resize == 0
    for f, expected in [(0.5, Fraction(5, 3)), (0.9, Fraction(13, 3))]:
        assert _ratio(cost, LEARNER_SCORED, BatchShape.from_filter_ratio(256, f)) == expected


def test_the_paper_reuses_the_scoring_pass() -> None:
    """Appendix A.4: F·(B + 2b) = 7/3 ≈ 2.33 at f = 0.8; uncached reference F·(B + 2b) + F_ref·B = 4."""
    cost = CostModel(TOWERS)
    assert _paper_ratio(cost, LEARNER_SCORED) == pytest.approx(7 / 3)
    uncached = dataclasses.replace(cost, reference_cached=False)
    assert _paper_ratio(uncached, LEARNER_SCORED) == pytest.approx(4.0)
    assert _ratio(uncached, LEARNER_SCORED) == Fraction(13, 3)
    assert uncached.step_cost(*LEARNER_SCORED, B_AT_08).reference == 1280 * 120


def test_flexi_jest_scores_the_image_tower_coarse_and_trains_half_and_half() -> None:
    """B·(F_txt + A·F_img) + 3b·(F_txt + F_img·(1 + A)/2), plus the resize once per step."""
    step = CostModel(TOWERS).step_cost(*FLEXI, B_AT_08)
    assert step.learner_scoring == 1280 * (20 + 25)
    assert step.training == 3 * 256 * 20 + 3 * 128 * 100 + 3 * 128 * 25
    assert step.resize == 3 * 7  # resized once, and back-propagated through
    two_resolution_uniform = (Needs(), TrainingPlan(("full", "coarse")))
    assert CostModel(TOWERS).step_cost(*two_resolution_uniform, B_AT_08).resize == 3 * 7
    scored_coarse_only = (Needs(learner=True, learner_resolution="coarse"), TrainingPlan())
    assert CostModel(TOWERS).step_cost(*scored_coarse_only, B_AT_08).resize == 7


def test_the_paper_applies_A_to_the_whole_model() -> None:
    """With the paper's A = 0.28 on the whole model: 0.28·5 + 1.5·(1 + 0.28) = 3.32 -> 1.107 ≈ 1.10x."""
    paper_like = ModelFlops(image_full=100, image_coarse=28, text=0, resize=0, embed_dim=8, text_length=4)
    assert _paper_ratio(CostModel(paper_like), FLEXI) == pytest.approx(3.32 / 3)
    # With a text tower the paper's formula still scales all of F by A; what runs does not.
    assert _paper_ratio(CostModel(TOWERS), FLEXI) < float(_ratio(CostModel(TOWERS), FLEXI))


def test_reference_scored_strategies_pay_only_pairwise_products_when_cached() -> None:
    needs = (Needs(reference=True), TrainingPlan())
    step = CostModel(TOWERS).step_cost(*needs, B_AT_08, pairwise=1234)
    assert step == StepCost(training=3 * 120 * 256, pairwise=1234)
    assert _paper_ratio(CostModel(TOWERS), needs) == 1.0


def test_costs_follow_needs_and_training_not_names() -> None:
    """A plugin that declares Flexi-JEST's needs and training plan is charged exactly as flexi-jest."""

    class CoarseTopK(Strategy):
        name = "my-coarse-rule"

        @property
        def needs(self) -> Needs:
            return FLEXI[0]

        @property
        def training(self) -> TrainingPlan:
            return FLEXI[1]

        def select(self, view: SuperBatchView, batch_size: int, generator: torch.Generator) -> torch.Tensor:
            return torch.topk(view.scores("learnability"), batch_size).indices

    cost = CostModel(TOWERS)
    plugin = ValidatedStrategy(CoarseTopK(), "my-coarse-rule")
    flexi = default_registry().get_strategy("flexi-jest")
    ours, theirs = cost.strategy_step_cost(plugin, B_AT_08), cost.strategy_step_cost(flexi, B_AT_08)
    assert dataclasses.replace(ours, pairwise=0) == dataclasses.replace(theirs, pairwise=0)
    assert ours.pairwise == 2 * 1280 * 8  # it read the diagonal of both models only


def test_pairwise_products_are_measured_from_what_a_selection_reads() -> None:
    shape, dim = BatchShape.from_filter_ratio(64, 0.75), 8  # b = 64, B = 256
    registry = default_registry()

    def pairwise(name: str, **params: int) -> int:
        measured = measure_selection(registry.get_strategy(name, **params), shape, dim)
        assert measured.selection == 0  # the built-ins run no products of their own
        return measured.pairwise

    assert pairwise("uniform") == 0
    assert pairwise("hard-learner") == 256 * dim
    assert pairwise("learnability") == 2 * 256 * dim
    # Joint sampling: the diagonals, then for each of N - 1 chunks the rows and columns against it,
    # for both models: 2·B·d + (N - 1)·2·2·B·(b/N)·d.
    assert pairwise("jest", n_chunks=4) == 2 * 256 * dim + 3 * 4 * 256 * 16 * dim


class OwnProducts(Strategy):
    """A plugin that runs its own products on the learner's embeddings: the full ``B x B`` similarity
    matrix by ``@`` and, as ``einsum``, its ``b``-column block; then the view's hard-learner scores."""

    name = "own-products"

    @property
    def needs(self) -> Needs:
        return Needs(learner=True)

    def select(self, view: SuperBatchView, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        e = view.embeddings("learner")
        similarity = e.image @ e.text.T
        block = torch.einsum("id,jd->ij", e.image, e.text[:batch_size])
        scores = view.scores("hard") + 0 * (similarity.sum() + block.sum())
        return torch.topk(scores, batch_size).indices


class ViewOnly(OwnProducts):
    """The same selection without the products of its own."""

    name = "view-only"

    def select(self, view: SuperBatchView, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return torch.topk(view.scores("hard"), batch_size).indices


def test_a_strategys_own_products_are_charged_exactly_and_the_views_once() -> None:
    shape, dim = BatchShape.from_filter_ratio(64, 0.75), 8  # b = 64, B = 256
    own = measure_selection(ValidatedStrategy(OwnProducts(), "own-products"), shape, dim)
    view_only = measure_selection(ValidatedStrategy(ViewOnly(), "view-only"), shape, dim)
    assert own.pairwise == view_only.pairwise == 256 * dim  # the view's diagonal, counted once
    assert view_only.selection == 0
    assert own.selection == 256 * 256 * dim + 256 * 64 * dim
    cost = CostModel(TOWERS)
    charged = cost.strategy_step_cost(ValidatedStrategy(OwnProducts(), "own-products"), shape)
    assert charged.selection == own.selection
    assert charged.total - cost.strategy_step_cost(
        ValidatedStrategy(ViewOnly(), "view-only"), shape
    ).total == (256 * 256 * dim + 256 * 64 * dim)


# -- budget and ledger ----------------------------------------------------------------------------


def test_budget_in_uniform_steps_converts_in_one_place() -> None:
    unit = UniformStep.of(CostModel(TOWERS), 256)
    assert unit.flops == 3 * 120 * 256
    assert Budget(uniform_steps=400).to_flops(unit) == 400 * unit.flops
    assert Budget(flops=10**9).to_flops(unit) == 10**9
    assert unit.to_steps(unit.to_flops(123.5)) == pytest.approx(123.5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.5e12", Budget(flops=2_500_000_000_000)),
        ("2.5e12 FLOPs", Budget(flops=2_500_000_000_000)),
        ("400 steps", Budget(uniform_steps=400.0)),
        ("1 step", Budget(uniform_steps=1.0)),
        ("512000 examples", Budget(examples=512_000)),
        ("5.12e5 Examples", Budget(examples=512_000)),
    ],
)
def test_budget_parse(text: str, expected: Budget) -> None:
    assert Budget.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["", "lots", "400 epochs", "-5 steps", "nan", "inf flops", "1 2 3", "10.5 examples", "0 examples"]
)
def test_unreadable_budgets_are_refused(text: str) -> None:
    with pytest.raises(BudgetError, match="budget"):
        Budget.parse(text)


def test_a_budget_is_in_one_unit() -> None:
    with pytest.raises(BudgetError, match="exactly one of the three"):
        Budget(flops=10, uniform_steps=2)
    with pytest.raises(BudgetError, match="exactly one"):
        Budget(uniform_steps=2, examples=100)
    with pytest.raises(BudgetError, match="exactly one"):
        Budget()
    with pytest.raises(BudgetError, match="not an amount of FLOPs"):
        Budget(examples=100).to_flops(UniformStep.of(CostModel(TOWERS), 256))


def test_an_examples_budget_stops_every_strategy_at_the_same_examples() -> None:
    """1000 examples at b = 256: three steps of 256 fit (768), a fourth would pass the budget,
    whatever each step costs in FLOPs; the FLOPs are still charged."""
    cost = CostModel(TOWERS)
    unit = UniformStep.of(cost, 256)
    spent = {}
    for name, (needs, plan), shape in [
        ("uniform", UNIFORM, BatchShape(256, 256)),
        ("learner", LEARNER_SCORED, B_AT_08),
    ]:
        step = cost.step_cost(needs, plan, shape)
        ledger = Budget.parse("1000 examples").ledger(unit, 256)
        fractions = []
        while ledger.fits(step):
            fractions.append(ledger.fraction_after(step))
            ledger.charge(step)
        assert (ledger.steps, ledger.used, ledger.remaining, ledger.unit) == (3, 768, 232, "example")
        assert fractions == [256 / 1000, 512 / 1000, 768 / 1000]  # the schedule's clock: examples
        spent[name] = ledger.total
    assert spent["learner"] == spent["uniform"] * 8 // 3  # (B/b + 3)/3 at f = 0.8: FLOPs differ


def test_an_examples_ledger_resumes_only_with_the_same_budget() -> None:
    ledger = Ledger(budget_examples=1000, batch_size=100)
    ledger.charge(StepCost(training=7))
    state = json.loads(json.dumps(ledger.state_dict()))
    resumed = Ledger(budget_examples=1000, batch_size=100)
    resumed.load_state_dict(state)
    assert resumed.used == 100 and resumed.total == 7
    with pytest.raises(BudgetError, match="1000 examples"):
        Ledger(1000).load_state_dict(state)
    with pytest.raises(BudgetError, match="batch size"):
        Ledger(budget_examples=1000)


def test_the_ledger_stops_when_the_next_step_does_not_fit() -> None:
    cost = CostModel(TOWERS)
    unit = UniformStep.of(cost, 256)
    uniform_step = cost.step_cost(*UNIFORM, BatchShape(256, 256))
    learner_step = cost.step_cost(*LEARNER_SCORED, B_AT_08)

    def run(step: StepCost) -> Ledger:
        ledger = Ledger(Budget(uniform_steps=10).to_flops(unit))
        while ledger.fits(step):
            ledger.charge(step)
        return ledger

    assert run(uniform_step).steps == 10  # exactly: integer FLOPs, no rounding at the boundary
    assert run(uniform_step).remaining == 0
    assert run(learner_step).steps == 3  # 10 uniform steps / (8/3) per step
    spent = run(learner_step).spent
    assert spent["learner_scoring"] == 3 * 1280 * 120 and spent["training"] == 3 * 3 * 120 * 256


def test_evaluation_is_recorded_not_charged() -> None:
    ledger = Ledger(100)
    ledger.record_evaluation(1000)
    assert ledger.total == 0 and ledger.evaluation_flops == 1000
    assert ledger.fits(StepCost(training=100)) and not ledger.fits(StepCost(training=101))


def test_the_ledger_resumes_from_its_state() -> None:
    ledger = Ledger(10_000)
    ledger.charge(StepCost(training=300, learner_scoring=200, pairwise=5, resize=1))
    ledger.record_evaluation(7)
    state = json.loads(json.dumps(ledger.state_dict()))
    resumed = Ledger(10_000)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == ledger.state_dict()
    assert resumed.remaining == 10_000 - 506
    with pytest.raises(BudgetError, match="same budget"):
        Ledger(5_000).load_state_dict(state)


def test_a_non_positive_budget_is_refused() -> None:
    with pytest.raises(BudgetError, match="> 0"):
        Ledger(0)
