"""A study's report: best parameters, parameter importances, every trial and three figures, written
to ``WORK/studies/<study>/`` and published to ``results/tuning/<study>/``.

Everything comes from the study in its storage (the study records what it tunes), so the report can
be rewritten at any time, by any machine that reaches the storage. Importances are PED-ANOVA's
(Optuna's default) over complete trials; with few trials they are rough, and the report says so with
the estimator's own warnings instead of hiding them. Figures are Optuna's matplotlib ones on the Agg
canvas (plotly's PNG export would need a browser download).
"""

from __future__ import annotations

import datetime
import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import optuna
import pandas as pd
from optuna.trial import TrialState

from harness import __version__
from harness.staging import staged_directory
from harness.tune.storage import allow_experimental, redact
from harness.tune.study import POINT_ATTR, RUN_ATTR, STUDY_ATTR, TuneError, describe_point
from harness.workdir import checked_name

MANIFEST = "study.json"
TUNING_DIR = "tuning"
OBJECTIVE = "final mean score on val at the FLOP budget (higher is better)"
TARGET_NAME = "val mean score at the budget"  # the figures' name for the objective


@dataclass(frozen=True)
class StudyFiles:
    """Where a study's report went."""

    directory: Path
    manifest: Path
    readme: Path
    trials: Path
    figures: tuple[Path, ...]
    best: dict[str, Any] | None  # number, value, point, run_id and Optuna's params of the best trial


def study_dir(work_dir: Path, study: str) -> Path:
    """``<work>/studies/<study>``: the report of one study."""
    return work_dir / "studies" / checked_name(study, "study name")


def is_study(directory: Path) -> bool:
    """Whether ``directory`` holds a study report (its manifest): only such a directory is replaced."""
    return (directory / MANIFEST).is_file()


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The complete trial with the best score.

    Raises:
        TuneError: the study has no complete trial yet.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise TuneError(
            f"study {study.study_name!r} has no complete trial yet: run trials first (--trials N)"
        )
    return max(complete, key=lambda t: (t.value, -t.number))


