"""Leaderboards from run files: a ranked table, each configuration tested against uniform, the paper's
speedups, what each strategy selected, figures, and a self-contained web page (docs/RESULTS.md).

The suite runner and ``jestbench leaderboard`` call :func:`render_leaderboard` with the rows that
:func:`harness.results.read_runs` read; :func:`build_leaderboard` is the same leaderboard as data.
"""

from harness.leaderboard.render import (
    DEFAULT_TITLE,
    LeaderboardFiles,
    is_leaderboard,
    leaderboard_dir,
    ranking,
    render_leaderboard,
    write_leaderboard,
)
from harness.leaderboard.table import Leaderboard, LeaderboardError, build_leaderboard

__all__ = [
    "DEFAULT_TITLE",
    "Leaderboard",
    "LeaderboardError",
    "LeaderboardFiles",
    "build_leaderboard",
    "is_leaderboard",
    "leaderboard_dir",
    "ranking",
    "render_leaderboard",
    "write_leaderboard",
]
