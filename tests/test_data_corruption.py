"""Damaged shards, made for real on tar files on disk: each is named (shard and key) by default,
and skipped and counted with ``on_bad_sample="skip"``; ``validate`` names each too."""

from __future__ import annotations

import io
import itertools
import random
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cli import main
from harness.data import (
    BadSampleError,
    DataError,
    Dataset,
    LeftOut,
    SuperBatchStream,
    load_split,
    open_dataset,
)
from harness.data.build import TINY_SIZES

SHARD = 2  # the raw shard that is damaged (of 6, TINY_SIZES['shard_size'] samples each)
VICTIM = 30  # the sample of that shard that is damaged


def _members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def _key(member: tarfile.TarInfo) -> str:
    return member.name.split(".")[0]


def _victim(path: Path, extension: str) -> tarfile.TarInfo:
    keys = list(dict.fromkeys(_key(m) for m in _members(path)))
    return next(m for m in _members(path) if m.name == f"{keys[VICTIM]}.{extension}")


def _rewrite(path: Path, change: Callable[[tarfile.TarInfo, bytes], bytes | None]) -> None:
    """Rewrite a shard with the standard library, member by member; ``change`` returns the new
    bytes of a member, or None to drop it."""
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in members:
            new = change(member, data)
            if new is not None:
                member.size = len(new)
                tar.addfile(member, io.BytesIO(new))


def truncate(path: Path) -> tuple[str, int]:
    """Cut the shard inside the victim's image: it and every later sample are lost."""
    image = _victim(path, "npy")
    with open(path, "r+b") as f:
        f.truncate(image.offset_data + 100)
    return _key(image), TINY_SIZES["shard_size"] - VICTIM


def overwrite_header(path: Path) -> tuple[str, int]:
    """Overwrite the tar header of the victim's caption with garbage, mid-shard."""
    caption = _victim(path, "txt")
    with open(path, "r+b") as f:
        f.seek(caption.offset)
        f.write(random.Random(0).randbytes(512))
    # Python's tarfile ends the shard there, silently: the pitfall the loader must not fall into.
    assert len(_members(path)) < 3 * TINY_SIZES["shard_size"]
    # Both samples next to the damage are left out: the lost member may belong to either.
    return _key(caption), 2


def drop_caption(path: Path) -> tuple[str, int]:
    key = _key(_victim(path, "txt"))
    _rewrite(path, lambda member, data: None if member.name == f"{key}.txt" else data)
    return key, 1


def garble_image(path: Path) -> tuple[str, int]:
    key = _key(_victim(path, "npy"))
    _rewrite(path, lambda member, data: b"\x89PNG this is no image" if member.name == f"{key}.npy" else data)
    return key, 1