def _importances(study: optuna.Study) -> tuple[dict[str, float] | None, list[str]]:
    """Parameter importances and the notes that qualify them (too few trials, the estimator's
    warnings)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return None, [f"importances need at least 2 complete trials; the study has {len(complete)}"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importances = optuna.importance.get_param_importances(study)
    notes = sorted({str(w.message) for w in caught})
    return {name: float(value) for name, value in importances.items()}, notes


def _trial_rows(study: optuna.Study) -> pd.DataFrame:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        point = trial.user_attrs.get(POINT_ATTR) or {"params": {}}
        run = {k: v for k, v in point.items() if k != "params"}
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                "value": trial.value,
                **run,
                **{f"params.{k}": v for k, v in point["params"].items()},
                "last_evaluation": trial.last_step,
                "run_id": trial.user_attrs.get(RUN_ATTR),
                "started": trial.datetime_start.isoformat() if trial.datetime_start else None,
                "seconds": trial.duration.total_seconds() if trial.duration else None,
            }
        )
    return pd.DataFrame(rows)


def _figures(study: optuna.Study, directory: Path, with_importances: bool) -> list[Path]:
    """Optimisation history, parallel coordinates and (with 2+ complete trials) importances."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    directory.mkdir(parents=True, exist_ok=True)
    drawers: dict[str, Callable[..., Any]] = {
        "history.png": plots.plot_optimization_history,
        "parallel_coordinate.png": plots.plot_parallel_coordinate,
    }
    if with_importances:
        drawers["importances.png"] = plots.plot_param_importances
    written = []
    for name, draw in drawers.items():
        with allow_experimental(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the importances' caveats are in the notes
            axes = draw(study, target_name=TARGET_NAME)
        figure = axes.get_figure()
        figure.savefig(directory / name, dpi=110, bbox_inches="tight", metadata={"Software": None})
        plt.close(figure)
        written.append(directory / name)
    return written


def _readme(summary: dict[str, Any], figures: list[Path]) -> str:
    best = summary["best"]
    lines = [
        f"# Study {summary['study']}",
        "",
        f"Tunes `{summary['strategy']}`: objective = {summary['objective']}. The `eval` split is never "
        "seen while tuning; re-run the best point at fresh seeds for the leaderboard "
        "(`jestbench tune ... --rerun-best`).",
        "",
        "Trials: " + ", ".join(f"{n} {state}" for state, n in summary["trials"].items()),
        "",
    ]
    if best:
        point = describe_point(best["point"]) if best["point"] else f"Optuna's params {best['optuna_params']}"
        lines += [
            f"**Best**: trial {best['number']}, val {best['value']:.4f}: {point} (run `{best['run_id']}`)",
            "",
        ]
    lines += ["## Search space", "", "| dimension | searched |", "|---|---|"]
    lines += [f"| {name} | {text} |" for name, text in summary["space"].items()]
    lines += ["", "## Parameter importances", ""]
    if summary["importances"]:
        lines += ["| parameter | importance |", "|---|---|"]
        lines += [f"| {name} | {value:.3f} |" for name, value in summary["importances"].items()]
        lines.append("")
    lines += [f"- {note}" for note in summary["importance_notes"]]
    lines += ["", "## Figures", ""]
    lines += [f"![{path.stem}](figures/{path.name})" for path in figures]
    lines += [
        "",
        "Every trial: [trials.csv](trials.csv); everything above as data: [study.json](study.json).",
        "",
    ]
    return "\n".join(lines)


def write_report(study: optuna.Study, out_dir: Path, *, storage: str) -> StudyFiles:
    """Write the study's report into ``out_dir`` (replaced whole)."""
    identity = study.user_attrs.get(STUDY_ATTR)
    if identity is None:
        raise TuneError(f"study {study.study_name!r} was not made by jestbench tune: it records no run")
    states = [t.state.name.lower() for t in study.get_trials(deepcopy=False)]
    best = None
    if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        trial = best_trial(study)
        best = {
            "number": trial.number,
            "value": trial.value,
            "point": trial.user_attrs.get(POINT_ATTR),  # None for a trial added by hand
            "run_id": trial.user_attrs.get(RUN_ATTR),
            "optuna_params": trial.params,
        }
    importances, notes = _importances(study)
    summary = {
        "study": study.study_name,
        "storage": redact(storage),
        "strategy": identity["strategy"],
        "objective": OBJECTIVE,
        "run": identity["run"],
        "space": identity["space"],
        "trials": {state: states.count(state) for state in sorted(set(states))},
        "best": best,
        "importances": importances,
        "importance_notes": notes,
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "jestbench_version": __version__,
        "optuna_version": optuna.__version__,
    }
    with staged_directory(out_dir, replaceable=is_study, what="a study report") as staging:
        figures = _figures(study, staging / "figures", importances is not None)
        _trial_rows(study).to_csv(staging / "trials.csv", index=False)
        (staging / "README.md").write_text(_readme(summary, figures))
        (staging / MANIFEST).write_text(json.dumps(summary, indent=1) + "\n")
    return StudyFiles(
        directory=out_dir,
        manifest=out_dir / MANIFEST,
        readme=out_dir / "README.md",
        trials=out_dir / "trials.csv",
        figures=tuple(out_dir / "figures" / path.name for path in figures),
        best=best,
    )


def publish_study(source: Path, results_dir: Path) -> Path:
    """Copy a study report to ``<results_dir>/tuning/<study>/`` (replaced whole; nothing else in
    ``results/`` changes). Returns the destination.

    Raises:
        TuneError: ``source`` holds no study report.
    """
    if not is_study(source):
        raise TuneError(f"{source} holds no study report (run `jestbench tune` first)")
    destination = results_dir.resolve() / TUNING_DIR / source.name
    with staged_directory(destination, replaceable=is_study, what="a published study") as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
    return destination
