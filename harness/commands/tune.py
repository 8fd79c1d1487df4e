"""``jestbench tune``: an Optuna study of one strategy's filter ratio and parameters at a fixed budget."""

from __future__ import annotations

import argparse
from typing import Any

from harness.commands.strategies import add_param_argument, parse_params
from harness.commands.train import add_run_arguments
from harness.errors import UserError
from harness.workdir import set_threads, work_dir

DESCRIPTION = """\
Search a strategy's filter ratio and declared parameters (JEST's chunk count among them: powers of
two dividing b) for the best final mean score on the val split at the run's fixed FLOP budget. Each
trial is a run of the same training loop as `jestbench run`, keyed by its config hash in WORK/runs;
the eval split is never seen. Evaluation k is reported as step k, so the pruner (median by default)
compares trials at the same share of the budget whatever their filter ratio.

The run comes from SUITE (its entry for the strategy; its [tune] table sets the space, the pruner and
the trial count) or, without a suite, from the same options as `jestbench train`. --param k=v holds
a strategy parameter at v (it is not searched), and -f F the filter ratio at F. --nproc K runs each
trial over K processes (K GPUs, or K CPU processes with gloo), started through torchrun's API; its
rank 0 reports to the study. --trials N brings
the study to N finished trials: rerunning the command continues the study, running only what is
missing. A trial whose worker was killed is marked failed by its missed heartbeat and queued again.

The study lives in SQLite in WORK/studies/optuna.db unless --storage names another SQLAlchemy URL
(PostgreSQL for many workers or machines) or journal:PATH. Its report (best point, importances,
figures, every trial) goes to WORK/studies/STUDY; `jestbench publish --study STUDY` copies it to
results/tuning/. --rerun-best runs the best point at --seeds fresh seeds on both splits and renders
a leaderboard with those rows marked tuned (WORK/leaderboards/STUDY). docs/TUNING.md has the details.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="tune a strategy's filter ratio and parameters with Optuna",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "suite", nargs="?", help="built-in suite name or TOML file; without one, the run options below"
    )
    parser.add_argument("--strategy", "-s", required=True, help="the strategy to tune")
    study = parser.add_argument_group("study")
    study.add_argument(
        "--trials", type=int, help="finished trials the study should have (default: [tune] trials, or 20)"
    )
    study.add_argument("--workers", type=int, default=1, help="worker processes on the study (default 1)")
    study.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="K",
        help="processes per trial, through torchrun's API: each worker's trials run over K ranks (default 1)",
    )
    study.add_argument(
        "--storage", metavar="URL", help="SQLAlchemy URL or journal:PATH (default: SQLite in WORK/studies)"
    )
    study.add_argument(
        "--study", metavar="NAME", help="study name (default: suite, strategy and a hash of run and space)"
    )
    study.add_argument(
        "--pruner", choices=("median", "percentile", "threshold", "none"), help="overrides [tune] pruner"
    )
    study.add_argument(
        "--heartbeat",
        type=int,
        metavar="SECONDS",
        help="seconds between a running trial's heartbeats; a trial silent for twice this is failed "
        "(default 30; database storages only)",
    )
    study.add_argument(
        "--fail-running",
        action="store_true",
        help="first mark the study's running trials failed: for journal storages, once no worker is alive",
    )
    study.add_argument(
        "--rerun-best",
        action="store_true",
        help="run the best point at --seeds fresh seeds on both splits and render a leaderboard with them",
    )
    study.add_argument("--seeds", type=int, default=3, help="fresh seeds for --rerun-best (default 3)")
    add_param_argument(parser, "strategy parameter held fixed, not searched (repeatable)")
    add_run_arguments(parser, tuning=True)
    parser.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=60.0,
        help="checkpoint trials at least this often (default 60)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def _run_options_given(args: argparse.Namespace) -> list[str]:
    """The run options set to other than their defaults (with a suite, the suite gives the run)."""
    probe = argparse.ArgumentParser(add_help=False)
    add_run_arguments(probe, tuning=True)
    defaults = vars(probe.parse_args([]))
    # Where files go, where and how fast runs compute: the command line's, over the suite's.
    allowed = ("work", "threads", "seed", "device", "precision")
    return sorted(
        f"--{k.replace('_', '-')}"
        for k, v in defaults.items()
        if k not in allowed and getattr(args, k) not in (v, None)
    )


def _given(args: argparse.Namespace, option: str) -> str | None:
    """An option's value if the command line gave it (its default otherwise leaves the suite's)."""
    probe = argparse.ArgumentParser(add_help=False)
    add_run_arguments(probe)
    value = getattr(args, option)
    return None if value == probe.get_default(option) else str(value)


def _tuning_from_options(args: argparse.Namespace, storage: str, heartbeat: int) -> Any:
    """The study of ``--strategy`` on the run that the ``jestbench train`` options describe, in the
    default space but for ``--filter-ratio``, which fixes the filter ratio when given (a suite's
    [tune] table is where the rest of the space is changed)."""
    import dataclasses
    from pathlib import Path

    from harness.commands.train import run_config_from_args
    from harness.data import open_dataset
    from harness.reference_store import find_reference
    from harness.tune import TUNING_SPLIT, Tuning, build_space, default_study_name, parse_pruner
    from harness.tune.space import with_params

    params = parse_params(args.param)
    fixed = {} if args.filter_ratio is None else {"filter_ratio": args.filter_ratio}
    space = build_space(
        args.strategy, args.batch_size, with_params(fixed, args.strategy, params), source="the options"
    )
    options = argparse.Namespace(
        **{**vars(args), "seed": args.seed or 0, "filter_ratio": args.filter_ratio or 0.0}
    )
    base = run_config_from_args(options, args.strategy, params)
    reference = base.reference
    if reference is None and space.needs_reference():
        reference = args.reference or find_reference(
            work_dir(args), open_dataset(Path(base.dataset)), base.preset, args.reference_seed
        )
    base = dataclasses.replace(base, eval_splits=(TUNING_SPLIT,), world_size=args.nproc)
    return Tuning(
        study=args.study or default_study_name("tune", base, space),
        storage=storage,
        base=base,
        reference=reference,
        space=space,
        pruner=parse_pruner(args.pruner or "median"),
        work_dir=work_dir(args),
        heartbeat=heartbeat,
        checkpoint_seconds=args.checkpoint_seconds,
    )


def run(args: argparse.Namespace) -> int:
    from harness.leaderboard import ranking
    from harness.suites import load_suite
    from harness.tune import (
        DEFAULT_HEARTBEAT,
        DEFAULT_TRIALS,
        best_trial,
        default_storage_url,
        describe_point,
        fail_running,
        render_tuned_leaderboard,
        rerun_best,
        run_study,
        storage_session,
        study_dir,
        study_session,
        tuning_from_suite,
        write_report,
    )

    set_threads(args)
    work = work_dir(args)
    storage = args.storage or default_storage_url(work)
    heartbeat = args.heartbeat if args.heartbeat is not None else DEFAULT_HEARTBEAT
    if heartbeat < 1:
        raise UserError(f"--heartbeat {heartbeat} must be >= 1")
    if args.nproc < 1:
        raise UserError(f"--nproc {args.nproc} must be >= 1")
    with storage_session(storage, heartbeat=heartbeat):
        pass  # an unreachable storage fails now, not after the data and the reference are built
    companions: list[str] = []
    if args.suite is not None:
        given = _run_options_given(args)
        if given:
            raise UserError(
                f"{', '.join(given)}: the suite {args.suite!r} gives the run; pass either a suite or run options"
            )
        suite = load_suite(args.suite).placed(
            device=_given(args, "device"), precision=_given(args, "precision"), nproc=args.nproc
        )
        setup = tuning_from_suite(
            suite,
            args.strategy,
            work,
            storage=storage,
            study=args.study,
            seed=args.seed,
            pruner=args.pruner,
            params=parse_params(args.param),
            heartbeat=heartbeat,
            checkpoint_seconds=args.checkpoint_seconds,
            show_progress=not args.quiet,
        )
        tuning, default_trials, companions = setup.tuning, setup.trials, setup.suite_run_ids
        title = f"{suite.name} suite with {args.strategy} tuned"
    else:
        tuning = _tuning_from_options(args, storage, heartbeat)
        default_trials = DEFAULT_TRIALS
        title = f"{args.strategy} tuned"
    if args.fail_running:
        failed = fail_running(tuning)
        print(f"marked {len(failed)} running trial(s) failed: {failed}")
    trials = args.trials if args.trials is not None else (0 if args.rerun_best else default_trials)
    run_study(tuning, trials=trials, workers=args.workers, threads=args.threads)

    with study_session(tuning) as study:
        files = write_report(study, study_dir(work, tuning.study), storage=storage)
        best = best_trial(study) if args.rerun_best else None
    print(f"study report: {files.readme}  (study.json, trials.csv, figures/)")
    if files.best and files.best["point"]:
        point = describe_point(files.best["point"])
        print(f"best: trial {files.best['number']}, val {files.best['value']:.4f}: {point}")
    if best is None:
        return 0
    tuned = rerun_best(tuning, best, seeds=args.seeds, threads=args.threads, show_progress=not args.quiet)
    board, rendered = render_tuned_leaderboard(tuning, tuned, companions, title=title)
    print("\n".join(ranking(board)))
    print(f"leaderboard: {rendered.markdown}  (and .html, .csv, figures/)")
    for run_id, error in tuned.failed.items():
        print(f"failed: {run_id}: {error}")
    return 1 if tuned.failed else 0
