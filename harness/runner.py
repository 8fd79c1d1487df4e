"""Running a suite: each section's data and references when missing, each run (resuming or skipping
those done), then each section's leaderboard (and, for a suite with sections, their index).

Runs are keyed by config hash, so rerunning a suite skips complete runs and resumes the one in
flight from its checkpoint; a kill leaves run files that are whole (they are replaced atomically)
and never two files for one run. A run that fails is recorded with its error and the suite goes on.
``jobs > 1`` runs that many runs at once in separate processes, the cores shared out between them
unless ``threads`` is given (each run's thread count is in its rows' provenance).
"""

from __future__ import annotations

import multiprocessing
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.data import Dataset, open_data
from harness.distributed import launch
from harness.errors import UserError
from harness.leaderboard import (
    LeaderboardError,
    LeaderboardFiles,
    is_leaderboard,
    leaderboard_dir,
    render_leaderboard,
)
from harness.publish import INDEX_PAGE, is_index, write_index
from harness.records import RunFile
from harness.reference import reference_config, train_reference
from harness.results import read_runs
from harness.runconfig import RunConfig
from harness.staging import staged_directory
from harness.suites import Section, Suite
from harness.train import train
from harness.workdir import default_threads


@dataclass(frozen=True)
class SectionPlan:
    """A section's runs, made ready: its configs and the records of the references they run against."""

    section: Section
    configs: list[RunConfig]
    references: list[dict[str, Any]]

    def note(self) -> str | None:
        """The section's note, with what its track means and which reference is which."""
        parts = [self.section.note] if self.section.note else []
        if self.section.track == "examples":
            parts.append(
                "Equal-examples track: every run stopped after the same number of trained examples "
                "whatever its FLOPs (which are charged and shown all the same); ranks here are not "
                "FLOP-matched."
            )
        if len(self.references) > 1:
            listed = ", ".join(
                f"{r['hash'][:8]} = seed {r['config']['seed']}, {r['config']['budget']}"
                for r in self.references
            )
            parts.append(f"References ([reference HASH] in the strategy column): {listed}.")
        return " ".join(parts) or None


@dataclass(frozen=True)
class SuiteResult:
    """What a suite run did: its runs by outcome, its leaderboards and how long it took.

    ``leaderboards`` maps each section to its rendered leaderboard (``None`` where no run of it
    completed); ``index`` is the sections' index page of a suite with ``[[sections]]``."""

    run_ids: list[str]
    skipped: list[str]
    failed: dict[str, str]
    leaderboards: dict[str, LeaderboardFiles | None]
    index: Path | None
    seconds: float
    configs: dict[str, RunConfig]  # every run of the suite by run id

    @property
    def leaderboard(self) -> LeaderboardFiles | None:
        """The first section's leaderboard (a suite without sections has only that one)."""
        return next(iter(self.leaderboards.values()), None)


def prepare(suite: Suite, work_dir: Path, *, show_progress: bool = True) -> list[SectionPlan]:
    """Build each section's data and train its references if missing; return its runs' configs."""
    plans = []
    for section in suite.sections:
        dataset, references = prepare_inputs(
            section, work_dir, with_reference=section.needs_reference(), show_progress=show_progress
        )
        plans.append(
            SectionPlan(section, section.run_configs(dataset, [r["hash"] for r in references]), references)
        )
    return plans


def prepare_inputs(
    section: Section, work_dir: Path, *, with_reference: bool, show_progress: bool = True
) -> tuple[Dataset, list[dict[str, Any]]]:
    """The section's dataset, built if missing, and (``with_reference``) the records of its references,
    one per ``[reference]`` seed, trained if missing. ``jestbench tune`` asks for the references when
    its search space can need them, even if no configuration of the suite does."""
    dataset = open_data(work_dir, **section.data)
    references = []
    if with_reference:
        spec = section.reference
        for seed in section.reference_seeds:
            config = reference_config(
                dataset,
                preset=spec.get("preset", section.run["preset"]),
                budget=spec.get("budget", "600 steps"),
                batch_size=int(spec.get("batch_size", section.run["batch_size"])),
                seed=seed,
                optim=section.optim_config(),
                device=section.device,
                precision=section.precision,
            )
            references.append(train_reference(config, work_dir, show_progress=show_progress))
    return dataset, references


