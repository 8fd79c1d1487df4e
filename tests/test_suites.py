"""Suites: parsing and grid expansion, and `jestbench run` — resumable, failures recorded, kill-safe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Learning

from harness.records import RunFile
from harness.runner import run_suite
from harness.suites import SuiteError, builtin_suites, load_suite, parse_suite
from harness.train import RunConfig


def _suite_file(path: Path, learning: Learning, *, seeds=(0,), extra: str = "") -> Path:
    path.write_text(
        f"""
name = "mini"
description = "a small suite for tests"
note = "tiny preset"
[data]
data = "{learning.dataset.root}"
[run]
preset = "tiny"
batch_size = 32
budget = "40 steps"
filter_ratio = 0.8
seeds = {list(seeds)}
eval_every = 0.5
[reference]
preset = "tiny"
budget = "600 steps"
batch_size = 64
[[strategies]]
name = "uniform"
filter_ratio = 0.0
[[strategies]]
name = "jest"
params = {{ n_chunks = [4, 8] }}
[[strategies]]
name = "easy-reference"
filter_ratio = [0.5, 0.8]
{extra}
"""
    )
    return path


def test_the_builtin_suites_parse_and_cover_every_builtin_strategy():
    assert builtin_suites() == ["full", "quick"]
    from strategies import BUILTIN_STRATEGIES

    for name in builtin_suites():
        suite = load_suite(name)
        assert {e.strategy for e in suite.entries()} == set(BUILTIN_STRATEGIES)
        assert suite.run["preset"] == "small" and suite.data == {"data": "shapes"}
        uniform = [e for e in suite.entries() if e.strategy == "uniform"]
        assert all(e.settings["filter_ratio"] == 0.0 for e in uniform)
        others = [e for e in suite.entries() if e.strategy != "uniform"]
        assert all(e.settings["filter_ratio"] == 0.8 for e in others)
    assert load_suite("quick").seeds == [0]
    assert load_suite("full").seeds == [0, 1, 2]
    assert {"two_resolution": True} in [
        e.params for e in load_suite("full").entries() if e.strategy == "uniform"
    ]


def test_lists_expand_to_a_grid_with_parameters_completed(tmp_path: Path, learning: Learning):
    suite = load_suite(str(_suite_file(tmp_path / "s.toml", learning, seeds=(0, 1))))
    entries = suite.entries()
    assert [(e.strategy, e.params.get("n_chunks"), e.settings["filter_ratio"]) for e in entries] == [
        ("uniform", None, 0.0),
        ("jest", 4, 0.8),
        ("jest", 8, 0.8),
        ("easy-reference", None, 0.5),
        ("easy-reference", None, 0.8),
    ]
    assert entries[1].params == {"score": "learnability", "gain": 100.0, "n_chunks": 4}
    configs = suite.run_configs(learning.dataset, "ref")
    assert len(configs) == 10 and len({c.run_id for c in configs}) == 10
    assert [c.reference for c in configs[:2]] == [None, None]  # uniform reads no reference


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[run]\npreset='tiny'\nbatch_size=8\nbudget='1 steps'\nfiler_ratio=0.5\n[[strategies]]\nname='uniform'",
            "did you mean 'filter_ratio'",
        ),
        ("[run]\npreset='tiny'\nbatch_size=8\n[[strategies]]\nname='uniform'", "needs 'budget'"),
        (
            "[run]\npreset='tiny'\nbatch_size=8\nbudget='1 steps'\n[[strategies]]\nname='jset'",
            "did you mean 'jest'",
        ),
        (
            "[run]\npreset='tiny'\nbatch_size=8\nbudget='1 steps'\n[[strategies]]\nname='jest'\nparams={n_chunks=0}",
            "n_chunks=0 is outside",
        ),
        ("[run]\npreset='tiny'\nbatch_size=8\nbudget='1 steps'", "no [[strategies]]"),
    ],
)
def test_a_bad_suite_is_refused_naming_the_key(text, message):
    import tomllib

    with pytest.raises(SuiteError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_suite(tomllib.loads(text), "test.toml")


def test_a_suite_runs_skips_what_is_complete_and_records_failures(tmp_path: Path, learning: Learning):
    work = learning.private_work_dir(tmp_path)
    broken = '[[strategies]]\nname = "uniform"\nbatch_size = 32\nbudget = "1e3 flops"\n'
    suite = load_suite(str(_suite_file(tmp_path / "s.toml", learning, extra=broken)))
    lines: list[str] = []
    result = run_suite(suite, work, show_progress=False, announce=lines.append)
    assert len(result.run_ids) == 6 and result.skipped == []
    ((failed_id, error),) = result.failed.items()
    assert "smaller than one step" in error
    assert RunFile.load(RunFile.path_for(work, failed_id)).status == "failed"
    assert result.leaderboard is not None and result.leaderboard.html.exists()
    table = (result.leaderboard.csv).read_text().splitlines()
    assert len(table) == 1 + 5  # the five configurations that ran

    again = run_suite(suite, work, show_progress=False, announce=lines.append)
    assert sorted(again.skipped) == sorted(set(result.run_ids) - {failed_id})
    assert list(again.failed) == [failed_id]


def test_a_suite_killed_mid_run_completes_on_rerun_without_duplicates(tmp_path: Path, learning: Learning):
    work = learning.private_work_dir(tmp_path)
    suite_path = _suite_file(tmp_path / "s.toml", learning)
    command = [sys.executable, "-m", "harness", "run", str(suite_path), "--work", str(work), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    runs = work / "runs"
    deadline = time.monotonic() + 300
    while len(list(runs.glob("*.json"))) < 2:  # one run done, the next under way
        assert process.poll() is None, "the suite ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    statuses = [json.loads(p.read_text())["status"] for p in runs.glob("*.json")]
    assert "complete" in statuses and len(statuses) < 5

    finished = subprocess.run(command, capture_output=True, text=True, env=env)
    assert finished.returncode == 0, finished.stderr
    files = sorted(runs.glob("*.json"))
    assert len(files) == 5
    for path in files:
        run = RunFile.load(path)
        assert run.status == "complete"
        points = [(r["split"], r["evaluation"]) for r in run.rows]
        assert len(points) == len(set(points)) == 6  # evaluations 0, 1, 2 on val and eval, once each
        assert RunConfig.from_dict(run.config).run_id == run.run_id
    assert "mini suite" in (work / "leaderboards" / "mini" / "leaderboard.md").read_text()


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_threads_reaches_every_run(tmp_path: Path, learning: Learning, jobs: int):
    """`jestbench run --threads N`: every run trains with N torch threads, in this process or in the
    --jobs processes (whose default is the cores shared out: 1 each on 2 cores)."""
    import torch

    from harness.cli import main

    suite = _suite_file(tmp_path / "suite.toml", learning).read_text()
    suite = suite[: suite.index('[[strategies]]\nname = "jest"')]  # uniform alone: one run
    (tmp_path / "suite.toml").write_text(suite)
    work = learning.private_work_dir(tmp_path)
    try:
        argv = ["run", str(tmp_path / "suite.toml"), "--work", str(work), "--quiet", "--threads", "3"]
        assert main([*argv, "--jobs", str(jobs)]) == 0
    finally:
        torch.set_num_threads(1)  # this xdist worker's count, as conftest set it
    (path,) = (work / "runs").glob("*.json")
    run = RunFile.load(path)
    assert run.status == "complete"
    assert {row["threads"] for row in run.rows} == {3}
