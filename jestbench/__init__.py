"""Everything a strategy author needs, under one distinctly named import.

``harness`` and ``strategies`` are generic names that a plugin's own repository may shadow; this
package re-exports what plugin authors use: the strategy protocol, the registry, the sampling
primitives, the super-batch view built from embeddings, and the conformance kit.

A plugin is a :class:`Strategy` subclass exposed through the entry-point group
``jestbench.strategies`` in the plugin's ``pyproject.toml``::

    [project.entry-points."jestbench.strategies"]
    my-rule = "my_package.module:MyRule"
"""

from harness.conformance import CONFORMANCE_CHECKS, check_strategy, random_view
from harness.view import EmbeddingView
from strategies import (
    ENTRY_POINT_GROUP,
    SCORE_KINDS,
    Embeddings,
    Needs,
    Param,
    ParameterError,
    PluginError,
    Registry,
    ScoreKind,
    Strategy,
    StrategyError,
    SuperBatchView,
    TrainingPlan,
    UndeclaredNeedError,
    UnknownStrategyError,
    ValidatedStrategy,
    default_registry,
)
from strategies.sampling import gumbel_noise, gumbel_top_k, joint_sample

__all__ = [
    "CONFORMANCE_CHECKS",
    "ENTRY_POINT_GROUP",
    "SCORE_KINDS",
    "EmbeddingView",
    "Embeddings",
    "Needs",
    "Param",
    "ParameterError",
    "PluginError",
    "Registry",
    "ScoreKind",
    "Strategy",
    "StrategyError",
    "SuperBatchView",
    "TrainingPlan",
    "UndeclaredNeedError",
    "UnknownStrategyError",
    "ValidatedStrategy",
    "check_strategy",
    "default_registry",
    "gumbel_noise",
    "gumbel_top_k",
    "joint_sample",
    "random_view",
]