def run_one(
    config: RunConfig, work_dir: Path, *, show_progress: bool, threads: int | None = None
) -> str | None:
    """Run (or resume) one run; return ``None`` or the error it failed with, recorded in its run file.
    A run over K ranks is started through torchrun's API, ``threads`` each (default: the cores shared
    out between the ranks)."""
    if config.world_size > 1:
        threads = threads or default_threads(config.world_size)
    elif threads is not None:
        torch.set_num_threads(threads)
    try:
        if config.world_size > 1:
            launch(
                _train_rank,
                (config.to_dict(), str(work_dir), threads, show_progress),
                config.world_size,
                config.run_id,
            )
        else:
            train(config, work_dir, show_progress=show_progress)
    except Exception as err:  # a failed run is recorded and the suite goes on
        message = f"{type(err).__name__}: {err}"
        path = RunFile.path_for(work_dir, config.run_id)
        run = RunFile.load(path) if path.exists() else RunFile(config.run_id, config.to_dict())
        run.status = "failed"
        run.error = run.error or message
        if not isinstance(err, UserError):
            run.summary["traceback"] = traceback.format_exc()
        run.save(work_dir)
        return run.error
    return None


def _train_rank(config_dict: dict[str, Any], work: str, threads: int | None, show_progress: bool) -> None:
    """One rank of a distributed run (the entry point :func:`harness.distributed.launch` starts)."""
    if threads is not None:
        torch.set_num_threads(threads)
    train(RunConfig.from_dict(config_dict), Path(work), show_progress=show_progress)


def _run_in_process(args: tuple[dict[str, Any], str, int]) -> tuple[str, str | None]:
    config_dict, work, threads = args
    config = RunConfig.from_dict(config_dict)
    return config.run_id, run_one(config, Path(work), show_progress=False, threads=threads)


def run_suite(
    suite: Suite,
    work_dir: Path,
    *,
    jobs: int = 1,
    threads: int | None = None,
    show_progress: bool = True,
    announce: Callable[[str], None] = print,
) -> SuiteResult:
    """Run every run of ``suite`` not yet complete, then render its leaderboards.

    Args:
        jobs: runs at once, each in a process of its own when more than one.
        threads: torch threads of every run (default: this process's with one job, the cores
            shared out with several).
    """
    if jobs < 1:
        raise UserError(f"--jobs {jobs} must be >= 1")
    if jobs > 1 and suite.world_size > 1:
        raise UserError(
            f"--jobs {jobs} with --nproc {suite.world_size}: run either several one-process runs at once or one run over several processes"
        )
    started = time.monotonic()
    plans = prepare(suite, work_dir, show_progress=show_progress)
    configs = {c.run_id: c for plan in plans for c in plan.configs}  # a run two sections share runs once
    skipped = [i for i in configs if RunFile.load_complete(work_dir, i) is not None]
    pending = [c for i, c in configs.items() if i not in skipped]
    announce(
        f"suite {suite.name}: {len(configs)} runs in {len(plans)} section(s), {len(skipped)} already "
        f"complete, {len(pending)} to run"
    )
    failed = run_configs(
        pending, work_dir, jobs=jobs, threads=threads, show_progress=show_progress, announce=announce
    )
    boards, index = render_suite(suite, plans, work_dir)
    return SuiteResult(list(configs), skipped, failed, boards, index, time.monotonic() - started, configs)


def run_configs(
    pending: list[RunConfig],
    work_dir: Path,
    *,
    jobs: int = 1,
    threads: int | None = None,
    show_progress: bool = True,
    announce: Callable[[str], None] = print,
) -> dict[str, str]:
    """Run (or resume) each of ``pending``, ``jobs`` at a time in processes of their own when more
    than one, announcing each; return the errors of those that failed, by run id (each recorded in
    its run file; the others went on).

    Args:
        threads: torch threads of every run (default: this process's with one job, the cores
            shared out with several).
    """
    failed: dict[str, str] = {}
    if jobs == 1:
        for number, config in enumerate(pending, 1):
            announce(f"[{number}/{len(pending)}] {describe_run(config)}: run {config.run_id}")
            error = run_one(config, work_dir, show_progress=show_progress, threads=threads)
            if error:
                failed[config.run_id] = error
                announce(f"  failed: {error}")
        return failed
    threads = threads or default_threads(jobs)
    context = multiprocessing.get_context("spawn")
    work = [(c.to_dict(), str(work_dir), threads) for c in pending]
    described = {c.run_id: describe_run(c) for c in pending}
    # Workers ignore Ctrl-C: the parent alone reports the interruption, in one line.
    with context.Pool(jobs, initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN)) as pool:
        for number, (run_id, error) in enumerate(pool.imap_unordered(_run_in_process, work), 1):
            outcome = f"failed: {error}" if error else "done"
            announce(f"[{number}/{len(pending)}] {described[run_id]}: run {run_id} {outcome}")
            if error:
                failed[run_id] = error
    return failed


