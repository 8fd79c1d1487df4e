"""The probe set of the mechanism check: a fixed sample of the raw pool, by noise kind, on which each
evaluation measures the learner's and the reference's per-example losses (docs/RESULTS.md).

Learnability-based selection (JEST paper §2.1, RHO-LOSS) picks examples whose learner loss ``L_ii``
is high and reference loss low. Whether a run did that is read from the run file: at every evaluation
the learner's and the reference's mean unconditional loss ``L_ii`` (the sigmoid loss of each pair
alone, :func:`harness.losses.unconditional_losses`) per noise kind, the learnability (learner −
reference) per kind, the Spearman rank correlation between learnability and minus the reference loss
over the probe set (how much of learnability's ranking the reference alone already gives), and both
models' logit scale and bias.

The probe set is up to :data:`PER_KIND` samples of each noise kind drawn with a fixed seed
(:data:`SEED`, not the run's), so every run on a dataset is probed on the same keys. Probing is
evaluation: its FLOPs are recorded with the evaluation FLOPs, never charged to the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.data import NOISE_KINDS, Dataset, OnBadSample
from harness.data.pool import Samples, open_pool
from harness.data.reference_cache import ReferenceCache
from harness.flops import ModelFlops, model_flops
from harness.losses import unconditional_losses
from harness.models import DualEncoder
from harness.reference_store import load_reference_model, load_reference_record
from strategies import Embeddings

PER_KIND = 256
SEED = 0
_READ_CHUNK = 1024


def draw_probe(
    dataset: Dataset,
    split: str = "raw",
    *,
    per_kind: int = PER_KIND,
    seed: int = SEED,
    on_bad_sample: OnBadSample = "error",
) -> Samples:
    """Up to ``per_kind`` samples of each noise kind of ``split``: the first of each kind in a
    permutation of the pool seeded by ``seed`` alone, grouped by kind in :data:`NOISE_KINDS` order
    (samples of no known kind form a group of their own, last). The same keys for every run."""
    pool = open_pool(dataset, split, on_bad_sample)
    try:
        order = np.random.default_rng(seed).permutation(len(pool))
        # The kinds the split holds, as built: reading stops once each is full (a dataset that names
        # none stops after the first chunk, its samples all of no known kind).
        expected = dataset.noise_counts(split)
        chosen: dict[str, list[int]] = {}
        for start in range(0, len(order), _READ_CHUNK):
            positions = order[start : start + _READ_CHUNK]
            for position, kind in zip(positions.tolist(), pool.read(positions).noise, strict=True):
                picks = chosen.setdefault(kind, [])
                if len(picks) < per_kind:
                    picks.append(position)
            if all(len(chosen.get(kind, [])) >= min(per_kind, count) for kind, count in expected.items()):
                break
        kinds = [kind for kind in NOISE_KINDS if kind in chosen] + sorted(set(chosen) - set(NOISE_KINDS))
        return pool.read([position for kind in kinds for position in chosen[kind]])
    finally:
        pool.close()


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given the mean of the ranks they span (as Spearman's coefficient needs)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return np.asarray((last - (counts - 1) / 2.0)[inverse], dtype=np.float64)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's of the average ranks; NaN when either is constant."""
    rx, ry = average_ranks(np.asarray(x)), average_ranks(np.asarray(y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((rx * rx).sum()) * float((ry * ry).sum()))
    return float((rx * ry).sum()) / denominator if denominator > 0 else math.nan


def _losses(e: Embeddings) -> torch.Tensor:
    return unconditional_losses(e.image, e.text, e.scale, e.bias)


@dataclass
class Probe:
    """The probe set, the reference's losses on it (``None`` without a reference), and what probing
    costs. :meth:`measure` gives an evaluation row's probe columns."""

    samples: Samples
    reference: Embeddings | None
    reference_flops: int = 0  # the reference's pass over the probe when uncached; paid at the first measure

    @property
    def size(self) -> int:
        return len(self.samples.keys)

    def measure(self, model: DualEncoder, flops: ModelFlops) -> tuple[dict[str, Any], int]:
        """The probe columns of an evaluation row for ``model``, and the FLOPs it took (a forward pass
        over the probe set and the diagonal products)."""
        was_training = model.training
        model.eval()
        try:
            device = model.logit_scale.device  # the learner's (a GPU run's); the probe stays on the CPU
            learner = model.embeddings(self.samples.images.to(device), self.samples.tokens.to(device), "full")
        finally:
            model.train(was_training)
        learner = Embeddings(learner.image.cpu(), learner.text.cpu(), learner.scale, learner.bias)
        learner_loss = _losses(learner).numpy().astype(np.float64)
        noise = np.asarray(self.samples.noise)
        columns: dict[str, Any] = {
            "probe_size": self.size,
            "learner_scale": learner.scale,
            "learner_bias": learner.bias,
            "reference_scale": math.nan if self.reference is None else self.reference.scale,
            "reference_bias": math.nan if self.reference is None else self.reference.bias,
        }
        reference_loss = (
            None if self.reference is None else _losses(self.reference).numpy().astype(np.float64)
        )
        for kind in NOISE_KINDS:
            mask = noise == kind
            columns[f"probe_{kind}"] = int(mask.sum())
            columns[f"probe_learner_loss_{kind}"] = _mean(learner_loss[mask])
            reference = math.nan if reference_loss is None else _mean(reference_loss[mask])
            columns[f"probe_reference_loss_{kind}"] = reference
            columns[f"probe_learnability_{kind}"] = columns[f"probe_learner_loss_{kind}"] - reference
        columns["probe_spearman"] = (
            math.nan if reference_loss is None else spearman(learner_loss - reference_loss, -reference_loss)
        )
        cost = self.size * (flops.full + flops.embed_dim) + self.reference_flops
        if self.reference is not None:
            cost += self.size * self.reference.image.shape[1]
        self.reference_flops = 0
        return columns, cost


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def open_probe(
    dataset: Dataset,
    work_dir: Path,
    reference: str | None,
    *,
    cached: bool = True,
    on_bad_sample: OnBadSample = "error",
) -> Probe:
    """The probe set of ``dataset``'s raw pool and, when the run names a ``reference``, its embeddings
    of it: from the cache beside the pool, or (``cached=False``) from the stored reference model,
    whose pass is then counted once."""
    samples = draw_probe(dataset, on_bad_sample=on_bad_sample)
    if reference is None:
        return Probe(samples, None)
    record = load_reference_record(work_dir, reference)
    if cached:
        cache = ReferenceCache.load(dataset, reference, "raw", record["embed_dim"])
        return Probe(samples, cache.embeddings(cache.rows(samples.keys)))
    model = load_reference_model(work_dir, record)
    embeddings = model.embeddings(samples.images, samples.tokens, "full")
    return Probe(samples, embeddings, reference_flops=len(samples.keys) * model_flops(model.config).full)
