"""The mechanism check on every leaderboard, computed from the run rows alone (docs/RESULTS.md): what
each strategy selected in each eighth of its budget, and what a fixed probe set says about the
learner and the reference over training.

- **Selection by eighth**: the share of each noise kind among the examples selected in each eighth of
  the budget (``selection_by_eighth`` of a run's last row), pooled over seeds, and repeated captions
  per selected batch;
- **Probe losses**: at each evaluation, the learner's and the reference's mean per-example loss
  ``L_ii`` and the learnability (learner − reference) by noise kind, on the same probe keys for every
  run of the dataset (:mod:`harness.probe`); means over seeds;
- **Rank correlation** between learnability and minus the reference loss over the probe set: near 1,
  learnability ranks examples as the reference alone would; lower, the learner's own loss reorders
  them;
- **Logit scale and bias** of the learner over training, and the reference's.

:func:`build_mechanism` returns ``None`` for rows written before these columns existed; the
leaderboard then has no mechanism section. The paragraph (:func:`paragraph`) states only numbers and
the comparisons they decide (rose, fell, stayed).
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.data import NOISE_KINDS
from harness.leaderboard.figures import _NOISE_COLOURS, FigureFile, _colours, _save, label
from harness.leaderboard.table import Leaderboard
from harness.step import EIGHTHS

PROBE_KINDS = {
    "learner": "probe_learner_loss",
    "reference": "probe_reference_loss",
    "learnability": "probe_learnability",
}
CURVES = ("probe_spearman", "learner_scale", "learner_bias", "reference_scale", "reference_bias")
# Columns the mechanism needs in every row it reads.
REQUIRED = (
    "selection_by_eighth",
    "probe_size",
    *CURVES,
    *(f"probe_{k}" for k in NOISE_KINDS),
    *(f"{p}_{k}" for p in PROBE_KINDS.values() for k in NOISE_KINDS),
)


@dataclass(frozen=True)
class Mechanism:
    """The mechanism check's numbers, per configuration (``config_key``, in leaderboard order).

    Attributes:
        labels: configuration → its name in legends and tables.
        mix: one row per configuration, eighth (1–8) and kind: ``selected`` (share of the selected
            examples of a known kind in that eighth), ``pool`` (the same for the super-batches).
        repeats: one row per configuration and eighth: ``selected_repeats_per_batch``,
            ``super_repeats_per_batch`` (repeated captions per step).
        probe: one row per configuration and evaluation: ``progress`` (FLOPs spent / budget), the
            probe columns of the rows (:data:`REQUIRED`), means over seeds.
        seeds: configuration → number of seeds.
    """

    labels: dict[str, str]
    mix: pd.DataFrame
    repeats: pd.DataFrame
    probe: pd.DataFrame
    seeds: dict[str, int]

    @property
    def keys(self) -> list[str]:
        return list(self.labels)

    def has_reference(self, key: str) -> bool:
        return bool(self.probe.loc[self.probe["config_key"] == key, "reference_scale"].notna().any())


def build_mechanism(board: Leaderboard) -> Mechanism | None:
    """The mechanism check from the leaderboard's rows on its split; ``None`` when a row lacks the
    columns (runs from before the check existed)."""
    rows = board.results.rows
    if rows.empty or any(column not in rows for column in REQUIRED):
        return None
    rows = rows[(rows["split"] == board.split) & rows["config_key"].isin(board.table["config_key"])]
    if rows[list(REQUIRED)].isna().all(axis=None) or rows["selection_by_eighth"].isna().any():
        return None
    labels = {row["config_key"]: label(row) for row in board.table.to_dict("records")}
    last = rows.loc[rows.groupby("run_id")["evaluation"].idxmax()]
    mix, repeats = _mix(last)
    probe_columns = [c for c in REQUIRED if c != "selection_by_eighth"]
    with_progress = rows.assign(progress=rows["flops_spent"] / rows["budget_flops"])
    probe = (
        with_progress.groupby(["config_key", "evaluation"])[["progress", *probe_columns]].mean().reset_index()
    )
    seeds = last.groupby("config_key")["run_id"].nunique().to_dict()
    return Mechanism(labels, mix, repeats, probe, {k: int(v) for k, v in seeds.items()})


def _mix(last: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shares by kind and repeats per step in each eighth, counts pooled over each configuration's seeds."""
    mix, repeats = [], []
    for key, runs in last.groupby("config_key", sort=False):
        eighths = [json.loads(text) for text in runs["selection_by_eighth"]]
        for e in range(EIGHTHS):
            total = {name: sum(run[e][name] for run in eighths) for name in eighths[0][e]}
            steps = total["steps"]
            repeats.append(
                {
                    "config_key": key,
                    "eighth": e + 1,
                    "steps": steps,
                    "selected_repeats_per_batch": total["selected_repeats"] / steps if steps else math.nan,
                    "super_repeats_per_batch": total["super_repeats"] / steps if steps else math.nan,
                }
            )
            known = {side: sum(total[f"{side}_{k}"] for k in NOISE_KINDS) for side in ("selected", "super")}
            for kind in NOISE_KINDS:
                mix.append(
                    {
                        "config_key": key,
                        "eighth": e + 1,
                        "kind": kind,
                        "selected": total[f"selected_{kind}"] / known["selected"]
                        if known["selected"]
                        else math.nan,
                        "pool": total[f"super_{kind}"] / known["super"] if known["super"] else math.nan,
                    }
                )
    return pd.DataFrame(mix), pd.DataFrame(repeats)


