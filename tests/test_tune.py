"""jestbench tune: spaces refused before any trial, storages named without passwords, studies on SQLite,
PostgreSQL and a journal file shared by worker processes without losing or repeating a trial, pruning
where it must happen, a killed worker's trial failed by heartbeat and resumed, and tuned rows on the
leaderboard. Studies are small: a few trials of the tiny preset at a 60-step budget."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest
import sqlalchemy
from conftest import LEARN_REFERENCE, Learning
from optuna.trial import TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from harness.cli import main
from harness.records import RunFile
from harness.suites import load_suite
from harness.tune import (
    Tuning,
    build_space,
    default_storage_url,
    run_study,
    storage_session,
    study_dir,
    study_session,
    tuning_from_suite,
)
from harness.tune.storage import allow_experimental
from harness.tune.study import MAX_REPEATS, final_score, parse_pruner

# CI's .ci/postgres makes this role and database; set the variable to use another server.
POSTGRES_URL = os.environ.get(
    "JESTBENCH_TEST_POSTGRES_URL", "postgresql+psycopg://jestbench:jestbench@127.0.0.1:5432/jestbench_test"
)
SPACE = """
[tune]
trials = 4
pruner = "none"
filter_ratio = { low = 0.5, high = 0.9 }

[tune.params.jest]
score = "easy"
n_chunks = 4
gain = { low = 10.0, high = 1000.0 }
"""


def write_suite(
    learning: Learning,
    directory: Path,
    tune: str = SPACE,
    budget: str = "60 steps",
    strategies: tuple[str, ...] = ("uniform", "jest"),
) -> Path:
    """A suite on the learning dataset whose reference is the fixture's (same settings, same hash);
    uniform runs at f = 0, the others at the suite's f = 0.8."""
    entries = "".join(
        f'[[strategies]]\nname = "{name}"\n' + ("filter_ratio = 0.0\n" if name == "uniform" else "")
        for name in strategies
    )
    reference = {k: v for k, v in LEARN_REFERENCE.items() if k != "seed"}
    text = f"""
name = "tiny"
[data]
data = "{learning.dataset.root}"
[run]
preset = "tiny"
batch_size = 32
budget = "{budget}"
filter_ratio = 0.8
seeds = [0]
eval_every = 0.5
[reference]
preset = "{reference["preset"]}"
budget = "{reference["budget"]}"
batch_size = {reference["batch_size"]}
{entries}
{tune}
"""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "suite.toml"
    path.write_text(text)
    return path


def tune(*args: str | Path) -> int:
    return main(["tune", *(str(a) for a in args), "--quiet", "--threads", "1"])


def trials_of(tuning: Tuning) -> list[optuna.trial.FrozenTrial]:
    with study_session(tuning) as study:
        return sorted(study.get_trials(), key=lambda t: t.number)


def study_names(storage: str) -> list[str]:
    with storage_session(storage) as opened:
        return optuna.get_all_study_names(storage=opened)


# -- the space and the storage, refused before anything runs -------------------------------------


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ("[tune]\nfilter_ratio = { low = 0.5, high = 1.0 }", "filter_ratio = 1.0"),
        ("[tune.params.jest]\nn_chunks = [4, 3]", "n_chunks = 3 cannot run at b=32"),
        ("[tune.params.jest]\nn_chunks = { low = 4, high = 64 }", "n_chunks = 64 cannot run at b=32"),
        ("[tune.params.jest]\nchunks = 4", "'chunks' in [tune.params.jest] is not a parameter of jest"),
        ("[tune]\nlearning_rate = { low = 0.0, high = 0.01, log = true }", "log-scale range needs low > 0"),
        ("[tune]\npruner = { name = 'median', warmup = 2 }", "no setting 'warmup'"),
    ],
)
def test_an_invalid_space_is_refused_before_any_trial_naming_what_is_wrong(
    learning: Learning, tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, named: str
):
    suite = write_suite(learning, tmp_path, table)
    work = learning.private_work_dir(tmp_path)
    assert tune(suite, "--strategy", "jest", "--work", work, "--trials", "2") == 2
    assert named in capsys.readouterr().err
    assert not (work / "runs").exists()  # no trial ran
    assert study_names(default_storage_url(work)) == []  # no study was made