DAMAGE = {
    "truncated shard": (truncate, "truncated"),
    "garbage tar header": (overwrite_header, "unreadable tar header"),
    "missing field": (drop_caption, "no caption field"),
    "undecodable image": (garble_image, "image .npy cannot be decoded"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_is_named_by_default_and_skipped_and_counted_on_request(
    damage: str, tiny_copy: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    shard = tiny_copy.shards("raw")[SHARD].path
    make, reason = DAMAGE[damage]
    key, lost = make(shard)

    with pytest.raises(BadSampleError) as caught:
        SuperBatchStream(tiny_copy, "raw", 32, seed=0)
    message = str(caught.value)
    assert f"shard {shard}, key {key!r}: " in message and reason in message
    assert "--on-bad-sample skip" in message

    stream = SuperBatchStream(tiny_copy, "raw", 32, seed=0, on_bad_sample="skip")
    assert stream.skipped == lost
    assert stream.pool_size == tiny_copy.split_size("raw") - lost
    assert any(key in problem and reason in problem for problem in stream.problems)
    seen = [k for batch in itertools.islice(stream, stream.super_batches_per_epoch) for k in batch.keys]
    assert key not in seen and len(seen) == len(set(seen)) == stream.samples_per_epoch

    assert main(["data", "validate", str(tiny_copy.root)]) == 1
    out = capsys.readouterr().out
    assert f"shard {shard}, key {key!r}" in out and reason in out
    assert "raw" in out and "problem" in out


def test_a_missing_shard_is_named_with_its_sample_count(tiny_copy: Dataset) -> None:
    shard = tiny_copy.shards("val")[0]
    shard.path.unlink()
    with pytest.raises(BadSampleError, match=f"shard {shard.path}: missing \\({shard.count} samples lost\\)"):
        load_split(tiny_copy, "val")
    assert (
        len(load_split(tiny_copy, "val", on_bad_sample="skip")) == tiny_copy.split_size("val") - shard.count
    )


def test_a_shard_cut_between_samples_is_caught_by_the_manifest_count(tiny_copy: Dataset) -> None:
    shard = tiny_copy.shards("eval")[0].path
    members = _members(shard)
    first_of_tenth = members[3 * 10]  # three members per sample
    with open(shard, "r+b") as f:
        f.truncate(first_of_tenth.offset)  # a clean cut, exactly at a member boundary
    with pytest.raises(BadSampleError, match="without the tar end-of-archive marker"):
        load_split(tiny_copy, "eval")
    kept = load_split(tiny_copy, "eval", on_bad_sample="skip")
    # the last sample before the cut is suspect (it may have lost trailing fields) and the rest are gone
    assert len(kept) == 9


def test_left_out_samples_are_counted_by_cause_per_split(tiny_copy: Dataset) -> None:
    """A shard cut mid-way loses every sample after the cut, not "1 damaged sample"; a 0-byte shard
    held samples the manifest counts (lost) and is empty; the counts are kept per split."""
    raw = tiny_copy.shards("raw")[SHARD]
    truncate(raw.path)
    val = tiny_copy.shards("val")[0]
    val.path.write_bytes(b"")

    stream = SuperBatchStream(tiny_copy, "raw", 32, seed=0, on_bad_sample="skip")
    after_cut = TINY_SIZES["shard_size"] - VICTIM - 1
    assert stream.left_out == LeftOut(
        usable=tiny_copy.split_size("raw") - 1 - after_cut,
        damaged=1,
        lost=after_cut,
        truncated_shards=1,
    )
    assert stream.left_out.describe() == f"1 damaged, {after_cut} lost, 1 truncated shard"

    val_data = load_split(tiny_copy, "val", on_bad_sample="skip")
    assert val_data.left_out == LeftOut(
        usable=tiny_copy.split_size("val") - val.count, lost=val.count, empty_shards=1
    )
    load_split(tiny_copy, "eval")
    assert tiny_copy.left_out() == {
        "raw": stream.left_out.as_dict(),
        "val": val_data.left_out.as_dict(),
        "eval": {"usable": 48, "damaged": 0, "lost": 0, "empty_shards": 0, "truncated_shards": 0},
    }


def test_a_damaged_copy_has_its_own_dataset_id_and_run_ids(tiny_dataset: Dataset, tiny_copy: Dataset) -> None:
    from harness.reference import reference_config

    def run_id(dataset: Dataset) -> str:
        return reference_config(dataset, preset="tiny", budget="10 steps", batch_size=8).run_id

    assert tiny_copy.content_id == tiny_dataset.content_id and tiny_copy.intact
    intact_run = run_id(tiny_copy)
    garble_image(tiny_copy.shards("raw")[SHARD].path)

    damaged = open_dataset(tiny_copy.root)
    assert damaged.manifest_id == tiny_dataset.manifest_id  # the manifest alone cannot tell them apart
    assert damaged.content_id != tiny_dataset.content_id and not damaged.intact
    assert [split for split, _, _ in damaged.changed_shards] == ["raw"]
    assert run_id(damaged) != intact_run
    # the same damage gives the same id: which samples are left out is a function of the bytes
    assert open_dataset(tiny_copy.root).content_id == damaged.content_id

    # a run keyed by the intact data refuses the damaged bytes
    with pytest.raises(DataError, match="not the data this run was keyed by"):
        damaged.check_id(tiny_dataset.content_id)
    damaged.check_id(damaged.content_id)


def test_a_damaged_evaluation_split_is_refused_with_advice_that_works(tiny_copy: Dataset) -> None:
    from harness.evaluate import Evaluator

    garble_image(tiny_copy.shards("eval")[0].path)
    with pytest.raises(BadSampleError) as caught:
        Evaluator(tiny_copy, ("eval",), on_bad_sample="skip")
    message = str(caught.value)
    assert "always read whole" in message and "restore its shards" in message
    assert "pass --on-bad-sample skip" not in message
    assert f"jestbench data validate {tiny_copy.root}" in message


def test_a_run_under_skip_counts_prints_and_stores_what_its_pool_left_out(
    tiny_copy: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Skipped samples are never silent in training: the rows, the run file's summary and the run's
    last lines say how many the pool left out, and the leaderboard shows it."""
    from harness.leaderboard import build_leaderboard
    from harness.results import read_runs
    from harness.runconfig import RunConfig
    from harness.train import train

    truncate(tiny_copy.shards("raw")[SHARD].path)
    damaged = open_dataset(tiny_copy.root)
    config = RunConfig(
        dataset=str(damaged.root),
        dataset_id=damaged.content_id,
        preset="tiny",
        strategy="uniform",
        params={},
        batch_size=16,
        filter_ratio=0.0,
        budget="4 steps",
        seed=0,
        eval_every=1.0,
        on_bad_sample="skip",
    )
    result = train(config, tmp_path / "work", show_progress=False)
    after_cut = TINY_SIZES["shard_size"] - VICTIM - 1
    final = result.run.rows[-1]
    assert (final["left_out_damaged"], final["left_out_lost"], final["left_out_truncated_shards"]) == (
        1,
        after_cut,
        1,
    )
    assert result.run.summary["left_out"]["raw"]["lost"] == after_cut
    assert f"raw: left out 1 damaged, {after_cut} lost, 1 truncated shard" in capsys.readouterr().err
    (entry,) = build_leaderboard(read_runs(tmp_path / "work", [config.run_id])).table.to_dict("records")
    assert entry["left_out"] == 1 + after_cut
