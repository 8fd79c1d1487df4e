"""The leaderboard on a synthetic suite whose every number can be worked out by hand
(tests/synthetic_runs.py says how it is built)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from synthetic_runs import BUDGET, REFERENCE_ONE_OFF, SPECS, SUPER, Suite, run_file, write_suite

from harness.cli import main
from harness.errors import UserError
from harness.leaderboard import (
    Leaderboard,
    LeaderboardError,
    build_leaderboard,
    render_leaderboard,
    write_leaderboard,
)
from harness.leaderboard.stats import welch_t
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
    # Uniform's mean curve first reaches its final 0.40 at 4,000 examples and 1.2e10 FLOPs; jest's
    # reaches it at 750 examples, which cost 8e6 FLOPs each: 6e9 FLOPs, plus 6e9 for its reference
    # all-in, or 6e9 / 6 shared with the 5 other runs that use that reference (easy-reference's).
    assert jest["speedup_examples"] == pytest.approx(4000 / 750)
    assert jest["speedup_flops_spent"] == pytest.approx(2.0)
    assert jest["speedup_flops_all_in"] == pytest.approx(1.0)
    assert jest["speedup_flops_amortised"] == pytest.approx(1.2e10 / 7e9)
    assert jest["reference_runs"] == 6 and jest["flops_amortised"] == BUDGET + REFERENCE_ONE_OFF / 6
    easy = _row(board, "easy-reference")
    # 0.36 at 2,000 and 0.44 at 3,000 examples: 0.40 half-way, at 2,500 (7.5e9 FLOPs).
    assert easy["speedup_examples"] == pytest.approx(1.6)
    assert easy["speedup_flops_spent"] == pytest.approx(1.6)
    assert easy["speedup_flops_all_in"] == pytest.approx(1.2e10 / (7.5e9 + 6e9))
    assert easy["speedup_flops_amortised"] == pytest.approx(1.2e10 / (7.5e9 + 1e9))
    baseline = _row(board, "uniform", two_resolution=False)
    for column in [c for c in board.table.columns if c.startswith("speedup_")]:
        assert baseline[column] == 1.0, column  # computed like any other row, 1 by construction
    assert set(board.table["baseline"]) == {baseline["config_key"]}


def test_speedups_at_the_lower_targets(board: Leaderboard) -> None:
    # Uniform goes from 0.10 to 0.40: the targets are 0.325 and 0.25, which its mean curve first reaches
    # at 2,500 and 1,500 examples (7.5e9 and 4.5e9 FLOPs).
    row = _row(board, "jest")
    assert (row["target_start"], row["target_final"], row["target_75"], row["target_50"]) == (
        pytest.approx(0.10),
        pytest.approx(0.40),
        pytest.approx(0.325),
        pytest.approx(0.25),
    )
    # jest: 0.325 at 468.75 examples (3.75e9 FLOPs), 0.25 at 281.25 (2.25e9).
    for suffix in ("_75", "_50"):
        assert row[f"speedup_examples{suffix}"] == pytest.approx(4000 / 750)
        assert row[f"speedup_flops_spent{suffix}"] == pytest.approx(2.0)
    assert row["speedup_flops_all_in_50"] == pytest.approx(4.5e9 / (2.25e9 + 6e9))
    easy = _row(board, "easy-reference")
    assert easy["speedup_examples_75"] == pytest.approx(2500 / (1000 + 1000 * 0.025 / 0.06))
    assert easy["speedup_examples_50"] == pytest.approx(2.0)  # 0.25 at 750 examples
    # uniform at two resolutions (seed 0 only: 0.09, 0.21, 0.31, 0.36, 0.41 at 0, 1,500, ... 6,000
    # examples) ends above uniform, but later: 0.25 at 2,100 examples, 0.40 at 5,700.
    two = _row(board, "uniform", two_resolution=True)
    assert two["speedup_examples_50"] == pytest.approx(1500 / 2100)
    assert two["speedup_examples"] == pytest.approx(4000 / 5700)


def test_paired_tests_against_uniform_worked_out_by_hand(board: Leaderboard) -> None:
    # Final scores by seed: uniform 0.39, 0.40, 0.41. Differences seed by seed: jest 0.11, 0.11, 0.08
    # (mean 0.10, se 0.01: t = 10), easy-reference 0.12, 0.05, 0.07 (mean 0.08, sd √0.0013),
    # hard-learner -0.13, -0.16, -0.16 (t = -15); two degrees of freedom: p = 1 - |t| / √(2 + t²).
    def p(t: float) -> float:
        return 1 - abs(t) / math.sqrt(2 + t * t)

    t_easy = 0.08 / (math.sqrt(0.0013) / math.sqrt(3))
    expected = {"jest": (0.10, p(10)), "easy-reference": (0.08, p(t_easy)), "hard-learner": (-0.15, p(-15))}
    for strategy, (difference, p_value) in expected.items():
        row = _row(board, strategy)
        assert row["vs_uniform_test"] == "paired"
        assert row["vs_uniform_difference"] == pytest.approx(difference)
        assert row["vs_uniform_p"] == pytest.approx(p_value)
    # Holm over the three tested: hard-learner's p x 3, then jest's x 2, then easy-reference's x 1.
    holm = {"hard-learner": 3 * p(15), "jest": max(3 * p(15), 2 * p(10)), "easy-reference": p(t_easy)}
    for strategy, adjusted in holm.items():
        assert _row(board, strategy)["vs_uniform_p_holm"] == pytest.approx(adjusted)
    verdicts = {s: _row(board, s)["vs_uniform_verdict"] for s in holm}
    assert verdicts == {"hard-learner": "worse", "jest": "better", "easy-reference": "not separable"}
    jest = _row(board, "jest")
    half = 4.302653 * 0.01
    assert (jest["vs_uniform_low"], jest["vs_uniform_high"]) == (
        pytest.approx(0.10 - half),
        pytest.approx(0.10 + half),
    )
    assert _row(board, "uniform", two_resolution=False)["vs_uniform_verdict"] == "baseline"
    assert _row(board, "uniform", two_resolution=True)["vs_uniform_verdict"] == "no test"  # one seed


def test_a_strategy_that_never_reaches_uniforms_score(board: Leaderboard) -> None:
    hard = _row(board, "hard-learner")
    for column in (
        "speedup_examples",
        "speedup_flops_spent",
        "speedup_flops_all_in",
        "speedup_flops_amortised",
    ):
        assert math.isnan(hard[column])


def test_one_reference_and_none(board: Leaderboard) -> None:
    assert _row(board, "jest")["references"] == 1
    assert _row(board, "hard-learner")["references"] == 0
    assert board.table["reference_range"].isna().all()


def test_spread_between_references(tmp_path: Path) -> None:
    """jest run against a second reference that lifts every score by 0.02: two rows, each told the
    other's mean, and the one-off cost of each reference shared by its own three runs."""
    write_suite(tmp_path, names=("uniform", "jest"))
    second = replace(
        SPECS["jest"], reference="ref-second-000000", scores=tuple(s + 0.02 for s in SPECS["jest"].scores)
    )
    for seed in second.seeds:
        run_file(second, seed, tmp_path / "datasets" / "shapes").save(tmp_path)
    board = build_leaderboard(read_runs(tmp_path))
    jests = board.table[board.table["strategy"] == "jest"]
    assert jests["references"].tolist() == [2, 2]
    assert jests["reference_range"].tolist() == pytest.approx([0.02, 0.02])
    assert jests["reference_sd"].tolist() == pytest.approx([0.02 / math.sqrt(2)] * 2)
    assert jests["reference_means"].iloc[0] == "ref-second-000000: 0.5200; ref0123456789abcd: 0.5000"
    assert jests["reference_runs"].tolist() == [3, 3]
    files = write_leaderboard(board, tmp_path / "board")
    text = files.markdown.read_text()
    assert "| reference |" in text  # the rows differ in their reference alone: it gets a column
    assert "2 references: 0.5200, 0.5000; range 0.0200, sd 0.0141" in text


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
        "not reached",
        "5.33×",
        "+0.100 [+0.057, +0.143], better (Holm p = 0.02)",
        "+0.080 [−0.010, +0.170], not separable (Holm p = 0.062)",
        "no test (one seed)",
        "one reference",
        "Holm–Bonferroni-adjusted over the 3 configurations compared",
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


