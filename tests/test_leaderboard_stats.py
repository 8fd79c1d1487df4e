"""The leaderboard's statistics on cases worked out by hand, and on simulated suites whose answer is
known: the speedup's construction, the paired test's false-positive rate, Holm's correction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.leaderboard.stats import (
    TARGET_FRACTIONS,
    Curve,
    Interval,
    compare,
    first_reach,
    holm,
    paired_t,
    speedup,
    t_critical,
    t_two_sided_p,
    targets,
    welch_t,
)

SIMULATIONS = 40_000
ALPHA = 0.05
# Four binomial standard deviations of a rate of 5% estimated from SIMULATIONS draws: a correct test
# lands outside this band about once in 16,000 runs of the test.
TOLERANCE = 4 * math.sqrt(ALPHA * (1 - ALPHA) / SIMULATIONS)


@pytest.mark.parametrize(
    ("df", "expected"),
    # Two-sided 95% critical values from any table of Student's t.
    [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (29, 2.045), (1000, 1.962)],
)
def test_t_critical_matches_the_tables(df: int, expected: float) -> None:
    assert t_critical(df) == pytest.approx(expected, abs=1e-3)


def test_t_p_values_match_the_closed_forms() -> None:
    t = np.array([0.0, 0.3, 1.0, 2.5, 7.0, 40.0])
    # df = 1 is the Cauchy distribution; df = 2 has P(|T| > t) = 1 - t / sqrt(2 + t²).
    assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 / np.pi * np.arctan(t), abs=1e-12)
    assert t_two_sided_p(-t, 2) == pytest.approx(1 - t / np.sqrt(2 + t * t), abs=1e-12)
    # Welch's degrees of freedom are not whole: the p-value moves smoothly between its neighbours.
    between = float(t_two_sided_p(2.5, 2.5))
    assert float(t_two_sided_p(2.5, 3)) < between < float(t_two_sided_p(2.5, 2))
    assert t_two_sided_p(np.inf, 4) == 0.0 and np.isnan(t_two_sided_p(np.nan, 4))


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


# -- Against uniform -------------------------------------------------------------------------------


def test_paired_t_worked_out_by_hand() -> None:
    # Differences 0.01, 0.02, 0.03: mean 0.02, sd 0.01, se 0.01/√3, t = 2√3 on 2 degrees of freedom.
    result = paired_t([0.01, 0.02, 0.03])
    t = 2 * math.sqrt(3)
    assert float(result.difference) == pytest.approx(0.02)
    assert float(result.p) == pytest.approx(1 - t / math.sqrt(2 + t * t))
    low, high = result.interval()
    assert (float(low), float(high)) == (
        pytest.approx(0.02 - 4.302653 * 0.01 / math.sqrt(3)),
        pytest.approx(0.02 + 4.302653 * 0.01 / math.sqrt(3)),
    )


def test_welch_t_worked_out_by_hand() -> None:
    # Variances of the means 1/3 and 20/3/4 = 5/3: se √2; df = 2² / ((1/3)²/2 + (5/3)²/3) = 4.0755.
    result = welch_t([1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0])
    assert float(result.difference) == -3.0
    assert float(result.se) == pytest.approx(math.sqrt(2))
    assert float(result.df) == pytest.approx(4 / (1 / 18 + 25 / 27))
    assert float(result.p) == pytest.approx(float(t_two_sided_p(3 / math.sqrt(2), 4 / (1 / 18 + 25 / 27))))


def test_holm_matches_a_hand_computed_case() -> None:
    # Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 -> raised to 0.06 (monotone).
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]).tolist() == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]).size == 0
    # A batch of families, one per row, is adjusted row by row.
    assert holm([[0.01, 0.04, 0.03, 0.005], [0.2, 0.1, 0.3, 0.4]]).tolist() == [
        pytest.approx([0.03, 0.06, 0.06, 0.02]),
        pytest.approx([0.6, 0.4, 0.6, 0.6]),
    ]


def test_compare_pairs_by_seed_and_falls_back_to_welch() -> None:
    baseline = {0: 0.39, 1: 0.40, 2: 0.41}
    paired = compare({2: 0.49, 0: 0.50, 1: 0.51}, baseline)  # pairs by seed, not by order
    assert paired is not None and paired.test == "paired"
    assert paired.p == pytest.approx(float(paired_t([0.11, 0.11, 0.08]).p))
    welch = compare({3: 0.50, 4: 0.51, 5: 0.49}, baseline)
    assert welch is not None and welch.test == "welch"
    assert welch.p == pytest.approx(float(welch_t([0.50, 0.51, 0.49], [0.39, 0.40, 0.41]).p))
    assert compare({0: 0.5}, baseline) is None


def _null_suites(rng: np.random.Generator, seeds: int, strategies: int) -> tuple[np.ndarray, np.ndarray]:
    """Final scores of uniform and of ``strategies`` strategies no better than it, over ``seeds``
    shared seeds, in SIMULATIONS suites: a seed effect they all share (sd 0.02, larger than the
    noise), and each run's own noise (sd 0.01)."""
    seed_effect = 0.02 * rng.standard_normal((SIMULATIONS, 1, seeds))
    uniform = 0.4 + seed_effect[:, 0] + 0.01 * rng.standard_normal((SIMULATIONS, seeds))
    others = 0.4 + seed_effect + 0.01 * rng.standard_normal((SIMULATIONS, strategies, seeds))
    return uniform, others


