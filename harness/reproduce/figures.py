"""The report's figures, drawn on the Agg canvas (no pyplot, no display, no global state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


def save(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})


def selection_quality(
    points: Sequence[tuple[str, Mapping[str, Sequence[float]], Sequence[Sequence[float]]]],
    chunk_counts: Sequence[int],
    path: Path,
) -> None:
    """Fig. 2 (middle): joint learnability against chunks N, one panel per point of training, with
    uniform, top-k and Gibbs as lines; the Gibbs traces (first super-batch) below."""
    figure = Figure(figsize=(4.2 * len(points), 7), layout="constrained")
    for column, (label, scores, traces) in enumerate(points):
        ax = figure.add_subplot(2, len(points), column + 1)
        ns = [n for n in chunk_counts if f"JEST N={n}" in scores]
        means = [float(np.mean(scores[f"JEST N={n}"])) for n in ns]
        ax.plot(ns, means, "o-", color="C0", label="JEST")
        for method, colour in (("uniform", "C7"), ("top-k", "C1"), ("Gibbs", "C3")):
            ax.axhline(float(np.mean(scores[method])), color=colour, linestyle="--", label=method)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("chunks N")
        ax.set_ylabel("joint learnability per example")
        ax.set_title(label)
        ax.legend(fontsize=7)
        trace_ax = figure.add_subplot(2, len(points), len(points) + column + 1)
        for trace in traces:
            trace_ax.plot(np.linspace(0, 1, len(trace)), trace, color="C3", alpha=0.7)
        trace_ax.set_xlabel("share of Gibbs proposals")
        trace_ax.set_ylabel("joint learnability of the chain")
        trace_ax.set_title("Gibbs traces (first super-batch)")
    save(figure, path)


def filter_ratio(scores: Mapping[float, Sequence[float]], path: Path) -> None:
    """Fig. 2 (right): JEST's joint learnability against f, mean and one line per super-batch."""
    figure = Figure(figsize=(5, 4), layout="constrained")
    ax = figure.add_subplot()
    fs = sorted(scores)
    values = np.array([scores[f] for f in fs])
    ax.plot(fs, values, color="C7", alpha=0.4, linewidth=0.8)
    ax.plot(fs, values.mean(axis=1), "o-", color="C0", linewidth=2, label="mean over super-batches")
    ax.set_xlabel("filter ratio f")
    ax.set_ylabel("joint learnability per example")
    ax.legend(fontsize=8)
    save(figure, path)


def matrix(values: np.ndarray, selected: int, path: Path) -> None:
    """Fig. 2 (left): the learnability matrix sorted by selection order, the chosen block outlined."""
    figure = Figure(figsize=(5.5, 5), layout="constrained")
    ax = figure.add_subplot()
    limit = float(np.quantile(np.abs(values), 0.99)) or 1.0
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.add_patch(_rectangle(selected))
    ax.set_title("learnability L(θ) − L(θ*), sorted by JEST's selection order")
    figure.colorbar(image, ax=ax, shrink=0.8)
    save(figure, path)


def _rectangle(size: int) -> Rectangle:
    return Rectangle((-0.5, -0.5), size, size, fill=False, edgecolor="black", linewidth=1.2)


def bars(
    groups: Mapping[str, Mapping[str, float]],
    ylabel: str,
    path: Path,
    markers: Mapping[str, float] | None = None,
) -> None:
    """Stacked bars, one per group, one segment per part; optional markers (the paper's figures)."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    ax = figure.add_subplot()
    names = list(groups)
    parts = list(next(iter(groups.values())))
    bottom = np.zeros(len(names))
    for i, part in enumerate(parts):
        heights = np.array([groups[n][part] for n in names])
        ax.bar(names, heights, bottom=bottom, label=part, color=f"C{i}")
        bottom += heights
    for name, value in (markers or {}).items():
        if name in names:
            ax.plot([names.index(name)], [value], "k*", markersize=12)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, title="★ paper (A.4)" if markers else None)
    ax.tick_params(axis="x", labelsize=8, labelrotation=15)
    save(figure, path)


def score_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], xlabel: str, path: Path) -> None:
    """Mean score over seeds against cost, one line per configuration."""
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.add_subplot()
    for i, (name, (x, y)) in enumerate(curves.items()):
        ax.plot(x, y, color=f"C{i % 10}", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean score on eval")
    ax.legend(fontsize=7)
    save(figure, path)


def grouped_bars(groups: Mapping[str, Mapping[str, float]], ylabel: str, path: Path) -> None:
    """One group of bars per setting (a filter ratio), one bar per method."""
    figure = Figure(figsize=(8, 4), layout="constrained")
    ax = figure.add_subplot()
    names = list(groups)
    kinds = list(next(iter(groups.values())))
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        ax.bar(np.arange(len(names)) + i * width, [groups[n][kind] for n in names], width, label=kind)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    save(figure, path)