# -- the paragraph ---------------------------------------------------------------------------------


def _moved(start: float, end: float, digits: int) -> str:
    """ "rose from A to B", "fell from A to B" or "stayed at A", as the numbers shown decide."""
    a, b = round(start, digits), round(end, digits)
    if a == b:
        return f"stayed at {a:.{digits}f}"
    return f"{'rose' if b > a else 'fell'} from {a:.{digits}f} to {b:.{digits}f}"


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def _configuration_sentence(mechanism: Mechanism, key: str) -> str | None:
    mix = mechanism.mix[mechanism.mix["config_key"] == key]
    share = mix.pivot(index="eighth", columns="kind", values="selected")
    pool = mix.pivot(index="eighth", columns="kind", values="pool")
    filled = share.dropna(how="all")
    if filled.empty:
        return None
    first, last = filled.index[0], filled.index[-1]
    change = (filled.loc[last] - filled.loc[first]).abs()
    kind = str(change.idxmax())
    pool_share = float(pool[kind].mean())
    parts = [
        f"{mechanism.labels[key]}: {kind} examples were {_percent(filled.loc[first, kind])} of its picks in "
        f"eighth {first} of the budget and {_percent(filled.loc[last, kind])} in eighth {last} (they were "
        f"{_percent(pool_share)} of its super-batches)"
    ]
    probe = mechanism.probe[mechanism.probe["config_key"] == key].sort_values("evaluation")
    start, end = probe.iloc[0], probe.iloc[-1]
    learner = f"probe_learner_loss_{kind}"
    if math.isfinite(start[learner]) and math.isfinite(end[learner]):
        sentence = f"the learner's mean loss on {kind} probes {_moved(start[learner], end[learner], 3)}"
        reference = end[f"probe_reference_loss_{kind}"]
        if math.isfinite(reference):
            sentence += f", the reference's is {reference:.3f}"
        parts.append(sentence)
    if math.isfinite(start["probe_spearman"]) and math.isfinite(end["probe_spearman"]):
        parts.append(
            "the rank correlation between learnability and minus the reference loss "
            + _moved(start["probe_spearman"], end["probe_spearman"], 2)
        )
    scale = f"the learner's logit scale {_moved(start['learner_scale'], end['learner_scale'], 1)}"
    if math.isfinite(end["reference_scale"]):
        scale += f" (the reference's: {end['reference_scale']:.1f})"
    parts.append(scale)
    return "; ".join(parts) + "."


def paragraph(mechanism: Mechanism) -> str:
    """The summary the page prints: per configuration, the noise kind whose share of the picks changed
    most between the first and the last eighth of the budget, the learner's (and reference's) mean
    probe loss on that kind from the first to the last evaluation, the rank correlation and the
    logit scale. Numbers only, and the comparisons they decide."""
    seeds = sorted(set(mechanism.seeds.values()))
    lead = "From the run files (means over seeds; n = " + ", ".join(map(str, seeds)) + " per configuration): "
    sentences = [s for key in mechanism.keys if (s := _configuration_sentence(mechanism, key)) is not None]
    return lead + " ".join(sentences)


