"""The one training loop: a learner trained under a fixed FLOP budget, the strategy the only variable.

Each step (DESIGN §4, JEST paper §3 and Algorithm 2):

1. stream a super-batch of ``B = round(b / (1 - f))`` samples from the raw pool;
2. build the strategy's view of it: learner embeddings computed on demand without gradients at the
   resolution the strategy declares, reference embeddings from the cache; nothing the strategy does
   not declare is computed;
3. select ``b`` indices, and train on them, split across the resolutions of the strategy's training
   plan (Flexi-JEST: half at the full, half at the coarse patch size);
4. charge the ledger what ran; stop when the next step would exceed the budget.

The schedule (warm-up, then cosine decay) runs over the *budget*, not over steps, so strategies
whose steps cost more take fewer of them and still finish their schedule. Evaluations happen at a
fraction of the budget and at the end; each writes the run file and a checkpoint, and a checkpoint
is also written every ``checkpoint_seconds``, so a killed run resumes where it stopped and ends with
the same metrics as an uninterrupted one (the data order is a pure function of seed and position).

Steps 2 to 4 are :mod:`harness.step`; this module resumes, checkpoints, evaluates and saves.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from harness.data import NOISE_KINDS
from harness.evaluate import Evaluation, Evaluator
from harness.finite import NonFiniteError
from harness.models import DualEncoder
from harness.records import RunFile, atomic_torch_save, load_trained_model, model_path, provenance
from harness.runconfig import RunConfig, TrainingError
from harness.step import Stepper

EvaluationCallback = Callable[[int, list[Evaluation]], None]


@dataclass
class TrainResult:
    """A finished run: its record and the trained model."""

    run: RunFile
    model: DualEncoder


class Run(Stepper):
    """One run: its steps (:class:`harness.step.Stepper`), resuming, checkpoints, evaluations and run
    file; :func:`train` drives it."""

    def __init__(self, config: RunConfig, work_dir: Path, checkpoint_seconds: float) -> None:
        super().__init__(config, work_dir)
        self.checkpoint_seconds = checkpoint_seconds
        self.checkpoint_path = work_dir / "checkpoints" / f"{config.run_id}.pt"
        self.run_file = RunFile(config.run_id, config.to_dict())
        self.resumed = self._resume()
        # Rank 0 evaluates and writes; the other ranks of a distributed run only train.
        self.evaluator = (
            Evaluator(self.dataset, config.eval_splits, seed=config.seed) if self.ranks.is_main else None
        )

    # -- checkpoints -------------------------------------------------------------------------

    def _resume(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        state = torch.load(self.checkpoint_path, weights_only=False)
        if state["run_id"] != self.config.run_id:
            raise TrainingError(f"checkpoint {self.checkpoint_path} belongs to run {state['run_id']}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ledger.load_state_dict(state["ledger"])
        self.generator.set_state(self.ranks.own_generator_state(state["generator"]))
        self.ranks.communication.load_state_dict(state.get("communication", {}))
        self.predicted = state["predicted"]
        self.progress = state["progress"]
        self.run_file.rows = state["rows"]
        return True

    def checkpoint(self) -> None:
        """Every rank calls it at the same step; rank 0 writes."""
        generator = self.ranks.generator_state(self.generator)
        if not self.ranks.is_main:
            return
        atomic_torch_save(
            self.checkpoint_path,
            {
                "run_id": self.config.run_id,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "ledger": self.ledger.state_dict(),
                "generator": generator,
                "communication": self.ranks.communication.state_dict(),
                "predicted": self.predicted,
                "progress": self.progress,
                "rows": self.run_file.rows,
            },
        )

    # -- evaluation and records --------------------------------------------------------------

    def evaluate(self, pool_size: int) -> list[Evaluation]:
        evaluations = [] if self.evaluator is None else self.evaluator.evaluate(self.model, self.flops)
        for evaluation in evaluations:
            self.ledger.record_evaluation(evaluation.flops)
            self.run_file.rows.append(self._row(evaluation, pool_size))
        self.progress.evaluations += 1
        self.progress.loss_sum, self.progress.loss_steps = 0.0, 0
        return evaluations

    def _row(self, evaluation: Evaluation, pool_size: int) -> dict[str, Any]:
        c, p, spent = self.config, self.progress, self.ledger.spent
        one_off = 0
        if self.reference is not None:
            one_off = int(self.reference["training_flops"]) + int(self.reference["pool_embedding_flops"])
        row: dict[str, Any] = {
            "run_id": c.run_id,
            "strategy": c.strategy,
            "params": dict(self.strategy.config),
            "b": self.shape.batch_size,
            "B": self.shape.super_batch_size,
            "f": self.shape.filter_ratio,
            "seed": c.seed,
            "dataset": self.dataset.name,
            "dataset_id": c.dataset_id,
            "preset": c.preset,
            "split": evaluation.split,
            "evaluation": p.evaluations,
            "steps": self.ledger.steps,
            "examples_seen": p.examples_seen,
            "examples_scored": p.examples_scored,
            "epochs": p.examples_scored / pool_size,
            "budget_flops": self.budget_flops,
            "flops_training": spent["training"] + spent["resize"],
            "flops_scoring": spent["learner_scoring"] + spent["pairwise"],
            "flops_reference": spent["reference"],
            "flops_spent": self.ledger.total,
            "flops_reference_one_off": one_off,
            "flops_all_in": self.ledger.total + one_off,
            "flops_evaluation": self.ledger.evaluation_flops,
            "wall_time": p.wall_time,
            "loss": p.loss_sum / p.loss_steps if p.loss_steps else float("nan"),
            **{name: value for name, value in evaluation.scores.as_dict().items()},
            "selected_repeats": p.selected_repeats,
            "super_repeats": p.super_repeats,
            "config_hash": c.run_id,
            "bytes_communicated": self.ranks.communication.total,
            **provenance(),
            **self.execution,
        }
        for kind in NOISE_KINDS:
            row[f"selected_{kind}"] = p.selected_noise.get(kind, 0)
            row[f"super_{kind}"] = p.super_noise.get(kind, 0)
        return row

    def save(self) -> None:
        self.run_file.summary = {
            "steps": self.ledger.steps,
            "flops": self.ledger.state_dict(),
            "predicted_step_flops": self.predicted.by_kind(),
            "wall_time": self.progress.wall_time,
            "evaluations": self.progress.evaluations,
            "resumed": self.resumed,
            "communication_bytes": self.ranks.communication.state_dict(),
        }
        if self.ranks.is_main:
            self.run_file.save(self.work_dir)


def train(
    config: RunConfig,
    work_dir: Path,
    *,
    show_progress: bool = True,
    on_evaluation: EvaluationCallback | None = None,
    checkpoint_seconds: float = 60.0,
) -> TrainResult:
    """Run (or resume) ``config`` to its budget; the run file and checkpoints go under ``work_dir``.

    ``on_evaluation(k, evaluations)`` is called after evaluation ``k`` (0 is the untrained model); it
    may raise to stop the run (the tuner's pruner does), leaving the run resumable. A run that is
    already complete is not trained again: its record and final model are returned.
    """
    if model_path(work_dir, config.run_id).exists():
        done = RunFile.load_complete(work_dir, config.run_id)
        if done is not None:
            return TrainResult(done, load_trained_model(work_dir, config.run_id))
    run = Run(config, work_dir, checkpoint_seconds)
    stream = run.stream()
    every = config.eval_every * run.budget_flops
    bar = tqdm(
        total=run.budget_flops,
        initial=run.ledger.total,
        unit="FLOP",
        unit_scale=True,
        desc=f"{config.strategy} seed {config.seed}",
        disable=None if show_progress and run.ranks.is_main else True,  # None: on a terminal, not in a log
        dynamic_ncols=True,
    )
    started = time.monotonic() - run.progress.wall_time
    last_checkpoint = time.monotonic()
    last_mean = float("nan")

    def evaluate() -> None:
        nonlocal last_mean, last_checkpoint
        evaluations = run.evaluate(stream.pool_size)
        run.progress.wall_time = time.monotonic() - started
        run.checkpoint()
        last_checkpoint = time.monotonic()
        run.save()
        last_mean = next((e.scores.mean for e in evaluations if e.split == config.eval_splits[0]), last_mean)
        if on_evaluation is not None:
            on_evaluation(run.progress.evaluations - 1, evaluations)

    try:
        if run.progress.evaluations == 0:
            evaluate()
        else:
            run.save()
        batches = iter(stream)
        while run.ledger.fits(run.predicted):
            cost = run.step(next(batches))
            run.predicted = cost  # the next step's cost is this one's: the stop rule and the schedule use it
            bar.update(cost.total)
            bar.set_postfix(
                examples=run.progress.examples_seen,
                loss=f"{run.progress.last_loss:.3f}",
                score=f"{last_mean:.3f}",
            )
            run.progress.wall_time = time.monotonic() - started
            if run.ledger.total >= every * run.progress.evaluations:
                evaluate()
            elif run.ranks.agree(time.monotonic() - last_checkpoint > checkpoint_seconds):
                run.checkpoint()
                last_checkpoint = time.monotonic()
        final = bool(run.run_file.rows) and run.run_file.rows[-1]["steps"] != run.ledger.steps
        if run.ledger.steps and run.ranks.agree(final):  # rank 0 holds the rows
            evaluate()
    except NonFiniteError as err:
        run.run_file.status = "failed"
        run.run_file.error = f"stopped at step {run.ledger.steps + 1}: {err}"
        run.save()
        bar.close()
        raise TrainingError(f"run {config.run_id} {run.run_file.error}; its rows so far are kept") from err
    bar.close()
    if run.ranks.is_main:
        atomic_torch_save(
            model_path(work_dir, config.run_id),
            {"config": dataclasses.asdict(run.model.config), "state": run.model.state_dict()},
        )
        run.run_file.status = "complete"
        run.save()
        run.checkpoint_path.unlink(missing_ok=True)
    run.ranks.close()
    return TrainResult(run.run_file, run.model)