def test_the_default_space_holds_the_declared_ranges_and_only_chunk_counts_that_divide_b():
    space = build_space("jest", 24)
    assert space.describe() == {
        "filter_ratio": "uniform in [0, 0.95]",
        "score": "one of 'hard', 'easy', 'learnability'",
        "gain": "log-uniform in [1, 10000]",  # declared [0, 1e6] around a default of 100
        "n_chunks": "powers of two in [1, 8] (searched as log2 in [0, 3])",  # the divisors of 24
    }
    assert build_space("uniform", 24).describe()["two_resolution"] == "one of False, True"
    # A range given in part takes its other end from the default, as cut down to this b.
    partial = build_space("jest", 24, {"params": {"jest": {"n_chunks": {"low": 2}}}})
    assert partial.describe()["n_chunks"] == "powers of two in [2, 8] (searched as log2 in [1, 3])"


def test_an_unreachable_storage_is_a_clear_error_naming_the_url_without_its_password(
    learning: Learning, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    suite = write_suite(learning, tmp_path)
    work = learning.private_work_dir(tmp_path)
    url = "postgresql+psycopg://tuner:hunter2@127.0.0.1:9/nowhere"
    assert tune(suite, "--strategy", "jest", "--work", work, "--storage", url) == 2
    err = capsys.readouterr().err
    assert "postgresql+psycopg://tuner:***@127.0.0.1:9/nowhere" in err
    assert "hunter2" not in err
    assert not (work / "runs").exists()


def test_tune_help_says_that_without_f_the_filter_ratio_is_searched(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    start = text.index("--filter-ratio FILTER_RATIO, -f FILTER_RATIO")
    help_f = text[start : text.index(" --", start + 10)]
    assert "default 0.8" not in help_f and "searched" in help_f
    assert "--param K=V, -p K=V" in text


def test_param_fixes_a_parameter_and_takes_it_out_of_the_space(learning: Learning, tmp_path: Path):
    """`-p k=v` (as `jestbench train` takes it) holds that parameter in every trial, without a suite
    and over a suite's [tune] table."""
    work = learning.private_work_dir(tmp_path)
    storage = f"journal:{tmp_path / 'study.log'}"
    run = ["--data", learning.dataset.root, "--reference", learning.reference["hash"], "--preset", "tiny"]
    run += ["-b", "32", "--budget-steps", "20", "--eval-every", "1", "--storage", storage, "--work", work]
    assert tune("--strategy", "jest", *run, "-p", "n_chunks=2", "-p", "score=easy", "--trials", "1") == 0
    report = json.loads(next((work / "studies").glob("*/study.json")).read_text())
    assert report["space"]["n_chunks"] == "fixed at 2" and report["space"]["score"] == "fixed at 'easy'"
    assert report["space"]["gain"] == "log-uniform in [1, 10000]"  # still searched
    assert report["best"]["point"]["params"]["n_chunks"] == 2

    suite = write_suite(learning, tmp_path / "suite")  # its [tune] table fixes n_chunks at 4
    setup = tuning_from_suite(
        load_suite(str(suite)), "jest", work, storage=storage, params={"n_chunks": "8"}, show_progress=False
    )
    assert setup.tuning.space.describe()["n_chunks"] == "fixed at 8"


@pytest.mark.parametrize(
    ("param", "named"),
    [("chunks=2", "'chunks' is not a parameter of jest"), ("n_chunks=3", "n_chunks = 3 cannot run at b=32")],
)
def test_a_bad_param_is_refused_before_any_trial(
    learning: Learning, tmp_path: Path, capsys: pytest.CaptureFixture[str], param: str, named: str
):
    work = learning.private_work_dir(tmp_path)
    run = ["--data", learning.dataset.root, "--reference", learning.reference["hash"], "--preset", "tiny"]
    run += ["-b", "32", "--budget-steps", "20", "--work", work]
    assert tune("--strategy", "jest", *run, "-p", param, "--trials", "1") == 2
    assert named in capsys.readouterr().err
    assert not (work / "runs").exists()


def test_run_options_beside_a_suite_are_refused(
    learning: Learning, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    suite = write_suite(learning, tmp_path)
    assert tune(suite, "--strategy", "jest", "--work", tmp_path / "work", "-b", "64") == 2
    assert "--batch-size" in capsys.readouterr().err


# -- studies -------------------------------------------------------------------------------------


def test_two_workers_on_sqlite_a_rerun_continues_the_study_and_tuned_rows_reach_the_leaderboard(
    learning: Learning, tmp_path: Path, capfd: pytest.CaptureFixture[str]
):
    # jest is not in the suite: its run is the suite's [run] table. Uniform at f = 0 is its baseline.
    suite = write_suite(learning, tmp_path, strategies=("uniform",))
    work = learning.private_work_dir(tmp_path)
    assert main(["run", str(suite), "--work", str(work), "--quiet"]) == 0
    assert tune(suite, "--strategy", "jest", "--work", work, "--workers", "2") == 0
    printed = capfd.readouterr().out  # the worker processes print to the same terminal
    assert "[worker 0] trial" in printed and "[worker 1] trial" in printed

    setup = tuning_from_suite(
        load_suite(str(suite)), "jest", work, storage=default_storage_url(work), show_progress=False
    )
    trials = trials_of(setup.tuning)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    points = [json.dumps(t.user_attrs["point"], sort_keys=True) for t in trials]
    assert len(set(points)) == 4  # workers seeded apart: a shared seed draws the same start-up points
    for trial in trials:
        run = RunFile.load(RunFile.path_for(work, trial.user_attrs["run_id"]))
        assert run.status == "complete"
        assert {row["split"] for row in run.rows} == {"val"}  # the eval split is never seen
        assert trial.value == run.rows[-1]["mean"]
        assert set(trial.intermediate_values) == {row["evaluation"] for row in run.rows}

    assert tune(suite, "--strategy", "jest", "--work", work) == 0  # the same command: nothing left
    assert len(trials_of(setup.tuning)) == 4
    assert tune(suite, "--strategy", "jest", "--work", work, "--trials", "5") == 0  # continues it
    assert [t.number for t in trials_of(setup.tuning)] == [0, 1, 2, 3, 4]

    report = study_dir(work, setup.tuning.study)
    manifest = json.loads((report / "study.json").read_text())
    best = max(trials_of(setup.tuning), key=lambda t: t.value)
    assert manifest["best"]["number"] == best.number
    assert manifest["trials"] == {"complete": 5}
    assert set(manifest["importances"]) == {"filter_ratio", "gain"}  # the searched dimensions
    for figure in ("history", "parallel_coordinate", "importances"):
        assert (report / "figures" / f"{figure}.png").stat().st_size > 0
    assert len(pd.read_csv(report / "trials.csv")) == 5

    capfd.readouterr()
    assert tune(suite, "--strategy", "jest", "--work", work, "--rerun-best", "--seeds", "2") == 0
    board = pd.read_csv(work / "leaderboards" / setup.tuning.study / "leaderboard.csv")
    tuned = board[board["tuned"] == setup.tuning.study]
    assert len(tuned) == 1 and len(board) == 2  # beside the suite's own run
    row = tuned.iloc[0]
    assert row["seeds"] == "1 2"  # fresh seeds, never the study's seed 0
    assert row["f_nominal"] == pytest.approx(best.user_attrs["point"]["filter_ratio"])
    assert row["baseline"]  # the suite's uniform at f = 0 is its baseline
    page = (work / "leaderboards" / setup.tuning.study / "leaderboard.md").read_text()
    assert f"jest [tuned: {setup.tuning.study}]" in page
    assert f"jest [tuned: {setup.tuning.study}]" in capfd.readouterr().out

    results = tmp_path / "results"
    assert (
        main(["publish", "--study", setup.tuning.study, "--work", str(work), "--results", str(results)]) == 0
    )
    published = results / "tuning" / setup.tuning.study / "study.json"
    assert published.read_text() == (report / "study.json").read_text()
    assert sorted(p.name for p in results.iterdir()) == ["tuning"]  # the leaderboard is not touched


def test_two_worker_processes_on_postgresql_lose_and_repeat_no_trial(learning: Learning, tmp_path: Path):
    suite = load_suite(str(write_suite(learning, tmp_path)))
    work = learning.private_work_dir(tmp_path)
    name = f"test-{uuid.uuid4().hex[:12]}"
    setup = tuning_from_suite(suite, "jest", work, storage=POSTGRES_URL, study=name, show_progress=False)
    try:
        outcome = run_study(setup.tuning, trials=4, workers=2, threads=1)
        ran = [set(numbers) for numbers in outcome.by_worker]
        assert len(ran) == 2 and all(ran)  # two processes, both ran trials
        assert not ran[0] & ran[1]  # no trial ran twice
        trials = trials_of(setup.tuning)
        assert [t.number for t in trials] == list(range(4))  # none lost, none repeated
        assert ran[0] | ran[1] == set(range(4))
        assert all(t.state == TrialState.COMPLETE for t in trials)
        for trial in trials:
            assert RunFile.load(RunFile.path_for(work, trial.user_attrs["run_id"])).status == "complete"
    finally:
        with storage_session(POSTGRES_URL) as storage:
            optuna.delete_study(study_name=name, storage=storage)


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """A database of its own on the test server, made through the test role's connection (it may
    create databases: .ci/postgres) and dropped afterwards: Optuna's tables do not exist yet."""
    admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"jestbench_fresh_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# Loads harness/tune/storage.py alone (not the whole tuning package, which imports torch), says it
# is ready, waits for the word, opens the storage.
OPEN_AT_ONCE = """
import importlib.util, pathlib, sys, time
spec = importlib.util.spec_from_file_location("storage", sys.argv[1])
storage = importlib.util.module_from_spec(spec)
spec.loader.exec_module(storage)
ready, go = pathlib.Path(sys.argv[3]), pathlib.Path(sys.argv[4])
ready.touch()
while not go.exists():
    time.sleep(0.001)
with storage.storage_session(sys.argv[2]):
    pass
"""


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_processes_opening_a_fresh_storage_at_once_all_open_it(tmp_path: Path, kind: str, request):
    """Optuna creates its tables on first use; four processes let go at the same instant on a fresh
    storage all get it (unserialised, one in two such tests fails: SQLite on "table studies already
    exists" or a unique alembic_version, PostgreSQL on a duplicate key in pg_type_typname_nsp_index)."""
    url = (
        request.getfixturevalue("fresh_postgres")
        if kind == "postgresql"
        else f"sqlite:///{tmp_path / 'new.db'}"
    )
    source = Path(__file__).resolve().parents[1] / "harness" / "tune" / "storage.py"
    go, ready = tmp_path / "go", [tmp_path / f"ready-{i}" for i in range(4)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT_ONCE, str(source), url, str(r), str(go)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in ready
    ]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready):
        assert all(p.poll() is None for p in processes) and time.monotonic() < deadline
        time.sleep(0.01)
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, "\n".join(errors)
    assert study_names(url) == []


def test_three_commands_started_together_on_a_fresh_postgresql_database_never_duplicate_a_point(
    learning: Learning, tmp_path: Path, fresh_postgres: str
):
    """Three `jestbench tune` commands at once, as on three machines: the first creates Optuna's
    tables while the others wait for it, each samples from a seed of its own (recorded per trial),
    and no point is run twice."""
    suite = write_suite(learning, tmp_path)
    work = learning.private_work_dir(tmp_path)
    command = [sys.executable, "-m", "harness", "tune", str(suite), "--strategy", "jest", "--work", str(work)]
    command += ["--storage", fresh_postgres, "--trials", "2", "--quiet", "--threads", "1"]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)
    ]
    outcomes = [p.communicate(timeout=600) for p in processes]
    for process, (out, err) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, out + err

    tuning = tuning_from_suite(load_suite(str(suite)), "jest", work, storage=fresh_postgres).tuning
    trials = [t for t in trials_of(tuning) if t.state in (TrialState.COMPLETE, TrialState.RUNNING)]
    assert len(trials) >= 2 and all(t.state == TrialState.COMPLETE for t in trials)
    points = [json.dumps(t.user_attrs["point"], sort_keys=True) for t in trials]
    assert len(set(points)) == len(points)  # no point run twice
    seed_of = {t.user_attrs["sampler"]: t.user_attrs["sampler_seed"] for t in trials}
    assert len(set(seed_of.values())) == len(seed_of)  # one seed per worker, none shared


