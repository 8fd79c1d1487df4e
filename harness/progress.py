"""Progress that reaches the user wherever the output goes.

On a terminal a stage is a tqdm bar (on stderr). In a log file, where a bar would be noise, each stage
says when it starts and prints a plain line every ``$JESTBENCH_PROGRESS_SECONDS`` seconds (default 30):
how far it is, the time spent and an estimate of the time left. Training, reference training and the
pool embedding report through :class:`Reporter`; :func:`next_steps` is what ``jestbench run`` says when
it ends.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.errors import UserError

ENV = "JESTBENCH_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0


def interval() -> float:
    """Seconds between plain progress lines: ``$JESTBENCH_PROGRESS_SECONDS``, else 30."""
    text = os.environ.get(ENV)
    if text is None:
        return DEFAULT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise UserError(f"${ENV}={text!r}: give the seconds between progress lines, a number >= 0")
    return seconds


def on_terminal() -> bool:
    """Whether progress bars can be drawn: stderr is a terminal."""
    return sys.stderr.isatty()


def stage(message: str, *, enabled: bool = True) -> None:
    """Announce that a stage starts (on stdout, with the suite's other lines)."""
    if enabled:
        print(f"jestbench: {message}", flush=True)


def duration(seconds: float) -> str:
    """``"45s"``, ``"12m05s"``, ``"3h02m"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Reporter:
    """One stage's progress towards ``total`` ``unit``: a bar on a terminal, else a plain line at a
    steady interval. ``enabled=False`` (``--quiet``, worker processes) shows nothing.

    ``update(n, **status)`` adds ``n`` done; ``status`` (the step, the loss) is shown beside.
    """

    def __init__(
        self, total: float, desc: str, unit: str, *, initial: float = 0, enabled: bool = True
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = self.initial = initial
        self.started = self.last_line = time.monotonic()
        self.every = interval()
        self.plain = enabled and not on_terminal()
        self.bar: Any = None
        if enabled and not self.plain:
            from tqdm import tqdm  # imported here: the CLI imports this module for its messages

            self.bar = tqdm(
                total=total, initial=initial, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True
            )

    def update(self, n: float = 1, **status: Any) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if status:
                self.bar.set_postfix(status)
        elif self.plain and time.monotonic() - self.last_line >= self.every:
            self.last_line = time.monotonic()
            print(self.line(status), flush=True)

    def line(self, status: dict[str, Any]) -> str:
        """``jest seed 0: 1.2e+13/5e+13 FLOP (24%), 2m10s elapsed, about 6m50s left; step 120, loss 3.2``"""
        elapsed = time.monotonic() - self.started
        made = self.done - self.initial
        left = (
            f"about {duration(elapsed * (self.total - self.done) / made)} left"
            if made > 0
            else "time left unknown"
        )
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        text = f"{self.desc}: {self.done:.4g}/{self.total:.4g} {self.unit}{share}, {duration(elapsed)} elapsed, {left}"
        if status:
            text += "; " + ", ".join(f"{key} {value}" for key, value in status.items())
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


INTERRUPTED = (
    "jestbench: interrupted. Rerun the same command to resume: complete runs are kept and the run in "
    "flight continues from its last checkpoint."
)


def next_steps(suite: str, leaderboard: Path | None, failed: int, work: Path | None = None) -> str:
    """What to open and what to run after ``jestbench run SUITE``; ``work`` is ``--work`` if given."""
    where = f" --work {work}" if work is not None else ""
    if leaderboard is None:
        return (
            f"next: fix the errors above and rerun `jestbench run {suite}{where}` (complete runs are skipped)"
        )
    if leaderboard.name == "leaderboard.md":
        lines = [f"next: open {leaderboard.with_suffix('.html')} in a browser (or read {leaderboard})"]
    else:  # a sectioned suite's index
        lines = [
            f"next: read {leaderboard}, the index of the sections' leaderboards (each with its .html page)"
        ]
    if failed:
        lines.append(
            f"  {failed} run(s) failed: rerun `jestbench run {suite}{where}` to retry them (complete runs are "
            f"skipped); `jestbench publish {suite}{where}` refuses a leaderboard that left runs out"
        )
    else:
        lines.append(f"  then `jestbench publish {suite}{where}` copies it into results/ to commit")
    return "\n".join(lines)
