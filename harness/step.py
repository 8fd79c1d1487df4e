"""The work of one step: the strategy's view of a super-batch, its selection, the optimiser step at
the learning rate the budget spent so far gives, and the ledger charged what ran.

:class:`Stepper` holds what a step touches (the learner, its optimiser, the strategy, the reference,
the ledger and the counts); :class:`harness.train.Run` adds resuming, checkpoints, evaluations and the
run file, and :func:`harness.train.train` drives it to the budget.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.batching import BatchShape
from harness.cost import Budget, CostModel, StepCost, UniformStep
from harness.data import NOISE_KINDS, SuperBatch, SuperBatchStream, open_dataset
from harness.device import autocast, check_precision, describe, embeddings_to, fp32_loss, to_device
from harness.distributed import Loss, Ranks, check_layout
from harness.errors import UserError
from harness.finite import require_finite
from harness.flops import ModelFlops, model_flops
from harness.losses import sigmoid_loss
from harness.models import DualEncoder, build_model
from harness.records import strategy_identity
from harness.reference_store import check_reference_cache, load_reference_model, load_reference_record
from harness.runconfig import OptimConfig, RunConfig, TrainingError
from harness.view import EmbeddingView, select_counted
from strategies import (
    Embeddings,
    Resolution,
    StrategyError,
    TrainingPlan,
    ValidatedStrategy,
    default_registry,
)

EIGHTHS = 8  # the mechanism check's resolution over training (docs/RESULTS.md)


@dataclass
class Progress:
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
    # The same counts (and steps) per eighth of the budget, by the FLOPs spent when the step began.
    by_eighth: list[Counter[str]] = field(default_factory=lambda: [Counter() for _ in range(EIGHTHS)])

    def eighths(self) -> list[dict[str, int]]:
        """``by_eighth`` with every count spelled out (zeros included): a row's ``selection_by_eighth``."""
        names = ["steps", "selected_repeats", "super_repeats"]
        names += [f"{side}_{kind}" for side in ("selected", "super") for kind in NOISE_KINDS]
        return [{name: counts.get(name, 0) for name in names} for counts in self.by_eighth]


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


def step_loss(
    model: DualEncoder,
    images: torch.Tensor,
    tokens: torch.Tensor,
    plan: TrainingPlan,
    loss: Loss = sigmoid_loss,
) -> torch.Tensor:
    """The loss of the selected sub-batch: its equal parts trained at the plan's resolutions, each
    part its own contrastive batch (Flexi-JEST's halves, paper Algorithm 2). ``loss`` is one part's
    (a distributed run's gathers the other ranks' texts, :mod:`harness.distributed`)."""
    parts = len(plan.resolutions)
    total = torch.zeros((), device=images.device)
    for resolution, part_images, part_tokens in zip(
        plan.resolutions, images.chunk(parts), tokens.chunk(parts), strict=True
    ):
        patch = model.patch_embedding(resolution)
        image = model.encode_image(part_images, resolution, patch=patch)
        text = model.encode_text(part_tokens)
        scale, bias = model.scale_bias()
        total = total + loss(image, text, scale, bias) * (len(part_images) / len(images))
    return total