def test_a_draw_that_repeats_a_run_point_is_not_run_and_an_exhausted_space_stops_the_worker(
    learning: Learning, tmp_path: Path, capfd: pytest.CaptureFixture[str]
):
    """A space of one point: the first trial runs it; every later draw is that point again, is
    failed as a repeat without training (one line each, no traceback), and after MAX_REPEATS of them
    in a row the worker stops."""
    one_point = SPACE.replace("filter_ratio = { low = 0.5, high = 0.9 }", "filter_ratio = 0.5").replace(
        "gain = { low = 10.0, high = 1000.0 }", "gain = 100.0"
    )
    suite = write_suite(learning, tmp_path, one_point, budget="20 steps")
    work = learning.private_work_dir(tmp_path)
    assert tune(suite, "--strategy", "jest", "--work", work, "--trials", "2") == 0
    out, err = capfd.readouterr()
    assert f"{MAX_REPEATS} draws in a row repeated points already run" in out
    assert out.count("not run: repeats trial 0") == MAX_REPEATS
    assert "Traceback" not in err and "RepeatedPoint" not in err

    tuning = tuning_from_suite(load_suite(str(suite)), "jest", work, storage=default_storage_url(work)).tuning
    first, *repeats = trials_of(tuning)
    assert first.state == TrialState.COMPLETE and "repeat_of" not in first.user_attrs
    assert len(repeats) == MAX_REPEATS
    assert all(t.state == TrialState.FAIL and t.user_attrs["repeat_of"] == 0 for t in repeats)
    assert len(list((work / "runs").glob("*.json"))) == 1  # trained once


