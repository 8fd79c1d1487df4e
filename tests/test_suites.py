"""Suites: parsing and grid expansion, and `jestbench run` — resumable, failures recorded, kill-safe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import LEARN_REFERENCE, Learning

from harness.data import Dataset
from harness.publish import find_leaderboard, publish
from harness.records import RunFile
from harness.runconfig import RunConfig
from harness.runner import run_suite
from harness.suites import SuiteError, builtin_suites, load_suite, parse_suite


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
budget = "{LEARN_REFERENCE["budget"]}"  # the learning fixture's reference, found rather than retrained
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

    quick = load_suite("quick")
    (section,) = quick.sections
    assert not quick.sectioned and section.name == "quick" and section.seeds == [0]
    assert load_suite("full").sectioned
    full = load_suite("full")
    assert [(s.name, s.track, s.data["data"]) for s in full.sections] == [
        ("shapes", "flops", "shapes"),
        ("shapes-examples", "examples", "shapes"),
        ("shapes-v1", "flops", "shapes-v1"),
    ]
    main, examples, ablation = full.sections
    for section in (quick.sections[0], main, ablation):
        entries = section.entries()
        assert {e.strategy for e in entries} == set(BUILTIN_STRATEGIES)
        assert section.run["preset"] == "small" and section.track == "flops"
        plain = [e for e in entries if e.pool == "all"]
        assert all(e.settings["filter_ratio"] == 0.0 for e in plain if e.strategy == "uniform")
        assert all(e.settings["filter_ratio"] == 0.8 for e in plain if e.strategy != "uniform")
    assert quick.sections[0].data == {"data": "shapes"}
    assert main.seeds == [0, 1, 2, 3, 4] and main.reference_seeds == [0, 1]
    assert len(examples.seeds) >= 3 and ablation.seeds == [0, 1, 2] and ablation.reference_seeds == [0]
    assert {"uniform", "easy-reference", "learnability", "prioritized", "jest"} <= {
        e.strategy for e in examples.entries()
    }
    against_all = {e.strategy for e in main.entries() if e.references == "all"}
    assert {"easy-reference", "learnability", "jest"} <= against_all
    uniform = [(e.params, e.pool) for e in main.entries() if e.strategy == "uniform"]
    assert ({"two_resolution": True}, "all") in uniform and ({"two_resolution": False}, "clean") in uniform
    gains = {(e.strategy, e.params["gain"]) for e in main.entries() if e.strategy in ("prioritized", "jest")}
    assert gains == {("prioritized", 1.0), ("prioritized", 100.0), ("jest", 100.0), ("jest", 1.0)}


def test_lists_expand_to_a_grid_with_parameters_completed(tmp_path: Path, learning: Learning):
    (section,) = load_suite(str(_suite_file(tmp_path / "s.toml", learning, seeds=(0, 1)))).sections
    entries = section.entries()
    assert [(e.strategy, e.params.get("n_chunks"), e.settings["filter_ratio"]) for e in entries] == [
        ("uniform", None, 0.0),
        ("jest", 4, 0.8),
        ("jest", 8, 0.8),
        ("easy-reference", None, 0.5),
        ("easy-reference", None, 0.8),
    ]
    assert entries[1].params == {"score": "learnability", "gain": 100.0, "n_chunks": 4}
    configs = section.run_configs(learning.dataset, ["ref"])
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


def _sectioned_suite(path: Path, dataset: Dataset) -> Path:
    """Two sections on the tiny dataset: equal FLOPs (the clean-only oracle, jest against both of two
    references, easy-reference against the first) and equal trained examples (uniform, learnability)."""
    path.write_text(
        f"""
name = "sect"
description = "two tracks"
[data]
data = "{dataset.root}"
[run]
preset = "tiny"
batch_size = 32
filter_ratio = 0.8
eval_every = 0.5
[reference]
preset = "tiny"
budget = "10 steps"
batch_size = 32

