"""Selection strategies for online data selection: the protocol, the registry and the built-ins.

Nothing here imports the harness: a strategy is a selection rule over a super-batch view.
"""

from __future__ import annotations

from functools import cache

from strategies.protocol import (
    SCORE_KINDS,
    Embeddings,
    ModelName,
    Needs,
    Param,
    ParameterError,
    Resolution,
    ScoreKind,
    Strategy,
    StrategyError,
    SuperBatchView,
    TrainingPlan,
    UndeclaredNeedError,
)
from strategies.registry import ENTRY_POINT_GROUP, PluginError, Registry, UnknownStrategyError
from strategies.validated import ValidatedStrategy

# name -> "module:attr", imported on first use (docs/DESIGN.md §3's table).
BUILTIN_STRATEGIES = {
    "uniform": "strategies.builtin:Uniform",
    "hard-learner": "strategies.builtin:HardLearner",
    "easy-reference": "strategies.builtin:EasyReference",
    "learnability": "strategies.builtin:Learnability",
    "prioritized": "strategies.builtin:Prioritized",
    "jest": "strategies.builtin:Jest",
    "flexi-jest": "strategies.builtin:FlexiJest",
}


@cache
def default_registry() -> Registry:
    """The registry of the built-ins plus installed plugins, created on first call."""
    return Registry(BUILTIN_STRATEGIES)


__all__ = [
    "BUILTIN_STRATEGIES",
    "ENTRY_POINT_GROUP",
    "SCORE_KINDS",
    "Embeddings",
    "ModelName",
    "Needs",
    "Param",
    "ParameterError",
    "PluginError",
    "Registry",
    "Resolution",
    "ScoreKind",
    "Strategy",
    "StrategyError",
    "SuperBatchView",
    "TrainingPlan",
    "UndeclaredNeedError",
    "UnknownStrategyError",
    "ValidatedStrategy",
    "default_registry",
]