def test_a_median_pruner_prunes_every_trial_worse_than_a_perfect_one_at_the_same_evaluation(
    learning: Learning, tmp_path: Path
):
    table = SPACE.replace('pruner = "none"', 'pruner = { name = "median", n_startup_trials = 1 }')
    suite = load_suite(str(write_suite(learning, tmp_path, table)))
    work = learning.private_work_dir(tmp_path)
    tuning = tuning_from_suite(suite, "jest", work, storage=default_storage_url(work)).tuning
    with study_session(tuning) as study:
        with pytest.warns(UserWarning, match="Heartbeat"):  # a trial told by hand has no heartbeat
            perfect = study.ask()  # finished, with a score of 1 (every metric perfect) at each evaluation
        tuning.space.suggest(perfect)
        for step in range(3):
            perfect.report(1.0, step)
        study.tell(perfect, 1.0)

    run_study(tuning, trials=4, threads=1)

    trials = trials_of(tuning)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(pruned) == 3 and len(trials) == 4
    for trial in pruned:
        # Evaluation 0 (the untrained model) is the warm-up; evaluation 1 is compared and pruned.
        assert set(trial.intermediate_values) == {0, 1}
        run = RunFile.load(RunFile.path_for(work, trial.user_attrs["run_id"]))
        assert run.status == "running" and max(row["evaluation"] for row in run.rows) == 1
        assert (work / "checkpoints" / f"{run.run_id}.pt").exists()  # stopped, resumable


