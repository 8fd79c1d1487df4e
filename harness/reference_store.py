"""Trained references on disk: where one lives, finding the one that fits a dataset, loading its
record and its weights. What the loop needs of a reference, apart from training one
(:mod:`harness.reference`), so that the loop and the reference trainer do not import each other.

A reference is a random variable: two trainings of one config differ by seed, and even at one seed
by machine. Its id is therefore ``<config hash>-<weights hash>``, the second computed from its trained
weights (:func:`weights_hash`). It lives under ``<work>/references/<id>/``; its record
(``reference.json``) holds the id, both hashes, its seed and config, its model config, embedding
width, its own scores on val and eval, and the training and pool-embedding FLOPs. Its final weights
are its training run's (``models/<config hash>.pt``), and its embeddings of the raw pool are cached
beside the dataset (:mod:`harness.data.reference_cache`), with the weights hash that computed them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from harness.data import Dataset
from harness.data.reference_cache import check_weights
from harness.errors import UserError
from harness.models import DualEncoder
from harness.records import load_trained_model, model_path

RECORD = "reference.json"
SCORES = ("zero_shot", "few_shot", "i2t_recall", "t2i_recall", "mean")


class MissingReferenceError(UserError):
    """A reference that is missing or does not fit the run."""


def reference_dir(work_dir: Path, reference_hash: str) -> Path:
    return work_dir / "references" / reference_hash


def weights_hash(model: torch.nn.Module) -> str:
    """A short sha256 of the model's state dict (names, dtypes, shapes and bytes, in name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        values = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{values.dtype}:{tuple(values.shape)}\n".encode())
        digest.update(values.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def reference_id(config_hash: str, weights: str) -> str:
    """A reference's id: its config's hash and its trained weights' hash."""
    return f"{config_hash}-{weights}"


def rebuild_command(config: Mapping[str, Any]) -> str:
    """The command that trains the reference of ``config`` (a ``RunConfig.to_dict()``) again."""
    amount, _, unit = str(config["budget"]).partition(" ")
    budget = f"--budget-steps {amount}" if unit == "steps" else f"--budget {amount}"
    return (
        f"jestbench reference train --data {config['dataset']} --preset {config['preset']} "
        f"-b {config['batch_size']} {budget} --seed {config['seed']}"
    )


def find_reference(work_dir: Path, dataset: Dataset, preset: str, seed: int | None = None) -> str:
    """The id of the reference trained on ``dataset`` with ``preset`` (and ``seed``, when given) in
    ``work_dir``; a clear error naming the command when there is none, or listing them when several fit."""
    found = []
    for path in sorted((work_dir / "references").glob(f"*/{RECORD}")):
        record = json.loads(path.read_text())
        config = record["config"]
        fits = config["dataset_id"] == dataset.content_id and config["preset"] == preset
        if fits and (seed is None or config["seed"] == seed):
            found.append(record)
    at_seed = "" if seed is None else f", seed {seed}"
    if not found:
        raise MissingReferenceError(
            f"no reference is trained for {dataset.root} (preset {preset}{at_seed}); make one with "
            f"`jestbench reference train --data {dataset.root} --preset {preset}"
            f"{'' if seed is None else f' --seed {seed}'}`"
        )
    if len(found) > 1:
        listed = "; ".join(
            f"{r['hash']} (seed {r['config']['seed']}, {r['config']['budget']} at b={r['config']['batch_size']})"
            for r in found
        )
        how = "--reference ID" if seed is not None else "--reference ID or --reference-seed N"
        raise MissingReferenceError(
            f"{len(found)} references fit {dataset.root} (preset {preset}{at_seed}): {listed}; choose one with {how}"
        )
    return str(found[0]["hash"])


def load_reference_record(work_dir: Path, reference_hash: str) -> dict[str, Any]:
    """The record of a trained reference; a clear error naming the command when there is none."""
    path = reference_dir(work_dir, reference_hash) / RECORD
    if not path.exists():
        raise MissingReferenceError(
            f"no reference {reference_hash!r} in {work_dir / 'references'}; train one with "
            "`jestbench reference train --data DIR` (it prints the id to pass as --reference)"
        )
    record: dict[str, Any] = json.loads(path.read_text())
    if "weights_hash" not in record:
        raise MissingReferenceError(
            f"reference {reference_hash} was recorded without the hash of its weights (an earlier "
            f"jestbench); train it again with `{rebuild_command(record['config'])}`"
        )
    return record


def load_reference_model(work_dir: Path, record: dict[str, Any]) -> DualEncoder:
    """The reference's trained weights, for scoring without the cache (``reference_cached=False``):
    the final model of its training run, refused unless they are the weights its id names."""
    model = load_trained_model(work_dir, record["config_hash"])
    found = weights_hash(model)
    if found != record["weights_hash"]:
        raise MissingReferenceError(
            f"the weights in {model_path(work_dir, record['config_hash'])} hash to {found}, but reference "
            f"{record['hash']} has weights {record['weights_hash']}; train it again with "
            f"`{rebuild_command(record['config'])}`"
        )
    return model


def check_reference_cache(dataset: Dataset, record: dict[str, Any]) -> None:
    """Refuse the reference's cached pool embeddings unless its own weights computed them."""
    check_weights(dataset, record["hash"], record["weights_hash"], rebuild_command(record["config"]))