# -- tables ----------------------------------------------------------------------------------------


def mix_table(mechanism: Mechanism) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: per configuration and kind, its share of the picks in each eighth; a last
    line per configuration with repeated captions per selected batch."""
    headers = ["configuration", "kind", *(f"eighth {e}" for e in range(1, EIGHTHS + 1)), "super-batches"]
    rows = []
    for key in mechanism.keys:
        mix = mechanism.mix[mechanism.mix["config_key"] == key]
        for kind in NOISE_KINDS:
            shares = mix[mix["kind"] == kind].sort_values("eighth")
            rows.append(
                [mechanism.labels[key], kind]
                + [_cell(v, percent=True) for v in shares["selected"]]
                + [_cell(float(shares["pool"].mean()), percent=True)]
            )
        repeats = mechanism.repeats[mechanism.repeats["config_key"] == key].sort_values("eighth")
        rows.append(
            [mechanism.labels[key], "repeats per batch"]
            + [_cell(v, digits=2) for v in repeats["selected_repeats_per_batch"]]
            + [_cell(float(repeats["super_repeats_per_batch"].mean()), digits=2)]
        )
    return headers, rows


def probe_table(mechanism: Mechanism) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: per configuration and kind, the learner's loss, the reference's and the
    learnability at the first and the last evaluation."""
    headers = [
        "configuration",
        "kind",
        "probes",
        "learner loss, start",
        "learner loss, end",
        "reference loss",
        "learnability, start",
        "learnability, end",
    ]
    rows = []
    for key in mechanism.keys:
        probe = mechanism.probe[mechanism.probe["config_key"] == key].sort_values("evaluation")
        start, end = probe.iloc[0], probe.iloc[-1]
        for kind in NOISE_KINDS:
            rows.append(
                [
                    mechanism.labels[key],
                    kind,
                    _cell(end[f"probe_{kind}"], digits=0),
                    _cell(start[f"probe_learner_loss_{kind}"]),
                    _cell(end[f"probe_learner_loss_{kind}"]),
                    _cell(end[f"probe_reference_loss_{kind}"]),
                    _cell(start[f"probe_learnability_{kind}"]),
                    _cell(end[f"probe_learnability_{kind}"]),
                ]
            )
    return headers, rows


def curves_table(mechanism: Mechanism) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: per configuration, the rank correlation and the logit scale and bias at the
    first and the last evaluation, and the reference's."""
    headers = [
        "configuration",
        "rank correlation, start",
        "rank correlation, end",
        "learner scale, start",
        "learner scale, end",
        "learner bias, start",
        "learner bias, end",
        "reference scale",
        "reference bias",
    ]
    rows = []
    for key in mechanism.keys:
        probe = mechanism.probe[mechanism.probe["config_key"] == key].sort_values("evaluation")
        start, end = probe.iloc[0], probe.iloc[-1]
        rows.append(
            [
                mechanism.labels[key],
                _cell(start["probe_spearman"]),
                _cell(end["probe_spearman"]),
                _cell(start["learner_scale"], digits=2),
                _cell(end["learner_scale"], digits=2),
                _cell(start["learner_bias"], digits=2),
                _cell(end["learner_bias"], digits=2),
                _cell(end["reference_scale"], digits=2),
                _cell(end["reference_bias"], digits=2),
            ]
        )
    return headers, rows


def _cell(value: float, *, digits: int = 3, percent: bool = False) -> str:
    value = float(value)
    if not math.isfinite(value):
        return "–"
    return f"{100 * value:.0f}%" if percent else f"{value:.{digits}f}"


