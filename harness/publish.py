"""Publishing a rendered leaderboard into the committed ``results/`` directory, and the index of a
suite's sections.

Work directories are private and git ignores them; ``results/`` is what the repository shows. A
publish replaces ``results/leaderboard/`` whole (tables, page, figures, the rows as CSV and the
manifest) and touches nothing else there, so benchmark tables (``results/bench/``) and tuning studies
(``results/tuning/``) published by other commands stay as they are. A suite with ``[[sections]]``
renders one leaderboard per section, ``<suite>/<section>/``, beside an index (``README.md`` and
``sections.json``); publishing it puts each at ``results/leaderboard/<section>/`` with the index at
``results/leaderboard/README.md``. A leaderboard that left out failed or unfinished runs is refused
unless the caller says otherwise: a published leaderboard should not silently rest on fewer runs than
its suite asked for.
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
INDEX = "sections.json"
INDEX_PAGE = "README.md"
INDEX_KIND = "jestbench-leaderboard-sections"


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
        if is_leaderboard(candidate) or is_index(candidate):
            return candidate.resolve()
    root = work_dir / "leaderboards"
    known = (
        sorted(p.name for p in root.iterdir() if is_leaderboard(p) or is_index(p)) if root.is_dir() else []
    )
    listing = f"; rendered leaderboards in {root}: {', '.join(known)}" if known else f"; {root} holds none"
    raise PublishError(
        f"{source!r} is neither a leaderboard directory nor the name of one{listing} "
        "(render one with `jestbench leaderboard` or `jestbench run`)"
    )


def is_index(directory: Path) -> bool:
    """Whether ``directory`` holds a suite's sections (its ``sections.json`` says so)."""
    try:
        return bool(json.loads((directory / INDEX).read_text()).get("kind") == INDEX_KIND)
    except (OSError, ValueError, AttributeError):
        return False


def write_index(directory: Path, *, title: str, description: str, sections: list[dict[str, Any]]) -> None:
    """Write the index of a suite's sections into ``directory``: ``sections.json`` (what the suite
    runner's ``_index_entry`` gives per section) and ``README.md``, a table linking each leaderboard."""
    (directory / INDEX).write_text(
        json.dumps({"kind": INDEX_KIND, "title": title, "sections": sections}, indent=1) + "\n"
    )
    tracks = {"flops": "equal FLOPs", "examples": "equal trained examples"}
    lines = [
        f"# {title}",
        "",
        description,
        "",
        "One leaderboard per section; each ranks its own runs only (do not compare scores across sections: "
        "their data, budget or track differ).",
        "",
        "| section | what | data | track | budget | seeds | references | runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in sections:
        name = entry["name"]
        link = f"[{name}]({name}/leaderboard.md)" if entry["leaderboard"] else f"{name} (no run completed)"
        lines.append(
            f"| {link} | {entry['description']} | {entry['data']} | {tracks[entry['track']]} | "
            f"{', '.join(entry['budgets'])} | {len(entry['seeds'])} | {len(entry['references'])} | {entry['runs']} |"
        )
    (directory / INDEX_PAGE).write_text("\n".join(lines) + "\n")


def _left_out(manifest: dict[str, Any]) -> tuple[str, ...]:
    runs: list[dict[str, Any]] = manifest["runs"]
    return tuple(
        f"{run['run_id']} ({run['status']}" + (f": {run['error']})" if run.get("error") else ")")
        for run in runs
        if run["status"] != "complete"
    )


def publish(source: Path, results_dir: Path, *, allow_incomplete: bool = False) -> Published:
    """Copy the leaderboard in ``source`` (or a suite's sections and their index) to
    ``<results_dir>/leaderboard/``, replacing what is there.

    Raises:
        PublishError: a leaderboard left out failed or unfinished runs (or a section has none) and
            ``allow_incomplete`` is false, or ``results_dir`` lies inside ``source``.
        UserError: ``<results_dir>/leaderboard`` exists and is neither a leaderboard nor an index (it
            is never deleted).
    """
    destination = results_dir.resolve() / PUBLISHED_NAME
    source = source.resolve()
    if destination == source or source in destination.parents:
        raise PublishError(f"cannot publish {source} into itself ({destination})")
    left_out: tuple[str, ...] = ()
    if is_index(source):
        for entry in json.loads((source / INDEX).read_text())["sections"]:
            if not entry["leaderboard"]:
                left_out += (f"section {entry['name']} (no run completed)",)
                continue
            manifest = json.loads((source / entry["name"] / MANIFEST).read_text())
            left_out += tuple(f"{entry['name']}: {run}" for run in _left_out(manifest))
    else:
        left_out = _left_out(json.loads((source / MANIFEST).read_text()))
    if left_out and not allow_incomplete:
        raise PublishError(
            f"not publishing {source}: it left out {len(left_out)} failed or unfinished run(s), so it "
            f"rests on fewer runs than were asked for: {'; '.join(left_out)}. Finish or rerun them "
            "(`jestbench run` resumes a suite) and render again, or publish anyway with "
            "--allow-incomplete (the page lists the runs it left out)."
        )
    replaced = destination.exists()
    with staged_directory(
        destination,
        replaceable=lambda p: is_leaderboard(p) or is_index(p),
        what="a published leaderboard",
    ) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
    return Published(source, destination, replaced, left_out)