def test_trials_over_two_ranks_report_every_evaluation_and_a_pruned_one_stops_every_rank(
    learning: Learning, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("JESTBENCH_DIST_TIMEOUT", "60")  # a rank left waiting fails the test in a minute
    table = '[tune]\npruner = "none"\nfilter_ratio = 0.5\n'  # B = 64 splits over 2 ranks; two points
    path = write_suite(learning, tmp_path, table, budget="20 steps", strategies=("uniform",))
    work = learning.private_work_dir(tmp_path)
    tuning = tuning_from_suite(
        load_suite(str(path)).placed(nproc=2), "uniform", work, storage=default_storage_url(work)
    ).tuning
    run_study(tuning, trials=1, threads=1)
    (done,) = trials_of(tuning)
    run = RunFile.load_complete(work, done.user_attrs["run_id"])
    assert done.state == TrialState.COMPLETE and run is not None and run.config["world_size"] == 2
    assert done.value == final_score(run.rows)
    # Rank 0 reported every evaluation to the trial through the storage.
    assert done.intermediate_values == {r["evaluation"]: r["mean"] for r in run.rows if r["split"] == "val"}

    # A threshold no score reaches: the other point is pruned at its first evaluation after warm-up.
    pruning = dataclasses.replace(tuning, pruner=parse_pruner({"name": "threshold", "lower": 2.0}))
    run_study(pruning, trials=2, threads=1)
    pruned = trials_of(tuning)[-1]
    assert pruned.state == TrialState.PRUNED and set(pruned.intermediate_values) == {0, 1}
    run = RunFile.load(RunFile.path_for(work, pruned.user_attrs["run_id"]))
    assert run.status == "running" and run.config["world_size"] == 2
    assert (work / "checkpoints" / f"{run.run_id}.pt").exists()  # stopped on both ranks, resumable


def test_a_killed_worker_trial_is_failed_by_its_heartbeat_then_retried_resuming_its_run(
    learning: Learning, tmp_path: Path
):
    suite = write_suite(learning, tmp_path, SPACE, budget="150 steps")
    work = learning.private_work_dir(tmp_path)
    command = [sys.executable, "-m", "harness", "tune", str(suite), "--strategy", "jest", "--work", str(work)]
    command += ["--trials", "1", "--heartbeat", "1", "--checkpoint-seconds", "0", "--quiet", "--threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list((work / "checkpoints").glob("*.pt")):
        assert process.poll() is None, f"the worker ended before it could be killed: {process.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()

    tuning = tuning_from_suite(load_suite(str(suite)), "jest", work, storage=default_storage_url(work)).tuning
    (killed,) = trials_of(tuning)
    assert killed.state == TrialState.RUNNING  # until its heartbeat is missed
    with study_session(dataclasses.replace(tuning, heartbeat=1)) as study:
        while study.trials[0].state == TrialState.RUNNING:  # grace: twice the heartbeat without one
            assert time.monotonic() < deadline
            time.sleep(0.5)
            with allow_experimental():
                optuna.storages.fail_stale_trials(study)
    first, retry = trials_of(tuning)
    assert first.state == TrialState.FAIL
    assert retry.state == TrialState.WAITING and retry.params == killed.params  # queued once more

    assert tune(suite, "--strategy", "jest", "--work", work, "--trials", "1") == 0
    first, retry = trials_of(tuning)
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["run_id"] == killed.user_attrs["run_id"]
    run = RunFile.load(RunFile.path_for(work, killed.user_attrs["run_id"]))
    assert run.status == "complete" and run.summary["resumed"]  # from the killed worker's checkpoint


def test_a_journal_study_without_a_suite_and_its_running_trials_failed_on_request(
    learning: Learning, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    work = learning.private_work_dir(tmp_path)
    storage = f"journal:{tmp_path / 'study.log'}"
    run = ["--data", learning.dataset.root, "--reference", learning.reference["hash"], "--preset", "tiny"]
    run += ["-b", "32", "--budget-steps", "60", "--eval-every", "0.5", "--storage", storage, "--work", work]
    run += ["-f", "0.5"]  # held there; uniform's two_resolution is searched
    assert tune("--strategy", "uniform", *run, "--trials", "1") == 0
    report = json.loads(next((work / "studies").glob("*/study.json")).read_text())
    assert report["trials"] == {"complete": 1} and report["run"]["eval_splits"] == ["val"]
    assert report["space"] == {"filter_ratio": "fixed at 0.5", "two_resolution": "one of False, True"}
    assert report["best"]["point"]["filter_ratio"] == 0.5

    with storage_session(storage) as opened:
        study = optuna.load_study(study_name=report["study"], storage=opened)
        study.ask()  # a trial left running, as by a killed worker: a journal has no heartbeat
    assert tune("--strategy", "uniform", *run, "--trials", "1", "--fail-running") == 0
    assert "marked 1 running trial(s) failed: [1]" in capsys.readouterr().out
    with storage_session(storage) as opened:
        trials = optuna.load_study(study_name=report["study"], storage=opened).get_trials()
    # Failed, and no new trial: the study had its 1 finished trial.
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
