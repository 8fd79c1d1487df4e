"""The leaderboard's figures, as PNG files: score against FLOPs and against examples seen (mean over
seeds with a band), and what each strategy selected by noise kind.

Figures are drawn on the Agg canvas directly (no pyplot), so rendering needs no display, changes no
global matplotlib state and works inside a suite's worker processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.data import RECORDED_NOISE_KINDS
from harness.leaderboard.columns import pool_kinds
from harness.leaderboard.stats import TARGET_FRACTIONS
from harness.leaderboard.table import Leaderboard, strategy_label, target_column

# One colour per noise kind, from clean (green) to unlearnable (grey): the reading order of a bar.
_NOISE_COLOURS = dict(
    zip(RECORDED_NOISE_KINDS, ("#2e7d32", "#9ccc65", "#ef6c00", "#fbc02d", "#9e9e9e", "#5c6bc0"), strict=True)
)


@dataclass(frozen=True)
class FigureFile:
    """A written figure and the caption that says how to read it."""

    path: Path
    title: str
    caption: str


def label(row: Mapping[str, Any]) -> str:
    """A configuration's name in legends: strategy, parameters and filter ratio."""
    params = f" ({row['params']})" if row["params"] else ""
    return f"{strategy_label(row)}{params}, f={row['f']:.2g}"


def _colours(n: int) -> list[tuple[float, ...]]:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    # No software/version metadata: the same leaderboard renders to the same bytes.
    figure.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})


def _score_curves(board: Leaderboard, axis: str, xlabel: str, path: Path) -> None:
    figure = Figure(figsize=(9, 5))
    ax = figure.add_subplot()
    rows = board.table.to_dict("records")
    for row, colour in zip(rows, _colours(len(rows)), strict=True):
        curve = board.curves[row["config_key"]][axis]
        ax.plot(curve.grid, curve.mean(), color=colour, label=label(row), linewidth=1.8)
        if len(curve.scores) > 1:
            ax.fill_between(
                curve.grid, curve.scores.min(axis=0), curve.scores.max(axis=0), color=colour, alpha=0.18
            )
    for row in rows:
        if row["baseline"] == row["config_key"]:
            for fraction in TARGET_FRACTIONS:
                final = fraction == 1
                ax.axhline(
                    row[target_column(fraction)],
                    color="black" if final else "grey",
                    linestyle=":",
                    linewidth=1 if final else 0.8,
                    label="uniform's final score" if final else f"{100 * fraction:.0f}% of the way to it",
                )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"mean score ({board.split} split)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    _save(figure, path)


def _selection(board: Leaderboard, path: Path) -> None:
    rows = board.table.to_dict("records")
    height = 1.0 + 0.7 * len(rows)
    figure = Figure(figsize=(11, height))
    bars, repeats = figure.subplots(1, 2, width_ratios=(3, 1), sharey=True)
    positions = np.arange(len(rows))
    kinds = pool_kinds(board.table)
    for offset, prefix, hatch in ((-0.2, "selected", None), (0.2, "super", "//")):
        left = np.zeros(len(rows))
        for kind in kinds:
            share = np.nan_to_num(np.array([row[f"{prefix}_{kind}"] for row in rows], dtype=float))
            bars.barh(
                positions + offset,
                share,
                height=0.38,
                left=left,
                color=_NOISE_COLOURS[kind],
                hatch=hatch,
                edgecolor="white",
                label=kind if prefix == "selected" else None,
            )
            left += share
    bars.set_yticks(positions, [label(row) for row in rows], fontsize=8)
    bars.invert_yaxis()
    bars.set_xlim(0, 1)
    bars.set_xlabel("share of examples (upper bar: selected; lower, hatched: super-batches)")
    bars.legend(
        loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=max(1, len(kinds)), fontsize=8, frameon=False
    )
    for offset, column, name in (
        (-0.2, "selected_repeats_per_batch", "selected"),
        (0.2, "super_repeats_per_batch", "super-batch"),
    ):
        repeats.barh(
            positions + offset,
            [row[column] for row in rows],
            height=0.38,
            label=name,
            color="#5c6bc0" if name == "selected" else "#c5cae9",
        )
    repeats.set_xlabel("repeated captions per step")
    repeats.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, fontsize=8, frameon=False)
    _save(figure, path)


def draw_figures(board: Leaderboard, directory: Path) -> list[FigureFile]:
    """Write the leaderboard's figures into ``directory`` and return them with their captions."""
    directory.mkdir(parents=True, exist_ok=True)
    band = "the line is the mean over seeds, the band the range between the lowest and highest seed"
    files = [
        FigureFile(
            directory / "score_vs_flops.png",
            "Score against FLOPs spent",
            f"Mean score on the {board.split} split against FLOPs spent (training, scoring and per-step "
            f"reference; 1 multiply-add = 1 FLOP); {band}. The black dotted line is uniform's final score, "
            "the grey ones 75% and 50% of the way to it from its first evaluation: where a mean curve first "
            "crosses one, against where uniform's first does, is what the FLOPs speedup at that target "
            "measures.",
        ),
        FigureFile(
            directory / "score_vs_examples.png",
            "Score against examples seen",
            f"Mean score on the {board.split} split against examples trained on; {band}; the dotted lines are the speedups' targets, as above.",
        ),
        FigureFile(
            directory / "selection.png",
            "What each strategy selected",
            "Left: the noise kinds of the examples each strategy selected (upper bar) and of the "
            "super-batches it selected from (lower, hatched), over the whole run and all seeds. Right: "
            "captions repeated within a batch per step, selected batch against super-batch.",
        ),
    ]
    _score_curves(board, "flops_spent", "FLOPs spent (1 multiply-add = 1 FLOP)", files[0].path)
    _score_curves(board, "examples_seen", "examples seen", files[1].path)
    _selection(board, files[2].path)
    return files
