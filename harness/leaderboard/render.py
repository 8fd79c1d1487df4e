"""Writing a leaderboard: leaderboard.md, leaderboard.csv, leaderboard.html, figures/*.png, the rows it
was built from (rows.csv) and a manifest (leaderboard.json) that ``jestbench publish`` checks.

The HTML page is one self-contained file: figures are embedded as base64 PNG, CSS and the sorting
script are inline, and a Content-Security-Policy forbids every network request, so the page shows the
same thing offline, from a mail attachment or from a repository.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness import __version__
from harness.leaderboard.columns import COMPUTE, SCORES, SPEEDUPS, Column, flops, identity, selection
from harness.leaderboard.figures import FigureFile, draw_figures
from harness.leaderboard.mechanism import MechanismSection, mechanism_section
from harness.leaderboard.stats import TARGET_FRACTIONS
from harness.leaderboard.table import Leaderboard, build_leaderboard, strategy_label, target_column
from harness.results import Results
from harness.staging import staged_directory
from harness.workdir import checked_name

MANIFEST = "leaderboard.json"
MANIFEST_KIND = "jestbench leaderboard"
DEFAULT_TITLE = "jestbench leaderboard"
PROVENANCE = ("git_commit", "jestbench_version", "torch_version", "python_version", "cpu", "threads")


@dataclass(frozen=True)
class LeaderboardFiles:
    """The files a render wrote, all under ``directory``."""

    directory: Path
    markdown: Path
    csv: Path
    html: Path
    rows: Path
    manifest: Path
    figures: tuple[Path, ...]


@dataclass(frozen=True)
class _Section:
    """A displayed table: its anchor, heading, a sentence on what it answers, and its columns."""

    id: str
    heading: str
    intro: str
    columns: tuple[Column, ...]


def manifest_of(directory: Path) -> dict[str, Any]:
    """The manifest of the leaderboard in ``directory``; empty if it holds none."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) and manifest.get("kind") == MANIFEST_KIND else {}


def is_leaderboard(directory: Path) -> bool:
    """Whether ``directory`` holds a rendered leaderboard (its manifest says so)."""
    return bool(manifest_of(directory))


def _sections(table: pd.DataFrame) -> list[_Section]:
    names = identity(table)
    return [
        _Section(
            "leaderboard",
            "Leaderboard",
            "Final scores at the budget, each against uniform's by a paired test over seeds, and the "
            "paper's speedups against uniform at uniform's final score.",
            (*names, *SCORES),
        ),
        _Section(
            "speedups",
            "Speedups at three targets",
            "The speedups at uniform's final mean score and at two lower targets, 75% and 50% of the way "
            "to it from uniform's first evaluation (the untrained model): cost for uniform's mean curve to "
            "first reach the target over cost for this configuration's. Uniform is 1.00× at each by "
            "construction.",
            (*names[:3], *SPEEDUPS),
        ),
        _Section(
            "compute",
            "Compute",
            "Where each configuration's FLOPs went, mean over seeds.",
            (*names[:3], *COMPUTE),
        ),
        _Section(
            "selection",
            "What each strategy selected",
            "Noise composition of the selected batches against the super-batches they came from, and "
            "repeated captions per batch (joint selection should hold fewer in-batch duplicates than "
            "independent top-k at the same clean share).",
            (*names[:3], *selection(table)),
        ),
    ]


def _common(values: pd.Series) -> str | None:
    distinct = values.astype(str).unique()
    return str(distinct[0]) if len(distinct) == 1 else None


