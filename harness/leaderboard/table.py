"""The leaderboard as data: one row per configuration, from the rows of complete runs alone (DESIGN §7).

A configuration is a run's config without its seed (``config_key`` in the results table); its seeds
are averaged. The baseline of the paper's speedups is plain uniform sampling (f = 0, no two-resolution
training) with every other setting equal: same dataset, preset, b, budget and optimiser.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.data import NOISE_KINDS
from harness.errors import UserError
from harness.leaderboard.stats import Curve, Interval, Speedup, speedup
from harness.results import Results

EVAL_SPLIT = "eval"
BASELINE_STRATEGY = "uniform"
# Axes of the curves and speedups: the cost columns of the results table.
AXES = ("examples_seen", "flops_spent", "flops_all_in")
SPEEDUP_COLUMNS = {axis: f"speedup_{axis.removesuffix('_seen')}" for axis in AXES}
METRIC_COLUMNS = ("zero_shot", "few_shot", "i2t_recall", "t2i_recall")
COST_COLUMNS = (
    "examples_seen",
    "epochs",
    "steps",
    "flops_training",
    "flops_scoring",
    "flops_reference",
    "flops_spent",
    "flops_reference_one_off",
    "flops_all_in",
    "flops_evaluation",
    "wall_time",
)
# Config fields that make one strategy's run differ from its baseline's; every other config field
# (dataset, preset, b, budget, optimiser, evaluation cadence) must match.
_STRATEGY_FIELDS = (
    "config.strategy",
    "config.tuned",
    "config.pool",
    "config.params",
    "config.filter_ratio",
    "config.reference",
    "config.reference_cached",
    "config.seed",
    "config.dataset",
)
# Config fields shown in columns of their own; others that vary across a leaderboard are listed in
# its "other settings" column so that two rows never look the same.
_SHOWN_FIELDS = (
    "config.strategy",
    "config.tuned",
    "config.pool",
    "config.params",
    "config.filter_ratio",
    "config.reference",
    "config.seed",
    "config.dataset",
    "config.batch_size",
    "config.preset",
    "config.dataset_id",
    "config.budget",
)


class LeaderboardError(UserError):
    """Runs that cannot make a leaderboard; the message names them."""


@dataclass(frozen=True)
class Leaderboard:
    """A ranked leaderboard and what its figures need.

    Attributes:
        table: one row per configuration, best final mean score first (leaderboard.csv; columns in
            docs/RESULTS.md).
        curves: per configuration (its ``config_key``) and axis (``AXES``), the seeds' score curves.
        results: the results it was built from (rows of complete runs, failed and unfinished runs),
            less the runs that do not evaluate on ``split``.
        split: the split whose rows it ranks (``eval``: never tuned on).
    """

    table: pd.DataFrame
    curves: dict[str, dict[str, Curve]]
    results: Results
    split: str


def is_baseline(strategy: str, params: str, filter_ratio: float) -> bool:
    """Plain uniform at f = 0: the baseline of the paper's speedups (two-resolution uniform is a
    strategy of its own, shown beside Flexi-JEST)."""
    return (
        strategy == BASELINE_STRATEGY
        and not json.loads(params).get("two_resolution", False)
        and filter_ratio == 0.0
    )


def strategy_label(row: Mapping[str, Any] | pd.Series) -> str:
    """The strategy as a leaderboard shows it: ``jest``, ``jest [tuned: STUDY]`` for a study's best
    point re-run at fresh seeds (``jestbench tune --rerun-best``), ``jest [reference 1a2b3c4d]`` where
    the leaderboard holds runs against several references (the reference hash's start), or ``uniform
    [clean-only oracle]`` for a run offered only the pool's clean pairs (``RunConfig.pool``)."""
    tuned = row.get("tuned")
    label = f"{row['strategy']} [tuned: {tuned}]" if tuned else str(row["strategy"])
    if row.get("reference_tag"):  # the leaderboard holds runs against several references
        label += f" [reference {row['reference_tag']}]"
    return f"{label} [clean-only oracle]" if row.get("pool") == "clean" else label


def describe_params(params: str) -> str:
    """``{"n_chunks": 16, "gain": 9248.01936, "score": "learnability"}`` →
    ``n_chunks=16, gain=9248, score=learnability`` (floats to 4 significant digits)."""

    def shown(value: object) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, float):
            return f"{value:.4g}"
        return json.dumps(value)

    return ", ".join(f"{name}={shown(value)}" for name, value in json.loads(params).items())


def _varying(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in columns if frame[c].astype(str).nunique() > 1]


def _final_rows(group: pd.DataFrame) -> pd.DataFrame:
    """Each run's last evaluation (at the budget), one row per seed."""
    finals = group.sort_values(["run_id", "evaluation"]).groupby("run_id").tail(1)
    repeated = finals[finals["seed"].duplicated(keep=False)]
    if not repeated.empty:
        raise LeaderboardError(
            "runs "
            + ", ".join(sorted(repeated["run_id"]))
            + " are one configuration at the same seed (a parameter spelled out in one and left to its "
            "default in another?): choose one of them with --runs"
        )
    return finals.sort_values("seed")


def _curves(group: pd.DataFrame) -> dict[str, Curve]:
    runs = [run.sort_values("evaluation") for _, run in group.groupby("run_id")]
    return {axis: Curve.of([(run[axis], run["mean"]) for run in runs]) for axis in AXES}


