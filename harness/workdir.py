"""The work directory: where datasets, references, checkpoints, run files and studies go.

``--work DIR`` on the command line, else ``$JESTBENCH_WORK``, else ``./work``. git ignores ``work/``;
published material is copied to ``results/`` by ``jestbench publish``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

ENV = "JESTBENCH_WORK"


def add_work_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--work",
        type=Path,
        metavar="DIR",
        help=f"work directory for datasets, references, checkpoints and run files (default ${ENV} or ./work)",
    )


def add_threads_argument(parser: argparse.ArgumentParser, default: str = "torch's choice") -> None:
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help=f"torch threads (default: {default}); results are exactly reproducible for a fixed count; "
        "on a shared machine give 1 (docs/PERFORMANCE.md)",
    )


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which taskset and container limits set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(jobs: int = 1, *, cpus: int | None = None, env: Mapping[str, str] = os.environ) -> int:
    """Torch threads for each of ``jobs`` processes when ``--threads`` is not given: ``OMP_NUM_THREADS``
    if it is set, else the usable CPUs (``cpus``, else :func:`usable_cpus`) shared out, at least one.

    Never more threads than CPUs: an OpenMP thread that waits for a CPU holds every other thread of
    its parallel region at the barrier (docs/PERFORMANCE.md measures it)."""
    given = env.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) >= 1:
        return int(given)
    return max(1, (usable_cpus() if cpus is None else cpus) // max(1, jobs))


def set_threads(args: argparse.Namespace, jobs: int = 1) -> None:
    """Apply ``--threads``, else :func:`default_threads`; the count is in every row's provenance."""
    import torch

    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        from harness.errors import UserError

        raise UserError(f"--threads {threads} must be >= 1")
    torch.set_num_threads(default_threads(jobs) if threads is None else threads)


def checked_name(name: str, what: str) -> str:
    """``name`` if it is safe as one directory name under the work directory (letters, digits, '.',
    '_' and '-'), else a :class:`~harness.errors.UserError` naming ``what`` it was meant to be."""
    if not name or name in (".", "..") or any(not (c.isalnum() or c in "._-") for c in name):
        from harness.errors import UserError

        raise UserError(f"{what} {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


def work_dir(args: argparse.Namespace) -> Path:
    """The work directory the arguments (or the environment) name, created if missing."""
    chosen = getattr(args, "work", None) or os.environ.get(ENV) or "work"
    path = Path(chosen).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
