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
from harness.leaderboard.stats import TARGET_FRACTIONS
from harness.leaderboard.table import AXES, speedup_column, strategy_label

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


def speedup_cell(row: pd.Series, column: str) -> Cell:
    """``2.00×``; "not reached" where the mean curve never gets to the target, "at start" where its
    first point (the untrained model) already does and uniform's does not; "no baseline" without
    uniform at f = 0. No interval: docs/RESULTS.md says why."""
    value = row[column]
    if not row["baseline"]:
        return Cell("no baseline", None)
    if _missing(value):
        return Cell("not reached", None)
    if math.isinf(value):
        return Cell("at start", float("inf"))
    return Cell(f"{value:.2f}×", float(value))


def signed(value: float, digits: int = 3) -> str:
    """``+0.013`` / ``−0.004`` (a true minus sign)."""
    return f"{value:+.{digits}f}".replace("-", "−")


def _vs_uniform(row: pd.Series) -> Cell:
    """``+0.013 [−0.004, +0.030], not separable (Holm p = 0.41)``; the difference sorts."""
    verdict = row["vs_uniform_verdict"]
    if verdict in ("baseline", "no baseline"):
        return Cell(verdict, None)
    if verdict == "no test":
        return Cell("no test (one seed)", None)
    welch = "; Welch, seeds differ" if row["vs_uniform_test"] == "welch" else ""
    return Cell(
        f"{signed(row['vs_uniform_difference'])} [{signed(row['vs_uniform_low'])}, "
        f"{signed(row['vs_uniform_high'])}], {verdict} (Holm p = {row['vs_uniform_p_holm']:.2g}{welch})",
        float(row["vs_uniform_difference"]),
    )


def _reference_spread(row: pd.Series) -> Cell:
    references = int(row["references"])
    if references == 0:
        return Cell("no reference", None)
    if references == 1:
        return Cell("one reference", None)
    means = ", ".join(part.rsplit(": ", 1)[1] for part in str(row["reference_means"]).split("; "))
    return Cell(
        f"{references} references: {means}; range {row['reference_range']:.4f}, sd {row['reference_sd']:.4f}",
        float(row["reference_range"]),
    )


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


_AXIS_HEADERS = {
    "examples_seen": "examples",
    "flops_spent": "FLOPs (spent)",
    "flops_all_in": "FLOPs (all-in)",
    "flops_amortised": "FLOPs (amortised)",
}
_AXIS_DOCS = {
    "examples_seen": "The paper's speedup in examples, exactly 1 for uniform by construction: the examples at "
    "which uniform's mean curve (score against examples, averaged over seeds, linear between evaluation "
    "points) first reaches the target, divided by the examples at which this configuration's mean curve "
    "first does. The target is uniform's final mean score. Above 1: it needed fewer examples than "
    "uniform. A point estimate without interval; whether the final scores differ is the 'vs uniform' test.",
    "flops_spent": "The same speedup in FLOPs spent (training + scoring + per-step reference), the budget's "
    "unit. Below 1: it needed more compute than uniform to get to uniform's score.",
    "flops_all_in": "The same speedup in FLOPs spent plus the reference's one-off cost (training the "
    "reference and embedding the pool with it) charged in full to this run, as if no other run used "
    "that reference.",
    "flops_amortised": "The same speedup in FLOPs spent plus the reference's one-off cost divided among the "
    "runs of this leaderboard that use that reference ('reference runs' on the compute table): the suite "
    "trains the reference once.",
}


def _speedup_column(axis: str, fraction: float = 1.0) -> Column:
    name = speedup_column(axis, fraction)
    if fraction == 1:
        return Column(f"{_AXIS_HEADERS[axis]} ×", _AXIS_DOCS[axis], lambda row: speedup_cell(row, name))
    share = f"{100 * fraction:.0f}%"
    return Column(
        f"{_AXIS_HEADERS[axis]} × ({share})",
        f"The '{_AXIS_HEADERS[axis]} ×' speedup at a lower target: {share} of the way from uniform's "
        "first evaluation (the untrained model) to its final mean score. It credits a strategy that "
        "gets going faster than uniform even where it ends level with or below it.",
        lambda row: speedup_cell(row, name),
    )


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
        "vs uniform",
        "This configuration's final mean score minus uniform's, with its 95% t-interval, and whether the "
        "two are separable. Runs share seeds (a seed fixes the initial model and the data order), so the "
        "test is a paired t-test on the seed-by-seed differences of final scores; where the seed sets "
        "differ it is Welch's t-test on the two sets (marked). 'better' or 'worse' only where the "
        "p-value, Holm–Bonferroni-adjusted over every configuration this leaderboard compares with "
        "uniform, is below 0.05; 'not separable' otherwise. The interval is not adjusted, so it can "
        "miss 0 where the adjusted test still does not separate.",
        _vs_uniform,
    ),
    Column(
        "reference spread",
        "Where configurations identical but for their reference model were run, each reference's mean "
        "final score (its own row) and the range and standard deviation of those means: the part of "
        "a score owed to which reference was trained. 'one reference' when only one was run; 'no "
        "reference' for strategies that use none.",
        _reference_spread,
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
    *(_speedup_column(axis) for axis in AXES),
)
# The speedups at every target: uniform's final score, and the lower targets on the way to it.
SPEEDUPS = tuple(_speedup_column(axis, fraction) for axis in AXES for fraction in TARGET_FRACTIONS)

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
    Column("all-in FLOPs", "Spent FLOPs plus the one-off reference cost, in full.", _flops("flops_all_in")),
    Column(
        "reference runs",
        "Runs of this leaderboard that use this configuration's reference model (every seed of every "
        "configuration naming it); 0 without a reference.",
        _number("reference_runs", 0),
    ),
    Column(
        "amortised FLOPs",
        "Spent FLOPs plus the one-off reference cost divided by the reference runs.",
        _flops("flops_amortised"),
    ),
    Column(
        "left out",
        "Samples of the pool that reading it left out (damaged + lost, trained without under "
        "--on-bad-sample skip): the most any seed's run did; n/a for runs from before they were counted.",
        _number("left_out", 0),
    ),
    Column(
        "wall time (s)",
        "Seconds the run took on its machine: not comparable across machines, not ranked on.",
        _number("wall_time", 0),
    ),
)


NOISE_MEANING = {
    "clean": "an image with its own caption",
    "redundant": "a near-copy of a source image that other samples of the pool copy too, with its caption: clean but adds little once learnt",
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


REFERENCE = Column(
    "reference",
    "The reference model's id, shown when some configuration was run against more than one reference "
    "(empty: the strategy uses none).",
    _text("reference"),
)


def identity(table: pd.DataFrame) -> tuple[Column, ...]:
    """The columns that name a configuration: the fixed ones, those settings that vary, and the
    reference where configurations differ only in it."""
    varying = [column for name, column in VARYING.items() if table[name].astype(str).nunique() > 1]
    if table["references"].max() > 1:
        varying.append(REFERENCE)
    return (*IDENTITY, *varying)