@pytest.mark.parametrize("seeds", [3, 5])
def test_paired_test_false_positive_rate_is_nominal(seeds: int) -> None:
    uniform, others = _null_suites(np.random.default_rng(seeds), seeds, 1)
    rate = float((paired_t(others[:, 0] - uniform).p < ALPHA).mean())
    assert abs(rate - ALPHA) < TOLERANCE, rate


@pytest.mark.parametrize("seeds", [3, 5])
def test_holm_keeps_the_family_wise_error_rate_over_seven_strategies(seeds: int) -> None:
    uniform, others = _null_suites(np.random.default_rng(10 + seeds), seeds, 7)
    p = paired_t(others - uniform[:, None, :]).p
    any_false = float((holm(p) < ALPHA).any(axis=1).mean())
    unadjusted = float((p < ALPHA).any(axis=1).mean())
    assert any_false < ALPHA + TOLERANCE, any_false
    assert unadjusted > 3 * ALPHA  # the correction is what keeps it down


@pytest.mark.parametrize("seeds", [3, 5])
def test_welch_fallback_is_not_liberal_with_equal_variances(seeds: int) -> None:
    rng = np.random.default_rng(20 + seeds)
    a, b = (0.4 + 0.02 * rng.standard_normal((SIMULATIONS, seeds)) for _ in range(2))
    assert float((welch_t(a, b).p < ALPHA).mean()) < ALPHA + TOLERANCE


def test_pairing_by_seed_separates_what_the_seeds_share() -> None:
    """A real difference of 0.03 under a seed effect of sd 0.05: paired by seed it is found nearly
    always, tested as two unrelated samples (Welch) rarely. This is why runs share seeds."""
    rng = np.random.default_rng(7)
    seed_effect = 0.05 * rng.standard_normal((SIMULATIONS, 3))
    uniform = 0.4 + seed_effect + 0.005 * rng.standard_normal((SIMULATIONS, 3))
    better = 0.43 + seed_effect + 0.005 * rng.standard_normal((SIMULATIONS, 3))
    assert float((paired_t(better - uniform).p < ALPHA).mean()) > 0.8
    assert float((welch_t(better, uniform).p < ALPHA).mean()) < 0.2


# -- Curves and speedups ---------------------------------------------------------------------------


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


def _noisy_uniform(rng: np.random.Generator, seeds: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Uniform-like curves that rise, then wander around a plateau: the mean curve first reaches its
    final value well before the end, as the committed leaderboard's uniform did."""
    cost = np.linspace(0.0, 5e12, 9)
    rise = 0.07 + 0.07 * (1 - np.exp(-cost / 1e12))
    return cost, rise + 0.01 * rng.standard_normal((seeds, len(cost)))


def _curve(cost: np.ndarray, scores: np.ndarray) -> Curve:
    return Curve.of([(cost, s) for s in scores])


@pytest.mark.parametrize("seed", range(20))
def test_uniform_against_itself_is_exactly_one_at_every_target(seed: int) -> None:
    cost, scores = _noisy_uniform(np.random.default_rng(seed))
    uniform = _curve(cost, scores)
    for fraction, goal in targets(uniform).items():
        assert speedup(uniform, uniform, goal) == 1.0, fraction


@pytest.mark.parametrize("seed", range(20))
def test_a_curve_stretched_in_cost_has_the_inverse_speedup_exactly(seed: int) -> None:
    cost, scores = _noisy_uniform(np.random.default_rng(seed))
    uniform = _curve(cost, scores)
    goals = targets(uniform)
    assert list(goals) == list(TARGET_FRACTIONS)
    for goal in goals.values():
        assert speedup(_curve(2 * cost, scores), uniform, goal) == 0.5  # twice the cost for every score
        assert speedup(_curve(cost / 2, scores), uniform, goal) == 2.0


def test_targets_are_the_way_from_the_first_evaluation_to_the_final_score() -> None:
    uniform = _curve(np.array([0.0, 1.0, 2.0]), np.array([[0.1, 0.5, 0.4], [0.1, 0.3, 0.4]]))
    assert targets(uniform) == {1.0: pytest.approx(0.4), 0.75: pytest.approx(0.325), 0.5: pytest.approx(0.25)}
    # The mean curve (0.1, 0.4, 0.4) first reaches its final 0.4 at cost 1, not at the end: a strategy
    # that gets there at cost 2 is half as fast, not as fast.
    late = _curve(np.array([0.0, 1.0, 2.0]), np.array([[0.1, 0.25, 0.4]]))
    assert speedup(late, uniform, 0.4) == pytest.approx(0.5)


def test_speedup_not_reached_and_at_start() -> None:
    uniform = _curve(np.array([0.0, 1.0, 2.0]), np.array([[0.1, 0.3, 0.4]]))
    never = _curve(np.array([0.0, 1.0, 2.0]), np.array([[0.1, 0.2, 0.3]]))
    assert math.isnan(speedup(never, uniform, 0.4))
    ahead = _curve(np.array([0.0, 1.0, 2.0]), np.array([[0.45, 0.5, 0.5]]))
    assert math.isinf(speedup(ahead, uniform, 0.4))
