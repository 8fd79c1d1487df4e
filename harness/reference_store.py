"""Trained references on disk: where one lives, finding the one that fits a dataset, loading its
record and its weights. What the loop needs of a reference, apart from training one
(:mod:`harness.reference`), so that the loop and the reference trainer do not import each other.

A reference lives under ``<work>/references/<hash>/``, ``<hash>`` being its run config's hash; its
record (``reference.json``) holds that config, its model config, embedding width, scores and the
training and pool-embedding FLOPs. Its embeddings of the raw pool are cached beside the dataset
(:mod:`harness.data.reference_cache`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.data import Dataset
from harness.errors import UserError
from harness.models import DualEncoder
from harness.records import load_trained_model

RECORD = "reference.json"


class MissingReferenceError(UserError):
    """A reference that is missing or does not fit the run."""


def reference_dir(work_dir: Path, reference_hash: str) -> Path:
    return work_dir / "references" / reference_hash


def find_reference(work_dir: Path, dataset: Dataset, preset: str) -> str:
    """The hash of the reference trained on ``dataset`` with ``preset`` in ``work_dir``; a clear error
    naming the command when there is none, or the hashes when there are several."""
    found = []
    for path in sorted((work_dir / "references").glob(f"*/{RECORD}")):
        record = json.loads(path.read_text())
        if record["config"]["dataset_id"] == dataset.content_id and record["config"]["preset"] == preset:
            found.append(record["hash"])
    if not found:
        raise MissingReferenceError(
            f"no reference embeddings are cached for {dataset.root} (preset {preset}); make them with "
            f"`jestbench reference train --data {dataset.root} --preset {preset}`"
        )
    if len(found) > 1:
        raise MissingReferenceError(
            f"several references fit {dataset.root} (preset {preset}): {', '.join(found)}; choose one with --reference"
        )
    return str(found[0])


def load_reference_record(work_dir: Path, reference_hash: str) -> dict[str, Any]:
    """The record of a trained reference; a clear error naming the command when there is none."""
    path = reference_dir(work_dir, reference_hash) / RECORD
    if not path.exists():
        raise MissingReferenceError(
            f"no reference {reference_hash!r} in {work_dir / 'references'}; train one with "
            "`jestbench reference train --data DIR` (it prints the hash to pass as --reference)"
        )
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def load_reference_model(work_dir: Path, record: dict[str, Any]) -> DualEncoder:
    """The reference's trained weights, for scoring without the cache (``reference_cached=False``):
    the final model of its training run, whose run id is the reference's hash."""
    return load_trained_model(work_dir, record["hash"])
