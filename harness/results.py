"""The results store: every run file of a work directory read into one pandas table.

A run writes its rows to ``<work>/runs/<run_id>.json`` (:class:`harness.records.RunFile`); leaderboards,
tuning reports and ``jestbench publish`` read them through :func:`read_runs` only, so the schema
(docs/RESULTS.md) is decided in one place. Rows of complete runs form the table; failed and unfinished
runs are listed beside it with their errors, so a report can say what it left out instead of silently
averaging a run that stopped half-way.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import UserError
from harness.records import RunFile, config_hash

# Columns every row must have (written by ``harness.train.Run._row``); the noise-kind counts and the
# provenance fields come on top. A run file without one of these was written by another version.
REQUIRED_COLUMNS = (
    "run_id",
    "strategy",
    "params",
    "b",
    "B",
    "f",
    "seed",
    "dataset",
    "dataset_id",
    "preset",
    "split",
    "evaluation",
    "steps",
    "examples_seen",
    "examples_scored",
    "epochs",
    "budget_flops",
    "flops_training",
    "flops_scoring",
    "flops_reference",
    "flops_spent",
    "flops_reference_one_off",
    "flops_all_in",
    "flops_evaluation",
    "wall_time",
    "loss",
    "zero_shot",
    "few_shot",
    "i2t_recall",
    "t2i_recall",
    "mean",
    "selected_repeats",
    "super_repeats",
    "config_hash",
)
METRICS = ("zero_shot", "few_shot", "i2t_recall", "t2i_recall", "mean")
# Columns that hold ids (hex or free text) which a CSV reader must not take for numbers: a run id of
# sixteen digits, or one like "12e4...", would otherwise come back as a number.
_TEXT_COLUMNS = (
    "run_id",
    "config_hash",
    "config_key",
    "dataset_id",
    "config.dataset_id",
    "config.reference",
    "config.tuned",
    "git_commit",
    "hostname",
)
# The columns of ``Results.runs``.
_RUN_COLUMNS = ("run_id", "status", "error", "strategy", "params", "seed", "rows", "path", "eval_splits")
# Config fields that do not change what a run computes given its other fields: the dataset's location
# (its content id is kept) and the seed (runs that differ only in it are one configuration).
_NOT_CONFIGURATION = ("dataset", "seed")


class ResultsError(UserError):
    """A run file that cannot be read, or a run id with no run file."""


@dataclass(frozen=True)
class Results:
    """Rows of complete runs, and one line per run read.

    Attributes:
        rows: one row per evaluation point and split of every complete run, with the run's config
            (``config.*`` columns) and provenance; columns in docs/RESULTS.md.
        runs: one row per run read: ``run_id``, ``status`` (complete, failed, running), ``error``,
            ``strategy``, ``params``, ``seed``, ``rows`` (how many), ``path`` and ``eval_splits``
            (the splits it evaluates on, a tuple).
    """

    rows: pd.DataFrame
    runs: pd.DataFrame

    @property
    def failed(self) -> pd.DataFrame:
        """Runs that stopped with an error (their ``error`` says why)."""
        return self.runs[self.runs["status"] == "failed"]

    @property
    def incomplete(self) -> pd.DataFrame:
        """Runs still running, or killed before they finished: their rows are left out."""
        return self.runs[self.runs["status"] == "running"]

    def evaluated_on(self, split: str) -> Results:
        """The runs that evaluate on ``split``, and their rows. A tuning trial evaluates on ``val``
        only: a leaderboard of the ``eval`` split neither ranks it nor lists it as left out."""
        runs = self.runs[self.runs["eval_splits"].map(lambda splits: split in splits)]
        rows = self.rows if self.rows.empty else self.rows[self.rows["run_id"].isin(runs["run_id"])]
        return Results(rows=rows, runs=runs)


def canonical_params(params: Mapping[str, Any]) -> str:
    """A strategy's parameters as one JSON string with sorted keys: hashable, and equal for equal params."""
    return json.dumps(dict(params), sort_keys=True, separators=(", ", ": "))


def configuration_key(config: Mapping[str, Any]) -> str:
    """The hash of a run's config without its seed and dataset location: runs sharing it are seeds of
    one configuration (a leaderboard row)."""
    return config_hash({k: v for k, v in config.items() if k not in _NOT_CONFIGURATION})


