"""The Registry object: registration rules, lazy targets, "did you mean", parameters and shapes."""

from __future__ import annotations

import sys

import pytest
import torch

from harness.batching import BatchShape, BatchShapeError
from harness.conformance import random_view
from strategies import (
    BUILTIN_STRATEGIES,
    ParameterError,
    Registry,
    Strategy,
    StrategyError,
    UnknownStrategyError,
    default_registry,
)
from strategies.builtin import Jest, Uniform


def _isolated(builtins=None) -> Registry:
    return Registry(builtins, entry_point_group=None)


def test_the_seven_builtins_are_registered():
    assert default_registry().list_strategies() == sorted(BUILTIN_STRATEGIES)
    assert len(BUILTIN_STRATEGIES) == 7


def test_list_strategies_filters_by_pattern():
    assert default_registry().list_strategies("jest*") == ["jest"]
    assert default_registry().list_strategies("*jest") == ["flexi-jest", "jest"]
    assert default_registry().list_strategies("nothing*") == []


def test_registering_a_name_twice_with_another_target_is_an_error():
    registry = _isolated()
    registry.add("rule", Uniform)
    registry.add("rule", Uniform)  # the same target again is harmless
    with pytest.raises(StrategyError, match="already registered"):
        registry.add("rule", Jest)


def test_a_lazy_target_and_its_class_count_as_the_same_target():
    registry = _isolated({"jest": "strategies.builtin:Jest"})
    registry.add("jest", Jest)
    registry.get_class("jest")
    registry.add("jest", "strategies.builtin:Jest")


def test_decorator_registers_on_the_registry_object_only():
    registry = _isolated()

    @registry.register_strategy("first-b")
    class FirstB(Strategy):
        def select(self, view, batch_size, generator):
            return torch.arange(batch_size)

    assert registry.list_strategies() == ["first-b"]
    assert "first-b" not in default_registry().list_strategies()
    index = registry.get_strategy("first-b").select(random_view(10, seed=0), 4, torch.Generator())
    assert index.tolist() == [0, 1, 2, 3]


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownStrategyError, match=r"did you mean 'jest'") as err:
        default_registry().get_strategy("jset")
    assert "flexi-jest" in str(err.value)  # the listing of registered names
    with pytest.raises(UnknownStrategyError, match=r"'learnability'"):
        default_registry().get_strategy("learnabilty")


def test_targets_are_imported_on_first_use_only():
    registry = _isolated({"ghost": "jestbench_no_such_module:Ghost", "uniform": "strategies.builtin:Uniform"})
    assert registry.list_strategies() == ["ghost", "uniform"]
    assert "jestbench_no_such_module" not in sys.modules
    registry.get_strategy("uniform")
    with pytest.raises(StrategyError, match=r"strategy 'ghost' failed to load .*ModuleNotFoundError"):
        registry.get_strategy("ghost")


def test_a_target_that_is_not_a_strategy_is_refused():
    registry = _isolated({"bad": "harness.losses:sigmoid_loss"})
    with pytest.raises(StrategyError, match="not a Strategy subclass"):
        registry.get_class("bad")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("jest", {"n_chunks": 0}, r"n_chunks=0 is outside \[1, 65536\]"),
        ("jest", {"n_chunks": 2.5}, r"n_chunks=2.5 is not a valid int"),
        ("jest", {"gain": float("nan")}, r"gain=nan must be finite"),
        ("jest", {"gain": "nan"}, r"gain='nan' must be finite"),
        ("jest", {"score": "hardest"}, r"score='hardest' must be one of \{hard, easy, learnability\}"),
        ("prioritized", {"gain": -1.0}, r"gain=-1.0 is outside \[0, 1e\+06\]"),
        ("uniform", {"two_resolution": "maybe"}, r"two_resolution='maybe' is not a valid bool"),
        ("uniform", {"n_chunks": 4}, r"unknown parameter\(s\) n_chunks \(valid: two_resolution\)"),
    ],
)
def test_bad_parameters_are_refused_when_built(name, params, message):
    with pytest.raises(ParameterError, match=message):
        default_registry().get_strategy(name, **params)


def test_parameters_given_as_strings_are_converted():
    jest = default_registry().get_strategy("jest", n_chunks="8", gain="50", score="hard")
    assert jest.config == {"score": "hard", "gain": 50.0, "n_chunks": 8}
    assert jest.needs.learner and not jest.needs.reference
    assert default_registry().get_strategy("uniform", two_resolution="true").training.resolutions == (
        "full",
        "coarse",
    )


def test_n_chunks_must_divide_b_when_a_selection_is_asked_for():
    jest = default_registry().get_strategy("jest", n_chunks=16)
    with pytest.raises(
        StrategyError, match=r"strategy 'jest': n_chunks=16 does not divide the sub-batch size b=40"
    ):
        jest.select(random_view(200, seed=0), 40, torch.Generator())
    assert jest.select(random_view(200, seed=0), 48, torch.Generator()).numel() == 48


def test_two_resolution_training_needs_an_even_b():
    flexi = default_registry().get_strategy("flexi-jest", n_chunks=1)
    with pytest.raises(StrategyError, match="multiple of 2"):
        flexi.check_sizes(7, 20)


@pytest.mark.parametrize("bad_b", [0, -3, 2.0, True])
def test_b_must_be_a_positive_int(bad_b):
    with pytest.raises(StrategyError, match="sub-batch size"):
        default_registry().get_strategy("uniform").select(random_view(8, seed=0), bad_b, torch.Generator())


@pytest.mark.parametrize(
    ("b", "f", "big_b", "effective"),
    [
        (256, 0.8, 1280, 0.8),
        (256, 0.0, 256, 0.0),
        (100, 0.5, 200, 0.5),
        (48, 0.9, 480, 0.9),
        (10, 0.33, 15, 1 / 3),
    ],
)
def test_super_batch_size_from_filter_ratio(b, f, big_b, effective):
    shape = BatchShape.from_filter_ratio(b, f)
    assert shape.super_batch_size == big_b
    assert shape.filter_ratio == pytest.approx(effective)


@pytest.mark.parametrize("f", [1.0, 1.5, -0.1, float("nan"), float("inf")])
def test_filter_ratio_outside_zero_one_is_refused(f):
    with pytest.raises(BatchShapeError, match=r"filter ratio f=.* is outside \[0, 1\)"):
        BatchShape.from_filter_ratio(256, f)