def _facts(board: Leaderboard) -> list[tuple[str, str]]:
    """The header: what every number rests on, stated once."""
    table = board.table
    budget = _common(table["budget_flops"])
    asked = _common(table["budget"])
    if budget not in (None, "nan"):
        budget_line = f"{flops(float(budget)).text} FLOPs per run (asked as {asked or 'different budgets'})"
    elif asked and asked.endswith("examples"):  # the equal-examples track: no FLOP amount
        budget_line = f"{asked} trained per run, whatever each spent in FLOPs"
    else:
        budget_line = "differs between configurations (see the budget column)"
    seeds = sorted({int(s) for seeds in table["seeds"] for s in seeds.split()})
    counts = sorted(set(table["n_seeds"]))
    dataset = _common(table["dataset"] + " (content id " + table["dataset_id"] + ")")
    b = _common(table["b"])
    tested = int(table["vs_uniform_p_holm"].notna().sum())
    return [
        (
            "FLOPs",
            "counted by fvcore: 1 multiply-add = 1 FLOP. A training step costs 3x the forward pass; "
            "scoring passes and score products are charged to the budget; evaluation is not.",
        ),
        ("Budget", budget_line),
        ("Seeds", f"{', '.join(map(str, seeds))}; per configuration n = {', '.join(map(str, counts))}"),
        ("Dataset", dataset or "differs between configurations (see the dataset column)"),
        ("Preset", _common(table["preset"]) or "differs between configurations (see the preset column)"),
        ("Batch", f"b = {b} examples trained per step" if b else "b differs between configurations"),
        ("Split", f"{board.split}: held out, never used for tuning"),
        (
            "Baseline",
            "uniform sampling at f = 0 without two-resolution training, with the same dataset, preset, "
            "b, budget and optimiser",
        ),
        (
            "Intervals and tests",
            "scores: 95% Student-t interval over seeds (none with one seed). Against uniform: a paired "
            "t-test over seeds on the final-score differences (Welch's t-test where the seed sets differ), "
            f"Holm–Bonferroni-adjusted over the {tested} configurations compared; 'better' or 'worse' only "
            "below an adjusted 0.05. Speedups: point estimates on the mean curves, without interval (docs/RESULTS.md says why)",
        ),
        ("Speedup targets", _targets(table)),
    ]


def _targets(table: pd.DataFrame) -> str:
    """The speedups' targets, with their scores when every row has the same baseline."""
    rule = (
        "uniform's final mean score, and "
        + " and ".join(f"{100 * f:.0f}%" for f in TARGET_FRACTIONS if f != 1)
        + " of the way to it from uniform's first evaluation (the untrained model)"
    )
    start = _common(table["target_start"].round(8))
    goals = [_common(table[target_column(f)].round(8)) for f in TARGET_FRACTIONS]
    if start is None or start == "nan" or None in goals:
        return f"{rule}; their scores differ between baselines (leaderboard.csv)"
    shown = ", ".join(
        f"{100 * f:.0f}%: {float(g):.4f}" for f, g in zip(TARGET_FRACTIONS, goals, strict=True) if g
    )
    return f"{rule}, which scored {float(start):.4f}; scores {shown}"


WHAT_IT_SHOWS = (
    "Every configuration had the same FLOP budget, with selection's scoring passes charged to it, and "
    "is ranked by its final score on held-out data. A strategy whose selection costs more compute than "
    "it saves ends below uniform and has a FLOPs speedup under 1×: it is reported as losing, not "
    "excused. A strategy is called better or worse than uniform only where the paired test over seeds, "
    "corrected for the number of strategies compared, separates the two; otherwise the table says "
    "'not separable', whatever the ranks. It does not show other budgets, datasets or model sizes, or "
    "wall-clock speed (listed for reference only: it depends on the machine); with one seed there is "
    "no interval and no test."
)
# The same for a leaderboard whose runs all had a budget in trained examples (the equal-examples track).
WHAT_IT_SHOWS_EXAMPLES = (
    "Every configuration trained on the same number of examples, whatever its steps cost in FLOPs, and "
    "is ranked by its final score on held-out data (the JEST paper's Fig. 2-3 axis). A strategy that "
    "ranks high here may still lose at equal FLOPs: its FLOPs columns say what it spent. The table does "
    "not show other budgets, datasets or model sizes, wall-clock speed (listed for reference only: it "
    "depends on the machine), or differences smaller than the intervals; with one seed there is no "
    "interval at all."
)


