"""The leaderboard on a synthetic suite whose every number can be worked out by hand
(tests/synthetic_runs.py says how it is built)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from synthetic_runs import BUDGET, REFERENCE_ONE_OFF, SPECS, SUPER, Suite, run_file, write_suite

from harness.cli import main
from harness.errors import UserError
from harness.leaderboard import Leaderboard, LeaderboardError, build_leaderboard, render_leaderboard
from harness.leaderboard.stats import NOT_REACHED
from harness.results import read_runs

T_2 = 4.302653  # Student's t, two-sided 95%, two degrees of freedom


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Suite]:
    work = tmp_path_factory.mktemp("work")
    return work, write_suite(work)


@pytest.fixture(scope="module")
def board(suite_dir: tuple[Path, Suite]) -> Leaderboard:
    return build_leaderboard(read_runs(suite_dir[0]))


def _row(board: Leaderboard, strategy: str, **params: object) -> pd.Series:
    table = board.table
    chosen = table[(table["strategy"] == strategy)]
    if params:
        text = ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in params.items())
        chosen = chosen[chosen["params"] == text]
    assert len(chosen) == 1
    return chosen.iloc[0]


def test_ranked_by_final_eval_score_one_row_per_configuration(board: Leaderboard) -> None:
    table = board.table
    # The val split's scores are reversed: ranking on it would put hard-learner first.
    assert list(zip(table["strategy"], table["params"], strict=True)) == [
        ("jest", "gain=100, n_chunks=4, score=learnability"),
        ("easy-reference", ""),
        ("uniform", "two_resolution=true"),
        ("uniform", "two_resolution=false"),
        ("hard-learner", ""),
    ]
    assert table["rank"].tolist() == [1, 2, 3, 4, 5]
    assert table["score"].tolist() == pytest.approx(
        [0.50, 0.48, 0.41, 0.40, 0.25]
    )  # uniform-2res: seed 0 only, 0.42 - 0.01
    assert table["n_seeds"].tolist() == [3, 3, 1, 3, 3]


def test_score_interval_is_the_t_interval_over_seeds(board: Leaderboard) -> None:
    jest = _row(board, "jest")
    half = T_2 * 0.01 / math.sqrt(3)  # final scores 0.49, 0.50, 0.51
    assert (jest["score_low"], jest["score_high"]) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    single = _row(board, "uniform", two_resolution=True)
    assert math.isnan(single["score_low"]) and math.isnan(single["score_high"])


def test_metrics_and_flops_are_means_at_the_budget(board: Leaderboard) -> None:
    jest = _row(board, "jest")
    assert jest["zero_shot"] == pytest.approx(0.55) and jest["t2i_recall"] == pytest.approx(0.48)
    assert jest["flops_spent"] == BUDGET
    assert jest["flops_training"] + jest["flops_scoring"] + jest["flops_reference"] == BUDGET
    assert jest["flops_all_in"] == BUDGET + REFERENCE_ONE_OFF
    assert jest["examples_seen"] == 1500


def test_speedups_worked_out_by_hand(board: Leaderboard) -> None:
    jest = _row(board, "jest")
    # Uniform's final mean is 0.40 at 4,000 examples and 1.2e10 FLOPs; jest's mean curve reaches 0.40
    # at 750 examples, which cost 8e6 FLOPs each: 6e9 FLOPs, plus 6e9 for its reference all-in.
    assert jest["speedup_examples"] == pytest.approx(4000 / 750)
    assert jest["speedup_flops_spent"] == pytest.approx(2.0)
    assert jest["speedup_flops_all_in"] == pytest.approx(1.0)
    easy = _row(board, "easy-reference")
    # 0.36 at 2,000 and 0.44 at 3,000 examples: 0.40 half-way, at 2,500 (7.5e9 FLOPs).
    assert easy["speedup_examples"] == pytest.approx(1.6)
    assert easy["speedup_flops_spent"] == pytest.approx(1.6)
    assert easy["speedup_flops_all_in"] == pytest.approx(1.2e10 / (7.5e9 + 6e9))
    baseline = _row(board, "uniform", two_resolution=False)
    assert baseline["speedup_examples"] == 1.0 and math.isnan(baseline["speedup_examples_low"])
    assert set(board.table["baseline"]) == {baseline["config_key"]}


def test_a_strategy_that_never_reaches_uniforms_score(board: Leaderboard) -> None:
    hard = _row(board, "hard-learner")
    for column in ("speedup_examples", "speedup_flops_spent", "speedup_flops_all_in"):
        assert math.isnan(hard[column])
        assert hard[f"{column}_low"] == NOT_REACHED and hard[f"{column}_high"] == NOT_REACHED


@pytest.mark.parametrize("strategy", ["jest", "easy-reference"])
def test_bootstrap_interval_contains_the_point_estimate(board: Leaderboard, strategy: str) -> None:
    row = _row(board, strategy)
    for column in ("speedup_examples", "speedup_flops_spent", "speedup_flops_all_in"):
        assert row[f"{column}_low"] <= row[column] <= row[f"{column}_high"], column
        assert row[f"{column}_low"] < row[f"{column}_high"], column


def test_what_each_strategy_selected(board: Leaderboard) -> None:
    jest, easy = _row(board, "jest"), _row(board, "easy-reference")
    for kind, share in SPECS["jest"].selected.items():
        assert jest[f"selected_{kind}"] == pytest.approx(share, abs=1e-3)
        assert jest[f"super_{kind}"] == pytest.approx(SUPER[kind], abs=1e-3)
    assert jest["selected_repeats_per_batch"] < easy["selected_repeats_per_batch"]
    assert jest["selected_repeats_per_batch"] == pytest.approx(130 / 15)  # 8.7 x 15 steps, rounded


def test_without_a_uniform_baseline_speedups_are_empty(tmp_path: Path) -> None:
    write_suite(tmp_path, names=("jest", "easy-reference"))
    table = build_leaderboard(read_runs(tmp_path)).table
    assert table["speedup_examples"].isna().all() and (table["baseline"] == "").all()


def test_a_configuration_run_twice_at_one_seed_is_refused(tmp_path: Path) -> None:
    spec = SPECS["hard-learner"]
    run_file(spec, 0, tmp_path).save(tmp_path)
    # The same configuration with a default spelled out has another run id but is the same config.
    explicit = run_file(spec, 0, tmp_path)
    explicit.config["params"] = {"unused_default": 1}
    for row in explicit.rows:
        row["run_id"] = "0123456789abcdef"
    explicit.run_id = "0123456789abcdef"
    explicit.save(tmp_path)
    with pytest.raises(LeaderboardError, match="one configuration at the same seed"):
        build_leaderboard(read_runs(tmp_path))


def test_no_complete_runs(tmp_path: Path) -> None:
    write_suite(tmp_path, names=())
    with pytest.raises(LeaderboardError, match=r"no complete run .* 1 failed and 1 did not finish"):
        build_leaderboard(read_runs(tmp_path))


def test_render_writes_every_file_and_states_what_it_rests_on(
    board: Leaderboard, suite_dir: tuple[Path, Suite], tmp_path: Path
) -> None:
    work, suite = suite_dir
    files = render_leaderboard(
        read_runs(work), tmp_path / "board", title="Synthetic", note="one-seed leaderboard"
    )
    for path in (files.markdown, files.csv, files.html, files.rows, files.manifest, *files.figures):
        assert path.is_file() and path.stat().st_size > 0, path
    assert [p.name for p in files.figures] == ["score_vs_flops.png", "score_vs_examples.png", "selection.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in files.figures)
    text = files.markdown.read_text()
    for expected in (
        "# Synthetic",
        "one-seed leaderboard",
        "1 multiply-add = 1 FLOP",
        "1.20e10 FLOPs per run",
        "- **Seeds**: 0, 1, 2",
        "- **Dataset**: shapes",
        "- **Preset**: small",
        "reported as losing",
        "| 1 | jest |",
        "none (n=1)",
        "not reached [n.r., n.r.]",
        "5.33× [",
        suite.failed,
        "the training loss holds NaN",
        suite.running,
    ):
        assert expected in text, expected
    csv = pd.read_csv(files.csv)
    assert csv["strategy"].tolist() == board.table["strategy"].tolist()
    assert len(pd.read_csv(files.rows)) == len(read_runs(work).rows)
    manifest = json.loads(files.manifest.read_text())
    assert {r["run_id"]: r["status"] for r in manifest["runs"]}[suite.failed] == "failed"


def test_render_replaces_a_leaderboard_but_never_another_directory(
    suite_dir: tuple[Path, Suite], tmp_path: Path
) -> None:
    results = read_runs(suite_dir[0], _ids(suite_dir[1], "uniform", "jest"))
    out = tmp_path / "board"
    render_leaderboard(read_runs(suite_dir[0]), out)
    (out / "figures" / "stale.png").write_bytes(b"old")
    render_leaderboard(results, out)
    assert not (out / "figures" / "stale.png").exists()
    assert len(pd.read_csv(out / "leaderboard.csv")) == 2
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="does not hold a leaderboard"):
        render_leaderboard(results, other)
    assert (other / "mine.txt").read_text() == "keep me"


def _ids(suite: Suite, *names: str) -> list[str]:
    return [i for name in names for i in suite.run_ids[name]]


def test_cli_renders_into_the_work_directory(
    suite_dir: tuple[Path, Suite], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work, suite = suite_dir
    out = tmp_path / "cli"
    assert (
        main(
            [
                "leaderboard",
                "--work",
                str(work),
                "--runs",
                *_ids(suite, "jest", "uniform"),
                "--out",
                str(out),
                "--title",
                "two",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "1. 0.500  n=3  jest" in printed and "wrote leaderboard.md" in printed
    assert "# two" in (out / "leaderboard.md").read_text()
    assert main(["leaderboard", "--work", str(work), "--all"]) == 0
    assert (work / "leaderboards" / "all" / "leaderboard.html").is_file()
    assert main(["leaderboard", "--work", str(work), "--runs", "nonexistent"]) == 2
    assert "no run 'nonexistent'" in capsys.readouterr().err
