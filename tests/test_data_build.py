"""Building ``shapes``: layout, noise, determinism, WebDataset compatibility, and the CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.data import DataError, Dataset, NoiseConfig, build_dataset, load_split, open_dataset
from harness.data.build import TINY_SIZES
from harness.data.shapes import COLOURS, SHAPE_NAMES

SMALL = {"curated_size": 16, "raw_size": 64, "val_size": 8, "eval_size": 8, "shard_size": 32}


def test_manifest_records_splits_shards_and_exact_noise_counts(tiny_dataset: Dataset) -> None:
    manifest = tiny_dataset.manifest
    assert tiny_dataset.splits == ("curated", "raw", "val", "eval")
    for split in tiny_dataset.splits:
        shards = tiny_dataset.shards(split)
        assert sum(s.count for s in shards) == tiny_dataset.split_size(split) == TINY_SIZES[f"{split}_size"]
        assert all(s.path.is_file() and len(s.sha256) == 64 for s in shards)
    assert tiny_dataset.noise_counts("raw") == NoiseConfig().counts(TINY_SIZES["raw_size"])
    for split in ("curated", "val", "eval"):
        assert tiny_dataset.noise_counts(split) == {"clean": TINY_SIZES[f"{split}_size"]}
    assert manifest["config"]["noise"]["clean"] == pytest.approx(0.35)
    assert tiny_dataset.class_names == list(SHAPE_NAMES)
    assert (tiny_dataset.image_size, tiny_dataset.channels) == (32, 3)


def test_noise_kinds_are_what_they_say(tiny_dataset: Dataset) -> None:
    raw = load_split(tiny_dataset, "raw")
    meta = _metadata(tiny_dataset, "raw")
    by_kind = {kind: [i for i, n in enumerate(raw.noise) if n == kind] for kind in set(raw.noise)}

    def describes(i: int) -> bool:
        m = meta[raw.keys[i]]
        return m["colour"] in raw.captions[i] and SHAPE_NAMES[m["label"]] in raw.captions[i]

    assert all(describes(i) for i in by_kind["clean"] + by_kind["redundant"])
    assert np.mean([describes(i) for i in by_kind["mismatched"]]) < 0.3
    assert all(not any(c in raw.captions[i] for c in COLOURS) for i in by_kind["uninformative"])
    assert all(raw.labels[i] == -1 and meta[raw.keys[i]]["label"] is None for i in by_kind["unlearnable"])
    # Redundant samples are near-copies of one image per group: same caption, pixels within the jitter.
    copies = [
        i
        for i in by_kind["redundant"]
        if meta[raw.keys[i]]["copy_of"] == meta[raw.keys[by_kind["redundant"][0]]]["copy_of"]
    ]
    assert len(copies) >= 2
    first, second = (raw.images[i].float() for i in copies[:2])
    assert raw.captions[copies[0]] == raw.captions[copies[1]]
    assert (first - second).abs().mean() < 20
    groups = Counter(meta[raw.keys[i]]["copy_of"] for i in by_kind["redundant"])
    assert max(groups.values()) == NoiseConfig().redundant_copies


def _metadata(dataset: Dataset, split: str) -> dict[str, dict[str, Any]]:
    """Every sample's json, read with the standard library (not our reader)."""
    import tarfile

    found = {}
    for shard in dataset.shards(split):
        with tarfile.open(shard.path) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    data = tar.extractfile(member)
                    assert data is not None
                    found[member.name.removesuffix(".json")] = json.loads(data.read())
    return found


def test_captions_are_varied_enough_for_retrieval(tiny_dataset: Dataset) -> None:
    captions = load_split(tiny_dataset, "eval").captions
    assert len(set(captions)) >= 0.8 * len(captions)


def test_same_seed_gives_byte_identical_shards_and_another_seed_does_not(tmp_path: Path) -> None:
    def shas(out: Path, seed: int) -> list[str]:
        dataset = build_dataset("shapes", out, seed=seed, **SMALL)
        return [s.sha256 for split in dataset.splits for s in dataset.shards(split)]

    first = shas(tmp_path / "a", 7)
    assert first == shas(tmp_path / "b", 7)
    assert first != shas(tmp_path / "c", 8)
    assert open_dataset(tmp_path / "a").tokenizer.hash == open_dataset(tmp_path / "b").tokenizer.hash


def test_shards_are_plain_webdataset(tiny_dataset: Dataset) -> None:
    from webdataset.autodecode import Decoder
    from webdataset.tariterators import group_by_keys, tar_file_expander

    shard = tiny_dataset.shards("val")[0]
    # webdataset's own reader and default decoders (WebDataset() itself leaves the file open).
    with open(shard.path, "rb") as f:
        samples = list(group_by_keys(tar_file_expander([{"url": str(shard.path), "stream": f}])))
    first = Decoder([])(samples[0])
    ours = load_split(tiny_dataset, "val")
    assert len(samples) == shard.count
    assert first["__key__"] == ours.keys[0]
    assert first["txt"] == ours.captions[0]
    assert torch.equal(torch.from_numpy(first["npy"]).permute(2, 0, 1), ours.images[0])
    assert first["json"]["label"] == ours.labels[0]


def test_cli_builds_inspects_and_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shapes"
    assert (
        main(["data", "build", "shapes", "--out", str(out), "--tiny", "--raw-size", "200", "--seed", "3"])
        == 0
    )
    assert "built shapes" in capsys.readouterr().out
    assert open_dataset(out).split_size("raw") == 200

    assert main(["data", "inspect", str(out), "--sheet", str(tmp_path / "sheet.png")]) == 0
    text = capsys.readouterr().out
    for expected in (
        "curated",
        "raw",
        "val",
        "eval",
        "mismatched 50 (25%)",
        "fields .json .npy .txt",
        "[clean]",
    ):
        assert expected in text
    from PIL import Image

    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.format == "PNG" and sheet.width > 500 and sheet.height > 500

    assert main(["data", "validate", str(out)]) == 0
    assert "every shard matches the manifest" in capsys.readouterr().out


def test_cli_refuses_to_overwrite_and_names_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    assert main(["data", "build", "shapes", "--out", str(tmp_path / "taken"), "--tiny"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["data", "build", "shapes", "--out", str(tmp_path / "n"), "--noise", "mismatched=0.9"]) == 2
    assert "add up to" in capsys.readouterr().err
    assert main(["data", "build", "shapes", "--out", str(tmp_path / "n"), "--noise", "typo=0.1"]) == 2
    assert "KIND=RATE" in capsys.readouterr().err
    assert main(["data", "validate", str(tmp_path / "nothing")]) == 2
    assert "not a jestbench dataset" in capsys.readouterr().err


def test_noise_config_counts_are_exact_and_sum_to_n() -> None:
    config = NoiseConfig().with_assignments(["mismatched=0.3", "redundant=0.05"])
    assert config.clean == pytest.approx(0.4)
    for n in (1, 7, 100, 333):
        counts = config.counts(n)
        assert sum(counts.values()) == n and min(counts.values()) >= 0
    assert config.counts(1000) == Counter(
        {"clean": 400, "redundant": 50, "mismatched": 300, "uninformative": 150, "unlearnable": 100}
    )
    with pytest.raises(DataError, match="must lie in"):
        NoiseConfig(mismatched=-0.1)
