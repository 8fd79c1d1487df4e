"""Verdicts from statistics: each claim is a set of directional checks, each check a paired t-test
(or an exact count), Holm-corrected over the claim's checks; the verdict counts the checks that came
out separable in the paper's direction. No verdict is ever chosen by hand.

- **holds**: every check separable in the claimed direction (Holm-adjusted p < 0.05);
- **does not hold**: none is (the reason counts those separable against the paper's direction:
  "does not hold" then means the opposite is measured, not only that nothing was found);
- **partly**: some are, some are not;
- **not testable at this scale**: no check could be run (too few replicates, a setting that does
  not fit the data), with the reason;
- **not measured yet**: the claim's runs could not be made; the report says why.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.leaderboard.stats import ALPHA, holm, paired_t, t_critical

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
PARTLY = "partly"
NOT_TESTABLE = "not testable at this scale"
NOT_MEASURED = "not measured yet"
VERDICTS = (HOLDS, DOES_NOT_HOLD, PARTLY, NOT_TESTABLE, NOT_MEASURED)


@dataclass(frozen=True)
class Check:
    """One directional comparison: the claim says ``direction · (mean(values) − threshold) > 0``.

    ``values`` are the replicates (per seed or per super-batch differences, or the ratio whose mean
    is tested against ``threshold``); ``exact`` marks a count with no sampling error (FLOPs), whose
    sign alone decides.
    """

    name: str
    values: tuple[float, ...]
    threshold: float = 0.0
    direction: int = 1
    exact: bool = False

    @classmethod
    def of(cls, name: str, values: Sequence[float], *, threshold: float = 0.0, direction: int = 1) -> Check:
        return cls(name, tuple(float(v) for v in values), threshold, direction)

    @classmethod
    def exact_count(cls, name: str, value: float, *, threshold: float = 0.0, direction: int = 1) -> Check:
        return cls(name, (float(value),), threshold, direction, exact=True)


@dataclass(frozen=True)
class CheckResult:
    """A check's outcome: the mean, its 95% t-interval (equal to the mean for exact counts), the raw
    and Holm-adjusted two-sided p-values, whether it supports the claim, and whether it is
    separable the other way (against the claim)."""

    check: Check
    mean: float
    low: float
    high: float
    p: float
    p_holm: float
    supports: bool
    against: bool = False

    @property
    def n(self) -> int:
        return len(self.check.values)


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict, the reason in one line, and the checks it was computed from."""

    verdict: str
    reason: str
    checks: tuple[CheckResult, ...] = ()


def _raw(check: Check) -> tuple[float, float, float, float]:
    """Mean, interval and two-sided p-value of ``mean − threshold`` (0 or 1 for exact counts)."""
    data = np.asarray(check.values, dtype=float)
    if not np.isfinite(data).all():  # a ratio over a zero denominator: no number, no support
        return math.nan, math.nan, math.nan, math.nan
    mean = float(data.mean())
    if check.exact:
        p = 0.0 if mean != check.threshold else 1.0
        return mean, mean, mean, p
    test = paired_t(data - check.threshold)
    half = _critical(float(test.df)) * float(test.se)
    return mean, mean - half, mean + half, float(test.p)


@functools.cache
def _critical(df: float) -> float:
    """Student's critical value, computed once per number of replicates (it is a bisection)."""
    return t_critical(df)


def decide(checks: Sequence[Check], *, untestable: str = "") -> Verdict:
    """The verdict of a claim from its checks (see the module docstring). Checks with fewer than two
    replicates (and not exact) cannot be tested; with none left the claim is not testable, and
    ``untestable`` (or a default) says why."""
    testable = [c for c in checks if c.exact or len(c.values) >= 2]
    if not testable:
        return Verdict(NOT_TESTABLE, untestable or "fewer than two replicates for every comparison")
    raw = [_raw(c) for c in testable]
    # A comparison that came out NaN (a ratio over a zero denominator) counts as p = 1: never support.
    adjusted = holm(np.nan_to_num(np.array([p for *_, p in raw]), nan=1.0))
    results = []
    for check, (mean, low, high, p), p_holm in zip(testable, raw, adjusted, strict=True):
        direction_ok = check.direction * (mean - check.threshold) > 0
        separable = float(p_holm) < ALPHA
        supports = bool(direction_ok and separable)
        against = bool(separable and check.direction * (mean - check.threshold) < 0)
        results.append(CheckResult(check, mean, low, high, p, float(p_holm), supports, against))
    supported = sum(r.supports for r in results)
    opposed = sum(r.against for r in results)
    total = len(results)
    left_out = len(checks) - total
    note = f"; {left_out} comparison(s) had too few replicates" if left_out else ""
    if supported == total:
        verdict = HOLDS
    elif supported == 0:
        verdict = DOES_NOT_HOLD
    else:
        verdict = PARTLY
    reason = f"{supported} of {total} comparison(s) separable in the paper's direction" + (
        f", {opposed} separable against it" if opposed else ""
    )
    reason += f" (Holm, α = {ALPHA:g}){note}"
    return Verdict(verdict, reason, tuple(results))


def not_measured(reason: str) -> Verdict:
    return Verdict(NOT_MEASURED, reason)


def fmt(value: float, digits: int = 3) -> str:
    """A number for the report; NaN as an en dash."""
    return "–" if math.isnan(value) else f"{value:.{digits}g}"
