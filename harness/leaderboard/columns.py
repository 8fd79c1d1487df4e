"""The leaderboard's displayed tables: each column's header, its explanation and how a cell is shown.

The Markdown and the HTML page render the same columns from here, and both print every explanation,
so a reader never meets an unexplained number. leaderboard.csv keeps the raw values (docs/RESULTS.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from harness.data import RECORDED_NOISE_KINDS
from harness.leaderboard.stats import NOT_REACHED
from harness.leaderboard.table import strategy_label

Sort = float | str | None  # what a column sorts by; None (no value) sorts last


@dataclass(frozen=True)
class Cell:
    text: str
    sort: Sort


@dataclass(frozen=True)
class Column:
    """A displayed column: ``cell`` turns a leaderboard.csv row into its text and sort value."""

    header: str
    doc: str
    cell: Callable[[pd.Series], Cell]


def _missing(value: float) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: float, digits: int = 3) -> Cell:
    return Cell("n/a", None) if _missing(value) else Cell(f"{value:.{digits}f}", float(value))


def flops(value: float) -> Cell:
    """``1.20e10``: FLOPs span many orders of magnitude, so a fixed mantissa reads best."""
    if _missing(value):
        return Cell("n/a", None)
    if value == 0:
        return Cell("0", 0.0)
    mantissa, exponent = f"{value:.2e}".split("e")
    return Cell(f"{mantissa}e{int(exponent)}", float(value))


def percent(value: float) -> Cell:
    return Cell("n/a", None) if _missing(value) else Cell(f"{100 * value:.0f}%", float(value))


def _bound(value: float) -> str:
    if value == NOT_REACHED:
        return "n.r."
    return "at start" if math.isinf(value) else f"{value:.2f}"


def speedup_cell(row: pd.Series, column: str) -> Cell:
    """``2.00× [1.76, 2.14]``; "not reached" where the mean curve never gets to uniform's final score,
    "n.r." for an interval end where bootstrap samples do not; "at start" where the curve's first point
    (the untrained model) already reaches it, so uniform never improved on it; "no baseline" without
    uniform at f = 0."""
    value, low, high = row[column], row[f"{column}_low"], row[f"{column}_high"]
    if not row["baseline"]:
        return Cell("no baseline", None)
    interval = "" if _missing(low) else f" [{_bound(low)}, {_bound(high)}]"
    if _missing(value):
        return Cell(f"not reached{interval}", None)
    if math.isinf(value):  # the untrained model already scored as well as uniform's final one
        return Cell(f"at start{interval}", float("inf"))
    return Cell(f"{value:.2f}×{interval}", float(value))


def _f(row: pd.Series) -> Cell:
    asked, got = row["f_nominal"], row["f"]
    text = f"{got:.3g}" if math.isclose(asked, got, abs_tol=5e-4) else f"{got:.3g} (asked {asked:.3g})"
    return Cell(text, float(got))


def _interval(row: pd.Series) -> Cell:
    if row["n_seeds"] < 2:
        return Cell("none (n=1)", None)
    return Cell(
        f"[{row['score_low']:.3f}, {row['score_high']:.3f}]", float(row["score_high"] - row["score_low"])
    )


def _text(name: str) -> Callable[[pd.Series], Cell]:
    return lambda row: Cell(str(row[name]), str(row[name]))


def _number(name: str, digits: int = 3) -> Callable[[pd.Series], Cell]:
    return lambda row: number(row[name], digits)


def _flops(name: str) -> Callable[[pd.Series], Cell]:
    return lambda row: flops(row[name])


def _speedup(name: str) -> Callable[[pd.Series], Cell]:
    return lambda row: speedup_cell(row, name)


IDENTITY = (
    Column(
        "#",
        "Rank by final mean score on the eval split, best first.",
        lambda r: Cell(str(r["rank"]), float(r["rank"])),
    ),
    Column(
        "strategy",
        "The selection strategy (`jestbench strategies show NAME`); [tuned: STUDY] marks the best point of "
        "an Optuna study re-run at seeds the study never used, so its score is not the winning trial's luck.",
        lambda r: Cell(strategy_label(r), strategy_label(r)),
    ),
    Column(
        "parameters",
        "The strategy's own parameters, defaults included (uniform's two_resolution=true trains half of "
        "each batch at the coarse patch size, as Flexi-JEST does).",
        _text("params"),
    ),
    Column(
        "f",
        "Filter ratio f = 1 - b/B, as run (B = round(b / (1 - f)) makes it differ slightly from the f asked "
        "for, which is shown beside it when it does). f = 0: no selection.",
        _f,
    ),
    Column(
        "b / B",
        "Sub-batch trained on per step (b) / super-batch it was selected from (B).",
        lambda r: Cell(f"{r['b']} / {r['B']}", float(r["B"])),
    ),
)

# Shown only when they differ between configurations (the header states them otherwise).
VARYING = {
    "dataset": Column(
        "dataset", "Dataset the learner trained on (name; content id in leaderboard.csv).", _text("dataset")
    ),
    "preset": Column("preset", "Model preset of the learner.", _text("preset")),
    "budget_flops": Column("budget", "FLOP budget of each run.", _flops("budget_flops")),
    "other_settings": Column(
        "other settings",
        "Run settings, beyond the columns above, that differ between configurations (optimiser, "
        "evaluation cadence, reference mode).",
        _text("other_settings"),
    ),
}

SCORES = (
    Column("n", "Seeds averaged (runs of this configuration that completed).", _number("n_seeds", 0)),
    Column(
        "score",
        "Final mean score: the mean of the four metrics at the end of the budget, on the eval split, "
        "averaged over seeds. The ranking is by this column.",
        _number("score"),
    ),
    Column(
        "95% interval",
        "95% Student-t interval of the final mean score over seeds (mean ± t·sd/√n); none with one "
        "seed. Sorting by it sorts by its width.",
        _interval,
    ),
    Column(
        "zero-shot",
        "Zero-shot classification accuracy with class-name prompts (n/a without labels).",
        _number("zero_shot"),
    ),
    Column(
        "few-shot",
        "10-shot linear-probe accuracy (closed-form ridge on frozen image embeddings, shots from the "
        "curated split; n/a without labels).",
        _number("few_shot"),
    ),
    Column(
        "image→text R@1",
        "Image-to-text retrieval recall@1 (a hit is a caption equal to the image's own).",
        _number("i2t_recall"),
    ),
    Column("text→image R@1", "Text-to-image retrieval recall@1.", _number("t2i_recall")),
    Column(
        "examples ×",
        "The paper's speedup in examples: uniform's examples seen at the end of its budget divided by the "
        "examples this configuration's mean curve needed to reach uniform's final mean score (linear "
        "interpolation between evaluation points). Above 1: fewer examples than uniform. 95% bootstrap "
        "interval over seeds in brackets.",
        _speedup("speedup_examples"),
    ),
    Column(
        "FLOPs (spent) ×",
        "The same speedup in FLOPs spent during training (training + scoring + per-step reference), the "
        "budget's unit. Below 1: it needed more compute than uniform to reach uniform's score.",
        _speedup("speedup_flops_spent"),
    ),
    Column(
        "FLOPs (all-in) ×",
        "The same speedup in all-in FLOPs: spent FLOPs plus the one-off cost of training the reference "
        "model and embedding the pool with it.",
        _speedup("speedup_flops_all_in"),
    ),
)

COMPUTE = (
    Column(
        "examples seen",
        "Examples trained on by the end (b per step), mean over seeds.",
        _number("examples_seen", 0),
    ),
    Column("epochs", "Passes over the raw pool by examples scored (B per step).", _number("epochs", 2)),
    Column("steps", "Training steps that fitted in the budget.", _number("steps", 0)),
    Column(
        "training FLOPs",
        "FLOPs of the training steps (forward and backward, 3x forward) and the FlexiViT resize.",
        _flops("flops_training"),
    ),
    Column(
        "scoring FLOPs",
        "FLOPs of the learner's scoring pass over each super-batch and of the pairwise score products.",
        _flops("flops_scoring"),
    ),
    Column(
        "reference FLOPs",
        "FLOPs of running the reference per step (0 with cached reference embeddings).",
        _flops("flops_reference"),
    ),
    Column("spent FLOPs", "Training + scoring + reference: what the budget counts.", _flops("flops_spent")),
    Column(
        "one-off FLOPs",
        "Training the reference model and embedding the raw pool with it, once per suite.",
        _flops("flops_reference_one_off"),
    ),
    Column("all-in FLOPs", "Spent FLOPs plus the one-off reference cost.", _flops("flops_all_in")),
    Column(
        "wall time (s)",
        "Seconds the run took on its machine: not comparable across machines, not ranked on.",
        _number("wall_time", 0),
    ),
)


NOISE_MEANING = {
    "clean": "an image with its own caption",
    "redundant": "a near-copy of one of a few source images, with its caption: clean but adds little",
    "mismatched": "an image with another sample's caption",
    "uninformative": "an image with boilerplate alt text",
    "unlearnable": "pixel noise with a random caption",
    "unknown": "a sample whose data does not say its noise kind (your own data, unless its json does)",
}


def _composition(kind: str) -> Column:
    def cell(row: pd.Series) -> Cell:
        selected, pool = row[f"selected_{kind}"], row[f"super_{kind}"]
        return Cell(f"{percent(selected).text} / {percent(pool).text}", percent(selected).sort)

    return Column(
        f"{kind}: selected / pool",
        f"Share of {kind} examples ({NOISE_MEANING.get(kind, 'a noise kind of the dataset')}) among "
        "those the strategy selected / among the super-batches it selected from, over the whole run. "
        "Sorting uses the selected share.",
        cell,
    )


def pool_kinds(table: pd.DataFrame) -> list[str]:
    """The noise kinds some configuration's pool held (``unknown`` included), in a fixed order: a
    kind no pool held would only show 0% everywhere."""
    return [
        kind
        for kind in RECORDED_NOISE_KINDS
        if f"super_{kind}" in table and (table[f"super_{kind}"].fillna(0) > 0).any()
    ]


def selection(table: pd.DataFrame) -> tuple[Column, ...]:
    """The selection table's columns: a composition column per kind the pools held, then repeats."""
    return (*(_composition(kind) for kind in pool_kinds(table)), *REPEATS)


REPEATS = (
    Column(
        "repeats per batch",
        "Captions in a selected batch that repeat another caption of the same batch (in-batch false "
        "negatives for the contrastive loss), per step.",
        _number("selected_repeats_per_batch", 1),
    ),
    Column(
        "repeats per super-batch",
        "The same count over the whole super-batch, per step.",
        _number("super_repeats_per_batch", 1),
    ),
)


def identity(table: pd.DataFrame) -> tuple[Column, ...]:
    """The columns that name a configuration: the fixed ones, and those settings that vary."""
    return (*IDENTITY, *(column for name, column in VARYING.items() if table[name].astype(str).nunique() > 1))