TABLES = (
    (
        "Selection by eighth of the budget",
        "Share of each noise kind among the examples selected in each eighth of the budget, pooled over "
        "seeds; the last column is its share of the super-batches over the whole run. Repeats: captions "
        "repeated within the selected batch, per step.",
        mix_table,
    ),
    (
        "Probe losses by noise kind",
        "Mean per-example loss L_ii (each pair's sigmoid loss alone) on the fixed probe set, at the first "
        "evaluation (untrained learner) and the last; learnability = learner − reference. '–': the run "
        "has no reference.",
        probe_table,
    ),
    (
        "Rank correlation and logit scales",
        "Spearman's rank correlation over the probe set between learnability and minus the reference "
        "loss (1: learnability orders the probes as the reference alone would), and the logit scale "
        "and bias of the learner and of the reference.",
        curves_table,
    ),
)


# -- figures ---------------------------------------------------------------------------------------


def draw_mechanism(mechanism: Mechanism, directory: Path) -> list[FigureFile]:
    """Write the mechanism figures into ``directory`` and return them with their captions."""
    directory.mkdir(parents=True, exist_ok=True)
    files = [
        FigureFile(
            directory / "mechanism_selection.png",
            "Selection by eighth of the budget",
            "For each configuration, the noise kinds of the examples it selected in each eighth of its "
            "budget (pooled over seeds), and repeated captions per selected batch (black line, right axis).",
        ),
        FigureFile(
            directory / "mechanism_learnability.png",
            "Probe losses by noise kind over training",
            "On the fixed probe set, per noise kind: the learnability (learner − reference mean loss, "
            "solid) and the learner's mean loss (dotted) against the fraction of the budget spent; the "
            "reference's mean loss is the grey dashed line. Means over seeds.",
        ),
        FigureFile(
            directory / "mechanism_rank_scale.png",
            "Rank correlation and logit scale over training",
            "Left: Spearman's rank correlation over the probe set between learnability and minus the "
            "reference loss. Right: the learner's logit scale; the reference's as a dashed line. Against "
            "the fraction of the budget spent; means over seeds.",
        ),
    ]
    _mix_figure(mechanism, files[0].path)
    _learnability_figure(mechanism, files[1].path)
    _rank_scale_figure(mechanism, files[2].path)
    return files


