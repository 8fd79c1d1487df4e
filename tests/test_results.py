"""The results store: run files read into one table, with their config and provenance; the schema
documented in docs/RESULTS.md matches what a real run writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from synthetic_runs import SPECS, Suite, write_suite

from harness.data import RECORDED_NOISE_KINDS, Dataset
from harness.leaderboard import build_leaderboard
from harness.records import RunFile
from harness.results import REQUIRED_COLUMNS, ResultsError, read_runs
from harness.runconfig import RunConfig
from harness.train import train

DOCS = Path(__file__).resolve().parents[1] / "docs" / "RESULTS.md"


@pytest.fixture
def suite(tmp_path: Path) -> Suite:
    return write_suite(tmp_path, names=("uniform", "jest"))


def test_rows_are_those_of_complete_runs_with_config_and_provenance(tmp_path: Path, suite: Suite) -> None:
    results = read_runs(tmp_path)
    complete = suite.run_ids["uniform"] + suite.run_ids["jest"]
    assert sorted(results.rows["run_id"].unique()) == sorted(complete)
    # Five evaluation points on two splits per run; the failed and the running run add nothing.
    assert len(results.rows) == len(complete) * 5 * 2
    assert results.rows["split"].value_counts().to_dict() == {"val": 30, "eval": 30}
    for column in (
        "git_commit",
        "torch_version",
        "threads",
        "config.optim.learning_rate",
        "config.filter_ratio",
    ):
        assert results.rows[column].notna().all(), column
    jest = results.rows[results.rows["strategy"] == "jest"]
    assert set(jest["config.filter_ratio"]) == {0.8}
    assert json.loads(jest["params"].iloc[0]) == SPECS["jest"].params
    assert jest["config_key"].nunique() == 1  # three seeds, one configuration


def test_failed_and_unfinished_runs_are_listed_with_their_errors(tmp_path: Path, suite: Suite) -> None:
    results = read_runs(tmp_path)
    assert results.failed["run_id"].tolist() == [suite.failed]
    assert results.failed["error"].iloc[0] == "stopped at step 12: the training loss holds NaN"
    assert results.incomplete["run_id"].tolist() == [suite.running]
    assert len(results.runs) == 6 + 2


def test_selected_runs_only(tmp_path: Path, suite: Suite) -> None:
    chosen = [*suite.run_ids["jest"][:2], suite.failed]
    results = read_runs(tmp_path, chosen)
    assert sorted(results.runs["run_id"]) == sorted(chosen)
    assert set(results.rows["run_id"]) == set(chosen[:2])


def test_an_unknown_run_id_is_named_with_close_matches(tmp_path: Path, suite: Suite) -> None:
    typo = suite.failed[:-1] + ("0" if suite.failed[-1] != "0" else "1")
    with pytest.raises(ResultsError, match=rf"no run '{typo}' in .*runs; did you mean {suite.failed}"):
        read_runs(tmp_path, [typo])


def test_a_damaged_run_file_is_named(tmp_path: Path, suite: Suite) -> None:
    path = RunFile.path_for(tmp_path, suite.run_ids["jest"][0])
    path.write_text(path.read_text()[:100])
    with pytest.raises(ResultsError, match=rf"cannot read run file {re.escape(str(path))}"):
        read_runs(tmp_path)


def test_a_row_missing_a_column_is_named(tmp_path: Path, suite: Suite) -> None:
    path = RunFile.path_for(tmp_path, suite.run_ids["uniform"][1])
    run = RunFile.load(path)
    del run.rows[3]["flops_scoring"]
    run.save(tmp_path)
    with pytest.raises(ResultsError, match=r"row 3 lacks flops_scoring"):
        read_runs(tmp_path)


def _documented(column: str, text: str) -> bool:
    generic = re.sub(rf"_({'|'.join(RECORDED_NOISE_KINDS)})$", "_<kind>", column)
    generic = re.sub(r"^(speedup_\w+?)_(low|high)$", r"\1", generic)
    return f"`{column}`" in text or f"`{generic}`" in text


def test_a_real_run_has_exactly_the_documented_columns(tiny_dataset: Dataset, tmp_path: Path) -> None:
    """Train a tiny run for real: the table the store reads from it is the one docs/RESULTS.md
    documents, column for column, and a leaderboard can be built from it."""
    config = RunConfig(
        dataset=str(tiny_dataset.root),
        dataset_id=tiny_dataset.content_id,
        preset="tiny",
        strategy="uniform",
        params={},
        batch_size=16,
        filter_ratio=0.0,
        budget="3 steps",
        eval_every=0.5,
    )
    train(config, tmp_path, show_progress=False)
    results = read_runs(tmp_path)
    text = DOCS.read_text()
    assert set(REQUIRED_COLUMNS) <= set(results.rows.columns)
    undocumented = [c for c in results.rows.columns if not _documented(c, text)]
    assert not undocumented, f"columns missing from docs/RESULTS.md: {undocumented}"
    board = build_leaderboard(results)
    undocumented = [c for c in board.table.columns if not _documented(c, text)]
    assert not undocumented, f"leaderboard.csv columns missing from docs/RESULTS.md: {undocumented}"
    assert board.table["speedup_examples"].tolist() == [1.0]  # uniform is its own baseline
    final = results.rows[(results.rows["split"] == "eval")].sort_values("evaluation").iloc[-1]
    assert board.table["score"].iloc[0] == pytest.approx(final["mean"])
    assert results.rows["hostname"].notna().all()
