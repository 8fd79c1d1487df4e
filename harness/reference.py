"""The reference model: trained on the curated split by the same loop, then embedding the raw pool.

One reference per suite (DESIGN §2). It is trained with ``uniform`` at ``f = 0`` on the curated
split, its weights saved under ``<work>/references/<hash>/`` where ``<hash>`` is its run config's
hash (a rerun with the same config reuses it), and its embeddings of the whole raw pool are cached
beside the dataset (paper A.5, :mod:`harness.data.reference_cache`). Its training FLOPs and the
pool-embedding FLOPs are recorded, for the leaderboard's all-in column.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from harness.data import Dataset, open_dataset, write_reference_cache
from harness.data.pool import open_pool
from harness.flops import model_flops
from harness.models import DualEncoder
from harness.records import write_json_atomic
from harness.reference_store import RECORD, load_reference_model, reference_dir
from harness.runconfig import OptimConfig, RunConfig
from harness.train import train
from strategies import Embeddings

_CHUNK = 1024


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
    """Train the reference of ``config`` (or reuse it) and cache its embeddings of the raw pool.

    Returns its record: hash, config, model config, embedding width, scores, training and
    pool-embedding FLOPs.
    """
    reference_hash = config.run_id
    directory = reference_dir(work_dir, reference_hash)
    record_path = directory / RECORD
    dataset = open_dataset(Path(config.dataset))
    if record_path.exists():
        record: dict[str, Any] = json.loads(record_path.read_text())
        if (dataset.reference_dir / reference_hash / "raw" / "meta.json").exists():
            return record
        model = load_reference_model(work_dir, record)
    else:
        result = train(config, work_dir, show_progress=show_progress)
        model = result.model
        final = {row["split"]: row for row in result.run.rows if row["steps"] == result.run.summary["steps"]}
        record = {
            "hash": reference_hash,
            "config": config.to_dict(),
            "model_config": dataclasses.asdict(model.config),
            "embed_dim": model.config.embed_dim,
            "training_flops": result.run.summary["flops"]["spent"]["training"],
            "training_examples": result.run.rows[-1]["examples_seen"],
            "scores": {
                split: {k: row[k] for k in ("zero_shot", "few_shot", "i2t_recall", "t2i_recall", "mean")}
                for split, row in final.items()
            },
        }
    pool = open_pool(dataset, "raw")
    embeddings = embed_split(model, pool, show_progress=show_progress)
    write_reference_cache(dataset, pool.keys, embeddings, reference_hash)
    record["pool_size"] = len(pool)
    record["pool_embedding_flops"] = len(pool) * model_flops(model.config).full
    write_json_atomic(record_path, record)
    return record


@torch.no_grad()
def embed_split(model: DualEncoder, pool: Any, *, show_progress: bool = True) -> Embeddings:
    """The model's embeddings of every sample of a split pool, in pool order, at full resolution, on
    the CPU (the model runs where its weights are)."""
    model.eval()
    device = model.logit_scale.device
    images, texts = [], []
    positions = np.arange(len(pool))
    for chunk in tqdm(
        np.array_split(positions, max(1, len(pool) // _CHUNK)),
        desc="embedding the raw pool",
        disable=None if show_progress else True,
    ):
        samples = pool.read(chunk)
        images.append(model.encode_image(samples.images.to(device), "full").cpu())
        texts.append(model.encode_text(samples.tokens.to(device)).cpu())
    scale, bias = model.scale_bias()
    return Embeddings(torch.cat(images), torch.cat(texts), float(scale), float(bias))
