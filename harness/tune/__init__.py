"""Hyperparameter search with Optuna: a strategy's filter ratio and parameters at a fixed FLOP budget.

A study's trials are runs of the one training loop (:func:`harness.train.train`), scored on ``val``;
:mod:`.space` says what is searched, :mod:`.storage` where the study lives, :mod:`.study` how trials
run and are pruned, :mod:`.report` what a study writes, :mod:`.tuned` how its best point becomes
leaderboard rows, and :mod:`.setup` how a suite describes a study. docs/TUNING.md is the user's guide.
"""

from harness.tune.report import StudyFiles, best_trial, is_study, publish_study, study_dir, write_report
from harness.tune.setup import DEFAULT_TRIALS, SuiteTuning, suite_entry, tuning_from_suite
from harness.tune.space import SearchSpace, SpaceError, build_space
from harness.tune.storage import (
    DEFAULT_HEARTBEAT,
    StorageError,
    default_storage_url,
    open_storage,
    redact,
    storage_session,
)
from harness.tune.study import (
    TUNING_SPLIT,
    StudyRun,
    TuneError,
    Tuning,
    default_study_name,
    describe_point,
    fail_running,
    parse_pruner,
    run_study,
    study_session,
)
from harness.tune.tuned import TunedRuns, render_tuned_leaderboard, rerun_best, tuned_configs

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_TRIALS",
    "TUNING_SPLIT",
    "SearchSpace",
    "SpaceError",
    "StorageError",
    "StudyFiles",
    "StudyRun",
    "SuiteTuning",
    "TuneError",
    "TunedRuns",
    "Tuning",
    "best_trial",
    "build_space",
    "default_storage_url",
    "default_study_name",
    "describe_point",
    "fail_running",
    "is_study",
    "open_storage",
    "parse_pruner",
    "publish_study",
    "redact",
    "render_tuned_leaderboard",
    "rerun_best",
    "run_study",
    "storage_session",
    "study_dir",
    "study_session",
    "suite_entry",
    "tuned_configs",
    "tuning_from_suite",
    "write_report",
]
