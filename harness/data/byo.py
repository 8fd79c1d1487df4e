"""Bring-your-own datasets: the user's WebDataset shards, described by a manifest of our own.

The user's shards stay where they are; a dataset directory (under the work directory, or ``--out``)
holds a manifest pointing at them by absolute path, a tokenizer built from their training
captions, and the shard indexes. Every shard is indexed and every sample checked once when the
dataset is made, so damaged samples are named then (or, with ``on_bad_sample="skip"``, listed in the
manifest and left out).

Samples need an image (``png``/``jpg``/``jpeg``/``webp``/``npy``) and a ``txt`` caption; a ``json``
may give a ``label`` (class index, or class name) with an optional ``class_name``, and a
``noise`` kind. Without labels, classification metrics are unavailable and retrieval still runs.

Without a val pattern, a seeded slice of the curated split is held out as val: 10% of it, at least
1 sample and at most 2,000, chosen by a permutation seeded by ``seed`` (the curated split used for
training then excludes those samples).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.build import TRAINING_SPLITS, fit_context_length, staging_directory, zero_shot_prompts
from harness.data.dataset import (
    DEFAULT_ZERO_SHOT_TEMPLATES,
    SPLITS,
    Dataset,
    new_manifest,
    open_dataset,
    write_manifest,
)
from harness.data.errors import BadSampleError, DataError
from harness.data.pool import ON_BAD_SAMPLE, OnBadSample, problem_report
from harness.data.samples import ImageSpec, Meta, decode_caption, decode_meta
from harness.data.shards import Problem, ShardIndex, read_span, save_index, scan_shard, sha256_file
from harness.data.tokenizer import DEFAULT_MIN_FREQUENCY, DEFAULT_VOCAB_SIZE, BpeTokenizer

VAL_FRACTION = 0.1
MAX_VAL = 2000


@dataclass(frozen=True)
class ByoConfig:
    """Shard patterns per split (WebDataset syntax: brace expansion ``{000..009}``, ``::`` between
    several patterns) and how to read them."""

    curated: str
    raw: str
    eval: str
    val: str | None = None
    seed: int = 0
    image_size: int = 32
    channels: int = 3
    context_length: int | None = None
    vocab_size: int = DEFAULT_VOCAB_SIZE
    min_frequency: int = DEFAULT_MIN_FREQUENCY
    on_bad_sample: OnBadSample = "error"
    # The label a sample's json gives (a name, or an index as a string) -> the name prompts use.
    classes: dict[str, str] | None = None
    # Zero-shot prompt templates, "{}" standing for the class name (default: generic ones).
    prompt_templates: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for template in self.prompt_templates or ():
            if template.count("{}") != 1 or template.replace("{}", "").count("{") + template.count("}") > 1:
                raise DataError(
                    f"prompt template {template!r} must hold the class name's place as one {{}} and no other braces"
                )
        if self.channels not in (1, 3):
            raise DataError(f"--channels must be 1 or 3; got {self.channels}")
        if self.image_size < 1:
            raise DataError(f"--image-size must be >= 1; got {self.image_size}")
        if self.on_bad_sample not in ON_BAD_SAMPLE:
            raise DataError(f"on_bad_sample must be one of {', '.join(ON_BAD_SAMPLE)}")

    def patterns(self) -> dict[str, str]:
        found = {"curated": self.curated, "raw": self.raw, "val": self.val, "eval": self.eval}
        return {split: pattern for split, pattern in found.items() if pattern is not None}


def expand_shards(pattern: str, split: str) -> list[Path]:
    """The local files a shard pattern names, in order (WebDataset's own expansion)."""
    from webdataset.shardlists import expand_urls

    paths = []
    for url in expand_urls(pattern):
        if "://" in url or url.startswith("pipe:"):
            raise DataError(
                f"--{split} {pattern!r}: {url} is not a local file; jestbench reads shards by byte offset, so copy them locally first"
            )
        path = Path(url).expanduser().resolve()
        if not path.is_file():
            raise DataError(f"--{split} {pattern!r}: shard {path} does not exist")
        paths.append(path)
    if not paths:
        raise DataError(f"--{split} {pattern!r} names no shard")
    return paths


def source_stamp(config: ByoConfig) -> list[list[Any]]:
    """Path, size and modification time of every shard: what :func:`is_current` compares."""
    return [
        [str(path), path.stat().st_size, path.stat().st_mtime_ns]
        for split, pattern in config.patterns().items()
        for path in expand_shards(pattern, split)
    ]


def is_current(dataset: Dataset, config: ByoConfig) -> bool:
    """Whether ``dataset`` was made from ``config`` and its shards look unchanged since."""
    recorded = dataset.manifest["config"]
    as_recorded = json.loads(json.dumps(asdict(config)))  # tuples become lists, as in the manifest
    return bool(recorded.get("byo") == as_recorded and recorded.get("shards") == source_stamp(config))


def build_byo(out: str | os.PathLike[str], config: ByoConfig, *, force: bool = False) -> Dataset:
    """Index and check the user's shards and write a dataset directory describing them."""
    from harness.progress import Reporter, stage

    stamp = source_stamp(config)
    with staging_directory(Path(out), force=force) as tmp:
        shards = {split: expand_shards(pattern, split) for split, pattern in config.patterns().items()}
        indexes: dict[str, list[tuple[Path, ShardIndex]]] = {}
        problems: list[tuple[str, Path, Problem]] = []
        total = sum(len(paths) for paths in shards.values())
        stage(f"indexing and checking your {total} shards into {out}")
        with Reporter(total, "index shards", "shard") as bar:
            for split, paths in shards.items():
                indexes[split] = []
                for path in paths:
                    index = scan_shard(path, sha256_file(path))
                    save_index(tmp / "index" / f"{index.sha256}.json", index)
                    indexes[split].append((path, index))
                    problems += [(split, path, p) for p in index.problems]
                    if index.empty:
                        problems.append(
                            (split, path, Problem(None, "holds no sample at all (an empty file or tar)"))
                        )
                    bar.update()
        problems += _repeated_keys(indexes)
        if problems and config.on_bad_sample == "error":
            raise BadSampleError(
                problem_report(
                    "the shards",
                    [f"{split}: {problem.describe(path)}" for split, path, problem in problems],
                    "fix the shards, or pass --on-bad-sample skip to leave these samples out (they are then "
                    "listed in the manifest, counted and reported by every run)",
                )
            )
        texts = {split: _read_texts(entries) for split, entries in indexes.items()}
        class_labels, labelled = _classes(texts, config.classes)
        class_names = _class_names(class_labels, config.classes)
        templates = list(config.prompt_templates or DEFAULT_ZERO_SHOT_TEMPLATES)
        splits = {
            split: _split_entry(entries, [p for s, _, p in problems if s == split])
            for split, entries in indexes.items()
        }
        if config.val is None:
            _hold_out_val(splits, [key for key, _, _ in texts["curated"]], config.seed)
        kept = {
            split: _kept(entry, texts[entry.get("held_out_of", split)]) for split, entry in splits.items()
        }
        training = [caption for split in TRAINING_SPLITS for _, caption, _ in kept[split]]
        prompts = zero_shot_prompts(class_names or [], templates)
        tokenizer = BpeTokenizer.train(
            [*training, *(class_names or []), *prompts],
            vocab_size=config.vocab_size,
            min_frequency=config.min_frequency,
        )
        context_length = config.context_length or fit_context_length(tokenizer, [*training, *prompts])
        for split, entry in splits.items():
            entry["count"] = len(kept[split])
            entry["noise"] = dict(Counter(meta.noise for _, _, meta in kept[split]))
            entry["truncated_captions"] = sum(
                tokenizer.token_count(c) > context_length for _, c, _ in kept[split]
            )
        tokenizer.save(tmp / "tokenizer.json")
        write_manifest(
            tmp,
            new_manifest(
                name=Path(out).name,
                builder="byo",
                config={"byo": asdict(config), "shards": stamp},
                image=ImageSpec(config.image_size, config.channels),
                context_length=context_length,
                class_names=class_names,
                class_labels=class_labels if class_names != class_labels else None,
                zero_shot_templates=templates,
                labelled=labelled,
                tokenizer=tokenizer,
                splits={split: splits[split] for split in SPLITS},
            ),
        )
    return open_dataset(out)


def _repeated_keys(indexes: dict[str, list[tuple[Path, ShardIndex]]]) -> list[tuple[str, Path, Problem]]:
    """Keys that appear in more than one shard of a split (the loader would refuse them)."""
    repeated = []
    for split, entries in indexes.items():
        seen: set[str] = set()
        for path, index in entries:
            for sample in index.samples:
                if sample.key in seen:
                    repeated.append(
                        (
                            split,
                            path,
                            Problem(sample.key, f"the key appears in another shard of split {split!r} too"),
                        )
                    )
                seen.add(sample.key)
    return repeated


def _read_texts(entries: list[tuple[Path, ShardIndex]]) -> list[tuple[str, str, Meta]]:
    """``(key, caption, Meta)`` of every usable sample, reading only the text fields."""
    out = []
    for path, index in entries:
        fd = os.open(path, os.O_RDONLY)
        try:
            for sample in index.samples:
                caption = decode_caption(read_span(fd, *sample.caption))
                meta = decode_meta(None if sample.meta is None else read_span(fd, *sample.meta))
                out.append((sample.key, caption, meta))
        finally:
            os.close(fd)
    return out


def _classes(
    texts: dict[str, list[tuple[str, str, Meta]]], classes: dict[str, str] | None
) -> tuple[list[str] | None, bool]:
    """Class labels as names (index = label) and whether samples are labelled, from the labels seen.

    Labels given as names are numbered in sorted order; labels given as indices take their names
    from ``class_name`` when every labelled sample gives one or ``classes`` names its index (else
    they stay unnamed).
    """
    metas = [meta for entries in texts.values() for _, _, meta in entries if meta.label is not None]
    if not metas:
        return None, False
    names = {meta.label for meta in metas if isinstance(meta.label, str)}
    if len(names) == len(set(m.label for m in metas)):
        return sorted(names), True
    if names:
        raise DataError("sample labels mix class names and class indices; use one or the other")
    named: dict[int, str] = {}
    for meta in metas:
        assert isinstance(meta.label, int)
        name = meta.fields.get("class_name")
        if not isinstance(name, str):
            if str(meta.label) in (classes or {}):
                continue  # named by --classes
            return None, True
        if named.setdefault(meta.label, name) != name:
            raise DataError(f"label {meta.label} is called both {named[meta.label]!r} and {name!r}")
    count = max(int(m.label) for m in metas if m.label is not None) + 1
    return [named.get(i, f"class {i}") for i in range(count)], True


def _class_names(labels: list[str] | None, classes: dict[str, str] | None) -> list[str] | None:
    """The names prompts use, label by label: ``classes`` (from ``--classes``) where it names the
    label (by name, or by index as a string), else the label's own name."""
    if classes is None:
        return labels
    if labels is None:
        raise DataError(
            "--classes names classes, but no sample's json gives a label by name or with a class_name; "
            "give labels, or leave --classes out"
        )
    unknown = sorted(set(classes) - set(labels) - {str(i) for i in range(len(labels))})
    if unknown:
        raise DataError(
            f"--classes names label(s) {', '.join(map(repr, unknown))} that no sample has; the labels are "
            f"{', '.join(map(repr, labels[:10]))}{' ...' if len(labels) > 10 else ''} (or their indices)"
        )
    return [classes.get(label, classes.get(str(i), label)) for i, label in enumerate(labels)]


def read_classes_file(path: str | os.PathLike[str]) -> tuple[dict[str, str] | None, tuple[str, ...] | None]:
    """``--classes FILE``: a TOML file with ``classes`` (a list, label index -> name, or a table,
    label -> name) and/or ``templates`` (zero-shot prompt templates); docs/DATA.md shows one."""
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"--classes {path}: cannot read it as TOML ({err})") from None
    stray = set(data) - {"classes", "templates"}
    if stray:
        raise DataError(
            f"--classes {path}: unknown key(s) {', '.join(sorted(stray))}; use classes and templates"
        )
    classes, templates = data.get("classes"), data.get("templates")
    if isinstance(classes, list):
        classes = {str(i): name for i, name in enumerate(classes)}
    if classes is not None and not (
        isinstance(classes, dict) and all(isinstance(v, str) and v.strip() for v in classes.values())
    ):
        raise DataError(f"--classes {path}: classes must be a list of names or a table of label = name")
    if templates is not None and not (
        isinstance(templates, list) and all(isinstance(t, str) for t in templates)
    ):
        raise DataError(f'--classes {path}: templates must be a list of strings such as "a photo of a {{}}"')
    return classes, tuple(templates) if templates else None


