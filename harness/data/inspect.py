"""``jestbench data inspect``: what a dataset holds, in text and as a contact sheet (PNG), and how
often a batch drawn from it holds the same caption, or copies of the same image, twice."""

from __future__ import annotations

import json
import math
import tarfile
import textwrap
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.dataset import Dataset
from harness.data.noise import NOISE_KINDS
from harness.data.pool import Samples, SplitPool, open_pool
from harness.data.samples import UNKNOWN_NOISE

_PROBE = 512  # samples read to find examples of each noise kind


def describe(dataset: Dataset, examples: int = 3) -> str:
    """Splits, counts, fields, noise breakdown and example captions, as text."""
    m = dataset.manifest
    names = dataset.class_names
    lines = [
        f"dataset {dataset.name} at {dataset.root} (built by {m['builder']}, jestbench {m['software']['jestbench']})",
        f"images {dataset.image_size}x{dataset.image_size}x{dataset.channels}; captions as {dataset.context_length} "
        f"byte-level BPE ids (vocabulary {dataset.tokenizer.vocab_size}, tokenizer {dataset.tokenizer.hash})",
        "classes: "
        + (", ".join(names) if names else "labelled, unnamed" if dataset.has_labels else "none (no labels)"),
        *([f"zero-shot prompts: {' | '.join(dataset.zero_shot_templates)}"] if names else []),
        "",
        f"{'split':<8} {'samples':>8} {'shards':>6}  {'cut':>5}  noise",
    ]
    for split in dataset.splits:
        entry = m["splits"][split]
        count = dataset.split_size(split)
        noise = ", ".join(
            f"{kind} {n} ({n / max(count, 1):.0%})"
            for kind, n in sorted(dataset.noise_counts(split).items(), key=_kind_order)
        )
        lines.append(
            f"{split:<8} {count:>8} {len(entry['shards']):>6}  {entry.get('truncated_captions', 0):>5}  {noise}"
        )
    lines.append("(cut: captions longer than the context length)")
    if "raw" in dataset.splits:
        lines += ["", *batch_statistics(dataset).lines()]
    for split in dataset.splits:
        pool = open_pool(dataset, split, "skip")
        lines += ["", f"{split}: fields {' '.join(_fields(pool))}"]
        if pool.left_out.anything:
            lines.append(f"  left out: {pool.left_out.describe()}")
        samples = pool.read(np.arange(min(examples, len(pool))))
        lines += [
            f"  [{noise}] {caption}" for noise, caption in zip(samples.noise, samples.captions, strict=True)
        ]
        pool.close()
    return "\n".join(lines)


def _kind_order(item: tuple[str, int]) -> int:
    return NOISE_KINDS.index(item[0]) if item[0] in NOISE_KINDS else len(NOISE_KINDS)


def _fields(pool: SplitPool) -> list[str]:
    """The members of the split's first sample, as ``.ext`` (what the shards hold, read or not)."""
    from webdataset.tariterators import base_plus_ext

    names: list[tuple[str, str]] = []
    try:
        with tarfile.open(pool.shard_paths[0]) as tar:
            for member in tar:
                key, extension = base_plus_ext(member.name)
                if names and key != names[0][0]:
                    break
                names.append((key, extension))
    except (OSError, tarfile.TarError, IndexError):
        return ["(unreadable)"]
    return [f".{extension}" for _, extension in names]


def pick_examples(pool: SplitPool, per_kind: int, seed: int = 0) -> Samples:
    """Up to ``per_kind`` samples of each noise kind among a seeded probe of the pool."""
    probe = np.random.default_rng(seed).permutation(len(pool))[:_PROBE]
    samples = pool.read(probe)
    chosen: list[int] = []
    for kind in (*NOISE_KINDS, UNKNOWN_NOISE):
        chosen += [i for i, noise in enumerate(samples.noise) if noise == kind][:per_kind]
    return pool.read(probe[chosen])


def write_contact_sheet(dataset: Dataset, path: Path, split: str = "raw", per_kind: int = 6) -> Path:
    """A grid of samples of ``split``, one row per noise kind, each with its caption and kind."""
    from matplotlib.figure import Figure

    pool = open_pool(dataset, split, "skip")
    samples = pick_examples(pool, per_kind)
    pool.close()
    kinds = list(dict.fromkeys(samples.noise))
    rows = [[i for i, noise in enumerate(samples.noise) if noise == kind] for kind in kinds]
    columns = max(len(row) for row in rows)
    figure = Figure(figsize=(1.9 * columns, 2.5 * len(rows) + 0.3), dpi=110)
    figure.suptitle(f"{dataset.name}: {split} split, by noise kind", fontsize=10)
    for r, row in enumerate(rows):
        for c, i in enumerate(row):
            axes = figure.add_subplot(len(rows), columns, r * columns + c + 1)
            image = samples.images[i].permute(1, 2, 0).numpy()
            axes.imshow(
                image[:, :, 0] if image.shape[2] == 1 else image,
                cmap="gray",
                vmin=0,
                vmax=255,
                interpolation="nearest",
            )
            axes.set_xticks([])
            axes.set_yticks([])
            caption = textwrap.fill(samples.captions[i], 24, max_lines=3, placeholder=" ...")
            axes.set_title(f"{samples.noise[i]}\n{caption}", fontsize=6.5, loc="left")
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (2.5 * len(rows) + 0.3)))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


# Batches the statistics describe: the suites' b = 128 at f = 0.8.
BATCH_SIZE = 128
SUPER_BATCH_SIZE = 640
# A sub-batch holding this many times the pool's share of redundant samples (docs/DATA.md, "Data settings").
OVER_PICKS = (2.0, 3.0)


