"""The leaderboard's statistics on cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.leaderboard.stats import NOT_REACHED, Curve, Interval, first_reach, speedup, t_critical


@pytest.mark.parametrize(
    ("df", "expected"),
    # Two-sided 95% critical values from any table of Student's t.
    [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (29, 2.045), (1000, 1.962)],
)
def test_t_critical_matches_the_tables(df: int, expected: float) -> None:
    assert t_critical(df) == pytest.approx(expected, abs=1e-3)


def test_interval_over_three_seeds_is_the_t_interval() -> None:
    interval = Interval.of([0.49, 0.50, 0.51])
    half = 4.303 * 0.01 / math.sqrt(3)
    assert (interval.mean, interval.sd, interval.n) == (pytest.approx(0.5), pytest.approx(0.01), 3)
    assert (interval.low, interval.high) == (
        pytest.approx(0.5 - half, abs=1e-5),
        pytest.approx(0.5 + half, abs=1e-5),
    )


def test_one_seed_has_no_interval() -> None:
    interval = Interval.of([0.4])
    assert interval.n == 1 and interval.mean == 0.4
    assert math.isnan(interval.low) and math.isnan(interval.high)


def test_curves_are_averaged_on_the_union_of_evaluation_points_within_the_common_range() -> None:
    curve = Curve.of([([0, 10, 20], [0.0, 1.0, 2.0]), ([0, 5, 15, 25], [0.0, 1.0, 1.0, 3.0])])
    assert curve.grid.tolist() == [0, 5, 10, 15, 20]  # 25 lies beyond the first seed's last point
    # Seed 0 at 5 and 15 by interpolation: 0.5 and 1.5; seed 1 at 10 and 20: 1.0 and 2.0.
    assert curve.scores.tolist() == [[0.0, 0.5, 1.0, 1.5, 2.0], [0.0, 1.0, 1.0, 1.0, 2.0]]
    assert curve.mean().tolist() == [0.0, 0.75, 1.0, 1.25, 2.0]


def test_first_reach_interpolates_between_evaluation_points() -> None:
    grid = np.array([0.0, 1000.0, 2000.0, 3000.0])
    curves = np.array([[0.1, 0.3, 0.36, 0.44], [0.1, 0.3, 0.36, 0.44], [0.1, 0.2, 0.3, 0.35]])
    reach = first_reach(grid, curves, np.array([0.40, 0.30, 0.40]))
    assert reach[0] == pytest.approx(2500.0)  # half-way from 0.36 to 0.44
    assert reach[1] == pytest.approx(1000.0)  # exactly at an evaluation point
    assert math.isnan(reach[2])  # never


def _seeds(examples: list[float], scores: list[float]) -> Curve:
    """Three seeds at -0.01, 0, +0.01 around ``scores``: their mean curve is ``scores``."""
    return Curve.of([(examples, [s + d for s in scores]) for d in (-0.01, 0.0, 0.01)])


def test_speedup_is_two_when_the_mean_curve_reaches_the_target_at_half_the_cost() -> None:
    strategy = _seeds([0, 250, 500, 750, 1000], [0.1, 0.3, 0.4, 0.45, 0.5])
    result = speedup(strategy, [0.39, 0.40, 0.41], [1000, 1000, 1000])
    assert result.value == pytest.approx(2.0)
    assert result.low < result.value < result.high
    assert result.low > 1.0  # every resample reaches uniform's score well before the budget


def test_speedup_not_reached() -> None:
    strategy = _seeds([0, 250, 500, 750, 1000], [0.1, 0.15, 0.2, 0.22, 0.25])
    result = speedup(strategy, [0.39, 0.40, 0.41], [1000, 1000, 1000])
    assert math.isnan(result.value)
    assert result.low == NOT_REACHED and result.high == NOT_REACHED


def test_bootstrap_is_reproducible_and_needs_two_seeds_a_side() -> None:
    strategy = _seeds([0, 500, 1000], [0.1, 0.35, 0.5])
    first = speedup(strategy, [0.38, 0.40, 0.42], [1000, 1000, 1000])
    assert speedup(strategy, [0.38, 0.40, 0.42], [1000, 1000, 1000]) == first
    assert speedup(strategy, [0.38, 0.40, 0.42], [1000, 1000, 1000], seed=1) != first
    single = speedup(strategy, [0.40], [1000])
    assert single.value == pytest.approx(first.value)
    assert math.isnan(single.low) and math.isnan(single.high)
