"""The reference model: trained on the curated split by the same loop, then scored and embedding the
raw pool.

One reference per suite (docs/DESIGN.md §2), but a reference is a random variable: it has a seed, and
its id is ``<config hash>-<weights hash>`` (:mod:`harness.reference_store`), so two seeds, or one seed
trained on two machines that end at different weights, are two references. It is trained with
``uniform`` at ``f = 0`` on the curated split; a rerun of the same config reuses the complete training
run (and so the same weights and id). After training its own scores on val and eval are evaluated
and stored in its record, and its embeddings of the whole raw pool are cached beside the dataset
(paper A.5, :mod:`harness.data.reference_cache`) with its weights hash. Its training FLOPs and the
pool-embedding FLOPs are recorded, for the leaderboard's all-in column.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.data import Dataset, ReferenceCacheError, open_dataset, write_reference_cache
from harness.data.pool import open_pool
from harness.evaluate import Evaluator
from harness.flops import model_flops
from harness.models import DualEncoder
from harness.progress import Reporter, stage
from harness.records import load_trained_model, model_path, write_json_atomic
from harness.reference_store import (
    RECORD,
    SCORES,
    check_reference_cache,
    reference_dir,
    reference_id,
    weights_hash,
)
from harness.runconfig import OptimConfig, RunConfig
from harness.train import train
from strategies import Embeddings

_CHUNK = 1024
SCORED_SPLITS = ("val", "eval")  # the reference's own scores, evaluated once it is trained


def reference_config(
    dataset: Dataset,
    *,
    preset: str,
    budget: str,
    batch_size: int,
    seed: int = 0,
    optim: OptimConfig | None = None,
    device: str = "cpu",
    precision: str = "fp32",
) -> RunConfig:
    """The run config of a reference: ``uniform`` at ``f = 0`` on the curated split, in one process
    on ``device`` (resolved: ``cpu`` or ``cuda``)."""
    return RunConfig(
        dataset=str(dataset.root),
        dataset_id=dataset.content_id,
        preset=preset,
        strategy="uniform",
        params={},
        batch_size=batch_size,
        filter_ratio=0.0,
        budget=budget,
        seed=seed,
        split="curated",
        eval_splits=("val",),
        optim=optim or OptimConfig(),
        device=device,
        precision=precision,
    )


def train_reference(config: RunConfig, work_dir: Path, *, show_progress: bool = True) -> dict[str, Any]:
    """Train the reference of ``config`` (or reuse it), score it and cache its embeddings of the raw pool.

    Returns its record: id (``hash``), config and weights hashes, seed, config, model config,
    embedding width, scores on val and eval, training and pool-embedding FLOPs.
    """
    dataset = open_dataset(Path(config.dataset))
    record = _recorded(work_dir, config)
    if record is not None:
        model = load_trained_model(work_dir, config.run_id)
        try:
            check_reference_cache(dataset, record)
            return record
        except ReferenceCacheError:
            pass  # missing, or computed by other weights: embed the pool again below
    else:
        stage(
            f"training the reference ({config.preset}, {config.budget}, seed {config.seed}) on the curated split",
            enabled=show_progress,
        )
        result = train(config, work_dir, show_progress=show_progress)  # a complete run is not trained again
        model = result.model
        flops = model_flops(model.config)
        scores = {
            e.split: {k: e.scores.as_dict()[k] for k in SCORES}
            for e in Evaluator(dataset, SCORED_SPLITS, seed=config.seed).evaluate(model, flops)
        }
        weights = weights_hash(model)
        record = {
            "hash": reference_id(config.run_id, weights),
            "config_hash": config.run_id,
            "weights_hash": weights,
            "seed": config.seed,
            "config": config.to_dict(),
            "model_config": dataclasses.asdict(model.config),
            "embed_dim": model.config.embed_dim,
            "training_flops": result.run.summary["flops"]["spent"]["training"],
            "training_examples": result.run.rows[-1]["examples_seen"],
            "scores": scores,
        }
    pool = open_pool(dataset, "raw")
    stage(
        f"embedding the raw pool ({len(pool)} samples) with the reference {record['hash']}",
        enabled=show_progress,
    )
    embeddings = embed_split(model, pool, show_progress=show_progress)
    write_reference_cache(dataset, pool.keys, embeddings, record["hash"], weights_hash=record["weights_hash"])
    record["pool_size"] = len(pool)
    record["pool_embedding_flops"] = len(pool) * model_flops(model.config).full
    write_json_atomic(reference_dir(work_dir, record["hash"]) / RECORD, record)
    return record


def _recorded(work_dir: Path, config: RunConfig) -> dict[str, Any] | None:
    """The record of the reference that ``config``'s saved training run produced, if there is one."""
    if not model_path(work_dir, config.run_id).exists():
        return None
    weights = weights_hash(load_trained_model(work_dir, config.run_id))
    path = reference_dir(work_dir, reference_id(config.run_id, weights)) / RECORD
    return json.loads(path.read_text()) if path.exists() else None


@torch.no_grad()
def embed_split(model: DualEncoder, pool: Any, *, show_progress: bool = True) -> Embeddings:
    """The model's embeddings of every sample of a split pool, in pool order, at full resolution, on
    the CPU (the model runs where its weights are)."""
    model.eval()
    device = model.logit_scale.device
    images, texts = [], []
    positions = np.arange(len(pool))
    with Reporter(len(pool), "embedding the raw pool", "sample", enabled=show_progress) as reporter:
        for chunk in np.array_split(positions, max(1, len(pool) // _CHUNK)):
            samples = pool.read(chunk)
            images.append(model.encode_image(samples.images.to(device), "full").cpu())
            texts.append(model.encode_text(samples.tokens.to(device)).cpu())
            reporter.update(len(chunk))
    scale, bias = model.scale_bias()
    return Embeddings(torch.cat(images), torch.cat(texts), float(scale), float(bias))
