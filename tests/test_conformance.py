"""The conformance kit over every registered strategy, and proof that the kit catches broken ones."""

from __future__ import annotations

import pytest
import torch

from harness.conformance import CONFORMANCE_CHECKS, check_strategy
from strategies import Needs, Strategy, default_registry

STRATEGIES = default_registry().list_strategies()


@pytest.mark.parametrize("check", sorted(CONFORMANCE_CHECKS))
@pytest.mark.parametrize("name", STRATEGIES)
def test_every_registered_strategy_conforms(name, check):
    CONFORMANCE_CHECKS[check](lambda: default_registry().get_strategy(name))


class Repeats(Strategy):
    name = "repeats"

    def select(self, view, batch_size, generator):
        return torch.zeros(batch_size, dtype=torch.long)


class ReadsUndeclared(Strategy):
    name = "reads-undeclared"

    @property
    def needs(self):
        return Needs(learner=True)

    def select(self, view, batch_size, generator):
        return torch.topk(view.scores("learnability"), batch_size).indices


class Unseeded(Strategy):
    name = "unseeded"

    def select(self, view, batch_size, generator):
        return torch.randperm(view.size)[:batch_size]  # ignores the generator


class ReturnsInt32(Strategy):
    name = "returns-int32"

    def select(self, view, batch_size, generator):
        return torch.arange(batch_size, dtype=torch.int32)


class Overflows(Strategy):
    """Softmax sampling with an unshifted exp: the public port's failure (docs/DESIGN.md §3)."""

    name = "overflows"

    @property
    def needs(self):
        return Needs.for_score("hard")

    def select(self, view, batch_size, generator):
        weights = torch.exp(100 * view.scores("hard"))
        return torch.multinomial(weights, batch_size, replacement=False, generator=generator)


@pytest.mark.parametrize(
    ("broken", "failing_check", "message"),
    [
        (Repeats, "distinct_in_range", "repeated indices"),
        (ReadsUndeclared, "declared_needs", "read the reference's embeddings but its needs do not declare"),
        (Unseeded, "reproducible", "same seed gave"),
        (ReturnsInt32, "distinct_in_range", "not torch.long"),
        (Overflows, "extreme_scores", "raised RuntimeError"),
    ],
)
def test_the_kit_catches_broken_strategies(broken, failing_check, message):
    with pytest.raises(AssertionError, match=message):
        CONFORMANCE_CHECKS[failing_check](broken)
    with pytest.raises(AssertionError, match=failing_check):
        check_strategy(broken)