def test_a_leaderboard_renders_again_from_its_rows_csv(
    suite_dir: tuple[Path, Suite], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`jestbench leaderboard --rows` (how results/leaderboard/ is regenerated without run files):
    the same table, the rows file unchanged to the byte, the title and note of the manifest beside it."""
    first = render_leaderboard(read_runs(suite_dir[0]), tmp_path / "first", title="Synthetic", note="a note")
    again = tmp_path / "again"
    command = ["leaderboard", "--work", str(tmp_path), "--rows", str(first.rows), "--out", str(again)]
    assert main(command) == 0
    assert (again / "rows.csv").read_bytes() == first.rows.read_bytes()
    pd.testing.assert_frame_equal(pd.read_csv(again / "leaderboard.csv"), pd.read_csv(first.csv))
    text = (again / "leaderboard.md").read_text()
    assert text.startswith("# Synthetic\n\n*a note*")
    assert main([*command[:-1], str(tmp_path / "third"), "--title", "Other"]) == 0
    assert (tmp_path / "third" / "leaderboard.md").read_text().startswith("# Other\n")
    capsys.readouterr()

    assert main(["leaderboard", "--work", str(tmp_path), "--rows", str(tmp_path / "none.csv")]) == 2
    assert f"cannot read rows file {tmp_path / 'none.csv'}" in capsys.readouterr().err
    partial = tmp_path / "partial.csv"
    pd.read_csv(first.rows).drop(columns=["flops_spent", "mean"]).to_csv(partial, index=False)
    assert main(["leaderboard", "--work", str(tmp_path), "--rows", str(partial)]) == 2
    assert "lacks flops_spent, mean" in capsys.readouterr().err


def test_seeds_that_do_not_pair_fall_back_to_welch(tmp_path: Path) -> None:
    """jest at seeds 0 and 1 against uniform at 0, 1 and 2: no pairing, so Welch's test, and the
    cell says so."""
    write_suite(tmp_path, names=("uniform",))
    for seed in (0, 1):
        run_file(SPECS["jest"], seed, tmp_path / "datasets" / "shapes").save(tmp_path)
    board = build_leaderboard(read_runs(tmp_path))
    jest = _row(board, "jest")
    expected = welch_t([0.50, 0.51], [0.39, 0.40, 0.41])
    assert jest["vs_uniform_test"] == "welch"
    assert jest["vs_uniform_p"] == pytest.approx(float(expected.p))
    assert jest["vs_uniform_p_holm"] == pytest.approx(float(expected.p))  # the only comparison
    text = write_leaderboard(board, tmp_path / "board").markdown.read_text()
    assert "Welch, seeds differ)" in text
