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
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from harness.batching import BatchShape
from harness.cost import Budget, CostModel, Ledger, StepCost, UniformStep
from harness.data import NOISE_KINDS, SuperBatch, SuperBatchStream, open_dataset
from harness.errors import UserError
from harness.evaluate import Evaluation, Evaluator
from harness.finite import NonFiniteError, require_finite
from harness.flops import ModelFlops, model_flops
from harness.losses import sigmoid_loss
from harness.models import DualEncoder, ModelConfig, build_model
from harness.records import RunFile, atomic_torch_save, config_hash, provenance
from harness.view import EmbeddingView
from strategies import Embeddings, TrainingPlan, ValidatedStrategy, default_registry

EvaluationCallback = Callable[[int, list[Evaluation]], None]


class TrainingError(UserError):
    """A run that cannot start or cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class OptimConfig:
    """Adam with the JEST paper's β2 = 0.95 (appendix A.2), warm-up then cosine decay over the budget,
    gradient clipping, and weight decay as big_vision applies it: decoupled, scaled by the schedule
    but not by the learning rate, on weight matrices only (``torch.optim.AdamW`` gets
    ``weight_decay / learning_rate``; biases, norms, embeddings, logit scale and bias are excluded).

    The logit scale and bias learn at ``scale_bias_lr`` times the rate: SigLIP's init was made for
    runs of tens of thousands of steps, and at a few hundred steps with one shared rate they barely
    move from it (DESIGN §2, §5)."""

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
            "learning_rate": self.learning_rate > 0,
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
                raise TrainingError(f"optimiser setting {name}={value!r} is out of range")


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's result; its hash is the run's id.

    ``budget`` is as the user gave it (``"400 steps"`` of uniform at ``b``, or FLOPs); ``reference`` is
    the hash of the reference whose cached embeddings score the pool (``jestbench reference train``).
    ``tuned`` names the study whose best parameters this run re-runs at a fresh seed (``jestbench tune
    --rerun-best``): leaderboards show such rows as tuned, apart from the same parameters chosen by hand.
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

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["params"] = dict(sorted(self.params.items()))
        data["eval_splits"] = list(self.eval_splits)
        if self.tuned is None:  # left out, so that every run id from before the field existed holds
            del data["tuned"]
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


@dataclass
class _Progress:
    """What the loop has done so far: checkpointed with the model, so a resumed run continues it."""

    super_batches: int = 0
    examples_seen: int = 0
    examples_scored: int = 0
    evaluations: int = 0
    wall_time: float = 0.0
    last_loss: float = float("nan")
    loss_sum: float = 0.0  # training losses since the last evaluation, for its row's mean
    loss_steps: int = 0
    selected_noise: Counter[str] = field(default_factory=Counter)
    super_noise: Counter[str] = field(default_factory=Counter)
    selected_repeats: int = 0
    super_repeats: int = 0


@dataclass
class TrainResult:
    """A finished run: its record and the trained model."""

    run: RunFile
    model: DualEncoder


def model_path(work_dir: Path, run_id: str) -> Path:
    """Where a complete run keeps its final weights (with the model config that rebuilds them)."""
    return work_dir / "models" / f"{run_id}.pt"


def load_trained_model(work_dir: Path, run_id: str) -> DualEncoder:
    """The final model of complete run ``run_id``, in eval mode."""
    saved = torch.load(model_path(work_dir, run_id), weights_only=True)
    model = DualEncoder(ModelConfig(**saved["config"]))
    model.load_state_dict(saved["state"])
    model.eval()
    return model


def learning_rate(progress: float, optim: OptimConfig) -> float:
    """Linear warm-up to the peak over ``warmup`` of the budget, then cosine decay to zero at its end."""
    if progress < optim.warmup:
        return optim.learning_rate * progress / optim.warmup
    span = (min(progress, 1.0) - optim.warmup) / (1.0 - optim.warmup)
    return optim.learning_rate * 0.5 * (1.0 + math.cos(math.pi * span))


def make_optimizer(model: DualEncoder, optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW with decay on the weight matrices of linear layers and the patch embedding only, and the
    logit scale and bias in a group of their own with a faster rate (``lr_scale`` of each group)."""
    decay_names = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    decay_names.add("image.patch_weight")
    groups: dict[str, list[torch.nn.Parameter]] = {"decay": [], "no_decay": [], "scale_bias": []}
    for name, parameter in model.named_parameters():
        if name in ("logit_scale", "logit_bias"):
            groups["scale_bias"].append(parameter)
        else:
            groups["decay" if name in decay_names else "no_decay"].append(parameter)
    return torch.optim.AdamW(
        [
            {
                "params": groups["decay"],
                "weight_decay": optim.weight_decay / optim.learning_rate,
                "lr_scale": 1.0,
            },
            {"params": groups["no_decay"], "weight_decay": 0.0, "lr_scale": 1.0},
            {"params": groups["scale_bias"], "weight_decay": 0.0, "lr_scale": optim.scale_bias_lr},
        ],
        lr=optim.learning_rate,
        betas=(optim.beta1, optim.beta2),
        eps=optim.eps,
    )


