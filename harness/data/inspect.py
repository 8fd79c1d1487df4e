"""``jestbench data inspect``: what a dataset holds, in text and as a contact sheet (PNG)."""

from __future__ import annotations

import tarfile
import textwrap
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
