"""The two data settings (docs/DATA.md, "Data settings"): ``shapes`` makes redundant samples in small
groups and shifts its curated split mildly; ``shapes-v1`` is the earlier setting, sample for sample;
and the in-batch repeat statistics that ``jestbench data inspect`` prints are exact."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import re
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.cli import main
from harness.data import DataError, Dataset, NoiseConfig, build_dataset
from harness.data.build import TINY_SIZES, get_builtin
from harness.data.inspect import BATCH_SIZE, SUPER_BATCH_SIZE, _expected_distinct, _pairs, batch_statistics
from harness.data.noise import copy_groups
from harness.data.shapes import (
    BACKGROUND_MAX,
    CURATED_BACKGROUND_MAX,
    CURATED_TEMPLATES,
    TEMPLATES,
)

# sha256 over every tar member's name and bytes, in shard order, of `shapes` as built at commit
# 70de239 (before the settings were split) with seed 0 and TINY_SIZES: what `shapes-v1` must write.
BEFORE = {
    "curated": "613c6bf6b53fa792902bb24494163956afaa579852b349dec54f7e7899dcf899",
    "raw": "5cad58e28d9d835892bff577bd0f6b4a6dc83081f8a51ca4e80015856425850e",
    "val": "f776b0d6ee9af52ccfb91df315baefb9e475c5fc63aeed688e956b1ed2fb088d",
    "eval": "6cc1942a44763489b5fe28d00f1a8d9f91d3266c5c6437e99b086efb060f0446",
}
# A few of those samples, readable: key -> (caption, the first 16 hex digits of the image's sha256).
BEFORE_SAMPLES = {
    "raw-0000000": ("three red triangles on the right", "11ed7ac79e8bca4d"),  # redundant, copy of source 10
    "raw-0000001": ("a photo of three small red circles at the top", "b6984db6c92175ce"),  # mismatched
    "raw-0000002": ("a photo of one small yellow circle on the right", "557cc34e911708f8"),  # clean
}


def _members(dataset: Dataset, split: str) -> list[tuple[str, bytes]]:
    """Every tar member of the split, in shard order, read with the standard library."""
    found = []
    for shard in dataset.shards(split):
        with tarfile.open(shard.path) as tar:
            for member in tar:
                data = tar.extractfile(member)
                assert data is not None
                found.append((member.name, data.read()))
    return found


def _metadata(dataset: Dataset, split: str) -> dict[str, dict[str, Any]]:
    return {
        name.removesuffix(".json"): json.loads(data)
        for name, data in _members(dataset, split)
        if name.endswith(".json")
    }


def test_shapes_v1_writes_the_samples_shapes_wrote_before_byte_for_byte(tmp_path: Path) -> None:
    dataset = build_dataset("shapes-v1", tmp_path / "v1", seed=0, **TINY_SIZES)
    for split, expected in BEFORE.items():
        digest = hashlib.sha256()
        for name, data in _members(dataset, split):
            digest.update(name.encode())
            digest.update(data)
        assert digest.hexdigest() == expected, split
    members = dict(_members(dataset, "raw"))
    for key, (caption, image) in BEFORE_SAMPLES.items():
        assert members[f"{key}.txt"].decode() == caption
        assert hashlib.sha256(members[f"{key}.npy"]).hexdigest()[:16] == image
    assert dataset.name == "shapes-v1"
    assert dataset.manifest["config"]["noise"]["redundant_sources"] == 20


def test_the_settings_defaults_are_the_documented_ones() -> None:
    shapes, v1 = get_builtin("shapes").defaults, get_builtin("shapes-v1").defaults
    assert (shapes.curated_size, shapes.raw_size, shapes.val_size, shapes.eval_size) == (
        2000,
        40000,
        2000,
        2000,
    )
    assert (v1.curated_size, v1.raw_size, v1.val_size, v1.eval_size) == (4000, 40000, 2000, 2000)
    assert shapes.noise.redundant_scheme == ("copies", 4) and v1.noise.redundant_scheme == ("sources", 20)
    assert shapes.noise.rates() == v1.noise.rates()


def test_redundant_samples_come_in_groups_of_four_copies_of_one_image(tiny_dataset: Dataset) -> None:
    meta = _metadata(tiny_dataset, "raw")
    members = dict(_members(tiny_dataset, "raw"))
    redundant = [key for key, m in meta.items() if m["noise"] == "redundant"]
    groups = Counter(meta[key]["copy_of"] for key in redundant)
    copies = NoiseConfig().redundant_copies
    assert copies == 4
    assert len(groups) == math.ceil(len(redundant) / copies)
    assert max(groups.values()) == copies and sorted(groups.values())[1:] == [copies] * (len(groups) - 1)
    assert all("copy_of" not in m for m in meta.values() if m["noise"] != "redundant")
    for group in groups:
        keys = [key for key in redundant if meta[key]["copy_of"] == group]
        assert len({members[f"{key}.txt"] for key in keys}) == 1
        images = [np.load(io.BytesIO(members[f"{key}.npy"])).astype(float) for key in keys]
        assert all(np.abs(image - images[0]).mean() < 20 for image in images)


def test_copy_groups_partition_the_positions() -> None:
    positions = list(range(100, 123))
    groups = copy_groups(positions, 4, np.random.default_rng(0))
    assert sorted(p for g in groups for p in g) == positions
    assert [len(g) for g in groups] == [4] * 5 + [3]
    with pytest.raises(DataError, match="set one of"):
        NoiseConfig(redundant_sources=20)
    assert NoiseConfig().with_assignments(["redundant_sources=20"]).redundant_scheme == ("sources", 20)
    assert NoiseConfig(redundant_copies=None, redundant_sources=20).with_assignments(
        ["redundant_copies=3"]
    ).redundant_scheme == ("copies", 3)


def test_the_default_setting_keeps_copies_of_one_image_apart_in_a_sub_batch() -> None:
    """The arithmetic of docs/DATA.md from the default config: R redundant samples in groups of c."""
    config = get_builtin("shapes").defaults
    n = config.raw_size
    redundant = config.noise.counts(n)["redundant"]
    groups = copy_groups(list(range(redundant)), config.noise.redundant_scheme[1], np.random.default_rng(0))
    clash = sum(len(g) * (len(g) - 1) for g in groups)
    share = redundant / n * BATCH_SIZE
    assert (redundant, len(groups)) == (6000, 1500)
    assert _pairs(BATCH_SIZE, clash, n) == pytest.approx(0.0914, abs=1e-4)
    twice, thrice = _pairs(2 * share, clash, redundant), _pairs(3 * share, clash, redundant)
    assert twice == pytest.approx(0.36, abs=0.005) and twice < 0.5
    assert thrice == pytest.approx(0.82, abs=0.005) and thrice < 1
    assert _pairs(redundant / n * SUPER_BATCH_SIZE, clash, redundant) == pytest.approx(2.28, abs=0.005)


def test_the_curated_split_holds_only_the_declared_shift(tiny_dataset: Dataset) -> None:
    curated = _metadata(tiny_dataset, "curated")
    assert {m["template"] for m in curated.values()} <= set(CURATED_TEMPLATES)
    assert max(max(m["background"]) for m in curated.values()) < CURATED_BACKGROUND_MAX
    # The pool's clean samples, val and eval are not shifted: all templates, the whole background range.
    for split in ("raw", "val", "eval"):
        found = [m for m in _metadata(tiny_dataset, split).values() if "template" in m]  # not noise images
        assert {m["template"] for m in found} - set(CURATED_TEMPLATES)
        assert CURATED_BACKGROUND_MAX <= max(max(m["background"]) for m in found) < BACKGROUND_MAX
    # Mild: every word of the templates the curated split leaves out is in the ones it keeps.
    words = {t: set(re.findall(r"\w+|[^\w\s{}]", re.sub(r"\{\w+\}", "", t))) for t in TEMPLATES}
    kept = set().union(*(words[TEMPLATES[i]] for i in CURATED_TEMPLATES))
    assert all(words[t] <= kept for t in TEMPLATES)


def test_expected_repeats_equal_exhaustive_enumeration() -> None:
    """Simulated data with a known answer: every batch of 3 from 7 items, by enumeration."""
    values = ["a", "a", "b", "c", "c", "c", "d"]
    batches = list(itertools.combinations(values, 3))
    distinct = np.mean([len(set(batch)) for batch in batches])
    pairs = np.mean([sum(x == y for x, y in itertools.combinations(batch, 2)) for batch in batches])
    counts = Counter(values).values()
    assert _expected_distinct(counts, len(values), 3) == pytest.approx(distinct)
    assert _pairs(3, sum(c * (c - 1) for c in counts), len(values)) == pytest.approx(pairs)


def test_inspect_prints_the_repeat_figures(
    tiny_dataset: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = batch_statistics(tiny_dataset)
    meta = _metadata(tiny_dataset, "raw")
    assert stats.samples == len(meta) and stats.max_copies == 4
    assert stats.redundant == sum(m["noise"] == "redundant" for m in meta.values())
    assert 0 < stats.clean_repeated_captions < stats.repeated_captions
    assert main(["data", "inspect", str(tiny_dataset.root), "--sheet", str(tmp_path / "sheet.png")]) == 0
    out = capsys.readouterr().out
    assert "repeated captions per batch" in out and "pairs of copies of one image per batch of 128" in out
