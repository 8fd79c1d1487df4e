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


def work_dir(args: argparse.Namespace) -> Path:
    """The work directory the arguments (or the environment) name, created if missing."""
    chosen = getattr(args, "work", None) or os.environ.get(ENV) or "work"
    path = Path(chosen).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
