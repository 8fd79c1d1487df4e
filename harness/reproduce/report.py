"""Running the claims and writing REPORT.md (and report.json) beside their figures."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.records import RunFile, provenance
from harness.reproduce.claims import CLAIMS, Claim, Outcome
from harness.reproduce.context import Context
from harness.reproduce.verdict import NOT_MEASURED, CheckResult, fmt, not_measured
from harness.runner import run_configs


@dataclass(frozen=True)
class ClaimReport:
    claim: Claim
    outcome: Outcome
    seconds: float


def measure(claim: Claim, ctx: Context) -> Outcome:
    """Run one claim; one whose runs failed is reported as not measured yet with the reason, never
    with a number."""
    try:
        return claim.measure(ctx)
    except UserError as err:
        return Outcome("not measured", "–", not_measured(f"its runs could not be made: {err}"))


def reproduce(
    ctx: Context, claims: Sequence[Claim] = CLAIMS, *, jobs: int = 1, threads: int | None = None
) -> list[ClaimReport]:
    """Measure every claim (runs shared, complete runs reused) and write the report into ``ctx.out``.

    With ``jobs`` > 1 the runs the claims train are trained first, ``jobs`` at a time in processes
    of their own (``threads`` torch threads each; default: the cores shared out), as ``jestbench run
    --jobs`` does; the claims then find them complete.
    """
    if jobs < 1:
        raise UserError(f"--jobs {jobs} must be >= 1")
    ctx.out.mkdir(parents=True, exist_ok=True)
    if jobs > 1:
        try:
            planned = {c.run_id: c for claim in claims for c in claim.runs(ctx)}
        except UserError as err:  # the reference could not be made: each claim that needs it says so
            ctx.announce(f"the claims' runs cannot be trained ahead: {err}")
            planned = {}
        pending = [c for i, c in planned.items() if RunFile.load_complete(ctx.work, i) is None]
        ctx.announce(
            f"{len(planned)} runs for these claims, {len(planned) - len(pending)} already complete, "
            f"{len(pending)} to run, {jobs} at a time"
        )
        ctx.failed.update(
            run_configs(
                pending, ctx.work, jobs=jobs, threads=threads, show_progress=False, announce=ctx.announce
            )
        )
    reports = []
    for claim in claims:
        ctx.announce(f"claim {claim.number}: {claim.figure}")
        started = time.monotonic()
        outcome = measure(claim, ctx)
        reports.append(ClaimReport(claim, outcome, time.monotonic() - started))
        ctx.announce(f"  verdict: {outcome.verdict.verdict} ({outcome.verdict.reason})")
    write_report(ctx, reports, kept_claims(ctx, [c.number for c in claims]))
    return reports


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(ctx: Context, r: ClaimReport) -> str:
    c, o = r.claim, r.outcome
    figure = f"[{Path(o.figure).name}]({o.figure})" if o.figure else "–"
    return (
        f"| {c.number} | {_cell(c.figure)}: {_cell(c.statement)} | {_cell(c.paper)} | {_cell(o.ours)} | "
        f"{_cell(o.replicates)} | {_cell(ctx.data_setting)} | **{o.verdict.verdict}**: "
        f"{_cell(o.verdict.reason)} | {figure} |"
    )


def _separable(result: CheckResult) -> str:
    return "yes" if result.supports else "no: separable against it" if result.against else "no"


def _section(r: ClaimReport) -> list[str]:
    c, o = r.claim, r.outcome
    lines = [
        f"## Claim {c.number}. {c.figure}",
        "",
        f"- **paper**: {c.statement} ({c.paper})",
        f"- **needs**: {c.needs}",
        f"- **measures**: {c.measures}",
        f"- **verdict rule**: {c.rule}",
        f"- **verdict**: {o.verdict.verdict} — {o.verdict.reason} ({r.seconds:.0f} s)",
        *o.details,
    ]
    if o.verdict.checks:
        lines += [
            "",
            "| comparison | n | mean | 95% interval | p | Holm p | separable in the paper's direction |",
            "|---|---|---|---|---|---|---|",
        ]
        for result in o.verdict.checks:
            interval = "exact" if result.check.exact else f"[{fmt(result.low)}, {fmt(result.high)}]"
            lines.append(
                f"| {_cell(result.check.name)} | {result.n} | {fmt(result.mean)} | {interval} | "
                f"{fmt(result.p, 2)} | {fmt(result.p_holm, 2)} | {_separable(result)} |"
            )
    if o.figure:
        lines += ["", f"![{c.figure}]({o.figure})"]
    return lines


def _entry(ctx: Context, r: ClaimReport, written_by: dict[str, str]) -> dict[str, Any]:
    """A claim's record in report.json: its numbers, and its row and section as REPORT.md shows them,
    so that a later ``--claims`` run into the same directory can keep it unchanged."""
    o = r.outcome
    return {
        "claim": r.claim.number,
        "figure": r.claim.figure,
        "verdict": o.verdict.verdict,
        "reason": o.verdict.reason,
        "ours": o.ours,
        "figure_path": o.figure,
        "checks": [
            {
                "name": x.check.name,
                "n": x.n,
                "mean": x.mean,
                "low": x.low,
                "high": x.high,
                "p": x.p,
                "p_holm": x.p_holm,
                "supports": x.supports,
                "against": x.against,
            }
            for x in o.verdict.checks
        ],
        "measured": o.verdict.verdict != NOT_MEASURED,
        "seconds": r.seconds,
        "row": _row(ctx, r),
        "section": _section(r),
        "written_by": written_by,
    }


def kept_claims(ctx: Context, measured: Sequence[int]) -> list[dict[str, Any]]:
    """The claims of the report already in ``ctx.out`` that this run does not measure, to be kept.

    Re-measuring some claims (``--claims``) then updates a report rather than shrinking it; each
    claim keeps the command, commit and date that measured it, and REPORT.md names them. A report of
    another scale or data setting is replaced whole: its rows would not be comparable.
    """
    path = ctx.out / "report.json"
    if not path.is_file():
        return []
    earlier = json.loads(path.read_text())
    setting = (earlier.get("scale"), earlier.get("data"))
    if setting != (ctx.scale.name, ctx.data_setting):
        ctx.announce(
            f"{path} is a report of scale {setting[0]} on {setting[1]}, not of scale {ctx.scale.name} on "
            f"{ctx.data_setting}: it is replaced"
        )
        return []
    kept = [c for c in earlier["claims"] if c["claim"] not in measured]
    if any("row" not in c for c in kept):  # written before reports kept their text
        ctx.announce(f"{path} does not hold its claims' text (an older jestbench wrote it): it is replaced")
        return []
    if kept:
        ctx.announce(
            f"keeping claims {', '.join(str(c['claim']) for c in kept)} from {path}, as measured before"
        )
    return kept


def _provenance(entries: Sequence[dict[str, Any]]) -> str:
    """Which command, commit and date measured which claims, one clause per distinct source."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for e in entries:
        w = e["written_by"]
        groups.setdefault((w["command"], w["commit"], w["date"]), []).append(e["claim"])
    clauses = [
        f"{'claim' if len(numbers) == 1 else 'claims'} {', '.join(map(str, numbers))} by `{command}` "
        f"(commit {commit[:12]}, {date})"
        for (command, commit, date), numbers in groups.items()
    ]
    return "Measured: " + "; ".join(clauses) + "."


