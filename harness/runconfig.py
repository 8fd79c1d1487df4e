"""What decides a run's result: its configuration, whose hash is the run's id, and the error a run
that cannot start or go on raises. Imports nothing that trains, so anything may import it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.cost import Budget
from harness.errors import UserError
from harness.records import config_hash, strategy_identity

# What a run offers its strategy: the raw pool as it is, or its clean pairs (the clean-only oracle).
POOLS = ("all", "clean")
MAX_LEARNING_RATE = 10.0  # far above any rate that trains (2e-3 is the default): a larger one is a typo


class TrainingError(UserError):
    """A run that cannot start or cannot go on; the message says why and what to do."""


OPTIM_RANGES = {
    "learning_rate": f"0 < learning_rate <= {MAX_LEARNING_RATE:g}",
    "beta1": "0 <= beta1 < 1",
    "beta2": "0 <= beta2 < 1",
    "eps": "eps > 0",
    "weight_decay": "weight_decay >= 0",
    "warmup": "0 <= warmup < 1",
    "grad_clip": "grad_clip > 0",
    "scale_bias_lr": "scale_bias_lr > 0",
}


@dataclass(frozen=True)
class OptimConfig:
    """Adam with the JEST paper's β2 = 0.95 (appendix A.2), warm-up then cosine decay over the budget,
    gradient clipping, and weight decay as big_vision applies it: decoupled, scaled by the schedule
    but not by the learning rate, on weight matrices only (``torch.optim.AdamW`` gets
    ``weight_decay / learning_rate``; biases, norms, embeddings, logit scale and bias are excluded).

    The logit scale and bias learn at ``scale_bias_lr`` times the rate: SigLIP's init was made for
    runs of tens of thousands of steps, and at a few hundred steps with one shared rate they barely
    move from it (docs/DESIGN.md §2, §5)."""

    learning_rate: float = 2e-3
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 1e-4
    warmup: float = 0.05
    grad_clip: float = 1.0
    scale_bias_lr: float = 10.0

    def __post_init__(self) -> None:
        checks = {
            "learning_rate": 0 < self.learning_rate <= MAX_LEARNING_RATE,
            "beta1": 0 <= self.beta1 < 1,
            "beta2": 0 <= self.beta2 < 1,
            "eps": self.eps > 0,
            "weight_decay": self.weight_decay >= 0,
            "warmup": 0 <= self.warmup < 1,
            "grad_clip": self.grad_clip > 0,
            "scale_bias_lr": self.scale_bias_lr > 0,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not (ok and math.isfinite(value)):
                raise TrainingError(
                    f"optimiser setting {name}={value!r} is out of range ({OPTIM_RANGES[name]})"
                )


_PLACEMENT_DEFAULTS: dict[str, Any] = {
    "device": "cpu",
    "precision": "fp32",
    "world_size": 1,
    "selection_scope": "global",
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's result; its hash is the run's id.

    ``budget`` is uniform-equivalent steps (``"400 steps"`` of uniform at ``b``) or FLOPs, stored in one
    spelling (:meth:`harness.cost.Budget.canonical`: ``400``, ``400.0`` and ``4e2`` steps are one run);
    ``reference`` is
    the hash of the reference whose cached embeddings score the pool (``jestbench reference train``).
    ``tuned`` names the study whose best parameters this run re-runs at a fresh seed (``jestbench tune
    --rerun-best``): leaderboards show such rows as tuned, apart from the same parameters chosen by hand.
    ``pool`` is ``"all"`` (the raw pool as it is) or ``"clean"``: only the samples whose recorded noise
    kind is ``clean`` are offered to the strategy (the clean-only oracle of the leaderboard).
    ``plugin`` is a plugin strategy's distribution, version and source hash
    (:func:`harness.records.strategy_identity`), filled in when not given, so that a plugin whose code
    changed gives new runs rather than its old rows; ``None`` for built-ins.
    ``device`` (resolved: ``cpu`` or ``cuda``), ``precision``, ``world_size`` (ranks) and
    ``selection_scope`` say where and how it computes (docs/DISTRIBUTED.md); they change its numbers,
    so they are part of its id, but left out of it at their defaults (one CPU process in fp32), so
    run ids from before they existed hold.
    """

    dataset: str
    dataset_id: str
    preset: str
    strategy: str
    params: Mapping[str, Any]
    batch_size: int
    filter_ratio: float
    budget: str
    seed: int = 0
    split: str = "raw"
    reference: str | None = None
    reference_cached: bool = True
    on_bad_sample: str = "error"
    eval_every: float = 0.25
    eval_splits: tuple[str, ...] = ("val", "eval")
    optim: OptimConfig = field(default_factory=OptimConfig)
    tuned: str | None = None
    pool: str = "all"
    plugin: Mapping[str, str] | None = None
    device: str = "cpu"
    precision: str = "fp32"
    world_size: int = 1
    selection_scope: str = "global"

    def __post_init__(self) -> None:
        """Refuse values no run could use, before anything starts; canonicalise the budget; identify a
        plugin strategy's code."""
        object.__setattr__(self, "budget", Budget.parse(str(self.budget)).canonical())
        if self.plugin is None:
            object.__setattr__(self, "plugin", strategy_identity(self.strategy))
        checks = {
            "seed": (isinstance(self.seed, int) and 0 <= self.seed < 2**63, "a whole number >= 0"),
            "batch_size": (isinstance(self.batch_size, int) and self.batch_size >= 1, "a whole number >= 1"),
            "filter_ratio": (0 <= self.filter_ratio < 1, "in [0, 1)"),
            "eval_every": (0 < self.eval_every <= 1, "a fraction of the budget in (0, 1]"),
            "on_bad_sample": (self.on_bad_sample in ("error", "skip"), "'error' or 'skip'"),
            "pool": (self.pool in POOLS, " or ".join(repr(p) for p in POOLS)),
            "eval_splits": (len(self.eval_splits) > 0, "at least one split"),
        }
        for name, (ok, allowed) in checks.items():
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise TrainingError(f"{name}={value!r} is out of range: give {allowed}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["params"] = dict(sorted(self.params.items()))
        data["eval_splits"] = list(self.eval_splits)
        for name in ("tuned", "plugin"):  # left out when None: run ids from before the fields existed hold
            if data[name] is None:
                del data[name]
        if self.pool == "all":  # likewise
            del data["pool"]
        if self.world_size == 1:  # one process selects from the whole super-batch whatever the scope
            data["selection_scope"] = "global"
        for name, default in _PLACEMENT_DEFAULTS.items():  # likewise
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        fields = dict(data)
        fields["optim"] = OptimConfig(**fields.get("optim", {}))
        fields["eval_splits"] = tuple(fields.get("eval_splits", ("val", "eval")))
        return cls(**fields)

    @property
    def run_id(self) -> str:
        """The config hash: a rerun of the same config finds (and resumes or skips) this run."""
        # The dataset's location does not change what a run computes; its content id does.
        return config_hash({k: v for k, v in self.to_dict().items() if k != "dataset"})
