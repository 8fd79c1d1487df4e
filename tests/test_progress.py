"""Progress in a log file: each stage says when it starts, and a plain line (how far, time spent, time
left) comes at a steady interval where a terminal would show a bar; `jestbench run` ends by saying what
to open and run next."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import Learning

from harness.data.pool import open_pool
from harness.errors import UserError
from harness.progress import ENV, Reporter, next_steps
from harness.reference import embed_split
from harness.reference_store import load_reference_model
from harness.runconfig import RunConfig
from harness.train import train


def test_a_plain_line_comes_at_each_interval_and_not_between(monkeypatch, capsys):
    monkeypatch.setenv(ENV, "0")
    with Reporter(400, "stage", "sample") as reporter:
        reporter.update(100, step=1)
        reporter.update(100, step=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"stage: 200/400 sample \(50%\), \d+s elapsed, about \d+s left; step 2", lines[1])

    monkeypatch.setenv(ENV, "3600")
    with Reporter(400, "stage", "sample") as reporter:
        reporter.update(400)
    assert capsys.readouterr().out == ""


def test_quiet_shows_nothing_and_a_bad_interval_is_named(monkeypatch, capsys):
    monkeypatch.setenv(ENV, "0")
    with Reporter(10, "stage", "sample", enabled=False) as reporter:
        reporter.update(5)
    assert capsys.readouterr().out == ""
    monkeypatch.setenv(ENV, "often")
    with pytest.raises(UserError, match=f"{ENV}='often'"):
        Reporter(10, "stage", "sample")


def test_training_in_a_log_file_says_it_started_and_how_far_it_is(
    learning: Learning, tmp_path: Path, monkeypatch, capsys
):
    monkeypatch.setenv(ENV, "0")
    config = RunConfig(
        dataset=str(learning.dataset.root),
        dataset_id=learning.dataset.content_id,
        preset="tiny",
        strategy="uniform",
        params={},
        batch_size=32,
        filter_ratio=0.0,
        budget="10 steps",
    )
    train(config, learning.private_work_dir(tmp_path), show_progress=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"jestbench: training run {config.run_id}: uniform seed 0 on raw, 10 steps = ")
    progress = [line for line in lines[1:] if line.startswith("uniform seed 0: ")]
    assert len(progress) == 10  # one per step at interval 0
    assert re.search(r"\(100%\), \d+s elapsed, about 0s left; step 10, loss \d", progress[-1])


def test_the_pool_embedding_reports_its_progress(learning: Learning, monkeypatch, capsys):
    monkeypatch.setenv(ENV, "0")
    model = load_reference_model(learning.work_dir, learning.reference)
    pool = open_pool(learning.dataset, "raw")
    embed_split(model, pool)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith(f"embedding the raw pool: {len(pool)}/{len(pool)} sample (100%)")


def test_the_end_of_a_suite_says_what_to_open_and_run_next(tmp_path: Path):
    board = tmp_path / "leaderboards" / "quick" / "leaderboard.md"
    done = next_steps("quick", board, failed=0)
    assert f"open {board.with_suffix('.html')}" in done and "`jestbench publish quick`" in done
    failed = next_steps("quick", board, failed=2, work=tmp_path)
    assert f"rerun `jestbench run quick --work {tmp_path}`" in failed and "refuses" in failed
    assert "rerun `jestbench run quick`" in next_steps("quick", None, failed=7)