@dataclass(frozen=True)
class BatchStatistics:
    """Expected repeats in a batch of ``batch_size`` drawn uniformly (without replacement) from a
    split, and pairs of copies of one image in sub-batches that over-pick redundant samples.

    A repeated caption is one equal to an earlier caption of the batch: an in-batch false negative
    for SigLIP's loss. ``same_image_pairs`` maps a description of the sub-batch to the expected
    pairs of redundant samples of one group (``copy_of``) in it: C(r, 2) (sum over groups of n(n - 1))
    / (R (R - 1)) for r of the R redundant samples."""

    split: str
    batch_size: int
    super_batch_size: int
    samples: int
    distinct_captions: int
    repeated_captions: float
    clean_samples: int
    clean_in_batch: float
    clean_repeated_captions: float
    clean_batch_repeated_captions: float
    redundant: int
    groups: int
    max_copies: int
    same_image_pairs: dict[str, float]

    def lines(self) -> list[str]:
        b = self.batch_size
        pairs = "; ".join(f"{what}: {value:.2f}" for what, value in self.same_image_pairs.items())
        return [
            f"{self.split}: batches of {b} drawn uniformly ({self.samples} samples, "
            f"{self.distinct_captions} distinct captions)",
            f"  repeated captions per batch: {self.repeated_captions:.2f}; among its "
            f"{self.clean_in_batch:.1f} clean samples: {self.clean_repeated_captions:.3f}; "
            f"in {b} clean samples: {self.clean_batch_repeated_captions:.2f}",
            f"  redundant: {self.redundant} copies of {self.groups} images (at most {self.max_copies} of one)",
            f"  pairs of copies of one image per batch of {b} ({pairs})",
        ]


def batch_statistics(
    dataset: Dataset,
    split: str = "raw",
    batch_size: int = BATCH_SIZE,
    super_batch_size: int = SUPER_BATCH_SIZE,
) -> BatchStatistics:
    """:class:`BatchStatistics` of ``split``, from every sample's caption, noise kind and ``copy_of``."""
    captions, kinds, groups = _texts(dataset, split)
    n = len(captions)
    b = min(batch_size, n)
    clean = Counter(c for c, kind in zip(captions, kinds, strict=True) if kind == "clean")
    clean_count = sum(clean.values())
    copies = Counter(
        g for g, kind in zip(groups, kinds, strict=True) if kind == "redundant" and g is not None
    )
    redundant = sum(copies.values())
    clash = sum(c * (c - 1) for c in copies.values())
    pairs = {"uniform": _pairs(b, clash, n)}
    share = redundant / n if n else 0.0
    for times in OVER_PICKS:
        pairs[f"{times:g}x the pool's redundant share"] = _pairs(
            min(times * share * b, b, redundant), clash, redundant
        )
    pairs[f"all redundant of a super-batch of {super_batch_size}"] = _pairs(
        min(share * super_batch_size, b, redundant), clash, redundant
    )
    return BatchStatistics(
        split=split,
        batch_size=b,
        super_batch_size=super_batch_size,
        samples=n,
        distinct_captions=len(set(captions)),
        repeated_captions=b - _expected_distinct(Counter(captions).values(), n, b),
        clean_samples=clean_count,
        clean_in_batch=b * clean_count / n if n else 0.0,
        clean_repeated_captions=b * clean_count / n - _expected_distinct(clean.values(), n, b) if n else 0.0,
        clean_batch_repeated_captions=(
            min(b, clean_count) - _expected_distinct(clean.values(), clean_count, min(b, clean_count))
        ),
        redundant=redundant,
        groups=len(copies),
        max_copies=max(copies.values(), default=0),
        same_image_pairs=pairs,
    )


def _expected_distinct(counts: Iterable[int], population: int, draws: int) -> float:
    """Expected distinct values among ``draws`` drawn without replacement from ``population`` items,
    ``counts`` being how many items hold each value: the sum of P(at least one is drawn)."""
    if draws <= 0:
        return 0.0
    log_all = math.lgamma(population + 1) - math.lgamma(population - draws + 1)

    def absent(count: int) -> float:  # C(population - count, draws) / C(population, draws)
        if population - count < draws:
            return 0.0
        return math.exp(
            math.lgamma(population - count + 1) - math.lgamma(population - count - draws + 1) - log_all
        )

    return sum(1.0 - absent(count) for count in counts)


def _pairs(draws: float, clash: int, population: int) -> float:
    """Expected pairs of one group among ``draws`` of ``population`` items, ``clash`` being the sum
    over groups of n(n - 1)."""
    if population < 2:
        return 0.0
    return draws * (draws - 1) / 2 * clash / (population * (population - 1))


def _texts(dataset: Dataset, split: str) -> tuple[list[str], list[str], list[int | None]]:
    """Every usable sample's caption, noise kind and ``copy_of`` (None where absent), read from the
    shards' ``txt`` and ``json`` members only."""
    pool = open_pool(dataset, split, "skip")
    usable = set(pool.keys)
    pool.close()
    captions, kinds, groups = [], [], []
    for shard in dataset.shards(split):
        fields: dict[str, dict[str, bytes]] = {}
        with tarfile.open(shard.path) as tar:
            for member in tar:
                key, _, extension = member.name.partition(".")
                if key in usable and extension in ("txt", "json") and (data := tar.extractfile(member)):
                    fields.setdefault(key, {})[extension] = data.read()
        for sample in fields.values():
            meta = json.loads(sample.get("json", b"{}"))
            captions.append(sample["txt"].decode("utf-8").strip())
            kinds.append(str(meta.get("noise", UNKNOWN_NOISE)))
            groups.append(meta.get("copy_of"))
    return captions, kinds, groups