def describe_run(config: RunConfig) -> str:
    """``jest (gain=100, ...) f=0.8 seed 1 [reference 1a2b3c4d]``: a run as progress lines name it."""
    params = ", ".join(f"{k}={v}" for k, v in config.params.items())
    extra = " [clean-only pool]" if config.pool != "all" else ""
    extra += f" [reference {config.reference[:8]}]" if config.reference else ""
    return f"{config.strategy} ({params}) f={config.filter_ratio:g} seed {config.seed}, budget {config.budget}{extra}"


def render_suite(
    suite: Suite, plans: list[SectionPlan], work_dir: Path
) -> tuple[dict[str, LeaderboardFiles | None], Path | None]:
    """Render each section's leaderboard from its complete runs: a suite without ``[[sections]]`` into
    ``WORK/leaderboards/<suite>/`` as before; one with sections into ``<suite>/<section>/`` beside an
    index (README.md, :data:`harness.publish.INDEX`), the whole directory replaced at once. A section
    none of whose runs completed has no leaderboard (the index says so)."""
    if not suite.sectioned:
        (plan,) = plans
        board = _render_section(suite, plan, work_dir, leaderboard_dir(work_dir, suite.name))
        return {plan.section.name: board}, None
    destination = leaderboard_dir(work_dir, suite.name)
    boards: dict[str, LeaderboardFiles | None] = {}
    with staged_directory(
        destination, replaceable=lambda p: is_leaderboard(p) or is_index(p), what="a suite's leaderboards"
    ) as staging:
        for plan in plans:
            boards[plan.section.name] = _render_section(suite, plan, work_dir, staging / plan.section.name)
        write_index(
            staging,
            title=f"{suite.name} suite",
            description=suite.description,
            sections=[_index_entry(plan, boards[plan.section.name]) for plan in plans],
        )
    final = {
        name: None if board is None else _moved(board, destination / name) for name, board in boards.items()
    }
    return final, destination / INDEX_PAGE


def _render_section(
    suite: Suite, plan: SectionPlan, work_dir: Path, out_dir: Path
) -> LeaderboardFiles | None:
    try:
        return render_leaderboard(
            read_runs(work_dir, [c.run_id for c in plan.configs]),
            out_dir,
            title=f"{suite.name} suite"
            + (f", {plan.section.name}" if suite.sectioned else "")
            + f": {plan.section.description}",
            note=plan.note(),
        )
    except LeaderboardError:  # no run of the section completed: its failures are listed by the caller
        return None


def _index_entry(plan: SectionPlan, board: LeaderboardFiles | None) -> dict[str, Any]:
    section = plan.section
    return {
        "name": section.name,
        "description": section.description,
        "track": section.track,
        "data": section.data.get("data") or section.data.get("raw", ""),
        "budgets": sorted({c.budget for c in plan.configs}),
        "seeds": section.seeds,
        "references": [r["hash"] for r in plan.references],
        "runs": len(plan.configs),
        "leaderboard": board is not None,
    }


def _moved(board: LeaderboardFiles, directory: Path) -> LeaderboardFiles:
    """The same leaderboard's files, found under ``directory`` (where the staging was swapped in)."""

    def move(path: Path) -> Path:
        return directory / path.relative_to(board.directory)

    return LeaderboardFiles(
        directory=directory,
        markdown=move(board.markdown),
        csv=move(board.csv),
        html=move(board.html),
        rows=move(board.rows),
        manifest=move(board.manifest),
        figures=tuple(move(f) for f in board.figures),
    )