def _split_entry(entries: list[tuple[Path, ShardIndex]], problems: list[Problem]) -> dict[str, Any]:
    """A split's manifest entry. Every shard is listed, empty ones too (with count 0); damaged samples
    (accepted with ``skip``) are listed in ``damaged``, excluded by key and counted in ``left_out``,
    beside the shards found empty or cut short (how many samples a cut shard lost is unknown: your
    shards carry no count of their own)."""
    damaged = [{"key": p.key, "reason": p.reason} for p in problems]
    bad_keys = sorted({p.key for p in problems if p.key is not None})
    entry: dict[str, Any] = {
        "shards": [
            {"path": str(path), "count": len(index.samples) + index.bad_samples, "sha256": index.sha256}
            for path, index in entries
        ],
        "damaged": damaged,
        "left_out": {
            "damaged": len(bad_keys),
            "empty_shards": sum(index.empty for _, index in entries),
            "truncated_shards": sum(index.cut for _, index in entries),
        },
    }
    if bad_keys:
        entry["keys"] = {"mode": "exclude", "keys": bad_keys}
    return entry


def _hold_out_val(splits: dict[str, dict[str, Any]], curated_keys: list[str], seed: int) -> None:
    """Make ``val`` a seeded slice of the curated samples and take it out of ``curated``."""
    count = min(MAX_VAL, max(1, round(VAL_FRACTION * len(curated_keys))))
    if len(curated_keys) < 2:
        raise DataError("the curated split needs at least 2 samples to hold some out as val; pass --val")
    chosen = np.random.default_rng([seed, 0x7A1]).permutation(len(curated_keys))[:count]
    val_keys = sorted(curated_keys[i] for i in chosen)
    curated = splits["curated"]
    excluded = curated.get("keys", {"keys": []})["keys"]
    curated["keys"] = {"mode": "exclude", "keys": sorted([*excluded, *val_keys])}
    splits["val"] = {
        "shards": curated["shards"],
        "damaged": [],
        "keys": {"mode": "only", "keys": val_keys},
        "held_out_of": "curated",
    }


def _kept(entry: dict[str, Any], texts: list[tuple[str, str, Meta]]) -> list[tuple[str, str, Meta]]:
    """The samples of ``texts`` that a split's key filter keeps."""
    keys = entry.get("keys")
    if keys is None:
        return texts
    listed, only = set(keys["keys"]), keys["mode"] == "only"
    return [sample for sample in texts if (sample[0] in listed) == only]