def what_it_shows(board: Leaderboard) -> str:
    """The paragraph saying what the table shows: for equal FLOPs, or for equal trained examples."""
    examples = board.table["budget"].astype(str).str.endswith("examples").all()
    return WHAT_IT_SHOWS_EXAMPLES if examples else WHAT_IT_SHOWS


def _left_out(results: Results) -> pd.DataFrame:
    left = pd.concat([results.failed, results.incomplete])
    return left[["run_id", "status", "strategy", "params", "seed", "error"]].fillna("")


def _provenance(board: Leaderboard) -> list[tuple[str, str]]:
    rows = board.results.rows
    rows = rows[rows["split"] == board.split]
    return [(name, ", ".join(sorted(rows[name].astype(str).unique()))) for name in PROVENANCE if name in rows]


# -- Markdown --------------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def markdown(
    board: Leaderboard,
    figures: Sequence[FigureFile],
    *,
    title: str,
    note: str | None,
    mechanism: MechanismSection | None = None,
) -> str:
    """leaderboard.md: header, the three tables, the mechanism check, figures (linked), runs left
    out, columns, provenance."""
    lines = [f"# {title}", ""]
    if note:
        lines += [f"*{note}*", ""]
    lines += [f"- **{name}**: {text}" for name, text in _facts(board)]
    lines += ["", what_it_shows(board), ""]
    sections = _sections(board.table)
    records = [row for _, row in board.table.iterrows()]
    for section in sections:
        lines += [f"## {section.heading}", "", section.intro, ""]
        lines += _md_table(
            [c.header for c in section.columns],
            [[c.cell(row).text for c in section.columns] for row in records],
        )
        lines.append("")
    if mechanism is not None:
        lines += mechanism.markdown()
    lines += ["## Figures", ""]
    for figure in figures:
        lines += [f"![{figure.title}](figures/{figure.path.name})", "", figure.caption, ""]
    left = _left_out(board.results)
    if not left.empty:
        lines += [
            "## Runs left out",
            "",
            "Failed or unfinished runs: none of their rows is in the tables above.",
            "",
        ]
        lines += _md_table(list(left.columns), left.astype(str).values.tolist())
        lines.append("")
    lines += ["## Columns", ""]
    seen: set[str] = set()
    for column in (c for s in sections for c in s.columns):
        if column.header not in seen:
            seen.add(column.header)
            lines.append(f"- **{column.header}**: {column.doc}")
    lines += ["", "## Provenance", ""]
    lines += [f"- {name}: {values}" for name, values in _provenance(board)]
    lines += ["", "Every row of rows.csv carries its run's config and provenance (docs/RESULTS.md).", ""]
    return "\n".join(lines)