[[sections]]
name = "equal-flops"
description = "equal FLOPs"
run = {{ budget = "12 steps", seeds = [0] }}
reference = {{ seeds = [0, 1] }}
[[sections.strategies]]
name = "uniform"
filter_ratio = 0.0
[[sections.strategies]]
name = "uniform"
pool = "clean"
[[sections.strategies]]
name = "jest"
params = {{ n_chunks = 4 }}
references = "all"
[[sections.strategies]]
name = "easy-reference"

[[sections]]
name = "equal-examples"
description = "equal examples"
track = "examples"
run = {{ budget = "200 examples", seeds = [0] }}
[[sections.strategies]]
name = "uniform"
filter_ratio = 0.0
[[sections.strategies]]
name = "learnability"
"""
    )
    return path


def test_a_suite_with_sections_and_two_references_renders_a_leaderboard_per_section(
    tmp_path: Path, tiny_copy: Dataset
):
    work = tmp_path / "work"
    suite = load_suite(str(_sectioned_suite(tmp_path / "s.toml", tiny_copy)))
    result = run_suite(suite, work, show_progress=False, announce=lambda _: None)
    assert result.failed == {}
    runs = {i: RunFile.load(RunFile.path_for(work, i)) for i in result.run_ids}
    configs = {i: RunConfig.from_dict(r.config) for i, r in runs.items()}

    # Two references (seeds 0 and 1): jest runs against both, as two runs; easy-reference the first only.
    references = sorted({c.reference for c in configs.values() if c.reference})
    assert len(references) == 2
    jest = [c for c in configs.values() if c.strategy == "jest"]
    assert len({c.run_id for c in jest}) == 2 and {c.reference for c in jest} == set(references)
    seed_of = {
        r: json.loads((work / "references" / r / "reference.json").read_text())["config"]["seed"]
        for r in references
    }
    assert sorted(seed_of.values()) == [0, 1]
    (easy,) = [c for c in configs.values() if c.strategy == "easy-reference"]
    assert seed_of[easy.reference] == 0  # the first reference
    assert "pool" not in easy.to_dict()  # the default pool is not part of the run id

    # The clean-only oracle trained on clean pairs only, at the same FLOP budget as uniform.
    (oracle,) = [i for i, c in configs.items() if c.pool == "clean"]
    final = runs[oracle].rows[-1]
    assert final["examples_seen"] > 0 and final["selected_clean"] == final["examples_seen"]
    assert final["super_clean"] == final["examples_scored"]
    (plain,) = [
        i
        for i, c in configs.items()
        if c.strategy == "uniform" and c.budget == "12 steps" and c.pool == "all"
    ]
    assert final["flops_spent"] == runs[plain].rows[-1]["flops_spent"]

    # Equal examples: both strategies stop after 6 steps of 32 (a 7th would pass 200), evaluate at the
    # same points, and spend different FLOPs.
    examples = [runs[i] for i, c in configs.items() if c.budget == "200 examples"]
    assert len(examples) == 2
    points = [
        [(r["steps"], r["examples_seen"]) for r in run.rows if r["split"] == "eval"] for run in examples
    ]
    assert points[0] == points[1] == [(0, 0), (4, 128), (6, 192)]
    assert examples[0].rows[-1]["flops_spent"] != examples[1].rows[-1]["flops_spent"]

    # One leaderboard per section, and an index that links them.
    root = work / "leaderboards" / "sect"
    assert set(result.leaderboards) == {"equal-flops", "equal-examples"}
    for name, board in result.leaderboards.items():
        assert board is not None and board.directory == root / name and board.markdown.exists()
    flops_page = (root / "equal-flops" / "leaderboard.md").read_text()
    assert "uniform [clean-only oracle]" in flops_page
    assert all(f"[reference {r[:8]}]" in flops_page for r in references)
    strategies = {
        name: set(pd.read_csv(board.csv)["strategy"])
        for name, board in result.leaderboards.items()
        if board is not None
    }
    assert strategies == {
        "equal-flops": {"uniform", "jest", "easy-reference"},
        "equal-examples": {"uniform", "learnability"},
    }
    examples_page = (root / "equal-examples" / "leaderboard.md").read_text()
    assert "200 examples trained per run" in examples_page
    assert "trained on the same number of examples" in examples_page
    assert "same FLOP budget" in flops_page and "same FLOP budget" not in examples_page
    index = (root / "README.md").read_text()
    assert "[equal-flops](equal-flops/leaderboard.md)" in index and "equal trained examples" in index
    assert result.index == root / "README.md"

    # Published: each section under results/leaderboard/<section>/, the index beside them.
    results = tmp_path / "results"
    published = publish(find_leaderboard("sect", work), results)
    assert published.left_out == ()
    assert (results / "leaderboard" / "README.md").read_text() == index
    assert (results / "leaderboard" / "equal-examples" / "leaderboard.html").exists()


def test_jestbench_run_exits_non_zero_naming_the_failed_run(tmp_path: Path, learning: Learning):
    work = learning.private_work_dir(tmp_path)
    path = tmp_path / "s.toml"
    path.write_text(
        f"""
