"""The work directory: where datasets, references, checkpoints, run files and studies go.

``--work DIR`` on the command line, else ``$JESTBENCH_WORK``, else ``./work``. git ignores ``work/``;
published material is copied to ``results/`` by ``jestbench publish``.
"""

from __future__ import annotations

import argparse
import os
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
        help=f"torch threads (default: {default}); results are exactly reproducible for a fixed count",
    )


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads``; the count is recorded in every row's provenance."""
    import torch

    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            from harness.errors import UserError

            raise UserError(f"--threads {args.threads} must be >= 1")
        torch.set_num_threads(args.threads)


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
