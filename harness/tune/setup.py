"""What a study tunes, from a suite: the suite's run for one strategy, its data and reference, and the
``[tune]`` table's space, pruner and trial count.

The run is the suite's first ``[[strategies]]`` entry of that name (its settings: b, budget, preset,
evaluation cadence; its parameters are the space's to search), or the suite's ``[run]`` table for a
strategy the suite does not list; in a suite with ``[[sections]]``, of the first section that lists
the strategy (else the first section), against its first reference. It is evaluated on ``val`` only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.runner import prepare_inputs
from harness.suites import Entry, Section, Suite
from harness.tune.space import build_space, with_params
from harness.tune.storage import DEFAULT_HEARTBEAT
from harness.tune.study import TUNING_SPLIT, Tuning, default_study_name, parse_pruner

DEFAULT_TRIALS = 20


@dataclass(frozen=True)
class SuiteTuning:
    """A suite's study of one strategy, and the suite's own run ids (a tuned leaderboard shows the
    tuned rows beside them)."""

    tuning: Tuning
    trials: int
    suite_run_ids: list[str]


def suite_entry(section: Section, strategy: str) -> Entry:
    """The section's first configuration of ``strategy``, or one made from its ``[run]`` table."""
    for entry in section.entries():
        if entry.strategy == strategy:
            return entry
    return dataclasses.replace(section, strategies=[{"name": strategy}]).entries()[0]


def tuning_from_suite(
    suite: Suite,
    strategy: str,
    work_dir: Path,
    *,
    storage: str,
    study: str | None = None,
    seed: int | None = None,
    pruner: str | None = None,
    params: Mapping[str, str] | None = None,
    heartbeat: int = DEFAULT_HEARTBEAT,
    checkpoint_seconds: float = 60.0,
    show_progress: bool = True,
) -> SuiteTuning:
    """The study of ``strategy`` on ``suite``'s run; builds the data and reference if missing.

    Args:
        seed: the seed trials train at (default: the suite's first seed).
        pruner: a pruner name that overrides the ``[tune]`` table's.
        params: strategy parameters held fixed (``-p k=v``), over the ``[tune]`` table's.

    Raises:
        SpaceError: the ``[tune]`` table's space is not searchable for this strategy at this ``b``
            (before any data is built or trial is run).
        TuneError: the pruner is not valid.
    """
    section = suite.section_for(strategy)
    entry = suite_entry(section, strategy)
    table = with_params(suite.tune, strategy, params or {})
    space = build_space(strategy, int(entry.settings["batch_size"]), table, source=suite.source)
    pruner_spec = parse_pruner(
        pruner or suite.tune.get("pruner", "median"),
        "--pruner" if pruner else f"{suite.source}: [tune] pruner",
    )
    dataset, records = prepare_inputs(
        section,
        work_dir,
        with_reference=space.needs_reference() or section.needs_reference(),
        show_progress=show_progress,
    )
    references = [r["hash"] for r in records]
    reference = references[0] if references else None
    base = section.run_config(entry, section.seeds[0] if seed is None else seed, dataset, reference)
    base = dataclasses.replace(base, eval_splits=(TUNING_SPLIT,))
    tuning = Tuning(
        study=study or default_study_name(suite.name, base, space),
        storage=storage,
        base=base,
        reference=reference,
        space=space,
        pruner=pruner_spec,
        work_dir=work_dir,
        heartbeat=heartbeat,
        checkpoint_seconds=checkpoint_seconds,
    )
    trials = int(suite.tune.get("trials", DEFAULT_TRIALS))
    return SuiteTuning(tuning, trials, [c.run_id for c in section.run_configs(dataset, references)])
