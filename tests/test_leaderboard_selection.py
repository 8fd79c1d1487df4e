"""The "what each strategy selected" table shows the noise kinds the pool held, ``unknown`` included
(a bring-your-own pool), and no built-in kind that the pool never held."""

from __future__ import annotations

from pathlib import Path

from synthetic_runs import SPECS, run_file

from harness.data import NOISE_KINDS
from harness.leaderboard import render_leaderboard
from harness.results import read_runs

# A pool of your own: 70% of its samples say nothing of their noise kind, 30% say they are clean.
POOL = {"clean": 0.3, "unknown": 0.7}
PICKED = {"uniform": {"clean": 0.3, "unknown": 0.7}, "jest": {"clean": 0.6, "unknown": 0.4}}


def test_a_bring_your_own_pool_shows_unknown_and_hides_kinds_it_never_held(tmp_path: Path) -> None:
    work = tmp_path / "work"
    for name in ("uniform", "jest"):
        for seed in SPECS[name].seeds:
            run = run_file(SPECS[name], seed, work / "datasets" / "mine")
            for row in run.rows:
                for kind in NOISE_KINDS:
                    row[f"selected_{kind}"] = row[f"super_{kind}"] = 0
                for kind, share in POOL.items():
                    row[f"super_{kind}"] = round(share * row["examples_scored"])
                    row[f"selected_{kind}"] = round(PICKED[name][kind] * row["examples_seen"])
            run.save(work)

    files = render_leaderboard(read_runs(work), tmp_path / "board")
    page = (files.directory / "leaderboard.md").read_text()
    selection = page[page.index("## What each strategy selected") :]
    lines = selection.splitlines()
    header = next(line for line in lines if line.startswith("|"))
    assert "clean: selected / pool" in header and "unknown: selected / pool" in header
    for kind in ("redundant", "mismatched", "uninformative", "unlearnable"):
        assert kind not in header
    jest = next(line for line in lines if line.startswith("|") and "jest" in line)
    assert "60% / 30%" in jest and "40% / 70%" in jest
