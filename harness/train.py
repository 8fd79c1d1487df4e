"""The one training loop: a learner trained under a fixed FLOP budget, the strategy the only variable.

Each step (docs/DESIGN.md §4, JEST paper §3 and Algorithm 2):

1. stream a super-batch of ``B = round(b / (1 - f))`` samples from the raw pool;
2. build the strategy's view of it: learner embeddings computed on demand without gradients at the
   resolution the strategy declares, reference embeddings from the cache; nothing the strategy does
   not declare is computed;
3. select ``b`` indices, and train on them, split across the resolutions of the strategy's training
   plan (Flexi-JEST: half at the full, half at the coarse patch size);
4. charge the ledger what ran; stop when the next step would exceed the budget.

The schedule (warm-up, then cosine decay) runs over the *budget*, not over steps, so strategies
whose steps cost more take fewer of them and still finish their schedule. A budget in trained examples
(the equal-examples track) stops, schedules and evaluates on examples instead; FLOPs are charged all
the same. Evaluations happen at a
fraction of the budget and at the end; each writes the run file and a checkpoint, and a checkpoint
is also written every ``checkpoint_seconds``, so a killed run resumes where it stopped and ends with
the same metrics as an uninterrupted one (the data order is a pure function of seed and position).

Steps 2 to 4 are :mod:`harness.step`; this module resumes, checkpoints, evaluates and saves.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.data import RECORDED_NOISE_KINDS, LeftOut
from harness.errors import UserError
from harness.evaluate import Evaluation, Evaluator
from harness.models import DualEncoder
from harness.probe import open_probe
from harness.progress import Reporter, stage
from harness.records import RunFile, atomic_torch_save, load_trained_model, model_path, provenance
from harness.runconfig import RunConfig, TrainingError
from harness.step import Stepper, StrategyFailedError
from strategies import StrategyError

EvaluationCallback = Callable[[int, list[Evaluation]], None]


# A row's left_out_<cause> columns: LeftOut's counts but the samples read.
LEFT_OUT_CAUSES = tuple(f.name for f in dataclasses.fields(LeftOut) if f.name != "usable")


class RunStopped(Exception):
    """Raised on the other ranks of a distributed run whose rank 0 ``on_evaluation`` stopped it."""


class _Stopped(Exception):
    """Carries an exception raised by ``on_evaluation``: the caller stopped the run, it did not fail."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


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
        self.run_file.provenance.update(self.strategy_provenance())
        self.resumed = self._resume()
        # Rank 0 evaluates, probes and writes; the other ranks of a distributed run only train.
        self.evaluator = (
            Evaluator(
                self.dataset,
                config.eval_splits,
                seed=config.seed,
                on_bad_sample=config.on_bad_sample,  # type: ignore[arg-type]  # RunConfig checks the value
            )
            if self.ranks.is_main
            else None
        )
        self.probe = (
            open_probe(
                self.dataset,
                work_dir,
                config.reference,
                cached=config.reference_cached,
                on_bad_sample=config.on_bad_sample,  # type: ignore[arg-type]
            )
            if self.ranks.is_main
            else None
        )

    def strategy_provenance(self) -> dict[str, Any]:
        """Which code the strategy ran: a plugin's distribution, version and source hash, else jestbench."""
        plugin = self.config.plugin or {}
        return {
            "strategy_distribution": plugin.get("distribution", "jestbench"),
            "strategy_version": plugin.get("version", provenance()["jestbench_version"]),
            "strategy_source_sha256": plugin.get("source_sha256"),
        }

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
        if not hasattr(state["progress"], "by_eighth"):
            raise TrainingError(
                f"checkpoint {self.checkpoint_path} was written by an older jestbench that did not count "
                "the selection per eighth of the budget; delete it to train the run again from the start"
            )
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
        evaluations: list[Evaluation] = []
        probe: dict[str, Any] = {}
        if self.evaluator is not None and self.probe is not None:  # rank 0
            evaluations = self.evaluator.evaluate(self.model, self.flops)
            probe, probe_flops = self.probe.measure(self.model, self.flops)
            self.ledger.record_evaluation(probe_flops)
        for evaluation in evaluations:
            self.ledger.record_evaluation(evaluation.flops)
            self.run_file.rows.append({**self._row(evaluation, pool_size), **probe})
        self.progress.evaluations += 1
        self.progress.loss_sum, self.progress.loss_steps = 0.0, 0
        return evaluations

    def _row(self, evaluation: Evaluation, pool_size: int) -> dict[str, Any]:
        c, p, spent = self.config, self.progress, self.ledger.spent
        one_off, reference_score, reference_seed = 0, None, None
        if self.reference is not None:
            one_off = int(self.reference["training_flops"]) + int(self.reference["pool_embedding_flops"])
            reference_score = self.reference["scores"].get(evaluation.split, {}).get("mean")
            reference_seed = self.reference["seed"]
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
            "flops_scoring": spent["learner_scoring"] + spent["pairwise"] + spent["selection"],
            "flops_selection": spent["selection"],
            "flops_reference": spent["reference"],
            "flops_spent": self.ledger.total,
            "flops_reference_one_off": one_off,
            "flops_all_in": self.ledger.total + one_off,
            "reference_score": reference_score,
            "reference_seed": reference_seed,
            "flops_evaluation": self.ledger.evaluation_flops,
            "wall_time": p.wall_time,
            "loss": p.loss_sum / p.loss_steps if p.loss_steps else float("nan"),
            **{name: value for name, value in evaluation.scores.as_dict().items()},
            "selected_repeats": p.selected_repeats,
            "super_repeats": p.super_repeats,
            "selection_by_eighth": json.dumps(p.eighths()),
            "config_hash": c.run_id,
            "bytes_communicated": self.ranks.communication.total,
            **provenance(),
            **self.strategy_provenance(),
            **self.execution,
        }
        for kind in RECORDED_NOISE_KINDS:
            row[f"selected_{kind}"] = p.selected_noise.get(kind, 0)
            row[f"super_{kind}"] = p.super_noise.get(kind, 0)
        left_out = self.dataset.left_out().get(c.split, {})
        for cause in LEFT_OUT_CAUSES:  # what reading the pool left out so far (--on-bad-sample skip)
            row[f"left_out_{cause}"] = left_out.get(cause, 0)
        return row

    def fail(self, err: Exception) -> None:
        """Record why the run stopped: the run file says ``failed`` with the error, and keeps the
        traceback of one that is not the user's to fix or that came from the strategy's own code."""
        known = isinstance(err, UserError | StrategyError)
        self.run_file.status = "failed"
        self.run_file.error = f"stopped at step {self.ledger.steps + 1}: " + (
            str(err) if known else f"{type(err).__name__}: {err}"
        )
        self.save()
        if self.ranks.is_main and (not known or isinstance(err, StrategyFailedError)):
            self.run_file.summary["traceback"] = "".join(traceback.format_exception(err))
            self.run_file.save(self.work_dir)

    def save(self) -> None:
        self.run_file.summary = {
            "steps": self.ledger.steps,
            "flops": self.ledger.state_dict(),
            "predicted_step_flops": self.predicted.by_kind(),
            "wall_time": self.progress.wall_time,
            "evaluations": self.progress.evaluations,
            "resumed": self.resumed,
            "communication_bytes": self.ranks.communication.state_dict(),
            "left_out": self.dataset.left_out(),  # the whole pool, indexed alike by every rank
        }
        if self.ranks.is_main:
            self.run_file.save(self.work_dir)

    def report_left_out(self) -> None:
        """Say, per split, what reading it left out (damaged, lost, empty or cut shards): a run under
        ``--on-bad-sample skip`` never loses samples silently."""
        for split in self.dataset.left_out():
            counts = self.dataset.left_out_counts(split)
            if counts is not None and counts.anything:
                print(f"run {self.config.run_id}: {split}: left out {counts.describe()}", file=sys.stderr)