def write_report(ctx: Context, reports: Sequence[ClaimReport], kept: Sequence[dict[str, Any]] = ()) -> Path:
    """Write REPORT.md and report.json: the claims measured now, and ``kept`` ones (see
    :func:`kept_claims`) as they were, in claim order."""
    s = ctx.scale
    numbers = [r.claim.number for r in reports]
    command = "jestbench reproduce" + (" --quick" if s.name == "quick" else "")
    if len(numbers) < len(CLAIMS):
        command += " --claims " + " ".join(map(str, numbers))
    written_by = {
        "command": command,
        "commit": provenance()["git_commit"],
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    entries = sorted([*kept, *(_entry(ctx, r, written_by) for r in reports)], key=lambda e: e["claim"])
    present = {e["claim"] for e in entries}
    left_out = [c.number for c in CLAIMS if c.number not in present]
    lines = [
        "# The JEST paper's claims, re-measured",
        "",
        f"Scale `{s.name}`: preset `{s.preset}`, b = {s.batch_size}, budget {s.budget} per run, seeds "
        f"{', '.join(map(str, s.seeds))}; data {ctx.data_setting}. {_provenance(entries)} "
        "docs/REPRODUCE.md says how each verdict is computed.",
        "",
        *(
            [
                f"**Not in this report: claim{'s' if len(left_out) > 1 else ''} {', '.join(map(str, left_out))}** "
                "(not run: `--claims` chose the others).",
                "",
            ]
            if left_out
            else []
        ),
        "Verdicts come from the statistics: each claim is a set of comparisons in the paper's direction "
        "(paired t-tests over seeds or super-batches, Holm-corrected; FLOP counts compared exactly). "
        "**holds**: all separable in that direction; **does not hold**: none; **partly**: some; **not "
        "testable at this scale** and **not measured yet** say why.",
        "",
        "| # | claim | paper | ours (mean [95% interval]) | replicates | data | verdict | figure |",
        "|---|---|---|---|---|---|---|---|",
        *(e["row"] for e in entries),
    ]
    for e in entries:
        lines += ["", *e["section"]]
    path = ctx.out / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    (ctx.out / "report.json").write_text(
        json.dumps({"scale": s.name, "data": ctx.data_setting, "claims": entries}, indent=1, allow_nan=True)
    )
    return path
