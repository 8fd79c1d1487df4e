"""Shared test setup: one torch thread per xdist worker (2 cores, `pytest -n auto`), and a tiny
``shapes`` dataset built once per test session for every worker."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from harness.data import Dataset, build_dataset, open_dataset
from harness.data.build import TINY_SIZES

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """A tiny ``shapes`` dataset (seed 0, ``TINY_SIZES``: 96 curated, 384 raw, 48 val, 48 eval),
    built once per session behind a file lock in a directory all xdist workers share.

    Treat it as read-only: tests that damage shards or write reference caches use ``tiny_copy``.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each xdist worker has its own basetemp under the session's
        root = root.parent
    out = root / "tiny-shapes"
    with FileLock(str(out) + ".lock"):
        if not (out / "manifest.json").is_file():
            build_dataset("shapes", out, seed=0, **TINY_SIZES)
    return open_dataset(out)


@pytest.fixture
def tiny_copy(tiny_dataset: Dataset, tmp_path: Path) -> Dataset:
    """A private copy of the tiny dataset that a test may damage or write into."""
    return open_dataset(shutil.copytree(tiny_dataset.root, tmp_path / "tiny-shapes"))