def train(
    config: RunConfig,
    work_dir: Path,
    *,
    show_progress: bool = True,
    on_evaluation: EvaluationCallback | None = None,
    checkpoint_seconds: float = 60.0,
) -> TrainResult:
    """Run (or resume) ``config`` to its budget; the run file and checkpoints go under ``work_dir``.

    ``on_evaluation(k, evaluations)`` is called after evaluation ``k`` (0 is the untrained model), on
    rank 0 alone in a distributed run (the other ranks' is not called); it may raise to stop the run (the tuner's pruner does), leaving
    the run resumable: the other ranks then raise :class:`RunStopped`. A run that is
    already complete is not trained again: its record and final model are returned.
    """
    if model_path(work_dir, config.run_id).exists():
        done = RunFile.load_complete(work_dir, config.run_id)
        if done is not None:
            return TrainResult(done, load_trained_model(work_dir, config.run_id))
    run = Run(config, work_dir, checkpoint_seconds)
    stream = run.stream()
    every = config.eval_every * run.ledger.limit  # in the budget's unit: FLOPs or trained examples
    resuming = f", resuming at step {run.ledger.steps}" if run.resumed else ""
    flops = f" = {run.budget_flops:.4g} FLOPs" if run.budget_flops is not None else ""
    shown = show_progress and run.ranks.is_main  # rank 0 alone reports a distributed run
    stage(
        f"training run {config.run_id}: {config.strategy} seed {config.seed} on {config.split}, "
        f"{config.budget}{flops}{resuming}",
        enabled=shown,
    )
    reporter = Reporter(
        run.ledger.limit,
        f"{config.strategy} seed {config.seed}",
        run.ledger.unit,
        initial=run.ledger.used,
        enabled=shown,
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
        stop: Exception | None = None
        if on_evaluation is not None and run.ranks.is_main:  # rank 0 holds the evaluations
            try:
                on_evaluation(run.progress.evaluations - 1, evaluations)
            except Exception as err:  # the caller's stop (a pruned trial): the run stays resumable
                stop = err
        if run.ranks.agree(stop is not None):  # every rank stops with rank 0
            raise _Stopped(stop or RunStopped(f"rank 0 stopped run {config.run_id}"))

    try:
        if run.progress.evaluations == 0:
            evaluate()
        else:
            run.save()
        batches = iter(stream)
        while run.ledger.fits(run.predicted):
            cost = run.step(next(batches))
            run.predicted = cost  # the next step's cost is this one's: the stop rule and the schedule use it
            reporter.update(
                run.ledger.measure(cost),
                step=run.ledger.steps,
                loss=f"{run.progress.last_loss:.3f}",
                score=f"{last_mean:.3f}",
            )
            run.progress.wall_time = time.monotonic() - started
            if run.ledger.used >= every * run.progress.evaluations:
                evaluate()
            elif run.ranks.agree(time.monotonic() - last_checkpoint > checkpoint_seconds):
                run.checkpoint()
                last_checkpoint = time.monotonic()
        final = bool(run.run_file.rows) and run.run_file.rows[-1]["steps"] != run.ledger.steps
        if run.ledger.steps and run.ranks.agree(final):  # rank 0 holds the rows
            evaluate()
    except _Stopped as stopped:
        raise stopped.error from None
    except Exception as err:
        run.fail(err)
        if isinstance(err, UserError | StrategyError):
            raise TrainingError(
                f"run {config.run_id} {run.run_file.error}; its rows so far are kept"
            ) from err
        raise
    finally:
        reporter.close()
    if run.ranks.is_main:
        atomic_torch_save(
            model_path(work_dir, config.run_id),
            {"config": dataclasses.asdict(run.model.config), "state": run.model.state_dict()},
        )
        run.report_left_out()
        run.run_file.status = "complete"
        run.save()
        run.checkpoint_path.unlink(missing_ok=True)
    run.ranks.close()
    return TrainResult(run.run_file, run.model)