# -- HTML ------------------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #fafafa; }
main { max-width: 1400px; margin: 0 auto; padding: 1.5rem; }
h1 { margin-bottom: 0.2rem; } .note { color: #555; font-style: italic; margin-top: 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; background: white; font-size: 13px; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.5rem; text-align: right; white-space: nowrap; }
th { background: #f0f0f3; position: sticky; top: 0; }
th button { font: inherit; font-weight: 600; background: none; border: 0; cursor: pointer; padding: 0; }
th[aria-sort="ascending"] button::after { content: " ▲"; }
th[aria-sort="descending"] button::after { content: " ▼"; }
td.text, th.text { text-align: left; } td.text { white-space: normal; min-width: 7rem; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; background: white; }
figcaption { color: #444; max-width: 60rem; }
dl.columns dt { font-weight: 600; margin-top: 0.5rem; } dl.columns dd { margin-left: 1rem; }
"""

# Sorts a table by the clicked column's data-sort values: numbers numerically, text alphabetically,
# empty cells (n/a, not reached) last in either direction; a second click reverses the order.
_SCRIPT = """
"use strict";
function sortValue(cell) {
  const raw = cell.dataset.sort;
  if (raw === undefined || raw === "") return null;
  const number = Number(raw);
  return Number.isNaN(number) ? raw : number;
}
function compare(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b));
}
function sortTable(table, index, header) {
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  for (const th of table.tHead.rows[0].cells) th.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((x, y) => {
    const a = sortValue(x.cells[index]), b = sortValue(y.cells[index]);
    if (a === null || b === null) return (a === null) - (b === null);
    return ascending ? compare(a, b) : compare(b, a);
  });
  for (const row of rows) body.appendChild(row);
}
for (const table of document.querySelectorAll("table.sortable")) {
  Array.from(table.tHead.rows[0].cells).forEach((header, index) => {
    header.addEventListener("click", () => sortTable(table, index, header));
  });
}
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _html_table(table_id: str, columns: Sequence[Column], rows: Sequence[pd.Series]) -> str:
    e = html.escape
    head = "".join(
        f'<th scope="col" title="{e(c.doc)}"{_text_class(c, rows)}><button type="button">{e(c.header)}</button></th>'
        for c in columns
    )
    body = []
    for row in rows:
        cells = []
        for column in columns:
            cell = column.cell(row)
            sort = "" if cell.sort is None else _sort_key(cell.sort)
            cells.append(f'<td data-sort="{e(sort)}"{_text_class(column, rows)}>{e(cell.text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table id="{table_id}" class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _sort_key(value: float | str) -> str:
    """A data-sort value JavaScript's Number() reads back: "Infinity", not Python's "inf"."""
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return str(value)


def _text_class(column: Column, rows: Sequence[pd.Series]) -> str:
    sorts = [column.cell(row).sort for row in rows]
    return ' class="text"' if any(isinstance(s, str) for s in sorts) else ""


def html_page(
    board: Leaderboard,
    figures: Sequence[FigureFile],
    *,
    title: str,
    note: str | None,
    mechanism: MechanismSection | None = None,
) -> str:
    """leaderboard.html: one self-contained page (no network requests, enforced by its CSP)."""
    e = html.escape
    sections = _sections(board.table)
    records = [row for _, row in board.table.iterrows()]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{e(title)}</h1>",
    ]
    if note:
        parts.append(f'<p class="note">{e(note)}</p>')
    parts.append(
        '<dl class="facts">' + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in _facts(board)) + "</dl>"
    )
    parts.append(
        f"<p>{e(what_it_shows(board))}</p><p>Click a column header to sort by it; hover it for what it means.</p>"
    )
    for section in sections:
        parts += [
            f"<h2>{e(section.heading)}</h2>",
            f"<p>{e(section.intro)}</p>",
            _html_table(section.id, section.columns, records),
        ]
    if mechanism is not None:
        parts.append(mechanism.html())
    parts.append("<h2>Figures</h2>")
    for figure in figures:
        data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{e(figure.title)}">'
            f"<figcaption><strong>{e(figure.title)}.</strong> {e(figure.caption)}</figcaption></figure>"
        )
    left = _left_out(board.results)
    if not left.empty:
        parts.append(
            "<h2>Runs left out</h2><p>Failed or unfinished runs: none of their rows is in the tables above.</p>"
        )
        head = "".join(f'<th scope="col" class="text">{e(c)}</th>' for c in left.columns)
        body = "".join(
            "<tr>" + "".join(f'<td class="text">{e(str(v))}</td>' for v in row) + "</tr>"
            for row in left.values
        )
        parts.append(
            f'<div class="scroll"><table id="left-out"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
        )
    parts.append('<h2>Columns</h2><dl class="columns">')
    seen: set[str] = set()
    for column in (c for s in sections for c in s.columns):
        if column.header not in seen:
            seen.add(column.header)
            parts.append(f"<dt>{e(column.header)}</dt><dd>{e(column.doc)}</dd>")
    parts.append("</dl><h2>Provenance</h2><ul>")
    parts += [f"<li>{e(name)}: {e(values)}</li>" for name, values in _provenance(board)]
    parts.append(f"</ul><script>{_SCRIPT}</script></main></body></html>")
    return "\n".join(parts)


