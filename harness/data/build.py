"""Building a built-in dataset: clean samples from a *source*, noise on the raw pool, shards,
tokenizer and manifest, written to a temporary directory and moved into place when complete.

Every sample is a pure function of ``(seed, split, index)``: the source draws it with a generator
seeded by those three, and the noise kind of each raw sample comes from a seeded assignment with
exact counts. Shards are written reproducibly, so the same seed and options give byte-identical
shards (the manifest's sha256s match).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harness.data.dataset import SPLITS, Dataset, new_manifest, open_dataset, write_manifest
from harness.data.errors import DataError
from harness.data.noise import (
    NO_NOISE,
    NoiseConfig,
    assign_kinds,
    copy_groups,
    near_copy,
    noise_image,
    uninformative_caption,
)
from harness.data.samples import ImageSpec, encode_npy
from harness.data.shards import ShardIndex, ShardWriter, save_index
from harness.data.tokenizer import DEFAULT_MIN_FREQUENCY, DEFAULT_VOCAB_SIZE, BpeTokenizer
from harness.staging import staged_directory

SPLIT_CODES = {"curated": 1, "raw": 2, "val": 3, "eval": 4}
TRAINING_SPLITS = ("curated", "raw")  # the tokenizer is trained on their captions (and the prompts)
# Sizes for tests and smoke runs (`jestbench data build shapes --tiny`): builds in about a second.
TINY_SIZES = {"curated_size": 96, "raw_size": 384, "val_size": 48, "eval_size": 48, "shard_size": 64}
_NOISE_STREAM = 1
_KINDS_STREAM = 2
_SOURCES_STREAM = 3


def sample_rng(seed: int, split: str, index: int, stream: int = 0) -> np.random.Generator:
    """The generator for one sample: seeded by (seed, split, index), so that samples do not
    depend on how many were made before them or on how shards are cut."""
    return np.random.default_rng([seed, SPLIT_CODES[split], index, stream])


@dataclass(frozen=True)
class CleanSample:
    """An image (uint8 ``H x W x C``) with its true caption, label and attributes."""

    image: np.ndarray
    caption: str
    label: int
    attributes: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    """Where a built-in dataset's clean samples come from."""

    image: ImageSpec
    class_names: list[str]
    zero_shot_templates: list[str]

    def sample(self, split: str, index: int) -> CleanSample:
        """Clean sample ``index`` of ``split``: a pure function of the seed, split and index."""
        ...

    def caption(self, split: str, index: int) -> str:
        """The caption of :meth:`sample` without making its image (for mismatched captions)."""
        ...


@dataclass(frozen=True)
class BuildConfig:
    """What a built-in dataset is built with. Sizes are samples per split."""

    seed: int = 0
    curated_size: int = 4000
    raw_size: int = 40000
    val_size: int = 2000
    eval_size: int = 2000
    shard_size: int = 1000
    image_size: int = 32
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    context_length: int | None = (
        None  # None: fit the longest training caption or prompt (multiple of 8, <= 64)
    )
    vocab_size: int = DEFAULT_VOCAB_SIZE  # the tokenizer's at most
    min_frequency: int = DEFAULT_MIN_FREQUENCY  # pieces merge only if the pair occurs this often
    source: str | None = None  # where a dataset read from files finds them

    def __post_init__(self) -> None:
        for name in (
            "curated_size",
            "raw_size",
            "val_size",
            "eval_size",
            "shard_size",
            "image_size",
            "min_frequency",
        ):
            if getattr(self, name) < 1:
                raise DataError(f"{name.replace('_', '-')} must be >= 1; got {getattr(self, name)}")
        if self.context_length is not None and self.context_length < 1:
            raise DataError(f"context-length must be >= 1; got {self.context_length}")

    def size(self, split: str) -> int:
        return int(getattr(self, f"{split}_size"))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "noise": self.noise.to_dict()}


@dataclass(frozen=True)
class Builtin:
    """A built-in dataset: its default config and how to make its source from a config."""

    name: str
    defaults: BuildConfig
    make_source: Callable[[BuildConfig], Source]


