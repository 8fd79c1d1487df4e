"""A run killed with SIGKILL resumes from its last checkpoint and ends exactly as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import Learning

from harness.progress import INTERRUPTED
from harness.records import RunFile
from harness.runconfig import RunConfig
from harness.train import train

ARGS = ["--preset", "tiny", "--strategy", "jest", "--param", "n_chunks=4", "-b", "32", "-f", "0.8"]
ARGS += ["--budget-steps", "150", "--eval-every", "0.34", "--threads", "1", "--quiet"]


def _command(learning: Learning, work: Path) -> list[str]:
    data = ["--data", str(learning.dataset.root), "--reference", learning.reference["hash"]]
    return [sys.executable, "-m", "harness", "train", *data, *ARGS, "--work", str(work)]


def _kill_after_first_checkpoint(command: list[str], checkpoints: Path) -> None:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not any(checkpoints.glob("*.pt")) or len(list(checkpoints.parent.glob("runs/*.json"))) == 0:
        assert process.poll() is None, f"the run ended before it could be killed: {process.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.5)  # into the run, past the first checkpoint, before the end
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL


def test_a_run_killed_with_sigkill_resumes_to_the_same_final_metrics(learning: Learning, tmp_path: Path):
    killed = learning.private_work_dir(tmp_path / "killed")
    command = [*_command(learning, killed), "--checkpoint-seconds", "0"]
    _kill_after_first_checkpoint(command, killed / "checkpoints")

    (run_path,) = (killed / "runs").glob("*.json")
    interrupted = RunFile.load(run_path)
    assert interrupted.status == "running"  # killed mid-run, not after it

    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    run = RunFile.load(run_path)
    assert run.status == "complete" and run.summary["resumed"]
    assert not list((killed / "checkpoints").glob("*.pt"))  # removed once complete

    config = RunConfig.from_dict(run.config)
    torch.set_num_threads(1)  # the killed run's --threads: an in-process CLI test may have set another
    reference = train(config, learning.private_work_dir(tmp_path / "whole"), show_progress=False).run
    assert reference.run_id == run.run_id

    def points(r: RunFile) -> list[tuple]:
        return [
            (row["split"], row["evaluation"], row["steps"], row["mean"], repr(row["loss"])) for row in r.rows
        ]

    assert points(run) == points(reference)  # same evaluations, no duplicates, same metrics
    assert run.summary["flops"] == reference.summary["flops"]


def test_ctrl_c_prints_one_line_saying_how_to_resume_and_the_run_resumes(learning: Learning, tmp_path: Path):
    work = learning.private_work_dir(tmp_path)
    command = [*_command(learning, work), "--checkpoint-seconds", "0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not any((work / "checkpoints").glob("*.pt")) or not any((work / "runs").glob("*.json")):
        assert process.poll() is None, (
            f"the run ended before it could be interrupted: {process.stderr.read()}"
        )
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate()
    assert process.returncode == 130
    assert stderr.strip().splitlines() == [INTERRUPTED]  # one line, no traceback
    (run_path,) = (work / "runs").glob("*.json")
    assert RunFile.load(run_path).status == "running"  # interrupted, not failed: resumable

    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    run = RunFile.load(run_path)
    assert run.status == "complete" and run.summary["resumed"]
