"""``jestbench reproduce``: every claim of the JEST paper re-measured, with a report that puts the
paper's number beside ours and a verdict computed from the statistics (docs/REPRODUCE.md)."""

from harness.reproduce.claims import CLAIMS, Claim, Outcome
from harness.reproduce.context import FULL, QUICK, SCALES, Context, Scale
from harness.reproduce.report import ClaimReport, reproduce, write_report
from harness.reproduce.verdict import VERDICTS, Check, Verdict, decide

__all__ = [
    "CLAIMS",
    "FULL",
    "QUICK",
    "SCALES",
    "VERDICTS",
    "Check",
    "Claim",
    "ClaimReport",
    "Context",
    "Outcome",
    "Scale",
    "Verdict",
    "decide",
    "reproduce",
    "write_report",
]
