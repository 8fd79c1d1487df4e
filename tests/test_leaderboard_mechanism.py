"""The leaderboard's mechanism check on synthetic run files whose mechanism columns are chosen so that
every number of its tables and its paragraph can be worked out by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from synthetic_runs import SPECS, run_file

from harness.data import NOISE_KINDS
from harness.leaderboard import build_leaderboard, render_leaderboard
from harness.leaderboard.mechanism import build_mechanism, paragraph
from harness.results import read_runs

# jest picks redundant examples 8 of 20 in the first eighth and 1 of 20 in the last (every seed); the
# rest of its picks are clean. Its super-batches hold 30 redundant of 100 per step.
REDUNDANT_PICKS = (8, 7, 6, 5, 4, 3, 2, 1)
# Learner loss on redundant probes per evaluation (mean over seeds; seeds add their jitter, which averages to 0), reference 0.2.
LEARNER_REDUNDANT = (0.7, 0.6, 0.5, 0.4, 0.3)
SPEARMAN = (0.9, 0.8, 0.7, 0.6, 0.5)


def _eighths(strategy: str) -> str:
    eighths = []
    for e in range(8):
        counts = {"steps": 2, "selected_repeats": 2 * e, "super_repeats": 10}
        redundant = REDUNDANT_PICKS[e] if strategy == "jest" else 4
        for kind in NOISE_KINDS:
            counts[f"selected_{kind}"] = {"redundant": redundant, "clean": 20 - redundant}.get(kind, 0)
            counts[f"super_{kind}"] = {"redundant": 60, "clean": 140}.get(kind, 0)
        eighths.append(counts)
    return json.dumps(eighths)


def _write(work: Path) -> None:
    dataset = work / "datasets" / "shapes"
    for name in ("uniform", "jest"):
        spec = SPECS[name]
        for seed in spec.seeds:
            run = run_file(spec, seed, dataset)
            for row in run.rows:
                i, jitter = row["evaluation"], spec.jitter[seed]
                row["selection_by_eighth"] = _eighths(name)
                row["probe_size"] = 5 * 256
                row["learner_scale"], row["learner_bias"] = 10.0 + i + jitter, -5.0 - i
                has_reference = spec.needs_reference
                row["reference_scale"] = 12.0 if has_reference else math.nan
                row["reference_bias"] = -6.0 if has_reference else math.nan
                row["probe_spearman"] = SPEARMAN[i] + jitter if has_reference else math.nan
                for kind in NOISE_KINDS:
                    learner = (LEARNER_REDUNDANT[i] if kind == "redundant" else 1.0) + jitter
                    reference = 0.2 if has_reference else math.nan
                    row[f"probe_{kind}"] = 256
                    row[f"probe_learner_loss_{kind}"] = learner
                    row[f"probe_reference_loss_{kind}"] = reference
                    row[f"probe_learnability_{kind}"] = learner - reference
            run.save(work)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    _write(tmp_path)
    return tmp_path


def test_the_mix_and_the_probe_curves_worked_out_by_hand(work: Path) -> None:
    board = build_leaderboard(read_runs(work))
    mechanism = build_mechanism(board)
    assert mechanism is not None
    jest = next(k for k, v in mechanism.labels.items() if v.startswith("jest"))
    mix = mechanism.mix[(mechanism.mix["config_key"] == jest) & (mechanism.mix["kind"] == "redundant")]
    assert mix.sort_values("eighth")["selected"].tolist() == pytest.approx([p / 20 for p in REDUNDANT_PICKS])
    assert mix["pool"].tolist() == pytest.approx([0.3] * 8)
    repeats = mechanism.repeats[mechanism.repeats["config_key"] == jest].sort_values("eighth")
    assert repeats["selected_repeats_per_batch"].tolist() == pytest.approx([e for e in range(8)])
    probe = mechanism.probe[mechanism.probe["config_key"] == jest].sort_values("evaluation")
    assert probe["probe_learner_loss_redundant"].tolist() == pytest.approx(LEARNER_REDUNDANT)
    assert probe["probe_learnability_redundant"].tolist() == pytest.approx(
        [v - 0.2 for v in LEARNER_REDUNDANT]
    )
    assert probe["probe_spearman"].tolist() == pytest.approx(SPEARMAN)
    assert probe["progress"].tolist() == pytest.approx([e * 8e6 / 1.2e10 for e in SPECS["jest"].examples])
    assert mechanism.seeds[jest] == 3


def test_the_paragraph_states_the_numbers(work: Path) -> None:
    board = build_leaderboard(read_runs(work))
    mechanism = build_mechanism(board)
    assert mechanism is not None
    text = paragraph(mechanism)
    assert text.startswith("From the run files (means over seeds; n = 3 per configuration): ")
    assert (
        "redundant examples were 40% of its picks in eighth 1 of the budget and 5% in eighth 8 (they "
        "were 30% of its super-batches); the learner's mean loss on redundant probes fell from 0.700 to "
        "0.300, the reference's is 0.200; the rank correlation between learnability and minus the "
        "reference loss fell from 0.90 to 0.50; the learner's logit scale rose from 10.0 to 14.0 (the "
        "reference's: 12.0)."
    ) in text
    # uniform picked the same mix in every eighth and has no reference: no change and no reference
    # numbers are invented.
    uniform = text[text.index("uniform") :].split(". ")[0]
    assert "clean examples were 80% of its picks in eighth 1 of the budget and 80% in eighth 8" in uniform
    assert "the learner's mean loss on clean probes stayed at 1.000" in uniform
    assert "reference" not in uniform and "rank correlation" not in uniform


def test_the_page_carries_the_check_and_old_rows_leave_it_out(work: Path, tmp_path: Path) -> None:
    files = render_leaderboard(read_runs(work), tmp_path / "board")
    text = files.markdown.read_text()
    assert "## Mechanism check" in text and "### Selection by eighth of the budget" in text
    assert "the learner's mean loss on redundant probes fell from 0.700 to 0.300" in text
    page = files.html.read_text()
    assert "Mechanism check" in page and "mechanism_selection.png" not in page  # embedded, not linked
    manifest = json.loads(files.manifest.read_text())
    for name in ("mechanism.csv", "figures/mechanism_selection.png", "figures/mechanism_learnability.png"):
        assert name in manifest["files"] and (files.directory / name).stat().st_size > 0
    # Rows written before the check existed: no section, nothing made up.
    old = tmp_path / "old"
    run_file(SPECS["uniform"], 0, old / "datasets" / "shapes").save(old)
    assert (
        "Mechanism check"
        not in render_leaderboard(read_runs(old), tmp_path / "old-board").markdown.read_text()
    )