def train_step(
    model: DualEncoder,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    tokens: torch.Tensor,
    plan: TrainingPlan,
    grad_clip: float,
    *,
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """One optimiser step on the selected sub-batch; ``forward(images, tokens)`` computes its loss
    (default :func:`step_loss`; the loop's runs under DDP and autocast when those are asked for)."""
    optimizer.zero_grad(set_to_none=True)
    total = step_loss(model, images, tokens, plan) if forward is None else forward(images, tokens)
    require_finite(total, "the training loss")
    torch.autograd.backward(total)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return float(total.detach())


class StrategyFailedError(TrainingError):
    """A strategy's own code raised: the message names the strategy and its error (its traceback is
    kept in the run file's summary)."""


@contextmanager
def blaming(strategy: str, when: str) -> Iterator[None]:
    """Turn an exception from inside ``strategy``'s code into a :class:`StrategyFailedError` naming
    it; the harness's own errors (already a :class:`UserError` or :class:`StrategyError`) pass as they are."""
    try:
        yield
    except (UserError, StrategyError):
        raise
    except Exception as err:
        raise StrategyFailedError(
            f"strategy {strategy!r} raised {type(err).__name__}: {err} ({when})"
        ) from err


def _repeats(captions: list[str]) -> int:
    """Captions in a batch that repeat an earlier one: in-batch false negatives for the loss."""
    return len(captions) - len(set(captions))


class Stepper:
    """One run's learner, optimiser, strategy, reference and ledger, and its step."""

    def __init__(self, config: RunConfig, work_dir: Path) -> None:
        self.config = config
        self.work_dir = work_dir
        self.dataset = open_dataset(Path(config.dataset))
        self.dataset.check_id(config.dataset_id)  # shards changed since the run id was made: refused
        self.strategy: ValidatedStrategy = default_registry().get_strategy(config.strategy, **config.params)
        installed = strategy_identity(config.strategy)
        if config.plugin != installed:
            raise TrainingError(
                f"this run was configured for plugin {dict(config.plugin or {})} and the installed "
                f"strategy {config.strategy!r} is {dict(installed or {})}; make the run's config again "
                "(rerun the command) to train with the installed code"
            )
        self.shape = BatchShape.from_filter_ratio(config.batch_size, config.filter_ratio)
        b, big_b = self.shape.batch_size, self.shape.super_batch_size
        check_precision(config.precision, config.device)
        check_layout(
            config.world_size, config.selection_scope, b, big_b, len(self.strategy.training.resolutions)
        )
        if config.pool != "all" and (self.strategy.needs.learner or self.strategy.needs.reference):
            # The cost model charges scoring over B; a filtered super-batch would be overcharged.
            raise TrainingError(
                f"pool={config.pool!r} is for strategies that score nothing (the clean-only oracle is "
                f"uniform over the clean pairs); {config.strategy!r} scores its super-batch"
            )
        if config.pool != "all" and config.world_size > 1 and config.selection_scope == "global":
            # Each rank's share holds its own number of clean samples: a global selection over them
            # would gather shares of unequal sizes.
            raise TrainingError(
                f"pool={config.pool!r} over {config.world_size} ranks needs local selection: "
                "pass --selection-scope local (each rank then draws b/K of its own clean samples)"
            )
        self.ranks = Ranks(config.world_size, config.selection_scope, config.device)
        self.device = self.ranks.device
        self.strategy.check_sizes(self.ranks.selection_size(b), self.ranks.view_size(self.ranks.share(big_b)))
        self.needs = self.strategy.needs
        self.execution = {
            "device": config.device,
            "device_name": describe(self.device),
            "precision": config.precision,
            "world_size": config.world_size,
            "selection_scope": config.selection_scope,
        }

        torch.manual_seed(config.seed)
        self.model = build_model(
            config.preset,
            vocab_size=self.dataset.tokenizer.vocab_size,
            image_size=self.dataset.image_size,
            channels=self.dataset.channels,
            context_length=self.dataset.context_length,
        ).to(self.device)
        self.flops: ModelFlops = model_flops(self.model.config)
        self.reference = self._reference_record()
        self.reference_model = self._reference_model()
        self.cost = CostModel(self.flops, reference_cached=config.reference_cached)
        unit = UniformStep.of(self.cost, self.shape.batch_size)
        self.ledger = Budget.parse(config.budget).ledger(unit, self.shape.batch_size)
        self.budget_flops = self.ledger.budget_flops  # None for a budget in examples
        with blaming(config.strategy, "selecting once on random embeddings to predict a step's cost"):
            self.predicted = self.cost.strategy_step_cost(self.strategy, self.shape)
        if not self.ledger.fits(self.predicted):
            minimum = (
                f"{self.predicted.total:.4g} FLOPs ({unit.to_steps(self.predicted.total):.3g} uniform-equivalent steps)"
                if self.budget_flops is not None
                else f"{self.shape.batch_size} examples"
            )
            raise TrainingError(
                f"the budget of {self.ledger.limit:.4g} {self.ledger.unit}s is smaller than one step of "
                f"{config.strategy} at b={self.shape.batch_size}, B={self.shape.super_batch_size}: "
                f"the minimum is {minimum}"
            )
        self.optimizer = make_optimizer(self.model, config.optim)
        self.contrastive_loss = fp32_loss(self.ranks.contrastive_loss, self.device, config.precision)
        self.forward = self.ranks.training_forward(self.model, self._loss)
        self.generator = self.ranks.generator(config.seed)
        self.progress = Progress()

    # -- setup -------------------------------------------------------------------------------

    def _reference_record(self) -> dict[str, Any] | None:
        if not self.needs.reference:
            return None
        if self.config.reference is None:
            raise TrainingError(
                f"strategy {self.config.strategy!r} needs reference embeddings and this run names no "
                f"reference; train one with `jestbench reference train --data {self.config.dataset}` "
                "and pass its id with --reference"
            )
        record = load_reference_record(self.work_dir, self.config.reference)
        if self.config.reference_cached:
            check_reference_cache(self.dataset, record)
        return record

    def _reference_model(self) -> DualEncoder | None:
        if self.reference is None or self.config.reference_cached:
            return None
        return load_reference_model(self.work_dir, self.reference).to(self.device)

    def stream(self) -> SuperBatchStream:
        cached = self.needs.reference and self.config.reference_cached
        return SuperBatchStream(
            self.dataset,
            self.config.split,
            self.ranks.share(self.shape.super_batch_size),
            seed=self.config.seed,
            start=self.progress.super_batches,
            on_bad_sample=self.config.on_bad_sample,  # type: ignore[arg-type]
            rank=self.ranks.rank,
            world_size=self.ranks.world_size,
            reference_hash=self.config.reference if cached else None,
            reference_dim=self.reference["embed_dim"] if cached and self.reference else None,
        )

    # -- the step ----------------------------------------------------------------------------

    def _loss(self, model: DualEncoder, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.config.precision):
            return step_loss(model, images, tokens, self.strategy.training, self.contrastive_loss)

    def _score(self, model: DualEncoder, batch: SuperBatch, resolution: Resolution) -> Embeddings:
        """A model's embeddings of this rank's share of the super-batch, without gradients."""
        with autocast(self.device, self.config.precision):
            embeddings = model.embeddings(
                to_device(batch.images, self.device), to_device(batch.tokens, self.device), resolution
            )
        return embeddings_to(embeddings, self.device)

    def offered(self, batch: SuperBatch) -> SuperBatch:
        """What the strategy chooses from: the super-batch, or with ``pool="clean"`` its samples whose
        recorded noise kind is ``clean`` (the clean-only oracle; a pure function of the batch, so a
        resumed run sees the same)."""
        if self.config.pool == "all":
            return batch
        keep = [i for i, kind in enumerate(batch.noise) if kind == "clean"]
        wanted = self.ranks.selection_size(self.shape.batch_size)  # b, or b/K from each rank's share
        if len(keep) < wanted:
            raise TrainingError(
                f"super-batch {batch.number} holds {len(keep)} clean samples, fewer than the {wanted} "
                f"to choose (b={self.shape.batch_size}): run the clean-only pool at a larger filter ratio (B = "
                f"{self.shape.super_batch_size} now)"
            )
        index = torch.tensor(keep)
        reference = batch.reference
        if reference is not None:
            reference = dataclasses.replace(
                reference, image=reference.image[index], text=reference.text[index]
            )
        return dataclasses.replace(
            batch,
            images=batch.images[index],
            tokens=batch.tokens[index],
            labels=batch.labels[index],
            keys=[batch.keys[i] for i in keep],
            captions=[batch.captions[i] for i in keep],
            noise=[batch.noise[i] for i in keep],
            reference=reference,
        )

    def view(self, batch: SuperBatch) -> EmbeddingView:
        """The strategy's view: only what it declared, computed when first asked (over the whole
        super-batch, gathered from every rank, when a distributed run selects globally)."""
        learner: Callable[[], Embeddings] | None = None
        reference: Embeddings | Callable[[], Embeddings] | None = None
        if self.needs.learner:
            resolution = self.needs.learner_resolution

            def score_learner() -> Embeddings:
                return self._score(self.model, batch, resolution)

            learner = self.ranks.scoring(score_learner)

        if self.needs.reference:
            if self.reference_model is not None:
                model = self.reference_model

                def score_reference() -> Embeddings:
                    return self._score(model, batch, "full")

                reference = self.ranks.scoring(score_reference)

            elif batch.reference is not None:
                cached = embeddings_to(batch.reference, self.device)
                reference = self.ranks.scoring(lambda: cached) if self.ranks.gathers else cached
        return EmbeddingView(learner, reference, size=self.ranks.view_size(len(batch)))

    def step(self, batch: SuperBatch) -> StepCost:
        """Select from ``batch``, train on the selection, charge the ledger and count; the cost that ran."""
        batch = self.offered(batch)
        view = self.view(batch)
        with blaming(self.config.strategy, "while selecting"):
            index, selection = select_counted(
                self.strategy, view, self.ranks.selection_size(self.shape.batch_size), self.generator
            )
        rate = learning_rate(self.ledger.fraction_after(self.predicted), self.config.optim)
        for group in self.optimizer.param_groups:
            group["lr"] = rate * group["lr_scale"]
        images, tokens = self.ranks.training_batch(
            index, batch.images, batch.tokens, len(self.strategy.training.resolutions)
        )
        loss = self.ranks.mean(
            train_step(
                self.model,
                self.optimizer,
                images,
                tokens,
                self.strategy.training,
                self.config.optim.grad_clip,
                forward=self.forward,
            )
        )
        self.progress.last_loss = loss
        self.progress.loss_sum += loss
        self.progress.loss_steps += 1
        cost = self.cost.step_cost(
            self.needs,
            self.strategy.training,
            self.shape,
            pairwise=self.ranks.pairwise(view.pairwise_macs),
            selection=self.ranks.pairwise(selection),
        )
        # The eighth of the budget (in its own unit) this step began in.
        eighth = min(EIGHTHS - 1, EIGHTHS * self.ledger.used // self.ledger.limit)
        self.ledger.charge(cost)
        p = self.progress
        p.super_batches += 1
        p.examples_seen += self.shape.batch_size
        chosen, offered = self.ranks.selected(index, list(zip(batch.noise, batch.captions, strict=True)))
        p.examples_scored += len(offered)  # every rank's share (after the pool's filter)
        picked = [noise for noise, _ in chosen]
        offered_noise = [noise for noise, _ in offered]
        repeats = _repeats([caption for _, caption in chosen]), _repeats([caption for _, caption in offered])
        p.selected_noise.update(picked)
        p.super_noise.update(offered_noise)
        p.selected_repeats += repeats[0]
        p.super_repeats += repeats[1]
        counts = p.by_eighth[eighth]
        counts.update(f"selected_{kind}" for kind in picked)
        counts.update(f"super_{kind}" for kind in offered_noise)
        counts.update(steps=1, selected_repeats=repeats[0], super_repeats=repeats[1])
        return cost
