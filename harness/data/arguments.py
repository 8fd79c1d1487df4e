"""The data options every command that trains or evaluates takes, and the dataset they name.

``--data DIR`` opens a built dataset; ``--data NAME`` (a built-in: ``shapes``, ``shapes-v1``,
``fashion-mnist``) builds it with default options into ``WORK/datasets/NAME`` on first use (and again
when the built-in's defaults have changed since); ``--curated/--raw/--eval``
(and optionally ``--val``) shard patterns make a bring-your-own dataset in ``WORK/datasets/byo-HASH``,
remade when the patterns, options or shards change. Without any of them the default is ``shapes``.
Builds are guarded by a file lock, so parallel runs build once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.data.dataset import MANIFEST, Dataset, open_dataset
from harness.data.errors import DataError, StaleDatasetError
from harness.data.pool import ON_BAD_SAMPLE

DEFAULT_DATA = "shapes"
_PATTERN_SPLITS = ("curated", "raw", "val", "eval")


def add_byo_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--curated/--raw/--val/--eval`` shard patterns and how to read their images."""
    for split, what in (
        ("curated", "small clean split (trains the reference; few-shot pool)"),
        ("raw", "large noisy pool the learner selects from"),
        ("val", "for tuning; default: a seeded 10%% of the curated shards, at most 2,000"),
        ("eval", "for the leaderboard only"),
    ):
        parser.add_argument(
            f"--{split}",
            metavar="PATTERN",
            help=f"bring-your-own {split} shards, e.g. 'dir/{split}-{{000..009}}.tar': {what}",
        )
    parser.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        help="image side in pixels: shapes are drawn at it, your own images centre-cropped and resized to it (default 32)",
    )
    parser.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        help="bring-your-own images as greyscale (1) or RGB (3, the default)",
    )
    parser.add_argument(
        "--classes",
        metavar="FILE",
        help="bring-your-own: a TOML file naming the classes as prompts should say them (classes = "
        "[...] by label index, or a table label = name) and optionally the prompt templates (templates "
        "= [...]); docs/DATA.md",
    )
    parser.add_argument(
        "--prompt-template",
        action="append",
        metavar="TEMPLATE",
        help="bring-your-own: a zero-shot prompt template such as 'a photo of a {}' (repeatable; "
        "overrides the --classes file's; default '{}', 'a photo of a {}', 'a {}')",
    )


def byo_class_options(classes: str | None, prompt_templates: list[str] | None) -> dict[str, Any]:
    """``ByoConfig``'s ``classes`` and ``prompt_templates`` from ``--classes FILE`` and
    ``--prompt-template`` (which overrides the file's templates)."""
    from harness.data.byo import read_classes_file

    names, templates = read_classes_file(classes) if classes is not None else (None, None)
    if prompt_templates:
        templates = tuple(prompt_templates)
    return {"classes": names, "prompt_templates": templates}


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The data options of commands that train or evaluate (see the module docstring)."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        metavar="DIR|NAME",
        help=f"a dataset directory, or a built-in dataset built on first use in WORK/datasets (default {DEFAULT_DATA})",
    )
    add_byo_arguments(group)
    group.add_argument(
        "--on-bad-sample",
        choices=ON_BAD_SAMPLE,
        default="error",
        help="a damaged sample (truncated shard, missing field, undecodable image) stops with its shard "
        "and key named (error, the default) or is left out and counted (skip)",
    )


DATA_OPTIONS = (
    "data",
    *_PATTERN_SPLITS,
    "image_size",
    "channels",
    "classes",
    "prompt_template",
    "on_bad_sample",
)


def dataset_from_args(args: argparse.Namespace, work_dir: Path) -> Dataset:
    """The dataset the data options name, built under ``work_dir/datasets`` if need be."""
    return open_data(work_dir, **{name: getattr(args, name, None) for name in DATA_OPTIONS})


def open_data(
    work_dir: Path,
    *,
    data: str | None = None,
    curated: str | None = None,
    raw: str | None = None,
    val: str | None = None,
    eval: str | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    classes: str | None = None,
    prompt_template: list[str] | None = None,
    on_bad_sample: str | None = None,
) -> Dataset:
    """The dataset that the data options (as keywords: a suite's ``[data]`` table uses the same
    names) describe, built under ``work_dir/datasets`` if need be; see the module docstring."""
    patterns = {"curated": curated, "raw": raw, "val": val, "eval": eval}
    given = {split: p for split, p in patterns.items() if p is not None}
    if given:
        if data is not None:
            raise DataError("give either --data or shard patterns (--curated/--raw/--val/--eval), not both")
        missing = [f"--{split}" for split in ("curated", "raw", "eval") if split not in given]
        if missing:
            raise DataError(f"bring-your-own data needs {', '.join(missing)} too (--val is optional)")
        return _byo(
            given,
            work_dir,
            image_size=image_size,
            channels=channels,
            on_bad_sample=on_bad_sample,
            **byo_class_options(classes, prompt_template),
        )
    if classes is not None or prompt_template:
        raise DataError("--classes and --prompt-template describe your own shards (--curated/--raw/--eval)")
    data = data or DEFAULT_DATA
    if Path(data).is_dir():
        return open_dataset(data)
    from harness.data.build import build_dataset, builtin_names, get_builtin

    if data not in builtin_names():
        raise DataError(
            f"--data {data!r} is neither a dataset directory nor a built-in dataset ({', '.join(builtin_names())})"
        )
    out = work_dir / "datasets" / data
    defaults = get_builtin(data).defaults.to_dict()
    return _locked(
        out,
        lambda: build_dataset(data, out, force=True),
        lambda dataset: dataset.manifest["config"] == defaults,
    )


def _byo(
    patterns: dict[str, str],
    work_dir: Path,
    *,
    image_size: int | None,
    channels: int | None,
    on_bad_sample: str | None,
    classes: dict[str, str] | None,
    prompt_templates: tuple[str, ...] | None,
) -> Dataset:
    from harness.data.byo import ByoConfig, build_byo, is_current

    config = ByoConfig(
        curated=patterns["curated"],
        raw=patterns["raw"],
        eval=patterns["eval"],
        val=patterns.get("val"),
        image_size=image_size or 32,
        channels=channels or 3,
        on_bad_sample=on_bad_sample or "error",  # type: ignore[arg-type]
        classes=classes,
        prompt_templates=prompt_templates,
    )
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:12]
    out = work_dir / "datasets" / f"byo-{digest}"

    return _locked(
        out, lambda: build_byo(out, config, force=True), lambda dataset: is_current(dataset, config)
    )


def _locked(
    out: Path, build: Callable[[], Dataset], current: Callable[[Dataset], bool] | None = None
) -> Dataset:
    """Open ``out`` if it holds a current dataset, else build it; one process at a time."""
    from filelock import FileLock

    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if (out / MANIFEST).is_file():
            try:
                dataset = open_dataset(out)
            except StaleDatasetError:
                return build()  # made by an older jestbench: ours to remake
            if current is None or current(dataset):
                return dataset
        return build()
