"""Where a study lives: SQLite in the work directory by default, any SQLAlchemy URL, or a journal file.

Optuna's own documentation advises against SQLite for parallel workers: it serialises writers on a
file lock, so a worker that finds the database busy must wait instead of failing at once — hence the
connection timeout. PostgreSQL (``postgresql+psycopg://USER:PASSWORD@HOST/DB``) serves many workers
on many machines. Both are RDB storages, which record a heartbeat per running trial, so the trial of
a killed worker is marked failed (and queued once more) instead of staying "running" forever.

``journal:PATH`` is Optuna's journal file, for a shared file system without a database server; it
has no heartbeat (docs/TUNING.md says what to do about killed workers there).

Any number of commands on any number of machines may open one storage at once. Optuna creates its
tables on first use without guarding against a concurrent creator (on PostgreSQL the loser dies on
``pg_type_typname_nsp_index``, on SQLite on "table studies already exists"), so creation is
serialised by :func:`storage_lock`: a PostgreSQL advisory lock, which every machine on the server
sees, or a file lock beside an SQLite database or a journal file.

A URL is only ever shown without its password.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import optuna
import sqlalchemy
import sqlalchemy.exc
from filelock import FileLock
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from harness.errors import UserError

JOURNAL_PREFIX = "journal:"
# Seconds a worker waits for SQLite's lock before a write fails; trials last minutes, writes are rare.
SQLITE_TIMEOUT = 60
# Seconds to wait for a database server to answer a connection.
CONNECT_TIMEOUT = 10
# Seconds between a running trial's heartbeats; Optuna fails a trial after twice this without one.
DEFAULT_HEARTBEAT = 30
# How many times a killed worker's trial is queued again (it resumes its run from the checkpoint).
RETRIES = 1


class StorageError(UserError):
    """A storage URL that cannot be opened; the message names it without its password."""


@contextmanager
def allow_experimental() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning for the features used on purpose here (heartbeats, the
    retry callback, stale-trial failing, matplotlib figures): the test suite turns warnings into
    errors, and these features are stable in what jestbench relies on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def default_storage_url(work_dir: Path) -> str:
    """SQLite in ``<work>/studies/optuna.db``: one file for every study of the work directory."""
    path = work_dir / "studies" / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``: safe to print, log and store."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:  # not a URL SQLAlchemy reads: mask what looks like one
        return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", url)


def _password(url: str) -> str | None:
    try:
        return make_url(url).password
    except sqlalchemy.exc.ArgumentError:
        return None


def _reason(err: BaseException, password: str | None) -> str:
    """The first line of what the driver said, with the password masked should a driver echo it."""
    cause = getattr(err, "orig", None) or err
    text = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return text.replace(password, "***") if password else text


def _advisory_key(name: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock``, the same in every process for one ``name``."""
    return int.from_bytes(hashlib.sha256(f"jestbench:{name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def storage_lock(url: str, name: str) -> Iterator[None]:
    """Hold the lock ``name`` of the storage at ``url`` against every other process using it.

    PostgreSQL: a session advisory lock on a connection of its own (seen by every machine on the
    server; released if the process dies). SQLite and journal files: a file lock beside the file.
    Other databases: no lock.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the PostgreSQL server cannot be reached.
    """
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url.removeprefix(JOURNAL_PREFIX)).expanduser()
        with FileLock(f"{path}.{_lock_suffix(name)}.lock"):
            yield
        return
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        engine = sqlalchemy.create_engine(
            url, poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT}
        )
        try:
            with engine.connect() as connection:
                key = {"key": _advisory_key(name)}
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), key)
                try:
                    yield
                finally:
                    connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), key)
        finally:
            engine.dispose()
        return
    database = parsed.database if backend == "sqlite" else None
    lock = FileLock(f"{database}.{_lock_suffix(name)}.lock") if database and database != ":memory:" else None
    with lock or nullcontext():
        yield


def _lock_suffix(name: str) -> str:
    """``name`` as part of a file name: a short digest (study names may be long)."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


@contextmanager
def storage_session(url: str, *, heartbeat: int = DEFAULT_HEARTBEAT) -> Iterator[optuna.storages.BaseStorage]:
    """:func:`open_storage` for the length of a block, its database connections closed at the end
    (a garbage-collected pool would drop them open, and psycopg warns about each)."""
    storage = open_storage(url, heartbeat=heartbeat)
    try:
        yield storage
    finally:
        if isinstance(storage, optuna.storages.RDBStorage):
            storage.remove_session()
            storage.engine.dispose()


def open_storage(url: str, *, heartbeat: int = DEFAULT_HEARTBEAT) -> optuna.storages.BaseStorage:
    """Open (and, for a database, create the tables of) the storage at ``url``.

    Args:
        url: a SQLAlchemy URL, or ``journal:PATH``.
        heartbeat: seconds between heartbeats of a running trial (RDB storages only).

    Raises:
        StorageError: the URL is malformed, its driver is missing, or the server cannot be reached;
            the message names the URL without its password.
    """
    shown = redact(url)
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url.removeprefix(JOURNAL_PREFIX)).expanduser()
        if not path.parent.is_dir():
            raise StorageError(f"cannot open the journal storage {shown}: {path.parent} is not a directory")
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(
            f"{shown!r} is not a storage URL: give a SQLAlchemy URL (sqlite:///PATH, "
            "postgresql+psycopg://USER:PASSWORD@HOST/DATABASE) or journal:PATH"
        ) from None
    backend = parsed.get_backend_name()
    connect_args: dict[str, int] = {}
    if backend == "sqlite":
        connect_args["timeout"] = SQLITE_TIMEOUT
    elif backend == "postgresql":
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    try:
        with storage_lock(url, "schema"), allow_experimental():  # one creator of the tables at a time
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"connect_args": connect_args},
                heartbeat_interval=heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=RETRIES
                ),
            )
    except ImportError as err:
        raise StorageError(
            f"cannot open the study storage {shown}: no database driver for {parsed.drivername!r} is "
            f"installed ({_reason(err, parsed.password)})"
        ) from None
    except sqlalchemy.exc.SQLAlchemyError as err:
        raise StorageError(
            f"cannot reach the study storage {shown}: {_reason(err, _password(url))}"
        ) from None
