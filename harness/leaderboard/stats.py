"""The statistics a leaderboard reports: intervals over seeds, mean curves, the paper's speedups, and
the test of each strategy against uniform.

Kept apart from the tables and the rendering so each rule is written once and tested on simulated data
with known answers (tests/test_leaderboard_stats.py). Student's t is computed here, without scipy, from
the regularised incomplete beta function; everything is vectorised over leading axes so that the tests
can check coverage and false-positive rates on tens of thousands of simulated suites at once.

Speedups carry no interval: with three seeds a percentile bootstrap has ten distinct resamples a side
and covered about three times in four at a nominal 95% (docs/RESULTS.md says more). Whether a strategy
is better than uniform is the paired test's answer, :func:`compare`, corrected by :func:`holm`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
# The speedups' targets, as shares of the way from uniform's first evaluation (the untrained model) to
# its final mean score. Fixed before any strategy was compared with them; 1.0 is the paper's target.
TARGET_FRACTIONS = (1.0, 0.75, 0.5)


def regularized_beta(a: ArrayLike, b: ArrayLike, x: ArrayLike) -> np.ndarray:
    """I_x(a, b), the regularised incomplete beta function, elementwise: the continued fraction of
    Numerical Recipes (3rd ed., §6.4) by the modified Lentz method, on the side of ``x`` where it
    converges fast (I_x(a, b) = 1 - I_{1-x}(b, a) on the other)."""
    a, b, x = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (a, b, x)))
    lgamma = np.vectorize(math.lgamma, otypes=[float])
    inside = (x > 0) & (x < 1)
    xs = np.where(inside, x, 0.5)
    with np.errstate(divide="ignore"):
        log_front = lgamma(a + b) - lgamma(a) - lgamma(b) + a * np.log(xs) + b * np.log1p(-xs)
    front = np.exp(log_front)
    # Each element on its side only: the other side's fraction converges slowly, or not at all.
    direct = xs < (a + 1) / (a + b + 2)
    value = np.empty(xs.shape)
    value[direct] = front[direct] * _beta_fraction(a[direct], b[direct], xs[direct]) / a[direct]
    swap = ~direct
    value[swap] = 1 - front[swap] * _beta_fraction(b[swap], a[swap], 1 - xs[swap]) / b[swap]
    return np.where(x <= 0, 0.0, np.where(x >= 1, 1.0, value))


def _beta_fraction(a: np.ndarray, b: np.ndarray, x: np.ndarray, iterations: int = 400) -> np.ndarray:
    tiny = 1e-300

    def guard(v: np.ndarray) -> np.ndarray:
        return np.where(np.abs(v) < tiny, tiny, v)

    c = np.ones_like(x)
    d = 1 / guard(1 - (a + b) * x / (a + 1))
    h = d.copy()
    for m in range(1, iterations + 1):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1 / guard(1 + even * d)
        c = guard(1 + even / c)
        h = h * d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 / guard(1 + odd * d)
        c = guard(1 + odd / c)
        step = d * c
        h = h * step
        if np.all(np.abs(step - 1) < 1e-15):
            break
    return h


def t_two_sided_p(t: ArrayLike, df: ArrayLike) -> np.ndarray:
    """P(|T| >= |t|) for Student's t with ``df`` (not necessarily whole) degrees of freedom:
    I_{df/(df+t²)}(df/2, 1/2). NaN where ``t`` or ``df`` is."""
    t, df = np.broadcast_arrays(np.asarray(t, dtype=float), np.asarray(df, dtype=float))
    with np.errstate(invalid="ignore", over="ignore"):
        x = np.where(np.isinf(t), 0.0, df / (df + t * t))
    p = regularized_beta(df / 2, 0.5, np.where(np.isnan(x), 0.5, x))
    return np.where(np.isnan(t) | np.isnan(df), np.nan, p)


def t_critical(df: float, confidence: float = CONFIDENCE) -> float:
    """The two-sided critical value of Student's t with ``df`` degrees of freedom (12.706 for df = 1
    at 95%), found by bisection on :func:`t_two_sided_p`."""
    if not df > 0:
        raise ValueError(f"Student's t needs a positive number of degrees of freedom, got {df}")
    alpha = 1 - confidence
    low, high = 0.0, 1.0
    while float(t_two_sided_p(high, df)) > alpha:
        low, high = high, 2 * high
    for _ in range(80):
        mid = (low + high) / 2
        low, high = (mid, high) if float(t_two_sided_p(mid, df)) > alpha else (low, mid)
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


# -- Strategy against uniform -----------------------------------------------------------------------


@dataclass(frozen=True)
class TTest:
    """A difference of means, its standard error, degrees of freedom and two-sided p-value; arrays of
    one shape when the test ran over a batch of simulated suites."""

    difference: np.ndarray
    se: np.ndarray
    df: np.ndarray
    p: np.ndarray

    @classmethod
    def of(cls, difference: np.ndarray, se: np.ndarray, df: np.ndarray) -> TTest:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = difference / se
        # No spread at all: a difference that is exactly the same every time, or none.
        t = np.where(se == 0, np.where(difference == 0, 0.0, np.inf), t)
        return cls(difference, se, df, t_two_sided_p(t, df))

    def interval(self, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
        """The two-sided t-interval of the difference (per test, not adjusted for multiplicity)."""
        critical = np.vectorize(lambda df: t_critical(df, confidence), otypes=[float])(self.df)
        return self.difference - critical * self.se, self.difference + critical * self.se


def paired_t(differences: ArrayLike) -> TTest:
    """Paired t-test of per-seed differences (last axis: seeds): is their mean zero?

    Runs of one leaderboard share seeds, and a seed fixes the initial model and the data order, so the
    difference seed by seed removes what the seeds share."""
    d = np.asarray(differences, dtype=float)
    n = d.shape[-1]
    if n < 2:
        raise ValueError(f"a paired t-test needs two pairs or more, got {n}")
    se = d.std(axis=-1, ddof=1) / math.sqrt(n)
    return TTest.of(d.mean(axis=-1), se, np.full(se.shape, n - 1.0))


def welch_t(a: ArrayLike, b: ArrayLike) -> TTest:
    """Welch's t-test of mean(a) - mean(b) (last axis: seeds), unequal variances, Welch–Satterthwaite
    degrees of freedom: for runs whose seeds do not pair."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n, m = x.shape[-1], y.shape[-1]
    if n < 2 or m < 2:
        raise ValueError(f"Welch's t-test needs two values or more a side, got {n} and {m}")
    vx, vy = x.var(axis=-1, ddof=1) / n, y.var(axis=-1, ddof=1) / m
    se = np.sqrt(vx + vy)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (vx + vy) ** 2 / (vx**2 / (n - 1) + vy**2 / (m - 1))
    df = np.where(se == 0, n + m - 2.0, df)
    return TTest.of(x.mean(axis=-1) - y.mean(axis=-1), se, df)


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (Holm 1979) of the family on the last axis: the k-th smallest
    of m is multiplied by m - k + 1, made non-decreasing in that order and capped at 1. Rejecting where
    the adjusted value is below α keeps the chance of any false rejection among the m at most α,
    whatever the dependence between the tests."""
    p = np.asarray(p_values, dtype=float)
    m = p.shape[-1] if p.ndim else 0
    if m == 0:
        return p.copy()
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1) * (m - np.arange(m))
    adjusted = np.minimum(1.0, np.maximum.accumulate(ranked, axis=-1))
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


@dataclass(frozen=True)
class Comparison:
    """A configuration's final score against uniform's: ``difference`` = its mean − uniform's, the
    95% interval of that difference (not adjusted for multiplicity), the two-sided p-value, and the
    test: ``paired`` (same seeds, paired t) or ``welch`` (seed sets differ)."""

    difference: float
    low: float
    high: float
    p: float
    test: str


def compare(strategy: Mapping[int, float], baseline: Mapping[int, float]) -> Comparison | None:
    """Final scores by seed against the baseline's: paired t when both ran the same seeds, Welch's
    t otherwise; None with fewer than two seeds on either side (nothing to test)."""
    if len(strategy) < 2 or len(baseline) < 2:
        return None
    if set(strategy) == set(baseline):
        seeds = sorted(strategy)
        result = paired_t([strategy[s] - baseline[s] for s in seeds])
        test = "paired"
    else:
        result = welch_t(list(strategy.values()), list(baseline.values()))
        test = "welch"
    low, high = result.interval()
    return Comparison(float(result.difference), float(low), float(high), float(result.p), test)


# -- Curves and speedups ----------------------------------------------------------------------------


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


def targets(baseline: Curve, fractions: Sequence[float] = TARGET_FRACTIONS) -> dict[float, float]:
    """The speedups' target scores: ``fraction`` of the way from the baseline's mean curve at its first
    evaluation to its last point (its final mean score: uniform's seeds all end at the same cost)."""
    mean = baseline.mean()
    start, final = float(mean[0]), float(mean[-1])
    return {
        fraction: final if fraction == 1 else start + fraction * (final - start) for fraction in fractions
    }


def reach(curve: Curve, target: float) -> float:
    """The cost at which the curve's mean over seeds first reaches ``target``; NaN if it never does."""
    return float(first_reach(curve.grid, curve.mean()[None, :], np.array([target]))[0])


def speedup(strategy: Curve, baseline: Curve, target: float) -> float:
    """The paper's speedup (JEST Fig. 1), made to give uniform exactly 1 against itself: the cost at
    which the baseline's mean curve first reaches ``target`` over the cost at which the strategy's does.

    NaN where the strategy never reaches it; infinite where it reaches it at no cost (its first
    evaluation) and the baseline needs some; 1 where both need the same, none included.
    """
    own, base = reach(strategy, target), reach(baseline, target)
    if own == base:
        return 1.0
    with np.errstate(divide="ignore"):
        return float(np.float64(base) / np.float64(own))
