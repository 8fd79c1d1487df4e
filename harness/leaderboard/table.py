"""The leaderboard as data: one row per configuration, from the rows of complete runs alone (docs/RESULTS.md).

A configuration is a run's config without its seed (``config_key`` in the results table); its seeds
are averaged. The baseline of the paper's speedups and of the paired test is plain uniform sampling
(f = 0, no two-resolution training) with every other setting equal: same dataset, preset, b, budget
and optimiser. docs/RESULTS.md states every rule computed here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.data import RECORDED_NOISE_KINDS
from harness.errors import UserError
from harness.leaderboard.stats import (
    ALPHA,
    TARGET_FRACTIONS,
    Comparison,
    Curve,
    Interval,
    compare,
    holm,
    speedup,
    targets,
)
from harness.results import Results

EVAL_SPLIT = "eval"
BASELINE_STRATEGY = "uniform"
# Axes of the curves and speedups: cost columns of the results table, and the all-in cost with the
# reference's one-off cost shared among the runs that use it (added by ``_with_amortised``).
AXES = ("examples_seen", "flops_spent", "flops_all_in", "flops_amortised")


def target_suffix(fraction: float) -> str:
    """``""`` for uniform's final score (the paper's target), ``"_75"`` for 75% of the way to it."""
    return "" if fraction == 1 else f"_{round(100 * fraction)}"


def target_column(fraction: float) -> str:
    """leaderboard.csv's column of the target score at ``fraction``: ``target_final``, ``target_75``, ..."""
    return f"target{target_suffix(fraction) or '_final'}"


def speedup_column(axis: str, fraction: float = 1.0) -> str:
    """leaderboard.csv's column of the speedup on ``axis`` at the target ``fraction``:
    ``speedup_examples``, ``speedup_flops_spent_75``, ..."""
    return f"speedup_{axis.removesuffix('_seen')}{target_suffix(fraction)}"


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
    "flops_amortised",
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

    Shares are NaN when no example's noise kind was counted (run files that count no kind at all).
    """
    seen, scored, steps = (finals[c].sum() for c in ("examples_seen", "examples_scored", "steps"))

    def total(column: str) -> float:  # a run file from before "unknown" was counted has no column
        return float(finals[column].sum()) if column in finals else 0.0

    known = sum(total(f"super_{kind}") for kind in RECORDED_NOISE_KINDS) > 0
    nan = float("nan")
    out: dict[str, float] = {}
    for kind in RECORDED_NOISE_KINDS:
        out[f"selected_{kind}"] = total(f"selected_{kind}") / seen if known and seen else nan
        out[f"super_{kind}"] = total(f"super_{kind}") / scored if known and scored else nan
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
        "reference": first["config.reference"] if isinstance(first["config.reference"], str) else "",
        "reference_runs": int(first["reference_runs"]),
        "n_seeds": score.n,
        "seeds": " ".join(str(s) for s in finals["seed"]),
        "score": score.mean,
        "score_low": score.low,
        "score_high": score.high,
        "score_sd": score.sd,
        **{metric: finals[metric].mean() for metric in METRIC_COLUMNS},
        **{column: finals[column].mean() for column in COST_COLUMNS},
        **_selection(finals),
        "left_out": _left_out(finals),
        "run_ids": " ".join(finals["run_id"]),
        "config_key": first["config_key"],
    }


def _left_out(finals: pd.DataFrame) -> float:
    """The most pool samples any seed's run left out (damaged + lost, under ``--on-bad-sample skip``);
    NaN for rows written before runs counted them."""
    columns = ["left_out_damaged", "left_out_lost"]
    if not all(c in finals for c in columns):
        return float("nan")
    return float(finals[columns].fillna(0).sum(axis=1).max())


def _with_amortised(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with ``reference_runs`` (how many runs of these rows use the row's reference; 0 without
    one) and ``flops_amortised``: spent FLOPs plus the reference's one-off cost divided among them.

    A reference is trained once and serves every run that names it: charging its whole cost to each run
    (``flops_all_in``) counts it once per run, amortised the runs pay for it once between them.
    """
    one_off = rows["flops_reference_one_off"]
    reference = rows["config.reference"].where(one_off > 0)
    runs = reference.map(rows.groupby(reference)["run_id"].nunique()).fillna(0).astype(int)
    # A one-off cost without a reference id to share it by stays charged in full.
    runs = runs.where((runs > 0) | (one_off == 0), 1)
    return rows.assign(
        reference_runs=runs, flops_amortised=rows["flops_spent"] + one_off / runs.where(runs > 0, 1)
    )


