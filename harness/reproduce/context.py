"""What the claims share: the scale they run at, the dataset, the reference, the training runs
(through the one training loop, :func:`harness.train.train`, reusing complete runs in the work
directory) and snapshots of a trained learner at three points of training.

The full scale is the ``shapes`` section of the ``full`` suite (``small`` preset, b = 128, 1,500
uniform-equivalent steps, five seeds, its first reference), so the runs at f = 0.8 that ``jestbench run
full`` made are reused rather than trained again; ``--quick`` is the ``tiny`` preset at a few steps, for CI.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.data import Dataset, SuperBatch, SuperBatchStream
from harness.evaluate import Evaluation
from harness.models import DualEncoder
from harness.records import RunFile, atomic_torch_save
from harness.reference import reference_config, train_reference
from harness.runconfig import RunConfig, TrainingError
from harness.train import train
from strategies import default_registry


@dataclass(frozen=True)
class Scale:
    """How big every claim's measurement is.

    ``filter_ratios`` are the runs' (Fig. 3, Fig. 1); ``analysis_filter_ratios`` the selection
    analyses' (Fig. 2, right: the largest are used only where ``b / (1 − f)`` fits in the pool);
    ``super_batches`` real super-batches per point of training, ``draws`` samplings of each per method;
    Gibbs runs in blocks of ``gibbs_block · b · (B − b)`` proposals (in units of the number of possible
    single swaps) until a block adds less than 1% of the chain's rise, at most ``gibbs_max_blocks``.
    """

    name: str
    preset: str
    batch_size: int
    budget: str
    seeds: tuple[int, ...]
    eval_every: float
    reference_budget: str
    reference_batch_size: int
    filter_ratios: tuple[float, ...] = (0.5, 0.8, 0.9)
    analysis_filter_ratio: float = 0.8
    analysis_filter_ratios: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)
    chunk_counts: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    gain: float = 100.0
    super_batches: int = 8
    draws: int = 3
    gibbs_block: float = 1.0
    gibbs_max_blocks: int = 10
    eval_splits: tuple[str, ...] = ("val", "eval")


FULL = Scale(
    "full",
    preset="small",
    batch_size=128,
    budget="1500 steps",
    seeds=(0, 1, 2, 3, 4),
    eval_every=0.125,
    reference_budget="500 steps",
    reference_batch_size=128,
)
# The tiny preset, a handful of steps: every claim's code path in a minute or two; numbers mean little.
QUICK = Scale(
    "quick",
    preset="tiny",
    batch_size=32,
    budget="12 steps",
    seeds=(0, 1),
    eval_every=0.25,
    reference_budget="1000 steps",
    reference_batch_size=64,
    super_batches=3,
    draws=2,
    gibbs_block=0.5,
    gibbs_max_blocks=4,
    eval_splits=("eval",),
)
SCALES = {s.name: s for s in (FULL, QUICK)}
# The seed of the learner whose snapshots the selection analyses use: apart from the runs' seeds.
ANALYSIS_SEED = 100

Announce = Callable[[str], None]


@dataclass
class Context:
    """The dataset, the reference and the runs of one ``jestbench reproduce``; runs are trained (or
    found complete) once and shared between the claims that need them."""

    work: Path
    dataset: Dataset
    scale: Scale
    out: Path
    announce: Announce = print
    _reference: dict[str, Any] | None = None
    _runs: dict[str, RunFile] = field(default_factory=dict)
    # Runs that failed when ``--jobs`` trained them ahead, with their errors: not tried again here.
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def data_setting(self) -> str:
        return f"{self.dataset.name} ({self.dataset.content_id})"

    @property
    def reference(self) -> dict[str, Any]:
        """The reference's record, trained (and the pool embedded) if missing."""
        if self._reference is None:
            config = reference_config(
                self.dataset,
                preset=self.scale.preset,
                budget=self.scale.reference_budget,
                batch_size=self.scale.reference_batch_size,
            )
            self.announce(f"reference {config.run_id}: training or reusing it")
            self._reference = train_reference(config, self.work, show_progress=False)
        return self._reference

    def config(
        self,
        strategy: str,
        params: Mapping[str, Any] | None = None,
        *,
        filter_ratio: float,
        seed: int,
        reference_cached: bool = True,
    ) -> RunConfig:
        """A run at this scale; parameters completed with their defaults, as suites do, so that a
        suite's run of the same configuration is the same run."""
        strategy_object = default_registry().get_strategy(strategy, **dict(params or {}))
        needs = strategy_object.needs
        return RunConfig(
            dataset=str(self.dataset.root),
            dataset_id=self.dataset.content_id,
            preset=self.scale.preset,
            strategy=strategy,
            params=dict(strategy_object.config),
            batch_size=self.scale.batch_size,
            filter_ratio=filter_ratio,
            budget=self.scale.budget,
            seed=seed,
            reference=self.reference["hash"] if needs.reference else None,
            reference_cached=reference_cached,
            eval_every=self.scale.eval_every,
            eval_splits=self.scale.eval_splits,
        )

    def run(
        self, config: RunConfig, on_evaluation: Callable[[int, list[Evaluation]], None] | None = None
    ) -> RunFile:
        """The complete run of ``config``: found in the work directory, or trained (resumed) now.

        Raises:
            TrainingError: the run failed (now, or when ``--jobs`` trained it ahead).
        """
        if config.run_id in self.failed:
            raise TrainingError(f"run {config.run_id} failed: {self.failed[config.run_id]}")
        if config.run_id not in self._runs:
            params = ", ".join(f"{k}={v}" for k, v in config.params.items())
            self.announce(
                f"run {config.run_id}: {config.strategy} ({params}) f={config.filter_ratio} seed {config.seed}"
            )
            self._runs[config.run_id] = train(
                config, self.work, show_progress=False, on_evaluation=on_evaluation
            ).run
        return self._runs[config.run_id]

    def learner_snapshots(self) -> list[tuple[str, DualEncoder]]:
        """A uniform run of its own (seed :data:`ANALYSIS_SEED`, so that no suite has made it without
        snapshots) at a quarter, half and all of its budget.

        Snapshots are copied from the checkpoint the loop writes at each evaluation, through
        ``train``'s callback; a run already complete without them (made by another command) offers
        its final model only.
        """
        config = self.config("uniform", filter_ratio=0.0, seed=ANALYSIS_SEED)
        directory = self.work / "reproduce" / "snapshots" / config.run_id
        checkpoint = self.work / "checkpoints" / f"{config.run_id}.pt"
        per_eval = round(1 / self.scale.eval_every)
        wanted = {max(1, per_eval // 4): "25%", max(1, per_eval // 2): "50%"}

        def keep(k: int, _: list[Evaluation]) -> None:
            if k in wanted and checkpoint.exists():
                state = torch.load(checkpoint, weights_only=False)["model"]
                atomic_torch_save(directory / f"{k}.pt", state)

        run = self.run(config, on_evaluation=keep)
        from harness.records import load_trained_model

        final = load_trained_model(self.work, config.run_id)
        points: list[tuple[str, DualEncoder]] = []
        for k, label in sorted(wanted.items()):
            path = directory / f"{k}.pt"
            if path.exists():
                model = copy.deepcopy(final)
                model.load_state_dict(torch.load(path, weights_only=True))
                points.append((f"{label} of training", model))
        points.append((f"end of training ({run.summary.get('steps', '?')} steps)", final))
        return points

    def super_batches(self, size: int) -> list[SuperBatch]:
        """``scale.super_batches`` real super-batches of ``size`` from the raw pool, with the
        reference's cached embeddings; a stream of its own (seed 1000), not the training order."""
        reference = self.reference
        stream = SuperBatchStream(
            self.dataset,
            "raw",
            size,
            seed=1000,
            reference_hash=reference["hash"],
            reference_dim=int(reference["embed_dim"]),
        )
        return [stream.read(n) for n in range(self.scale.super_batches)]

    @property
    def pool_size(self) -> int:
        return self.dataset.split_size("raw")