def _selection(finals: pd.DataFrame) -> dict[str, float]:
    """What the selected batches held against what they were chosen from, pooled over seeds.

    Shares are NaN when no example had a known noise kind (bring-your-own data without noise labels).
    """
    seen, scored, steps = (finals[c].sum() for c in ("examples_seen", "examples_scored", "steps"))
    known = sum(finals[f"super_{kind}"].sum() for kind in NOISE_KINDS) > 0
    nan = float("nan")
    out: dict[str, float] = {}
    for kind in NOISE_KINDS:
        out[f"selected_{kind}"] = finals[f"selected_{kind}"].sum() / seen if known and seen else nan
        out[f"super_{kind}"] = finals[f"super_{kind}"].sum() / scored if known and scored else nan
    out["selected_repeats_per_batch"] = finals["selected_repeats"].sum() / steps if steps else nan
    out["super_repeats_per_batch"] = finals["super_repeats"].sum() / steps if steps else nan
    return out


def _configuration(finals: pd.DataFrame, other: list[str]) -> dict[str, Any]:
    first = finals.iloc[0]
    score = Interval.of(finals["mean"].tolist())
    tuned = first.get("config.tuned")
    pool = first.get("config.pool")
    return {
        "strategy": first["strategy"],
        "tuned": tuned if isinstance(tuned, str) else "",
        "pool": pool if isinstance(pool, str) else "all",
        "params": describe_params(first["params"]),
        "f_nominal": first["config.filter_ratio"],
        "f": first["f"],
        "b": first["b"],
        "B": first["B"],
        "preset": first["preset"],
        "dataset": first["dataset"],
        "dataset_id": first["dataset_id"],
        "budget": first["config.budget"],
        "budget_flops": first["budget_flops"],
        "other_settings": ", ".join(f"{c.removeprefix('config.')}={first[c]}" for c in other),
        "reference": first["config.reference"],
        "n_seeds": score.n,
        "seeds": " ".join(str(s) for s in finals["seed"]),
        "score": score.mean,
        "score_low": score.low,
        "score_high": score.high,
        "score_sd": score.sd,
        **{metric: finals[metric].mean() for metric in METRIC_COLUMNS},
        **{column: finals[column].mean() for column in COST_COLUMNS},
        **_selection(finals),
        "run_ids": " ".join(finals["run_id"]),
        "config_key": first["config_key"],
    }


def _speedups(curves: dict[str, Curve], baseline: pd.DataFrame | None, *, itself: bool) -> dict[str, float]:
    """The speedups on every axis against the baseline's final rows: NaN without a baseline, and 1
    without an interval for the baseline itself (resampling it against itself would only add noise)."""
    nan = float("nan")
    out: dict[str, float] = {}
    for axis, column in SPEEDUP_COLUMNS.items():
        if baseline is None:
            value = Speedup(nan, nan, nan)
        elif itself:
            value = Speedup(1.0, nan, nan)
        else:
            value = speedup(curves[axis], baseline["mean"].tolist(), baseline[axis].tolist())
        out |= {column: value.value, f"{column}_low": value.low, f"{column}_high": value.high}
    return out


def build_leaderboard(results: Results, *, split: str = EVAL_SPLIT) -> Leaderboard:
    """Rank the configurations of ``results`` by their final mean score on ``split``. Runs that do not
    evaluate on ``split`` (tuning trials: ``val`` only) are no part of it, not even as left out.

    Raises:
        LeaderboardError: no complete run has rows on ``split``, or two runs are the same
            configuration at the same seed.
    """
    results = results.evaluated_on(split)
    rows = results.rows
    if not rows.empty:
        rows = rows[rows["split"] == split]
    if rows.empty:
        raise LeaderboardError(
            f"no complete run has rows on the {split!r} split (of {len(results.runs)} runs read, "
            f"{len(results.failed)} failed and {len(results.incomplete)} did not finish)"
        )
    config_columns = sorted(c for c in rows.columns if c.startswith("config."))
    setting_columns = [c for c in config_columns if c not in _STRATEGY_FIELDS]
    other = _varying(rows, [c for c in config_columns if c not in _SHOWN_FIELDS])
    groups = dict(tuple(rows.groupby("config_key", sort=True)))
    finals = {key: _final_rows(group) for key, group in groups.items()}
    curves = {key: _curves(group) for key, group in groups.items()}
    setting = {key: tuple(str(f.iloc[0][c]) for c in setting_columns) for key, f in finals.items()}
    baselines = [
        key
        for key, f in finals.items()
        if is_baseline(f.iloc[0]["strategy"], f.iloc[0]["params"], f.iloc[0]["f"])
        and f.iloc[0].get("config.pool") != "clean"  # the oracle is compared with uniform, not one
    ]
    entries = []
    several_references = rows["config.reference"].dropna().nunique() > 1
    for key in groups:
        baseline = next((b for b in baselines if setting[b] == setting[key]), None)
        entry = _configuration(finals[key], other)
        reference = entry["reference"]
        entry["reference_tag"] = reference[:8] if several_references and isinstance(reference, str) else ""
        entry |= _speedups(curves[key], finals[baseline] if baseline else None, itself=key == baseline)
        entry["baseline"] = baseline or ""
        entries.append(entry)
    table = pd.DataFrame(entries).sort_values(
        ["score", "strategy", "params"], ascending=[False, True, True], ignore_index=True
    )
    table.insert(0, "rank", range(1, len(table) + 1))
    return Leaderboard(table=table, curves=curves, results=results, split=split)