def _speedups(curves: dict[str, Curve], baseline: dict[str, Curve] | None) -> dict[str, float]:
    """The speedups on every axis and at every target against the baseline's curves (NaN without a
    baseline), and the targets' scores. The baseline's own row goes through the same computation, and
    so comes out at exactly 1."""
    nan = float("nan")
    out: dict[str, float] = {"target_start": float(baseline["examples_seen"].mean()[0]) if baseline else nan}
    goals = targets(baseline["examples_seen"]) if baseline else dict.fromkeys(TARGET_FRACTIONS, nan)
    for fraction, goal in goals.items():
        out[target_column(fraction)] = goal
        for axis in AXES:
            out[speedup_column(axis, fraction)] = (
                speedup(curves[axis], baseline[axis], goal) if baseline else nan
            )
    return out


# Config fields in which configurations of one family may differ: they were run against different
# reference models, and are otherwise the same configuration.
_NOT_FAMILY = ("config.reference", "config.seed", "config.dataset")


def _family(finals: pd.DataFrame, config_columns: list[str]) -> str:
    first = finals.iloc[0]
    return json.dumps([str(first[c]) for c in config_columns if c not in _NOT_FAMILY])


def _reference_spread(table: pd.DataFrame) -> pd.DataFrame:
    """Per configuration, over its family (the configurations that differ from it only in their
    reference): the number of references, each one's mean final score, and the range and standard
    deviation of those means (NaN with fewer than two references)."""
    nan = float("nan")
    out: dict[str, list[Any]] = {
        k: [] for k in ("references", "reference_means", "reference_range", "reference_sd")
    }
    for family in table["family"]:
        members = table[(table["family"] == family) & (table["reference"] != "")].sort_values("reference")
        means = members["score"]
        many = len(means) > 1
        out["references"].append(len(members))
        out["reference_means"].append(
            "; ".join(f"{r}: {m:.4f}" for r, m in zip(members["reference"], means, strict=True))
        )
        out["reference_range"].append(float(means.max() - means.min()) if many else nan)
        out["reference_sd"].append(float(means.std(ddof=1)) if many else nan)
    return table.assign(**out)


_VS_UNIFORM = (
    "vs_uniform_difference",
    "vs_uniform_low",
    "vs_uniform_high",
    "vs_uniform_p",
    "vs_uniform_p_holm",
    "vs_uniform_test",
    "vs_uniform_verdict",
)


def _comparisons(table: pd.DataFrame, finals: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each configuration's final scores against its baseline's, seed by seed (:func:`compare`), and
    Holm's correction over every configuration of the leaderboard that was tested."""
    records = table.to_dict("records")
    tested: dict[int, Comparison] = {}
    for number, row in enumerate(records):
        if row["baseline"] and row["baseline"] != row["config_key"]:
            scores, base = (
                finals[k].set_index("seed")["mean"].to_dict() for k in (row["config_key"], row["baseline"])
            )
            comparison = compare(scores, base)
            if comparison is not None:
                tested[number] = comparison
    adjusted = dict(zip(tested, holm([c.p for c in tested.values()]), strict=True))
    nan = float("nan")
    values: list[tuple[Any, ...]] = []
    for number, row in enumerate(records):
        c = tested.get(number)
        if c is not None:
            separable = adjusted[number] < ALPHA
            verdict = ("better" if c.difference > 0 else "worse") if separable else "not separable"
            values.append((c.difference, c.low, c.high, c.p, float(adjusted[number]), c.test, verdict))
        else:
            verdict = (
                "no baseline"
                if not row["baseline"]
                else "baseline"
                if row["baseline"] == row["config_key"]
                else "no test"
            )
            values.append((nan, nan, nan, nan, nan, "", verdict))
    return table.assign(**{name: [v[i] for v in values] for i, name in enumerate(_VS_UNIFORM)})


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
    rows = _with_amortised(rows)
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
        entry |= _speedups(curves[key], curves[baseline] if baseline else None)
        entry["baseline"] = baseline or ""
        entry["family"] = _family(finals[key], config_columns)
        entries.append(entry)
    table = pd.DataFrame(entries).sort_values(
        ["score", "strategy", "params"], ascending=[False, True, True], ignore_index=True
    )
    table = _reference_spread(_comparisons(table, finals)).drop(columns="family")
    table.insert(0, "rank", range(1, len(table) + 1))
    return Leaderboard(table=table, curves=curves, results=results, split=split)
