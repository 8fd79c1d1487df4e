"""Publishing a rendered leaderboard into the committed ``results/`` directory.

Work directories are private and git ignores them; ``results/`` is what the repository shows. A
publish replaces ``results/leaderboard/`` whole (tables, page, figures, the rows as CSV and the
manifest) and touches nothing else there, so benchmark tables (``results/bench/``) and tuning studies
(``results/tuning/``) published by other commands stay as they are. A leaderboard that left out failed
or unfinished runs is refused unless the caller says otherwise: a published leaderboard should not
silently rest on fewer runs than its suite asked for.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.leaderboard import is_leaderboard, leaderboard_dir
from harness.leaderboard.render import MANIFEST
from harness.staging import staged_directory

PUBLISHED_NAME = "leaderboard"


class PublishError(UserError):
    """A leaderboard that cannot be published as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Published:
    """Where a leaderboard went, and whether it replaced an earlier one."""

    source: Path
    destination: Path
    replaced: bool
    left_out: tuple[str, ...]  # "RUN_ID (status: error)" of runs the leaderboard did not include


def find_leaderboard(source: str, work_dir: Path) -> Path:
    """A leaderboard directory named by path, or by name under ``<work>/leaderboards/``.

    Raises:
        PublishError: neither is a rendered leaderboard; the message lists the ones there are.
    """
    candidates = [Path(source)]
    if "/" not in source:
        candidates.append(leaderboard_dir(work_dir, source))
    for candidate in candidates:
        if is_leaderboard(candidate):
            return candidate.resolve()
    root = work_dir / "leaderboards"
    known = sorted(p.name for p in root.iterdir() if is_leaderboard(p)) if root.is_dir() else []
    listing = f"; rendered leaderboards in {root}: {', '.join(known)}" if known else f"; {root} holds none"
    raise PublishError(
        f"{source!r} is neither a leaderboard directory nor the name of one{listing} "
        "(render one with `jestbench leaderboard` or `jestbench run`)"
    )


def _left_out(manifest: dict[str, Any]) -> tuple[str, ...]:
    runs: list[dict[str, Any]] = manifest["runs"]
    return tuple(
        f"{run['run_id']} ({run['status']}" + (f": {run['error']})" if run.get("error") else ")")
        for run in runs
        if run["status"] != "complete"
    )


def publish(source: Path, results_dir: Path, *, allow_incomplete: bool = False) -> Published:
    """Copy the leaderboard in ``source`` to ``<results_dir>/leaderboard/``, replacing the one there.

    Raises:
        PublishError: the leaderboard left out failed or unfinished runs and ``allow_incomplete`` is
            false, or ``results_dir`` lies inside ``source``.
        UserError: ``<results_dir>/leaderboard`` exists and is not a leaderboard (it is never deleted).
    """
    destination = results_dir.resolve() / PUBLISHED_NAME
    source = source.resolve()
    if destination == source or source in destination.parents:
        raise PublishError(f"cannot publish {source} into itself ({destination})")
    manifest = json.loads((source / MANIFEST).read_text())
    left_out = _left_out(manifest)
    if left_out and not allow_incomplete:
        raise PublishError(
            f"not publishing {source}: it left out {len(left_out)} failed or unfinished run(s), so it "
            f"rests on fewer runs than were asked for: {'; '.join(left_out)}. Finish or rerun them "
            "(`jestbench run` resumes a suite) and render again, or publish anyway with "
            "--allow-incomplete (the page lists the runs it left out)."
        )
    replaced = destination.exists()
    with staged_directory(destination, replaceable=is_leaderboard, what="a published leaderboard") as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
    return Published(source, destination, replaced, left_out)
