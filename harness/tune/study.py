"""Running a study: trials are runs of the one training loop, scored on ``val`` at the fixed budget.

Each trial draws a point of the search space, makes the run config of that point (the same
:class:`harness.runconfig.RunConfig` that ``jestbench train`` and suites make, evaluated on ``val`` only:
the ``eval`` split is never loaded while tuning) and runs it with :func:`harness.train.train`. The run
goes to the work directory like any run, keyed by its config hash, so a trial whose config was run
before reuses the finished run or resumes the unfinished one from its checkpoint.

Evaluation ``k`` is reported as step ``k``: evaluations happen at fixed fractions of the FLOP budget,
so step ``k`` means the same share of compute for every trial whatever its filter ratio, and the
pruner compares like with like. The objective is the mean score of the last evaluation, at the budget.

Workers are processes on one study, started by any number of commands on any number of machines.
Each has its own TPE sampler seeded from fresh randomness (mixed with the study's name): a seed made
from anything two commands share (the worker's number, the trials so far) would make commands
started together propose the same points in lockstep. The seed and the worker are recorded in every
trial's user attributes, so a study stays auditable. A point is drawn, checked and recorded under the
study's lock (:func:`harness.tune.storage.storage_lock`): a draw whose run is already complete or
running in another trial is not run again but failed as a repeat, and the worker draws another.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import platform
import secrets
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from filelock import FileLock
from optuna.trial import TrialState

from harness.distributed import launch, leave_process_group
from harness.errors import UserError
from harness.records import RunFile, config_hash
from harness.runconfig import RunConfig
from harness.train import RunStopped, train
from harness.tune.space import SearchSpace
from harness.tune.storage import DEFAULT_HEARTBEAT, allow_experimental, redact, storage_lock, storage_session
from harness.workdir import checked_name, default_threads
from strategies import StrategyError

TUNING_SPLIT = "val"
STUDY_ATTR = "jestbench"  # the study's user attribute that records what it tunes
POINT_ATTR = "point"  # each trial's point, decoded (n_chunks, not its exponent)
RUN_ATTR = "run_id"
SAMPLER_ATTR = "sampler"  # the worker that drew the trial: host, process id and worker number
SEED_ATTR = "sampler_seed"  # that worker's sampler seed
REPEAT_ATTR = "repeat_of"  # the trial whose run a repeated draw would have run again
# A worker whose draws repeat points already run this many times in a row stops: the space (a few
# discrete choices) holds no point left to run.
MAX_REPEATS = 20
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Evaluation 0 is the untrained model, the same for every trial at one seed: nothing to prune on.
WARMUP_STEPS = 1
PRUNERS: dict[str, tuple[type[optuna.pruners.BasePruner], dict[str, Any]]] = {
    "median": (
        optuna.pruners.MedianPruner,
        {"n_startup_trials": 5, "n_warmup_steps": WARMUP_STEPS, "interval_steps": 1, "n_min_trials": 1},
    ),
    "percentile": (
        optuna.pruners.PercentilePruner,
        {
            "percentile": 25.0,
            "n_startup_trials": 5,
            "n_warmup_steps": WARMUP_STEPS,
            "interval_steps": 1,
            "n_min_trials": 1,
        },
    ),
    "threshold": (
        optuna.pruners.ThresholdPruner,
        {"lower": None, "upper": None, "n_warmup_steps": WARMUP_STEPS, "interval_steps": 1},
    ),
    "none": (optuna.pruners.NopPruner, {}),
}


class TuneError(UserError):
    """A study that cannot run as asked; the message says why and what to do."""


class TrialRunFailed(UserError):
    """A trial whose run failed (now or in an earlier trial with the same config): the trial fails,
    the study goes on."""


class RepeatedPoint(UserError):
    """A draw whose run another trial has run or is running: the trial fails without running it."""


def _not_a_repeat(record: logging.LogRecord) -> bool:
    """Optuna logs every failed trial with its traceback; a repeat is announced in one line instead."""
    return RepeatedPoint.__name__ not in record.getMessage()


def parse_pruner(spec: str | Mapping[str, Any], source: str = "--pruner") -> dict[str, Any]:
    """A pruner spec (``"median"``, or a table with ``name`` and the pruner's settings) with its
    defaults filled in; refused, naming the bad key, if Optuna would not accept it."""
    table = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = table.pop("name", "median")
    if name not in PRUNERS:
        raise TuneError(f"{source}: pruner {name!r} is not one of {', '.join(PRUNERS)}")
    defaults = PRUNERS[name][1]
    unknown = sorted(set(table) - set(defaults))
    if unknown:
        raise TuneError(
            f"{source}: the {name} pruner has no setting {unknown[0]!r} (its settings: {', '.join(defaults) or 'none'})"
        )
    full = {"name": name, **defaults, **table}
    try:
        make_pruner(full)
    except (TypeError, ValueError) as err:
        raise TuneError(f"{source}: {err}") from None
    return full


def make_pruner(spec: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """The Optuna pruner of a spec from :func:`parse_pruner`."""
    cls, _ = PRUNERS[spec["name"]]
    return cls(**{k: v for k, v in spec.items() if k != "name"})


@dataclass(frozen=True)
class Tuning:
    """What a study tunes and where; a worker process gets a copy.

    Attributes:
        study: the study's name.
        storage: its storage URL (may hold a password: show :func:`redact` of it).
        base: the run every trial varies (its strategy, b, budget, data, seed), evaluated on ``val``.
        reference: the reference hash for trials whose strategy reads one.
        space: what the trials search.
        pruner: a spec from :func:`parse_pruner`.
        work_dir: where trial runs, studies and locks go.
        heartbeat: seconds between heartbeats of a running trial (RDB storages).
        checkpoint_seconds: how often a trial's run checkpoints between evaluations.
    """

    study: str
    storage: str
    base: RunConfig
    reference: str | None
    space: SearchSpace
    pruner: dict[str, Any] = field(default_factory=lambda: parse_pruner("median"))
    work_dir: Path = Path("work")
    heartbeat: int = DEFAULT_HEARTBEAT
    checkpoint_seconds: float = 60.0

    def __post_init__(self) -> None:
        checked_name(self.study, "study name")  # it names the report's directory

    def config_for(self, point: Mapping[str, Any]) -> RunConfig:
        """The run of one point of the space."""
        return self.space.apply(self.base, point, self.reference)

    def identity(self) -> dict[str, Any]:
        """What makes a study this study: strategy, base run (without the dataset's location) and
        space. A rerun must match it; JSON-normalised, as the storage keeps it."""
        run = {k: v for k, v in self.base.to_dict().items() if k != "dataset"}
        identity = {"strategy": self.space.strategy, "run": run, "space": self.space.describe()}
        normalised: dict[str, Any] = json.loads(json.dumps(identity))
        return normalised


def default_study_name(prefix: str, base: RunConfig, space: SearchSpace) -> str:
    """``<prefix>-<strategy>-<hash>``: the same run and space give the same name, so rerunning a
    command continues its study, and changing the space starts another."""
    run = {k: v for k, v in base.to_dict().items() if k != "dataset"}
    digest = config_hash({"run": run, "space": space.describe()})[:8]
    return f"{prefix}-{space.strategy}-{digest}"


def _differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += [f"{key}.{d}" for d in _differences(a, b)]
        elif a != b:
            out.append(key)
    return out


def open_study(
    tuning: Tuning,
    storage: optuna.storages.BaseStorage,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> optuna.Study:
    """Create the study, or load it and check that it tunes the same run and space.

    Raises:
        TuneError: a study of that name exists for another strategy, run or space.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # jestbench prints one line per trial
    # One command at a time creates the study and records what it tunes.
    with storage_lock(tuning.storage, _study_lock(tuning)):
        study = optuna.create_study(
            storage=storage,
            study_name=tuning.study,
            direction="maximize",
            load_if_exists=True,
            sampler=sampler,
            pruner=make_pruner(tuning.pruner),
        )
        wanted = tuning.identity()
        stored = study.user_attrs.get(STUDY_ATTR)
        if stored is None:
            study.set_user_attr(STUDY_ATTR, wanted)
    if stored is not None and stored != wanted:
        raise TuneError(
            f"study {tuning.study!r} in {redact(tuning.storage)} tunes another run or space (differs in "
            f"{', '.join(_differences(stored, wanted))}); choose another --study, or leave it out "
            "(the default name follows the run and the space)"
        )
    return study


def _study_lock(tuning: Tuning) -> str:
    """The name of the study's lock in its storage."""
    return f"study:{tuning.study}"


def final_score(rows: list[dict[str, Any]]) -> float:
    """The objective: the mean score of the last evaluation on ``val``, at the budget."""
    last = max((r for r in rows if r["split"] == TUNING_SPLIT), key=lambda r: r["evaluation"])
    return float(last["mean"])


def _lock(work_dir: Path, run_id: str) -> FileLock:
    """One run at a time per config: two workers drawing the same point take turns, and the second
    finds the first's run done (or resumes it where a pruner stopped it)."""
    path = work_dir / "studies" / "locks" / f"{run_id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


class Objective:
    """One trial: draw a point no other trial has run or is running, run its config (or reuse its
    run), report each evaluation."""

    def __init__(
        self, tuning: Tuning, sampler: str = "", seed: int | None = None, threads: int | None = None
    ) -> None:
        self.tuning = tuning
        self.sampler = sampler  # who draws: recorded in each trial
        self.seed = seed
        self.threads = threads  # each rank's, for a trial over K ranks
        self.trials: list[int] = []  # numbers of the trials this worker ran

    def __call__(self, trial: optuna.Trial) -> float:
        self.trials.append(trial.number)
        trial.set_user_attr(SAMPLER_ATTR, self.sampler)
        trial.set_user_attr(SEED_ATTR, self.seed)
        # Draw, check and record under the study's lock: two workers cannot both find a point new.
        with storage_lock(self.tuning.storage, _study_lock(self.tuning)):
            point = self.tuning.space.suggest(trial)
            config = self.tuning.config_for(point)
            trial.set_user_attr(POINT_ATTR, point)
            twin = _trial_running_or_ran(trial, config.run_id)
            if twin is not None:
                trial.set_user_attr(REPEAT_ATTR, twin)
                raise RepeatedPoint(f"the point of trial {twin} (run {config.run_id}) again: not run twice")
            trial.set_user_attr(RUN_ATTR, config.run_id)
        with _lock(self.tuning.work_dir, config.run_id):
            return self._run(trial, config)

    def _run(self, trial: optuna.Trial, config: RunConfig) -> float:
        work = self.tuning.work_dir
        report = _Reports(trial)
        path = RunFile.path_for(work, config.run_id)
        if path.exists():
            run = RunFile.load(path)
            if run.status == "failed":
                raise TrialRunFailed(f"run {config.run_id} failed: {run.error}")
            done = run.status == "complete"
            for row in sorted(run.rows, key=lambda r: r["evaluation"]):
                if row["split"] == TUNING_SPLIT:
                    report(row["evaluation"], row["mean"], prune=not done)
            if done:
                return final_score(run.rows)
        if config.world_size == 1:
            result = train(
                config,
                work,
                show_progress=False,
                on_evaluation=report.on_evaluation,
                checkpoint_seconds=self.tuning.checkpoint_seconds,
            )
            return final_score(result.run.rows)
        # Over K ranks started through torchrun's API: rank 0 reports to this trial in the storage.
        address = _TrialAddress(
            self.tuning.storage,
            self.tuning.study,
            trial._trial_id,  # Optuna's id of the trial in its storage (the number is per study)
            self.tuning.pruner,
            tuple(sorted(report.reported)),
        )
        args = (config.to_dict(), str(work), self.threads, self.tuning.checkpoint_seconds, address)
        outcome, value = launch(_trial_rank, args, config.world_size, config.run_id)
        if outcome == "pruned":
            raise optuna.TrialPruned(value)
        return float(value)


class _Reports:
    """A trial's evaluations reported to Optuna as steps, each once; the pruner asked after each
    (``optuna.TrialPruned`` when it says stop)."""

    def __init__(self, trial: optuna.Trial, reported: tuple[int, ...] = ()) -> None:
        self.trial = trial
        self.reported = set(reported)

    def __call__(self, step: int, score: float, *, prune: bool = True) -> None:
        if step in self.reported:
            return
        self.reported.add(step)
        self.trial.report(score, step)
        if prune and self.trial.should_prune():
            raise optuna.TrialPruned(f"val mean {score:.4f} at evaluation {step}")

    def on_evaluation(self, step: int, evaluations: list[Any]) -> None:
        """:func:`harness.train.train`'s callback: the ``val`` mean of evaluation ``step``."""
        self(step, next(e.scores.mean for e in evaluations if e.split == TUNING_SPLIT))


@dataclass(frozen=True)
class _TrialAddress:
    """Where the rank 0 of a trial over K ranks reports: the trial in its study's storage, the
    study's pruner, and the steps already reported (from the run's rows before it resumed)."""

    storage: str
    study: str
    trial_id: int
    pruner: dict[str, Any]
    reported: tuple[int, ...]


def _trial_rank(
    config_dict: dict[str, Any],
    work: str,
    threads: int | None,
    checkpoint_seconds: float,
    address: _TrialAddress,
) -> tuple[str, float | str]:
    """One rank of a trial over K ranks (what :func:`harness.distributed.launch` starts): train, and
    on rank 0 report each evaluation to the trial through the storage and ask the pruner, which
    stops every rank. Returns ``("complete", score)`` or ``("pruned", why)``; only rank 0's counts."""
    if threads is not None:
        torch.set_num_threads(threads)
    config = RunConfig.from_dict(config_dict)
    with ExitStack() as stack:
        on_evaluation = None  # rank 0's alone is called
        if int(os.environ.get("RANK", "0")) == 0:
            storage = stack.enter_context(storage_session(address.storage))
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.load_study(
                study_name=address.study, storage=storage, pruner=make_pruner(address.pruner)
            )
            on_evaluation = _Reports(
                optuna.trial.Trial(study, address.trial_id), address.reported
            ).on_evaluation
        try:
            result = train(
                config,
                Path(work),
                show_progress=False,
                on_evaluation=on_evaluation,
                checkpoint_seconds=checkpoint_seconds,
            )
        except (optuna.TrialPruned, RunStopped) as stopped:
            leave_process_group()
            return "pruned", str(stopped)
    return "complete", (final_score(result.run.rows) if result.run.rows else float("nan"))


def _trial_running_or_ran(trial: optuna.Trial, run_id: str) -> int | None:
    """The number of another trial of the study, complete or running, whose run is ``run_id``."""
    for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if other.number != trial.number and other.user_attrs.get(RUN_ATTR) == run_id:
            return other.number
    return None


def describe_point(point: Mapping[str, Any]) -> str:
    """``f=0.83, lr=0.002, n_chunks=8, score=learnability``: a point in one line."""
    names = {"filter_ratio": "f", "learning_rate": "lr"}
    run = [f"{names.get(k, k)}={v:.3g}" for k, v in point.items() if k != "params"]
    params = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in point["params"].items()]
    return ", ".join(run + params)


def _announcer(worker: int, announce: Callable[[str], None]) -> Callable[[optuna.Study, Any], None]:
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        point = trial.user_attrs.get(POINT_ATTR)
        what = describe_point(point) if point else "no point drawn"
        if REPEAT_ATTR in trial.user_attrs:
            outcome = f"not run: repeats trial {trial.user_attrs[REPEAT_ATTR]}"
        elif trial.state == TrialState.COMPLETE:
            outcome = f"val {trial.value:.4f}"
        elif trial.state == TrialState.PRUNED:
            outcome = f"pruned at evaluation {trial.last_step}"
        else:
            outcome = trial.state.name.lower()
        announce(f"[worker {worker}] trial {trial.number}: {what} -> {outcome}")

    return callback


def new_sampler_seed(study: str) -> int:
    """A sampler seed of fresh randomness mixed with the study's name: no two workers, of one command
    or of commands started together anywhere, share one (see the module docstring)."""
    return int(config_hash({"study": study, "nonce": secrets.token_hex(16)}), 16) % 2**31


def run_worker(
    tuning: Tuning,
    worker: int,
    n_trials: int,
    seed: int,
    threads: int | None = None,
    announce: Callable[[str], None] = print,
) -> list[int]:
    """Run ``n_trials`` trials of the study (queued retries first), draws that repeat a point not
    counted; return the numbers of every trial it made."""
    if threads is not None:
        torch.set_num_threads(threads)
    optimize_log = logging.getLogger("optuna.study._optimize")  # where Optuna reports failed trials
    if _not_a_repeat not in optimize_log.filters:
        optimize_log.addFilter(_not_a_repeat)
    objective = Objective(tuning, f"{platform.node()}:{os.getpid()}/worker {worker}", seed, threads)
    with storage_session(tuning.storage, heartbeat=tuning.heartbeat) as storage:
        study = open_study(tuning, storage, optuna.samplers.TPESampler(seed=seed))
        study.optimize(
            objective,
            n_trials=None,  # until the quota callback stops it
            catch=(UserError, StrategyError),
            callbacks=[_announcer(worker, announce), _quota(worker, n_trials, announce)],
        )
    return objective.trials


def _quota(
    worker: int, n_trials: int, announce: Callable[[str], None]
) -> Callable[[optuna.Study, Any], None]:
    """Stop the worker after ``n_trials`` trials that were not repeats, or after ``MAX_REPEATS``
    repeats in a row."""
    counts = {"run": 0, "repeats": 0}

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if REPEAT_ATTR in trial.user_attrs:
            counts["repeats"] += 1
        else:
            counts["run"] += 1
            counts["repeats"] = 0
        if counts["repeats"] >= MAX_REPEATS:
            announce(
                f"[worker {worker}] {MAX_REPEATS} draws in a row repeated points already run: the space "
                "has none left to run; stopping"
            )
        if counts["run"] >= n_trials or counts["repeats"] >= MAX_REPEATS:
            study.stop()

    return callback


def _flushed_print(line: str) -> None:
    print(line, flush=True)  # worker processes share the terminal: one whole line at a time


def _spawned_worker(args: tuple[Tuning, int, int, int, int]) -> list[int]:
    tuning, worker, n_trials, seed, threads = args
    return run_worker(tuning, worker, n_trials, seed, threads, announce=_flushed_print)


@dataclass(frozen=True)
class StudyRun:
    """What one command did to a study.

    Attributes:
        finished_before: complete and pruned trials when it started (after failing stale ones).
        planned: trials it set out to run, to bring the study to the number asked for.
        by_worker: the numbers of the trials each worker ran.
    """

    study: str
    finished_before: int
    planned: int
    by_worker: list[list[int]]


def run_study(
    tuning: Tuning,
    *,
    trials: int,
    workers: int = 1,
    threads: int | None = None,
    announce: Callable[[str], None] = print,
) -> StudyRun:
    """Bring the study to ``trials`` finished (complete or pruned) trials with ``workers`` processes.

    Trials running elsewhere (another command on the same storage) count as on their way; a trial
    whose heartbeat stopped is failed first, and queued once more. ``workers > 1`` starts that many
    processes, the cores shared out between them unless ``threads`` says otherwise; one worker runs
    in this process.

    Raises:
        TuneError: a negative trial count or fewer than one worker.
        StorageError: the storage cannot be opened.
    """
    if trials < 0:
        raise TuneError(f"--trials {trials} must be >= 0")
    if workers < 1:
        raise TuneError(f"--workers {workers} must be >= 1")
    with study_session(tuning) as study:
        with allow_experimental():
            optuna.storages.fail_stale_trials(study)
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    remaining = max(0, trials - finished - running)
    shares = [remaining // workers + (1 if i < remaining % workers else 0) for i in range(workers)]
    shares = [n for n in shares if n]
    seeds = [new_sampler_seed(tuning.study) for _ in shares]
    announce(
        f"study {tuning.study} ({redact(tuning.storage)}): {finished} finished, {running} running; "
        f"{remaining} to run with {len(shares)} worker(s)"
    )
    ranks = tuning.base.world_size  # of each trial: K ranks per worker
    if len(shares) <= 1:
        if ranks > 1:
            threads = threads or default_threads(ranks)
        by_worker = [run_worker(tuning, 0, shares[0], seeds[0], threads, announce)] if shares else []
    else:
        per_worker = threads or default_threads(len(shares) * ranks)
        work = [(tuning, i, n, seeds[i], per_worker) for i, n in enumerate(shares)]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(len(shares), mp_context=context) as pool:
            by_worker = list(pool.map(_spawned_worker, work))
    return StudyRun(tuning.study, finished, remaining, by_worker)


@contextmanager
def study_session(tuning: Tuning) -> Iterator[optuna.Study]:
    """The study in its storage (created if new), checked to tune what ``tuning`` says, for the
    length of a block."""
    with storage_session(tuning.storage, heartbeat=tuning.heartbeat) as storage:
        yield open_study(tuning, storage)


def fail_running(tuning: Tuning) -> list[int]:
    """Mark every running trial of the study failed; for storages without a heartbeat (a journal
    file), once no worker of the study is alive. Returns the trial numbers."""
    with study_session(tuning) as study:
        numbers = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        for number in numbers:
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    return numbers
