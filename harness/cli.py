"""The ``jestbench`` command line: one sub-command per module of :mod:`harness.commands`.

Each command module exposes ``register(subparsers)``, which adds its parser and sets ``handler`` to
a function taking the parsed arguments and returning an exit status. Heavy imports happen inside
handlers, so ``jestbench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import io
import sys
from collections.abc import Sequence
from typing import NoReturn

from harness import __version__
from harness.errors import UserError
from harness.progress import INTERRUPTED
from strategies import StrategyError

COMMANDS = (
    "run",
    "strategies",
    "data",
    "flops",
    "train",
    "reference",
    "leaderboard",
    "publish",
    "tune",
    "reproduce",
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose refusals are one line (the usage block is what ``--help`` is for);
    sub-command parsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="jestbench",
        description="Benchmark online data-selection strategies (JEST and others) for contrastive "
        "image-text training at a fixed FLOP budget.",
    )
    parser.add_argument("--version", action="version", version=f"jestbench {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"harness.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        # A suite's per-run lines must reach a log file as they happen, not when the buffer fills.
        sys.stdout.reconfigure(line_buffering=True)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except (UserError, StrategyError) as err:
        print(f"jestbench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