def _mix_figure(mechanism: Mechanism, path: Path) -> None:
    keys = mechanism.keys
    columns = min(3, len(keys))
    lines = math.ceil(len(keys) / columns)
    figure = Figure(figsize=(4.2 * columns, 2.9 * lines + 0.6))
    axes = np.atleast_1d(figure.subplots(lines, columns, squeeze=False).ravel())
    eighths = np.arange(1, EIGHTHS + 1)
    for ax, key in zip(axes, keys, strict=False):
        mix = mechanism.mix[mechanism.mix["config_key"] == key]
        bottom = np.zeros(EIGHTHS)
        for kind in NOISE_KINDS:
            share = np.nan_to_num(mix[mix["kind"] == kind].sort_values("eighth")["selected"].to_numpy(float))
            ax.bar(eighths, share, bottom=bottom, color=_NOISE_COLOURS[kind], label=kind, width=0.85)
            bottom += share
        repeats = mechanism.repeats[mechanism.repeats["config_key"] == key].sort_values("eighth")
        twin = ax.twinx()
        twin.plot(eighths, repeats["selected_repeats_per_batch"], color="black", marker=".", linewidth=1)
        twin.set_ylim(bottom=0)
        twin.set_ylabel("repeats per batch", fontsize=7)
        twin.tick_params(labelsize=7)
        ax.set_ylim(0, 1)
        ax.set_xticks(eighths)
        ax.set_title(mechanism.labels[key], fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    axes[0].legend(
        loc="lower left", bbox_to_anchor=(0, 1.12), ncols=len(NOISE_KINDS), fontsize=7, frameon=False
    )
    figure.supxlabel("eighth of the budget", fontsize=8)
    figure.supylabel("share of the selected examples", fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def _learnability_figure(mechanism: Mechanism, path: Path) -> None:
    figure = Figure(figsize=(4.0 * len(NOISE_KINDS), 3.6))
    axes = figure.subplots(1, len(NOISE_KINDS), sharey=False)
    colours = dict(zip(mechanism.keys, _colours(len(mechanism.keys)), strict=True))
    for ax, kind in zip(axes, NOISE_KINDS, strict=True):
        reference_drawn = False
        for key in mechanism.keys:
            probe = mechanism.probe[mechanism.probe["config_key"] == key].sort_values("evaluation")
            x = probe["progress"]
            ax.plot(x, probe[f"probe_learnability_{kind}"], color=colours[key], label=mechanism.labels[key])
            ax.plot(x, probe[f"probe_learner_loss_{kind}"], color=colours[key], linestyle=":", linewidth=1)
            reference = probe[f"probe_reference_loss_{kind}"]
            if not reference_drawn and reference.notna().any():
                ax.axhline(float(reference.mean()), color="grey", linestyle="--", linewidth=1)
                reference_drawn = True
        ax.set_title(f"{kind} probes", fontsize=9)
        ax.set_xlabel("fraction of the budget spent", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("mean loss / learnability", fontsize=8)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    _save(figure, path)


def _rank_scale_figure(mechanism: Mechanism, path: Path) -> None:
    figure = Figure(figsize=(11, 3.8))
    rank, scale = figure.subplots(1, 2)
    colours = dict(zip(mechanism.keys, _colours(len(mechanism.keys)), strict=True))
    reference_scales: set[float] = set()
    for key in mechanism.keys:
        probe = mechanism.probe[mechanism.probe["config_key"] == key].sort_values("evaluation")
        if probe["probe_spearman"].notna().any():
            rank.plot(probe["progress"], probe["probe_spearman"], color=colours[key], marker=".")
        scale.plot(probe["progress"], probe["learner_scale"], color=colours[key], label=mechanism.labels[key])
        reference_scales.update(float(v) for v in probe["reference_scale"].dropna().unique())
    for value in sorted(reference_scales):
        scale.axhline(value, color="grey", linestyle="--", linewidth=1)
    rank.set_ylabel("rank correlation", fontsize=8)
    scale.set_ylabel("logit scale", fontsize=8)
    for ax in (rank, scale):
        ax.set_xlabel("fraction of the budget spent", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    scale.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    _save(figure, path)


# -- the section of the page -----------------------------------------------------------------------


@dataclass(frozen=True)
class MechanismSection:
    """What the page shows: the paragraph, the tables and the figures (already written)."""

    mechanism: Mechanism
    figures: list[FigureFile]

    def markdown(self) -> list[str]:
        lines = ["## Mechanism check", "", paragraph(self.mechanism), ""]
        for heading, intro, table in TABLES:
            headers, rows = table(self.mechanism)
            lines += [f"### {heading}", "", intro, ""]
            lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
            lines.append("")
        for figure in self.figures:
            lines += [f"![{figure.title}](figures/{figure.path.name})", "", figure.caption, ""]
        return lines

    def html(self) -> str:
        """The section as HTML, its figures embedded as PNG (the page makes no network requests)."""
        e = html.escape
        parts = [f'<h2 id="mechanism">Mechanism check</h2><p>{e(paragraph(self.mechanism))}</p>']
        for heading, intro, table in TABLES:
            headers, rows = table(self.mechanism)
            head = "".join(f'<th scope="col">{e(h)}</th>' for h in headers)
            body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
            parts.append(
                f"<h3>{e(heading)}</h3><p>{e(intro)}</p>"
                f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
            )
        for figure in self.figures:
            data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{e(figure.title)}">'
                f"<figcaption><strong>{e(figure.title)}.</strong> {e(figure.caption)}</figcaption></figure>"
            )
        return "\n".join(parts)

    def csv(self) -> pd.DataFrame:
        """The numbers in long form (mechanism.csv): the mix and repeats per eighth, the probe curves."""
        labels = pd.Series(self.mechanism.labels, name="configuration")
        mix = self.mechanism.mix.assign(table="selection_by_eighth")
        repeats = self.mechanism.repeats.assign(table="repeats_by_eighth")
        probe = self.mechanism.probe.assign(table="probe")
        frame = pd.concat([mix, repeats, probe], ignore_index=True)
        return frame.join(labels, on="config_key")


def mechanism_section(board: Leaderboard, figures_dir: Path) -> MechanismSection | None:
    """Build the mechanism check of ``board`` and draw its figures into ``figures_dir``; ``None`` when
    its rows predate the check."""
    mechanism = build_mechanism(board)
    if mechanism is None:
        return None
    return MechanismSection(mechanism, draw_mechanism(mechanism, figures_dir))
