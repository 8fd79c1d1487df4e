"""Running a suite: its data and reference when missing, each run (resuming or skipping those done),
then its leaderboard.

Runs are keyed by config hash, so rerunning a suite skips complete runs and resumes the one in
flight from its checkpoint; a kill leaves run files that are whole (they are replaced atomically)
and never two files for one run. A run that fails is recorded with its error and the suite goes on.
``jobs > 1`` runs that many runs at once in separate processes, the cores shared out between them
(each run's thread count is in its rows' provenance).
"""

from __future__ import annotations

import multiprocessing
import os
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
from harness.leaderboard import LeaderboardFiles, leaderboard_dir, render_leaderboard
from harness.records import RunFile
from harness.reference import reference_config, train_reference
from harness.results import read_runs
from harness.runconfig import RunConfig
from harness.suites import Suite
from harness.train import train


@dataclass(frozen=True)
class SuiteResult:
    """What a suite run did: its runs by outcome, its leaderboard and how long it took."""

    run_ids: list[str]
    skipped: list[str]
    failed: dict[str, str]
    leaderboard: LeaderboardFiles | None
    seconds: float


def prepare(suite: Suite, work_dir: Path, *, show_progress: bool = True) -> list[RunConfig]:
    """Build the suite's data and train its reference if missing; return its runs' configs."""
    dataset, reference = prepare_inputs(
        suite, work_dir, with_reference=suite.needs_reference(), show_progress=show_progress
    )
    return suite.run_configs(dataset, reference)


def prepare_inputs(
    suite: Suite, work_dir: Path, *, with_reference: bool, show_progress: bool = True
) -> tuple[Dataset, str | None]:
    """The suite's dataset, built if missing, and (``with_reference``) the hash of its reference,
    trained if missing. ``jestbench tune`` asks for the reference when its search space can need it,
    even if no configuration of the suite does."""
    dataset = open_data(work_dir, **suite.data)
    reference = None
    if with_reference:
        spec = suite.reference
        config = reference_config(
            dataset,
            preset=spec.get("preset", suite.run["preset"]),
            budget=spec.get("budget", "600 steps"),
            batch_size=int(spec.get("batch_size", suite.run["batch_size"])),
            seed=int(spec.get("seed", 0)),
            optim=suite.optim_config(),
            device=suite.device,
            precision=suite.precision,
        )
        reference = train_reference(config, work_dir, show_progress=show_progress)["hash"]
    return dataset, reference


def run_one(
    config: RunConfig, work_dir: Path, *, show_progress: bool, threads: int | None = None
) -> str | None:
    """Run (or resume) one run; return ``None`` or the error it failed with, recorded in its run file.
    A run over K ranks is started through torchrun's API, ``threads`` each."""
    if threads is not None and config.world_size == 1:
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
    show_progress: bool = True,
    announce: Callable[[str], None] = print,
) -> SuiteResult:
    """Run every run of ``suite`` not yet complete, then render its leaderboard."""
    if jobs < 1:
        raise UserError(f"--jobs {jobs} must be >= 1")
    if jobs > 1 and suite.world_size > 1:
        raise UserError(
            f"--jobs {jobs} with --nproc {suite.world_size}: run either several one-process runs at once or one run over several processes"
        )
    started = time.monotonic()
    configs = prepare(suite, work_dir, show_progress=show_progress)
    run_ids = [c.run_id for c in configs]
    skipped = [c.run_id for c in configs if RunFile.load_complete(work_dir, c.run_id) is not None]
    pending = [c for c in configs if c.run_id not in skipped]
    announce(
        f"suite {suite.name}: {len(configs)} runs, {len(skipped)} already complete, {len(pending)} to run"
    )
    failed: dict[str, str] = {}
    if jobs == 1:
        threads = max(1, (os.cpu_count() or 1) // suite.world_size)
        for number, config in enumerate(pending, 1):
            params = ", ".join(f"{k}={v}" for k, v in config.params.items())
            announce(
                f"[{number}/{len(pending)}] {config.strategy} ({params}) seed {config.seed}: run {config.run_id}"
            )
            error = run_one(
                config,
                work_dir,
                show_progress=show_progress,
                threads=threads if config.world_size > 1 else None,
            )
            if error:
                failed[config.run_id] = error
                announce(f"  failed: {error}")
    else:
        threads = max(1, (os.cpu_count() or 1) // (jobs * suite.world_size))
        context = multiprocessing.get_context("spawn")
        work = [(c.to_dict(), str(work_dir), threads) for c in pending]
        with context.Pool(jobs) as pool:
            for number, (run_id, error) in enumerate(pool.imap_unordered(_run_in_process, work), 1):
                announce(f"[{number}/{len(pending)}] {run_id} {'failed: ' + error if error else 'done'}")
                if error:
                    failed[run_id] = error
    board = None
    if len(failed) < len(configs):
        board = render_leaderboard(
            read_runs(work_dir, run_ids),
            leaderboard_dir(work_dir, suite.name),
            title=f"{suite.name} suite: {suite.description}",
            note=suite.note,
        )
    return SuiteResult(run_ids, skipped, failed, board, time.monotonic() - started)
