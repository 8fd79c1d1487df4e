"""The statistics a leaderboard reports: intervals over seeds, mean curves, and the paper's speedups.

Kept apart from the tables and the rendering so each rule is written once and tested on cases that
can be worked out by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 2000
NOT_REACHED = 0.0  # a bootstrap sample whose curve never reaches the target counts as the worst speedup


def t_critical(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided critical value of Student's t with ``df`` degrees of freedom (12.706 for df = 1 at
    95%), without scipy: the density integrated by Simpson's rule, the bound found by bisection."""
    if df < 1:
        raise ValueError(f"Student's t needs at least one degree of freedom, got {df}")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def central(c: float) -> float:  # P(|T| <= c)
        x = np.linspace(0.0, c, 4001)
        density = np.exp(log_norm - (df + 1) / 2 * np.log1p(x * x / df))
        h = c / 4000
        simpson = h / 3 * (density[0] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum() + density[-1])
        return 2 * float(simpson)

    low, high = 0.0, 1.0
    while central(high) < confidence:
        low, high = high, 2 * high
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if central(mid) < confidence else (low, mid)
    return (low + high) / 2


@dataclass(frozen=True)
class Interval:
    """A mean over seeds and its 95% t-interval; ``low``/``high`` are NaN with fewer than two seeds."""

    mean: float
    low: float
    high: float
    sd: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Interval:
        data = np.asarray(values, dtype=float)
        n = len(data)
        mean = float(data.mean())
        if n < 2:
            return cls(mean, math.nan, math.nan, math.nan, n)
        sd = float(data.std(ddof=1))
        half = t_critical(n - 1) * sd / math.sqrt(n)
        return cls(mean, mean - half, mean + half, sd, n)


@dataclass(frozen=True)
class Curve:
    """Seeds' curves of score against a cost (examples or FLOPs), on one common grid.

    ``scores[s, k]`` is seed ``s`` interpolated linearly at ``grid[k]``; the grid is the union of the
    seeds' evaluation points within the range every seed covers, so the mean over seeds at a grid point
    is the mean curve at that cost.
    """

    grid: np.ndarray
    scores: np.ndarray

    @classmethod
    def of(cls, seeds: Sequence[tuple[Sequence[float], Sequence[float]]]) -> Curve:
        """``seeds`` holds one ``(cost, score)`` pair of sequences per seed, in evaluation order."""
        xs = [np.asarray(x, dtype=float) for x, _ in seeds]
        ys = [np.asarray(y, dtype=float) for _, y in seeds]
        start, end = max(x.min() for x in xs), min(x.max() for x in xs)
        grid = np.unique(np.concatenate(xs))
        grid = grid[(grid >= start) & (grid <= end)]
        return cls(grid, np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys, strict=True)]))

    def mean(self) -> np.ndarray:
        return np.asarray(self.scores.mean(axis=0))


def first_reach(grid: np.ndarray, curves: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The smallest cost at which each piecewise-linear curve reaches its target; NaN where it never does.

    Args:
        grid: (K,) increasing costs.
        curves: (R, K) scores, one curve per row.
        targets: (R,) the score each curve must reach.
    """
    reached = curves >= targets[:, None]
    first = reached.argmax(axis=1)
    rows = np.arange(len(curves))
    before = np.maximum(first - 1, 0)
    y0, y1 = curves[rows, before], curves[rows, first]
    x0, x1 = grid[before], grid[first]
    rise = y1 - y0
    with np.errstate(divide="ignore", invalid="ignore"):
        # Linear interpolation between the last point below the target and the first at or above it.
        cost = np.where(first == 0, grid[0], x0 + (targets - y0) / np.where(rise > 0, rise, 1) * (x1 - x0))
    return np.where(reached.any(axis=1), cost, np.nan)


@dataclass(frozen=True)
class Speedup:
    """How many times less cost than uniform a strategy needs to reach uniform's final score.

    ``value`` is NaN where the strategy's mean curve never reaches it ("not reached"); ``low``/``high``
    are the 2.5th and 97.5th percentiles over bootstrap samples (NaN without two seeds on each side),
    with :data:`NOT_REACHED` standing for the samples that never reach it.
    """

    value: float
    low: float
    high: float


def speedup(
    strategy: Curve,
    baseline_final_scores: Sequence[float],
    baseline_final_costs: Sequence[float],
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> Speedup:
    """The paper's speedup (JEST Fig. 1): the baseline's final cost over the cost at which the
    strategy's mean curve first reaches the baseline's final mean score.

    The interval resamples the strategy's seeds and the baseline's seeds independently, with
    replacement, and recomputes target, curve and ratio for each sample.
    """
    base_scores = np.asarray(baseline_final_scores, dtype=float)
    base_costs = np.asarray(baseline_final_costs, dtype=float)
    point = _ratios(strategy, base_scores.mean(keepdims=True), base_costs.mean(keepdims=True), None)[0]
    n_strategy, n_base = len(strategy.scores), len(base_scores)
    if n_strategy < 2 or n_base < 2:
        return Speedup(float(point), math.nan, math.nan)
    rng = np.random.default_rng(seed)
    pick_base = rng.integers(0, n_base, size=(samples, n_base))
    pick_strategy = rng.integers(0, n_strategy, size=(samples, n_strategy))
    ratios = _ratios(
        strategy, base_scores[pick_base].mean(axis=1), base_costs[pick_base].mean(axis=1), pick_strategy
    )
    ratios = np.where(np.isnan(ratios), NOT_REACHED, ratios)
    # No interpolation between samples: a sample reached at the start is an infinite ratio.
    low, high = np.percentile(
        ratios, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2], method="inverted_cdf"
    )
    return Speedup(float(point), float(low), float(high))


def _ratios(
    strategy: Curve, targets: np.ndarray, base_costs: np.ndarray, pick: np.ndarray | None
) -> np.ndarray:
    """Baseline cost over the cost to reach ``targets``, for the mean curve of the seeds in each row of
    ``pick`` (all seeds, once, when ``pick`` is None)."""
    curves = strategy.mean()[None, :] if pick is None else strategy.scores[pick].mean(axis=1)
    reach = first_reach(strategy.grid, curves, targets)
    with np.errstate(divide="ignore"):
        return np.asarray(base_costs / reach)