def train_step(
    model: DualEncoder,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    tokens: torch.Tensor,
    plan: TrainingPlan,
    grad_clip: float,
) -> float:
    """One optimiser step on the selected sub-batch: its equal parts trained at the plan's
    resolutions, each part its own contrastive batch (Flexi-JEST's halves, paper Algorithm 2)."""
    optimizer.zero_grad(set_to_none=True)
    parts = len(plan.resolutions)
    total = torch.zeros(())
    for resolution, part_images, part_tokens in zip(
        plan.resolutions, images.chunk(parts), tokens.chunk(parts), strict=True
    ):
        patch = model.patch_embedding(resolution)
        image = model.encode_image(part_images, resolution, patch=patch)
        text = model.encode_text(part_tokens)
        scale, bias = model.scale_bias()
        total = total + sigmoid_loss(image, text, scale, bias) * (len(part_images) / len(images))
    require_finite(total, "the training loss")
    torch.autograd.backward(total)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return float(total.detach())


def _repeats(captions: list[str]) -> int:
    """Captions in a batch that repeat an earlier one: in-batch false negatives for the loss."""
    return len(captions) - len(set(captions))


class Run:
    """One run's state and its steps; :func:`train` drives it."""

    def __init__(self, config: RunConfig, work_dir: Path, checkpoint_seconds: float) -> None:
        self.config = config
        self.work_dir = work_dir
        self.checkpoint_seconds = checkpoint_seconds
        self.checkpoint_path = work_dir / "checkpoints" / f"{config.run_id}.pt"
        self.dataset = open_dataset(Path(config.dataset))
        self.strategy: ValidatedStrategy = default_registry().get_strategy(config.strategy, **config.params)
        self.shape = BatchShape.from_filter_ratio(config.batch_size, config.filter_ratio)
        self.strategy.check_sizes(self.shape.batch_size, self.shape.super_batch_size)
        self.needs = self.strategy.needs

        torch.manual_seed(config.seed)
        self.model = build_model(
            config.preset,
            vocab_size=self.dataset.tokenizer.vocab_size,
            image_size=self.dataset.image_size,
            channels=self.dataset.channels,
            context_length=self.dataset.context_length,
        )
        self.flops: ModelFlops = model_flops(self.model.config)
        self.reference = self._reference_record()
        self.reference_model = self._reference_model()
        self.cost = CostModel(self.flops, reference_cached=config.reference_cached)
        unit = UniformStep.of(self.cost, self.shape.batch_size)
        self.budget_flops = Budget.parse(config.budget).to_flops(unit)
        self.predicted = self.cost.strategy_step_cost(self.strategy, self.shape)
        if self.predicted.total > self.budget_flops:
            raise TrainingError(
                f"the budget of {self.budget_flops:.4g} FLOPs is smaller than one step of "
                f"{config.strategy} at b={self.shape.batch_size}, B={self.shape.super_batch_size}: "
                f"the minimum is {self.predicted.total:.4g} FLOPs "
                f"({unit.to_steps(self.predicted.total):.3g} uniform-equivalent steps)"
            )
        self.optimizer = make_optimizer(self.model, config.optim)
        self.ledger = Ledger(self.budget_flops)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.progress = _Progress()
        self.run_file = RunFile(config.run_id, config.to_dict())
        self.resumed = self._resume()
        self.evaluator = Evaluator(self.dataset, config.eval_splits, seed=config.seed)

    # -- setup -------------------------------------------------------------------------------

    def _reference_record(self) -> dict[str, Any] | None:
        from harness.reference import load_reference_record

        if not self.needs.reference:
            return None
        if self.config.reference is None:
            raise TrainingError(
                f"strategy {self.config.strategy!r} needs reference embeddings and this run names no "
                f"reference; train one with `jestbench reference train --data {self.config.dataset}` "
                "and pass its hash with --reference"
            )
        return load_reference_record(self.work_dir, self.config.reference)

    def _reference_model(self) -> DualEncoder | None:
        from harness.reference import load_reference_model

        if self.reference is None or self.config.reference_cached:
            return None
        return load_reference_model(self.work_dir, self.reference)

    def stream(self) -> SuperBatchStream:
        cached = self.needs.reference and self.config.reference_cached
        return SuperBatchStream(
            self.dataset,
            self.config.split,
            self.shape.super_batch_size,
            seed=self.config.seed,
            start=self.progress.super_batches,
            on_bad_sample=self.config.on_bad_sample,  # type: ignore[arg-type]
            reference_hash=self.config.reference if cached else None,
            reference_dim=self.reference["embed_dim"] if cached and self.reference else None,
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
        self.generator.set_state(state["generator"])
        self.predicted = state["predicted"]
        self.progress = state["progress"]
        self.run_file.rows = state["rows"]
        return True

    def checkpoint(self) -> None:
        atomic_torch_save(
            self.checkpoint_path,
            {
                "run_id": self.config.run_id,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "ledger": self.ledger.state_dict(),
                "generator": self.generator.get_state(),
                "predicted": self.predicted,
                "progress": self.progress,
                "rows": self.run_file.rows,
            },
        )

    # -- the step ----------------------------------------------------------------------------

    def view(self, batch: SuperBatch) -> EmbeddingView:
        """The strategy's view: only what it declared, computed when first asked."""
        learner: Callable[[], Embeddings] | None = None
        reference: Embeddings | Callable[[], Embeddings] | None = None
        if self.needs.learner:
            resolution = self.needs.learner_resolution

            def score_learner() -> Embeddings:
                return self.model.embeddings(batch.images, batch.tokens, resolution)

            learner = score_learner

        if self.needs.reference:
            if self.reference_model is not None:
                model = self.reference_model

                def score_reference() -> Embeddings:
                    return model.embeddings(batch.images, batch.tokens, "full")

                reference = score_reference

            else:
                reference = batch.reference
        return EmbeddingView(learner, reference, size=len(batch))

    def step(self, batch: SuperBatch) -> StepCost:
        view = self.view(batch)
        index = self.strategy.select(view, self.shape.batch_size, self.generator)
        rate = learning_rate(
            (self.ledger.total + self.predicted.total) / self.budget_flops, self.config.optim
        )
        for group in self.optimizer.param_groups:
            group["lr"] = rate * group["lr_scale"]
        loss = train_step(
            self.model,
            self.optimizer,
            batch.images[index],
            batch.tokens[index],
            self.strategy.training,
            self.config.optim.grad_clip,
        )
        self.progress.last_loss = loss
        self.progress.loss_sum += loss
        self.progress.loss_steps += 1
        cost = self.cost.step_cost(
            self.needs, self.strategy.training, self.shape, pairwise=view.pairwise_macs
        )
        self.ledger.charge(cost)
        p = self.progress
        p.super_batches += 1
        p.examples_seen += self.shape.batch_size
        p.examples_scored += len(batch)
        selected = index.tolist()
        p.selected_noise.update(batch.noise[i] for i in selected)
        p.super_noise.update(batch.noise)
        p.selected_repeats += _repeats([batch.captions[i] for i in selected])
        p.super_repeats += _repeats(batch.captions)
        return cost

    # -- evaluation and records --------------------------------------------------------------

    def evaluate(self, pool_size: int) -> list[Evaluation]:
        evaluations = self.evaluator.evaluate(self.model, self.flops)
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
            **provenance(),
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
        }
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
        disable=None if show_progress else True,  # None: shown on a terminal, not in a log file
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
            elif time.monotonic() - last_checkpoint > checkpoint_seconds:
                run.checkpoint()
                last_checkpoint = time.monotonic()
        if run.ledger.steps and run.run_file.rows and run.run_file.rows[-1]["steps"] != run.ledger.steps:
            evaluate()
    except NonFiniteError as err:
        run.run_file.status = "failed"
        run.run_file.error = f"stopped at step {run.ledger.steps + 1}: {err}"
        run.save()
        bar.close()
        raise TrainingError(f"run {config.run_id} {run.run_file.error}; its rows so far are kept") from err
    bar.close()
    atomic_torch_save(
        model_path(work_dir, config.run_id),
        {"config": dataclasses.asdict(run.model.config), "state": run.model.state_dict()},
    )
    run.run_file.status = "complete"
    run.save()
    run.checkpoint_path.unlink(missing_ok=True)
    return TrainResult(run.run_file, run.model)
