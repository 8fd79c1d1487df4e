"""A dataset directory and its manifest.

Layout (docs/DATA.md has the full format)::

    DIR/manifest.json     what the dataset is: config, image geometry, classes, tokenizer hash,
                          per split its shards (path, sample count, sha256) and noise counts
    DIR/tokenizer.json    the byte-level BPE tokenizer trained on the training captions and prompts
    DIR/{curated,raw,val,eval}/*.tar   WebDataset shards (bring-your-own datasets point at the
                          user's shards instead, by absolute path)
    DIR/index/            cached shard indexes, one per shard content (sha256)
    DIR/reference/        cached reference embeddings (see harness.data.reference_cache)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.data.errors import DataError, StaleDatasetError
from harness.data.samples import ImageSpec
from harness.data.tokenizer import BpeTokenizer

SPLITS = ("curated", "raw", "val", "eval")
DEFAULT_ZERO_SHOT_TEMPLATES = ("{}", "a photo of a {}", "a {}")
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
_FORMAT = "jestbench-dataset"
_VERSION = 2  # 2: byte-level BPE tokenizer, left-out counts, class labels apart from names


@dataclass(frozen=True)
class ShardRecord:
    """One shard as the manifest records it: where it is, how many samples and which bytes."""

    path: Path
    count: int
    sha256: str


@dataclass(frozen=True)
class LeftOut:
    """What reading a split left out, by cause (docs/DATA.md, "Nothing lost"): ``damaged`` samples
    (present but unusable), ``lost`` samples (counted by the manifest, not found: a missing or cut
    shard), ``empty_shards`` (holding no sample at all) and ``truncated_shards`` (ending early or
    unreadable to their end: when the manifest cannot say how many samples followed the cut, they are
    lost uncounted, so this count is the only trace of them). ``usable`` is the samples read."""

    usable: int = 0
    damaged: int = 0
    lost: int = 0
    empty_shards: int = 0
    truncated_shards: int = 0

    @property
    def samples(self) -> int:
        """Samples left out (damaged + lost)."""
        return self.damaged + self.lost

    @property
    def anything(self) -> bool:
        return bool(self.samples or self.empty_shards or self.truncated_shards)

    def as_dict(self) -> dict[str, int]:
        return {
            "usable": self.usable,
            "damaged": self.damaged,
            "lost": self.lost,
            "empty_shards": self.empty_shards,
            "truncated_shards": self.truncated_shards,
        }

    def describe(self) -> str:
        """``"1 damaged, 33 lost, 1 truncated shard"`` (``"nothing left out"`` when so)."""
        parts = [
            f"{n} {what}" + ("s" if n != 1 and what.endswith("shard") else "")
            for n, what in (
                (self.damaged, "damaged"),
                (self.lost, "lost"),
                (self.empty_shards, "empty shard"),
                (self.truncated_shards, "truncated shard"),
            )
            if n
        ]
        return ", ".join(parts) or "nothing left out"


@dataclass(frozen=True)
class Dataset:
    """An opened dataset: its directory, manifest and tokenizer. Cheap to open; reading happens in
    :class:`harness.data.SuperBatchStream` and :func:`harness.data.load_split`.

    The shards' bytes are hashed once per opened dataset (:meth:`shard_sha256`), on first need: by
    :attr:`content_id` or by the first split read. What every split read through this object left
    out is kept for :meth:`left_out`.
    """

    root: Path
    manifest: dict[str, Any]
    tokenizer: BpeTokenizer
    _sha256: dict[Path, str | None] = field(default_factory=dict, init=False, repr=False, compare=False)
    _left_out: dict[str, LeftOut] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def image_size(self) -> int:
        return int(self.manifest["image"]["size"])

    @property
    def channels(self) -> int:
        return int(self.manifest["image"]["channels"])

    @property
    def image_spec(self) -> ImageSpec:
        return ImageSpec(self.image_size, self.channels)

    @property
    def context_length(self) -> int:
        """Token ids per caption: the text tower's sequence length."""
        return int(self.manifest["context_length"])

    @property
    def class_names(self) -> list[str] | None:
        """Names of the class labels (index = label), or None when the samples carry no labels or
        their classes have no names (zero-shot classification is then unavailable)."""
        names = self.manifest.get("class_names")
        return None if names is None else list(names)

    @property
    def zero_shot_templates(self) -> list[str]:
        """Prompt templates for zero-shot classification, ``{}`` standing for the class name: in
        the style of the dataset's captions where the builder knows it, generic otherwise."""
        return list(self.manifest.get("zero_shot_templates") or DEFAULT_ZERO_SHOT_TEMPLATES)

    @cached_property
    def manifest_id(self) -> str:
        """A hash of what the manifest says the dataset holds (config, shards' sha256, tokenizer), not
        of where it lies or which jestbench built it."""
        content = {k: v for k, v in self.manifest.items() if k != "software"}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    @cached_property
    def changed_shards(self) -> list[tuple[str, str, str | None]]:
        """``(split, shard path as the manifest gives it, sha256 on disk or None when missing)`` of
        every shard whose bytes are not the manifest's. Hashes every shard (once per opened dataset)."""
        changed = []
        for split in self.splits:
            for shard in self._split(split)["shards"]:
                actual = self.shard_sha256(self.root / shard["path"])
                if actual != shard["sha256"]:
                    changed.append((split, str(shard["path"]), actual))
        return changed

    @cached_property
    def content_id(self) -> str:
        """The identity of the data this object reads; runs and references are keyed by it.

        When every shard's sha256 is the manifest's, it is :attr:`manifest_id`. Otherwise (a damaged,
        truncated or missing shard) it is a hash of the manifest id and of :attr:`changed_shards`, the
        bytes actually on disk: a damaged copy of a dataset never shares run ids with the intact one,
        and two copies damaged alike share theirs (which samples are left out is a function of the
        bytes). docs/DATA.md, "Dataset identity".
        """
        if not self.changed_shards:
            return self.manifest_id
        changed = json.dumps([self.manifest_id, sorted(self.changed_shards, key=str)])
        return hashlib.sha256(changed.encode()).hexdigest()[:16]

    @property
    def intact(self) -> bool:
        """Whether every shard holds exactly the bytes the manifest records."""
        return not self.changed_shards

    def check_id(self, expected: str) -> None:
        """Refuse to go on when the data is not the data ``expected`` (a run's ``dataset_id``) names:
        its shards changed between computing a run id and training or resuming that run."""
        if self.content_id != expected:
            changed = ", ".join(f"{path} ({split})" for split, path, _ in self.changed_shards[:3])
            raise DataError(
                f"the dataset in {self.root} is not the data this run was keyed by (dataset id "
                f"{self.content_id}, the run expects {expected})"
                + (f"; shards that differ from the manifest: {changed}" if changed else "")
                + f"; `jestbench data validate {self.root}` names what changed, and the command that "
                "made this run computes a new run id for the data as it is now"
            )

    def shard_sha256(self, path: Path) -> str | None:
        """The sha256 of a shard's bytes (None when the file is missing), hashed once per opened
        dataset: the identity and the reading rest on the same bytes."""
        if path not in self._sha256:
            from harness.data.shards import sha256_file

            self._sha256[path] = sha256_file(path) if path.is_file() else None
        return self._sha256[path]

    def record_left_out(self, split: str, left_out: LeftOut) -> None:
        """Note what reading ``split`` left out (the pool calls it whenever it opens a split)."""
        self._left_out[split] = left_out

    def left_out(self) -> dict[str, dict[str, int]]:
        """Per split read through this object: ``{"usable", "damaged", "lost", "empty_shards",
        "truncated_shards"}`` (see :class:`LeftOut`). What a run stores and reports at its end."""
        return {split: counts.as_dict() for split, counts in self._left_out.items()}

    def left_out_counts(self, split: str) -> LeftOut | None:
        """What reading ``split`` left out, or None if it was not read through this object."""
        return self._left_out.get(split)

    @cached_property
    def class_index(self) -> dict[str, int]:
        """The label a sample's ``json`` gives by name -> its index. Your own data may give labels
        (``class_labels``) other than the names its prompts use (``class_names``)."""
        labels = self.manifest.get("class_labels") or self.class_names or []
        return {label: i for i, label in enumerate(labels)}

    @property
    def has_labels(self) -> bool:
        """Whether samples carry class labels (classification metrics are available)."""
        return bool(self.manifest.get("labelled", self.class_names is not None))

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if s in self.manifest["splits"])

    def _split(self, split: str) -> dict[str, Any]:
        if split not in self.manifest["splits"]:
            raise DataError(f"dataset {self.root} has no split {split!r}; it has {', '.join(self.splits)}")
        entry: dict[str, Any] = self.manifest["splits"][split]
        return entry

    def split_size(self, split: str) -> int:
        """Samples in ``split`` as built (the loader's pool may be smaller if some are damaged)."""
        return int(self._split(split)["count"])

    def shards(self, split: str) -> list[ShardRecord]:
        """The shards of ``split``, with absolute paths."""
        return [
            ShardRecord(self.root / shard["path"], int(shard["count"]), str(shard["sha256"]))
            for shard in self._split(split)["shards"]
        ]

    def key_filter(self, split: str) -> tuple[str, list[str]] | None:
        """``("only" | "exclude", keys)`` when a split is a subset of its shards' samples (a
        bring-your-own val split held out of the curated shards), else None."""
        keys = self._split(split).get("keys")
        return None if keys is None else (str(keys["mode"]), list(keys["keys"]))

    def noise_counts(self, split: str) -> dict[str, int]:
        """How many samples of each noise kind the split holds, as built."""
        return dict(self._split(split).get("noise", {}))

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    @property
    def reference_dir(self) -> Path:
        return self.root / "reference"