def _flatten(config: Mapping[str, Any], prefix: str = "config.") -> dict[str, Any]:
    """``{"optim": {"beta2": 0.95}}`` → ``{"config.optim.beta2": 0.95}``; lists and params as JSON text."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key == "params":
            flat[f"{prefix}{key}"] = canonical_params(value)
        elif isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, list | tuple):
            flat[f"{prefix}{key}"] = json.dumps(list(value))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _load(path: Path) -> RunFile:
    try:
        return RunFile.load(path)
    except (OSError, ValueError, KeyError) as err:  # json.JSONDecodeError is a ValueError
        raise ResultsError(f"cannot read run file {path}: {err}") from err


def _run_rows(run: RunFile, path: Path) -> list[dict[str, Any]]:
    """A run's rows with its config and provenance attached, each checked for the required columns."""
    config = _flatten(run.config)
    rows = []
    for number, row in enumerate(run.rows):
        missing = [name for name in REQUIRED_COLUMNS if name not in row]
        if missing:
            raise ResultsError(
                f"run file {path}: row {number} lacks {', '.join(missing)}; it was written by another "
                "version of jestbench (rerun the run, or render with that version)"
            )
        # Rows carry the provenance of the process that wrote them (a resumed run may have moved
        # machines); the run file's own provenance fills any field an older row lacks.
        full = {**row, **{k: v for k, v in run.provenance.items() if k not in row}, **config}
        full["params"] = canonical_params(row["params"])
        # The row's params include the strategy's defaults: a config that spelled a default out and
        # one that left it implicit are the same configuration.
        full["config_key"] = configuration_key({**run.config, "params": row["params"]})
        rows.append(full)
    return rows


def _known_ids(runs_dir: Path) -> list[str]:
    return sorted(p.stem for p in runs_dir.glob("*.json"))


def _paths(work_dir: Path, run_ids: Sequence[str] | None) -> list[Path]:
    runs_dir = work_dir / "runs"
    if run_ids is None:
        return sorted(runs_dir.glob("*.json"))
    paths = []
    for run_id in dict.fromkeys(run_ids):  # keep the order, drop repeats
        path = RunFile.path_for(work_dir, run_id)
        if not path.is_file():
            close = difflib.get_close_matches(run_id, _known_ids(runs_dir), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ResultsError(f"no run {run_id!r} in {runs_dir}{hint}")
        paths.append(path)
    return paths


def read_runs(work_dir: Path, run_ids: Sequence[str] | None = None) -> Results:
    """Read the run files of ``work_dir`` (all of them, or ``run_ids``) into a :class:`Results`.

    Raises:
        ResultsError: a named run has no run file, or a run file cannot be read or lacks a column.
    """
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for path in _paths(work_dir, run_ids):
        run = _load(path)
        if run.status == "complete":
            rows.extend(_run_rows(run, path))
        runs.append(
            {
                "run_id": run.run_id,
                "status": run.status,
                "error": run.error,
                "strategy": run.config.get("strategy"),
                "params": canonical_params(run.config.get("params", {})),
                "seed": run.config.get("seed"),
                "rows": len(run.rows),
                "path": str(path),
                "eval_splits": tuple(run.config.get("eval_splits", ("val", "eval"))),
            }
        )
    table = pd.DataFrame(rows)
    if not table.empty:  # a metric that no dataset had (None everywhere) is still a float column
        table[list(METRICS)] = table[list(METRICS)].astype(float)
    return Results(rows=table, runs=pd.DataFrame(runs, columns=list(_RUN_COLUMNS)))


def read_rows_csv(path: Path) -> Results:
    """The results a rendered leaderboard was built from, read back from its ``rows.csv``: a published
    leaderboard can be rendered again (``jestbench leaderboard --rows``) without its run files.

    rows.csv holds the rows of complete runs only, so every run read is complete; runs the original
    leaderboard left out as failed or unfinished are not in it.

    Raises:
        ResultsError: the file cannot be read, or lacks a column of the results table.
    """
    try:
        rows = pd.read_csv(path, dtype=dict.fromkeys(_TEXT_COLUMNS, str))
    except (OSError, ValueError) as err:  # pandas' parser errors are ValueErrors
        raise ResultsError(f"cannot read rows file {path}: {err}") from err
    missing = [c for c in (*REQUIRED_COLUMNS, "config_key", "config.eval_splits") if c not in rows.columns]
    if missing:
        raise ResultsError(
            f"rows file {path} lacks {', '.join(missing)}: it is not the rows.csv of a leaderboard "
            "written by this version of jestbench"
        )
    rows[list(METRICS)] = rows[list(METRICS)].astype(float)
    runs = [
        {
            "run_id": run_id,
            "status": "complete",
            "error": None,
            "strategy": run["strategy"].iloc[0],
            "params": run["config.params"].iloc[0],
            "seed": int(run["seed"].iloc[0]),
            "rows": len(run),
            "path": str(path),
            "eval_splits": tuple(json.loads(run["config.eval_splits"].iloc[0])),
        }
        for run_id, run in rows.groupby("run_id", sort=False)
    ]
    return Results(rows=rows, runs=pd.DataFrame(runs, columns=list(_RUN_COLUMNS)))