name = "failing"
[data]
data = "{learning.dataset.root}"
[run]
preset = "tiny"
batch_size = 32
budget = "8 steps"
eval_every = 1.0
[[strategies]]
name = "uniform"
[[strategies]]
name = "hard-learner"
budget = "1e3 flops"
"""
    )
    command = [sys.executable, "-m", "harness", "run", str(path), "--work", str(work), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, env=env)
    assert finished.returncode == 1, finished.stderr
    (line,) = [line for line in finished.stdout.splitlines() if line.startswith("failed: ")]
    assert "hard-learner" in line and "seed 0" in line and "smaller than one step" in line
    assert "1 of 2 runs failed" in finished.stdout


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ("[[sections]]\nname='a'\ntrack='examples'", "needs every budget in examples"),
        ("[[sections]]\nname='a'\nrun={budget='64 examples'}", "in FLOPs or steps"),
        ("[[sections]]\nname='a'\n[[sections]]\nname='a'", "two [[sections]] are named 'a'"),
        ("[[sections]]\nname='a b'", "letters, digits"),
        ("[[sections]]\nname='a'\ntrak='flops'", "did you mean 'track'"),
        ("[[sections]]\nname='a'\n[[sections.strategies]]\nname='jest'\npool='clean'", "score nothing"),
        (
            "[[sections]]\nname='a'\n[[sections.strategies]]\nname='jest'\nreferences='both'",
            "one of 'first', 'all'",
        ),
        ("[[sections]]\nname='a'\nreference={seed=1, seeds=[0]}", "both 'seed' and 'seeds'"),
    ],
)
def test_a_bad_section_is_refused_naming_it(tables: str, message: str):
    import tomllib

    base = "[run]\npreset='tiny'\nbatch_size=8\nbudget='4 steps'\n[[strategies]]\nname='uniform'\n"
    with pytest.raises(SuiteError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_suite(tomllib.loads(base + tables), "test.toml")


def test_sections_inherit_the_top_level_tables_and_a_plain_suite_is_one_section():
    import tomllib

    text = """
name = "s"
[run]
preset = "tiny"
batch_size = 8
budget = "4 steps"
seeds = [0, 1]
[reference]
seeds = [0, 1]
budget = "3 steps"
[[strategies]]
name = "uniform"
[[sections]]
name = "a"
[[sections]]
name = "b"
run = { budget = "80 examples", seeds = [5] }
track = "examples"
reference = { seed = 3 }
"""
    a, b = parse_suite(tomllib.loads(text), "t.toml").sections
    assert (a.seeds, a.reference_seeds, a.run["budget"]) == ([0, 1], [0, 1], "4 steps")
    assert (b.seeds, b.reference_seeds, b.run["budget"], b.track) == ([5], [3], "80 examples", "examples")
    assert b.reference["budget"] == "3 steps" and [e.strategy for e in b.entries()] == ["uniform"]
    plain = parse_suite(tomllib.loads(text.split("[[sections]]")[0]), "t.toml")
    assert [s.name for s in plain.sections] == ["s"] and not plain.sectioned


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
