"""Tuned rows: a study's best point re-run at fresh seeds, evaluated on ``eval``, for leaderboards.

The best trial won on its seed: among many trials, the luckiest draw of a noisy score tends to come
out on top, so its own score overstates what the point does. Its point is run again at seeds the
study never used (the run's seed + 1, + 2, ...), on both splits like any leaderboard run, and marked
``tuned`` with the study's name: a leaderboard shows those rows as tuned, apart from hand-set
configurations, with their own interval over the fresh seeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from harness.leaderboard import (
    Leaderboard,
    LeaderboardFiles,
    build_leaderboard,
    leaderboard_dir,
    write_leaderboard,
)
from harness.leaderboard.table import EVAL_SPLIT
from harness.records import RunFile
from harness.results import read_runs
from harness.runconfig import RunConfig
from harness.runner import run_one
from harness.tune.study import POINT_ATTR, TUNING_SPLIT, TuneError, Tuning


@dataclass(frozen=True)
class TunedRuns:
    """The re-runs of a study's best point: their run ids, and the errors of those that failed."""

    trial: int
    point: dict[str, Any]
    run_ids: list[str]
    failed: dict[str, str]


def tuned_configs(tuning: Tuning, point: dict[str, Any], seeds: int) -> list[RunConfig]:
    """The runs of ``point`` at ``seeds`` fresh seeds, on both splits, marked as tuned by the study."""
    if seeds < 1:
        raise TuneError(f"--seeds {seeds} must be >= 1")
    config = tuning.config_for(point)
    return [
        dataclasses.replace(
            config, seed=tuning.base.seed + i, eval_splits=(TUNING_SPLIT, EVAL_SPLIT), tuned=tuning.study
        )
        for i in range(1, seeds + 1)
    ]


def rerun_best(
    tuning: Tuning,
    trial: optuna.trial.FrozenTrial,
    *,
    seeds: int,
    threads: int | None = None,
    show_progress: bool = True,
    announce: Callable[[str], None] = print,
) -> TunedRuns:
    """Run the point of ``trial`` (the study's best: :func:`harness.tune.best_trial`) at ``seeds``
    fresh seeds; complete runs are kept, not rerun. ``threads``: torch threads of each run (of each
    rank of a run over K ranks; default there: the cores shared out between the ranks).

    Raises:
        TuneError: the trial records no point (it was not run by ``jestbench tune``).
    """
    point = trial.user_attrs.get(POINT_ATTR)
    if point is None:
        raise TuneError(
            f"trial {trial.number} of study {tuning.study!r} records no point: it was not run by "
            "jestbench tune (added by hand?), so its run cannot be made again"
        )
    configs = tuned_configs(tuning, point, seeds)
    failed: dict[str, str] = {}
    for config in configs:
        if RunFile.load_complete(tuning.work_dir, config.run_id) is not None:
            announce(f"tuned run {config.run_id} (seed {config.seed}) is complete")
            continue
        announce(f"tuned run {config.run_id}: trial {trial.number}'s point at seed {config.seed}")
        error = run_one(config, tuning.work_dir, show_progress=show_progress, threads=threads)
        if error:
            failed[config.run_id] = error
    return TunedRuns(trial.number, point, [c.run_id for c in configs], failed)


def render_tuned_leaderboard(
    tuning: Tuning, tuned: TunedRuns, companions: Sequence[str], *, title: str
) -> tuple[Leaderboard, LeaderboardFiles]:
    """The leaderboard of the tuned runs beside ``companions`` (the suite's runs, so the tuned row
    stands next to the hand-set ones and uniform's baseline), in ``WORK/leaderboards/<study>``.
    Companions without a run file yet are left out."""
    work: Path = tuning.work_dir
    present = [run_id for run_id in companions if RunFile.path_for(work, run_id).exists()]
    board = build_leaderboard(read_runs(work, [*present, *tuned.run_ids]))
    note = (
        f"Tuned rows: study {tuning.study}'s best point (trial {tuned.trial}) re-run at "
        f"{len(tuned.run_ids)} fresh seed(s), never the seed it was tuned on."
    )
    files = write_leaderboard(board, leaderboard_dir(work, tuning.study), title=title, note=note)
    return board, files