# -- The whole leaderboard -------------------------------------------------------------------------


def _manifest(board: Leaderboard, *, title: str, note: str | None, files: Sequence[str]) -> dict[str, object]:
    runs = board.results.runs
    return {
        "kind": MANIFEST_KIND,
        "title": title,
        "note": note,
        "split": board.split,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "jestbench_version": __version__,
        "configurations": len(board.table),
        "runs": runs[["run_id", "status", "error", "strategy", "params", "seed"]]
        .astype(object)
        .where(runs.notna(), None)
        .to_dict("records"),
        "files": list(files),
    }


def render_leaderboard(
    results: Results, out_dir: Path, *, title: str = DEFAULT_TITLE, note: str | None = None
) -> LeaderboardFiles:
    """Build the leaderboard of ``results`` and write all its files into ``out_dir`` (replaced whole).

    The suite runner calls it with the runs of a suite::

        render_leaderboard(read_runs(work, run_ids), leaderboard_dir(work, "quick"),
                           title="quick suite", note="one-seed leaderboard")

    Raises:
        LeaderboardError: no complete run has rows on the eval split.
        UserError: ``out_dir`` is a non-empty directory that holds no leaderboard.
    """
    return write_leaderboard(build_leaderboard(results), out_dir, title=title, note=note)


def write_leaderboard(
    board: Leaderboard, out_dir: Path, *, title: str = DEFAULT_TITLE, note: str | None = None
) -> LeaderboardFiles:
    """Write a built leaderboard's files into ``out_dir`` (replaced whole; see :func:`render_leaderboard`)."""
    with staged_directory(out_dir, replaceable=is_leaderboard, what="a leaderboard") as staging:
        figures = draw_figures(board, staging / "figures")
        mechanism = mechanism_section(board, staging / "figures")
        (staging / "leaderboard.md").write_text(
            markdown(board, figures, title=title, note=note, mechanism=mechanism)
        )
        (staging / "leaderboard.html").write_text(
            html_page(board, figures, title=title, note=note, mechanism=mechanism)
        )
        board.table.to_csv(staging / "leaderboard.csv", index=False)
        board.results.rows.to_csv(staging / "rows.csv", index=False)
        names = ["leaderboard.md", "leaderboard.html", "leaderboard.csv", "rows.csv"]
        names += [f"figures/{f.path.name}" for f in figures]
        if mechanism is not None:
            mechanism.csv().to_csv(staging / "mechanism.csv", index=False)
            names += ["mechanism.csv", *(f"figures/{f.path.name}" for f in mechanism.figures)]
        manifest = _manifest(board, title=title, note=note, files=names)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return LeaderboardFiles(
        directory=out_dir,
        markdown=out_dir / "leaderboard.md",
        csv=out_dir / "leaderboard.csv",
        html=out_dir / "leaderboard.html",
        rows=out_dir / "rows.csv",
        manifest=out_dir / MANIFEST,
        figures=tuple(out_dir / "figures" / f.path.name for f in figures),
    )


def ranking(board: Leaderboard) -> list[str]:
    """The leaderboard in a few lines for a terminal: rank, score, seeds, configuration; then the runs
    it left out."""
    lines = []
    for _, row in board.table.iterrows():
        params = f" ({row['params']})" if row["params"] else ""
        lines.append(
            f"{row['rank']:>3}. {row['score']:.3f}  n={row['n_seeds']}  {strategy_label(row)}{params}, f={row['f']:.3g}"
        )
    for _, run in _left_out(board.results).iterrows():
        error = f": {run['error']}" if run["error"] else ""
        lines.append(
            f"left out: run {run['run_id']} ({run['strategy']}, seed {run['seed']}) is {run['status']}{error}"
        )
    return lines


def leaderboard_dir(work_dir: Path, name: str) -> Path:
    """Where the leaderboard called ``name`` goes by default: ``<work>/leaderboards/<name>``."""
    return work_dir / "leaderboards" / checked_name(name, "leaderboard name")