def _builtins() -> dict[str, Builtin]:
    from harness.data.fashion_mnist import FASHION_MNIST
    from harness.data.shapes import SHAPES, SHAPES_V1

    return {b.name: b for b in (SHAPES, SHAPES_V1, FASHION_MNIST)}


def builtin_names() -> tuple[str, ...]:
    return tuple(_builtins())


def get_builtin(name: str) -> Builtin:
    builtins = _builtins()
    if name not in builtins:
        raise DataError(f"no built-in dataset {name!r}; choose one of {', '.join(builtins)}")
    return builtins[name]


def build_dataset(name: str, out: str | os.PathLike[str], *, force: bool = False, **options: Any) -> Dataset:
    """Build built-in dataset ``name`` into ``out``; ``options`` override its default
    :class:`BuildConfig` fields (``seed``, ``raw_size``, ``noise``, ...)."""
    builtin = get_builtin(name)
    unknown = set(options) - {f.name for f in dataclasses.fields(BuildConfig)}
    if unknown:
        raise DataError(f"unknown build option(s) {', '.join(sorted(unknown))} for {name}")
    config = dataclasses.replace(builtin.defaults, **options)
    return _build(builtin, Path(out), config, force=force)


def _build(builtin: Builtin, out: Path, config: BuildConfig, *, force: bool) -> Dataset:
    from harness.progress import Reporter, stage

    with staging_directory(out, force=force) as tmp:
        source = builtin.make_source(config)
        redundancy = _redundancy(source, config)
        total = sum(config.size(split) for split in SPLITS)
        captions: dict[str, list[str]] = {}
        splits: dict[str, dict[str, Any]] = {}
        shards: dict[str, list[tuple[Path, ShardIndex]]] = {}
        stage(f"building the {builtin.name} dataset ({total} samples) in {out}")
        with Reporter(total, f"build {builtin.name}", "sample") as bar:
            for split in SPLITS:
                n = config.size(split)
                kinds = _kinds(config, split)
                writer = ShardWriter(tmp / split, split, config.shard_size)
                captions[split] = []
                for number, kind in enumerate(kinds):
                    sample = _noisy(source, split, n, number, kind, redundancy, config.seed)
                    writer.write(f"{split}-{number:07d}", _fields(sample, kind, source.class_names))
                    captions[split].append(sample.caption)
                    bar.update()
                shards[split] = writer.close()
                splits[split] = {"count": n, "noise": dict(Counter(kinds))}
        training = [c for split in TRAINING_SPLITS for c in captions[split]]
        prompts = zero_shot_prompts(source.class_names, source.zero_shot_templates)
        tokenizer = BpeTokenizer.train(
            [*training, *source.class_names, *prompts],
            vocab_size=config.vocab_size,
            min_frequency=config.min_frequency,
        )
        context_length = config.context_length or fit_context_length(tokenizer, [*training, *prompts])
        for split in SPLITS:
            for _, index in shards[split]:
                save_index(tmp / "index" / f"{index.sha256}.json", index)
            splits[split]["shards"] = [
                {"path": str(path.relative_to(tmp)), "count": len(index.samples), "sha256": index.sha256}
                for path, index in shards[split]
            ]
            splits[split]["truncated_captions"] = sum(
                tokenizer.token_count(c) > context_length for c in captions[split]
            )
        tokenizer.save(tmp / "tokenizer.json")
        write_manifest(
            tmp,
            new_manifest(
                name=builtin.name,
                builder=builtin.name,
                config=config.to_dict(),
                image=source.image,
                context_length=context_length,
                class_names=list(source.class_names),
                zero_shot_templates=list(source.zero_shot_templates),
                labelled=True,
                tokenizer=tokenizer,
                splits=splits,
            ),
        )
    return open_dataset(out)


def _fields(sample: CleanSample, kind: str, class_names: list[str]) -> dict[str, bytes]:
    """A sample's tar members: raw image, caption, and metadata with its noise kind."""
    meta: dict[str, Any] = {
        "label": sample.label if sample.label >= 0 else None,
        "noise": kind,
        **sample.attributes,
    }
    if sample.label >= 0:
        meta["class_name"] = class_names[sample.label]
    return {
        "npy": encode_npy(sample.image),
        "txt": sample.caption.encode(),
        "json": json.dumps(meta, sort_keys=True).encode(),
    }


