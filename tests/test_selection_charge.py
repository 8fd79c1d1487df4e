"""Every FLOP a strategy runs is charged: a plugin's own products inside ``select`` are counted by the
training loop's step (docs/FLOPS.md), the view's own work (the learner's scoring pass, the score
products) is charged once, as its own kinds."""

from __future__ import annotations

from pathlib import Path

from test_cost import OwnProducts, ViewOnly

from harness.data import Dataset
from harness.runconfig import RunConfig
from harness.step import Stepper
from strategies import ValidatedStrategy


def _stepper(dataset: Dataset, work: Path) -> Stepper:
    config = RunConfig(
        dataset=str(dataset.root),
        dataset_id=dataset.content_id,
        preset="tiny",
        strategy="hard-learner",
        params={},
        batch_size=16,
        filter_ratio=0.75,
        budget="20 steps",
    )
    return Stepper(config, work)


def test_the_loop_charges_a_plugins_own_product_and_the_view_once(tiny_dataset: Dataset, tmp_path: Path):
    costs = {}
    for strategy in (OwnProducts(), ViewOnly()):
        stepper = _stepper(tiny_dataset, tmp_path)
        stepper.strategy = ValidatedStrategy(strategy, strategy.name)
        batch = next(iter(stepper.stream()))
        costs[strategy.name] = stepper.step(batch)
        assert stepper.ledger.spent["selection"] == costs[strategy.name].selection
    B, b, d = 64, 16, stepper.flops.embed_dim
    own, view_only = costs["own-products"], costs["view-only"]
    # The learner's pass over B ran inside select, under the counter: charged as scoring, not twice.
    assert own.learner_scoring == view_only.learner_scoring == B * stepper.flops.full
    assert own.pairwise == view_only.pairwise == B * d
    assert view_only.selection == 0
    assert own.selection == B * B * d + B * b * d
    assert own.total - view_only.total == B * B * d + B * b * d
    assert own.training == view_only.training
