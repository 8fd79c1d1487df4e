"""Shared test setup: one torch thread per xdist worker (2 cores, `pytest -n auto`), and a tiny
``shapes`` dataset built once per test session for every worker."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One thread per worker also for what a test runs through the CLI in-process or in a subprocess:
# jestbench's default thread count follows OMP_NUM_THREADS, else the CPUs. Results are reproducible
# only at a fixed count, so a test comparing two runs must not see one at 1 thread and one at 2.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch
from filelock import FileLock

from harness.data import Dataset, build_dataset, open_dataset
from harness.data.build import TINY_SIZES
from harness.reference_store import find_reference, load_reference_record

torch.set_num_threads(1)

# A dataset on which the tiny preset learns measurably in seconds, and the reference trained on it.
LEARN_SIZES = {"curated_size": 800, "raw_size": 3000, "val_size": 400, "eval_size": 400, "shard_size": 500}
LEARN_REFERENCE = {"preset": "tiny", "budget": "1000 steps", "batch_size": 64, "seed": 0}


def _session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory all xdist workers of this session share."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@dataclass(frozen=True)
class Learning:
    """The learning fixture: a dataset with a trained reference whose pool embeddings are cached."""

    dataset: Dataset
    work_dir: Path
    reference: dict[str, Any]

    def private_work_dir(self, tmp_path: Path) -> Path:
        """A work directory of the test's own that sees the shared reference."""
        work = tmp_path / "work"
        work.mkdir(parents=True)
        (work / "references").symlink_to(self.work_dir / "references")
        (work / "models").mkdir()
        weights = f"{self.reference['config_hash']}.pt"
        (work / "models" / weights).symlink_to(self.work_dir / "models" / weights)
        return work


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """A tiny ``shapes`` dataset (seed 0, ``TINY_SIZES``: 96 curated, 384 raw, 48 val, 48 eval),
    built once per session behind a file lock in a directory all xdist workers share.

    Treat it as read-only: tests that damage shards or write reference caches use ``tiny_copy``.
    """
    out = _session_dir(tmp_path_factory) / "tiny-shapes"
    with FileLock(str(out) + ".lock"):
        if not (out / "manifest.json").is_file():
            build_dataset("shapes", out, seed=0, **TINY_SIZES)
    return open_dataset(out)


@pytest.fixture
def tiny_copy(tiny_dataset: Dataset, tmp_path: Path) -> Dataset:
    """A private copy of the tiny dataset that a test may damage or write into."""
    return open_dataset(shutil.copytree(tiny_dataset.root, tmp_path / "tiny-shapes"))


@pytest.fixture(scope="session")
def learning(tmp_path_factory: pytest.TempPathFactory) -> Learning:
    """``shapes`` at LEARN_SIZES and a ``tiny`` reference trained on its curated split (1,000 steps),
    built once per session behind a file lock. Read-only: runs go to ``private_work_dir``."""
    from harness.reference import reference_config, train_reference

    root = _session_dir(tmp_path_factory) / "learning"
    with FileLock(str(root) + ".lock"):
        if not (root / "done").exists():
            dataset = build_dataset("shapes", root / "shapes", seed=0, force=True, **LEARN_SIZES)
            config = reference_config(dataset, **LEARN_REFERENCE)
            train_reference(config, root / "work", show_progress=False)
            (root / "done").touch()
    dataset = open_dataset(root / "shapes")
    work = root / "work"
    record = load_reference_record(work, find_reference(work, dataset, LEARN_REFERENCE["preset"]))
    return Learning(dataset, work, record)
