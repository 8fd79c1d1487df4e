"""The thread count a command chooses when --threads is not given: never more threads than the CPUs
this process may use, shared out between the processes running at once; OMP_NUM_THREADS when set."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import torch

from harness.errors import UserError
from harness.workdir import default_threads, set_threads, usable_cpus


@pytest.mark.parametrize(
    ("jobs", "cpus", "threads"),
    [(1, 16, 16), (2, 16, 8), (3, 16, 5), (1, 2, 2), (2, 2, 1), (3, 2, 1), (7, 2, 1), (1, 1, 1)],
)
def test_the_usable_cpus_are_shared_out_between_jobs(jobs, cpus, threads):
    assert default_threads(jobs, cpus=cpus, env={}) == threads


def test_omp_num_threads_wins_and_a_bad_one_is_ignored():
    assert default_threads(1, cpus=16, env={"OMP_NUM_THREADS": "1"}) == 1
    assert default_threads(4, cpus=16, env={"OMP_NUM_THREADS": "3"}) == 3  # per process, as the user said
    assert default_threads(2, cpus=16, env={"OMP_NUM_THREADS": "0"}) == 8
    assert default_threads(2, cpus=16, env={"OMP_NUM_THREADS": "lots"}) == 8


def test_the_usable_cpus_are_the_affinity_mask_not_the_machines_count():
    """Pinned to one CPU with taskset, a process that may see more reports 1 and picks 1 thread."""
    code = "from harness.workdir import default_threads, usable_cpus; print(usable_cpus(), default_threads(1, env={}))"
    result = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]
    assert usable_cpus() >= 1


def test_set_threads_applies_the_default_and_an_explicit_count(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        set_threads(argparse.Namespace(threads=None), jobs=1)
        assert torch.get_num_threads() == usable_cpus()
        set_threads(argparse.Namespace(threads=1))
        assert torch.get_num_threads() == 1
        with pytest.raises(UserError, match="--threads 0 must be >= 1"):
            set_threads(argparse.Namespace(threads=0))
    finally:
        torch.set_num_threads(before)


def test_openmp_waits_passively_unless_the_user_says_otherwise():
    code = "import os, harness, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {"PATH": "/usr/bin:/bin"}
    default = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert default.stdout.strip() == "PASSIVE", default.stderr
    chosen = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, "OMP_WAIT_POLICY": "ACTIVE"}
    )
    assert chosen.stdout.strip() == "ACTIVE", chosen.stderr
