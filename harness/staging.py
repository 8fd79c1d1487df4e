"""Replacing a whole output directory without leaving a half-written one behind.

Leaderboards and published results are directories of several files that belong together; a render
or a publish that stopped half-way must not leave new tables beside old figures. Output is written to
a hidden sibling directory first and swapped in when complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import UserError


@contextmanager
def staged_directory(destination: Path, *, replaceable: Callable[[Path], bool], what: str) -> Iterator[Path]:
    """Yield an empty directory; when the block ends without error it replaces ``destination`` whole.

    Args:
        destination: the directory to create or replace.
        replaceable: whether an existing, non-empty ``destination`` may be replaced (it holds an
            earlier output of the same kind): anything else is refused, never deleted.
        what: what ``destination`` holds, for the error message ("a leaderboard").

    Raises:
        UserError: ``destination`` is a file, or a non-empty directory that ``replaceable`` refuses.
    """
    if destination.exists() and not destination.is_dir():
        raise UserError(f"{destination} is a file; give a directory for {what}")
    if destination.is_dir() and any(destination.iterdir()) and not replaceable(destination):
        raise UserError(
            f"{destination} is not empty and does not hold {what}: choose a new or empty directory"
        )
    staging, old = (_sibling(destination, kind) for kind in ("new", "old"))
    staging.mkdir(parents=True)  # mkdir, not mkdtemp: the directory gets the umask's permissions
    try:
        yield staging
        if destination.exists():
            destination.rename(old)
            staging.rename(destination)
            shutil.rmtree(old)
        else:
            staging.rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _sibling(destination: Path, kind: str) -> Path:
    """A hidden, unique path beside ``destination`` (same file system, so renames are cheap)."""
    return destination.parent / f".{destination.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