def _kinds(config: BuildConfig, split: str) -> list[str]:
    """The noise kind of each sample of ``split`` (the raw pool's noise; the other splits are clean)."""
    noise = config.noise if split == "raw" else NO_NOISE
    return assign_kinds(config.size(split), noise, sample_rng(config.seed, split, 0, _KINDS_STREAM))


@dataclass(frozen=True)
class _Redundancy:
    """The images the raw pool's redundant samples are near-copies of, and which one each copies:
    its group's (``group_of``), or, with ``group_of`` None (``shapes-v1``), one drawn at random."""

    images: list[CleanSample]
    group_of: dict[int, int] | None

    def image_of(self, index: int, rng: np.random.Generator) -> int:
        if self.group_of is None:
            return int(rng.integers(len(self.images)))
        return self.group_of[index]


def _redundancy(source: Source, config: BuildConfig) -> _Redundancy:
    """Groups of ``redundant_copies`` redundant samples, each group copying the clean sample at its
    first position; or (``redundant_sources``) a few raw-pool images that every copy draws from."""
    rng = sample_rng(config.seed, "raw", 0, _SOURCES_STREAM)
    scheme, number = config.noise.redundant_scheme
    if scheme == "sources":
        chosen = rng.choice(config.raw_size, size=min(number, config.raw_size), replace=False)
        return _Redundancy([source.sample("raw", int(i)) for i in chosen], None)
    positions = [i for i, kind in enumerate(_kinds(config, "raw")) if kind == "redundant"]
    groups = copy_groups(positions, number, rng)
    group_of = {position: g for g, group in enumerate(groups) for position in group}
    return _Redundancy([source.sample("raw", group[0]) for group in groups], group_of)


def _noisy(
    source: Source, split: str, n: int, index: int, kind: str, redundancy: _Redundancy, seed: int
) -> CleanSample:
    """Sample ``index`` of the ``n`` of ``split`` with noise ``kind`` applied (noise.py describes the kinds)."""
    rng = sample_rng(seed, split, index, _NOISE_STREAM)
    if kind == "redundant":
        original = redundancy.image_of(index, rng)
        copied = redundancy.images[original]
        attributes = {**copied.attributes, "copy_of": original}
        return CleanSample(near_copy(copied.image, rng), copied.caption, copied.label, attributes)
    if kind == "unlearnable":
        shape = (source.image.size, source.image.size, source.image.channels)
        return CleanSample(noise_image(shape, rng), _other_caption(source, split, n, index, "", rng), -1)
    sample = source.sample(split, index)
    if kind == "mismatched":
        caption = _other_caption(source, split, n, index, sample.caption, rng)
        return dataclasses.replace(sample, caption=caption)
    if kind == "uninformative":
        return dataclasses.replace(sample, caption=uninformative_caption(rng))
    return sample


def _other_caption(
    source: Source, split: str, n: int, index: int, avoid: str, rng: np.random.Generator
) -> str:
    """The caption of another random sample of the ``n`` in the pool, one that differs from ``avoid``."""
    for _ in range(100):
        other = int(rng.integers(n))
        if other != index and (caption := source.caption(split, other)) != avoid:
            return caption
    raise DataError(f"the {split} pool has too few distinct captions to mismatch; make it larger")


def zero_shot_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every class name in every template: the texts zero-shot classification encodes."""
    return [template.format(name) for name in class_names for template in templates]


def fit_context_length(tokenizer: BpeTokenizer, texts: list[str]) -> int:
    """The longest text's token count rounded up to a multiple of 8, between 8 and 64."""
    longest = max((tokenizer.token_count(c) for c in texts), default=1)
    return int(min(64, max(8, -(-longest // 8) * 8)))


def staging_directory(out: Path, *, force: bool) -> contextlib.AbstractContextManager[Path]:
    """Build into a sibling temporary directory and move it to ``out`` only when complete, so
    that a reader (or a concurrent test worker) never sees half a dataset."""
    out = out.resolve()
    if out.exists() and any(out.iterdir()) and not force:
        raise DataError(f"{out} exists and is not empty; pass --force to replace it")
    return staged_directory(out, replaceable=lambda _: True, what="a dataset")