def open_dataset(root: str | os.PathLike[str]) -> Dataset:
    """Open the dataset in directory ``root`` (written by ``jestbench data build``)."""
    root = Path(root).resolve()
    path = root / MANIFEST
    if not path.is_file():
        raise DataError(
            f"{root} is not a jestbench dataset (no {MANIFEST}); build one with "
            f"`jestbench data build shapes --out {root}`"
        )
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:
        raise DataError(f"{path} is not valid JSON ({err}); rebuild the dataset") from None
    if manifest.get("format") != _FORMAT or manifest.get("version") != _VERSION:
        raise StaleDatasetError(
            f"{path} is not a {_FORMAT} manifest of version {_VERSION}; rebuild the dataset with this "
            "version of jestbench"
        )
    tokenizer = BpeTokenizer.load(root / TOKENIZER)
    if tokenizer.hash != manifest["tokenizer"]["hash"]:
        raise DataError(
            f"{root / TOKENIZER} has hash {tokenizer.hash} but the manifest expects "
            f"{manifest['tokenizer']['hash']}: the tokenizer was replaced; rebuild the dataset"
        )
    return Dataset(root, manifest, tokenizer)


def new_manifest(
    *,
    name: str,
    builder: str,
    config: dict[str, Any],
    image: ImageSpec,
    context_length: int,
    class_names: list[str] | None,
    labelled: bool,
    tokenizer: BpeTokenizer,
    splits: dict[str, dict[str, Any]],
    zero_shot_templates: list[str] | None = None,
    class_labels: list[str] | None = None,
) -> dict[str, Any]:
    """The manifest's JSON object; ``splits`` maps each split to its ``count``, ``shards`` and
    ``noise`` (and optionally ``keys``, ``damaged`` and ``left_out``). ``class_labels`` are the labels
    samples give by name when they differ from ``class_names`` (the names prompts use)."""
    from harness import __version__

    return {
        "format": _FORMAT,
        "version": _VERSION,
        "name": name,
        "builder": builder,
        "config": config,
        "image": {"size": image.size, "channels": image.channels},
        "context_length": context_length,
        "class_names": class_names,
        **({"class_labels": class_labels} if class_labels is not None else {}),
        "zero_shot_templates": zero_shot_templates,
        "labelled": labelled,
        "tokenizer": {
            "file": TOKENIZER,
            "kind": "byte-level BPE (Hugging Face tokenizers)",
            "hash": tokenizer.hash,
            "vocab_size": tokenizer.vocab_size,
        },
        "splits": splits,
        "software": {"jestbench": __version__},
    }


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
