"""Bring-your-own shards, written here with the standard library's ``tarfile`` (not our writer)."""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from harness.cli import main
from harness.data import (
    BadSampleError,
    ByoConfig,
    DataError,
    Dataset,
    StaleDatasetError,
    SuperBatchStream,
    add_data_arguments,
    build_byo,
    dataset_from_args,
    load_split,
    open_dataset,
)

COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (40, 60, 220), "yellow": (230, 210, 40)}


def write_shards(
    directory: Path,
    split: str,
    shards: int,
    per_shard: int,
    *,
    image_format: str = "png",
    labels: str | None = "name",
) -> str:
    """Shards of a square of one colour on a 40x30 canvas, captioned with the colour; ``labels``
    None (no json), "name" (the colour) or "index" (with ``class_name``). Returns the brace pattern."""
    names = list(COLOURS)
    directory.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        with tarfile.open(directory / f"{split}-{s:03d}.tar", "w") as tar:
            for i in range(per_shard):
                key, colour = f"{split}{s:03d}_{i:04d}", names[(i + s) % len(names)]
                image = Image.new("RGB", (40, 30), (10, 10, 10))
                image.paste(COLOURS[colour], (12 + i % 5, 5, 28 + i % 5, 25))
                buffer = io.BytesIO()
                image.save(buffer, format={"jpg": "JPEG"}.get(image_format, image_format.upper()))
                fields = {
                    image_format: buffer.getvalue(),
                    "txt": f"a {colour} square number {i % 3}".encode(),
                }
                if labels == "name":
                    fields["json"] = json.dumps({"label": colour}).encode()
                elif labels == "index":
                    fields["json"] = json.dumps({"label": names.index(colour), "class_name": colour}).encode()
                for extension, data in fields.items():
                    info = tarfile.TarInfo(f"{key}.{extension}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(directory / f"{split}-{{000..{shards - 1:03d}}}.tar")


def patterns(directory: Path, labels: str | None = "name") -> dict[str, str]:
    return {
        "curated": write_shards(directory, "curated", 2, 20, labels=labels),
        "raw": write_shards(directory, "raw", 2, 30, image_format="jpg", labels=labels),
        "eval": write_shards(directory, "eval", 1, 12, image_format="webp", labels=labels),
    }


def test_own_shards_with_labels_are_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    found = patterns(tmp_path / "mine")
    out = tmp_path / "byo"
    flags = [arg for split, pattern in found.items() for arg in (f"--{split}", pattern)]
    assert main(["data", "build", "byo", "--out", str(out), *flags]) == 0
    dataset = open_dataset(out)
    assert dataset.class_names == sorted(COLOURS) and dataset.has_labels
    assert (dataset.image_size, dataset.channels) == (32, 3)

    # without --val, a seeded 10% of curated is held out as val, and curated no longer holds it
    curated, val = load_split(dataset, "curated"), load_split(dataset, "val")
    assert (len(curated), len(val)) == (36, 4)
    assert not set(curated.keys) & set(val.keys)
    assert dataset.split_size("val") == 4 and dataset.split_size("curated") == 36

    evaluation = load_split(dataset, "eval")
    assert evaluation.images.shape == (12, 3, 32, 32) and evaluation.labels is not None
    for caption, label in zip(evaluation.captions, evaluation.labels, strict=True):
        assert sorted(COLOURS)[int(label)] in caption
    assert set(evaluation.noise) == {"unknown"}

    batch = next(iter(SuperBatchStream(dataset, "raw", 16, seed=0)))
    assert len(batch) == 16 and batch.images.shape == (16, 3, 32, 32) and (batch.labels >= 0).all()
    assert main(["data", "validate", str(out)]) == 0
    assert main(["data", "inspect", str(out)]) == 0
    assert "contact sheet" in capsys.readouterr().out


def test_own_shards_without_labels_give_retrieval_data_only(tmp_path: Path) -> None:
    dataset = build_byo(tmp_path / "byo", ByoConfig(**patterns(tmp_path / "mine", labels=None), channels=1))
    assert dataset.class_names is None and not dataset.has_labels
    evaluation = load_split(dataset, "eval")
    assert evaluation.labels is None and evaluation.class_names is None
    assert evaluation.images.shape == (12, 1, 32, 32)
    batch = next(iter(SuperBatchStream(dataset, "raw", 8, seed=0)))
    assert (batch.labels == -1).all()


def test_labels_given_as_indices_take_their_names_from_the_json(tmp_path: Path) -> None:
    found = patterns(tmp_path / "mine", labels="index")
    found["val"] = write_shards(tmp_path / "mine", "val", 1, 8, labels="index")
    dataset = build_byo(tmp_path / "byo", ByoConfig(**found))
    assert dataset.class_names == list(COLOURS)
    assert (
        dataset.split_size("val") == 8 and dataset.split_size("curated") == 40
    )  # an explicit val: no hold-out


def test_a_damaged_own_sample_is_named_or_left_out_and_listed(tmp_path: Path) -> None:
    found = patterns(tmp_path / "mine")
    shard = tmp_path / "mine" / "raw-001.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(shard, "w") as tar:
        for member, data in members:
            broken = b"not a jpeg at all" if member.name == "raw001_0007.jpg" else data
            member.size = len(broken)
            tar.addfile(member, io.BytesIO(broken))
    with pytest.raises(
        BadSampleError, match=r"shard .*raw-001\.tar, key 'raw001_0007': image \.jpg cannot be decoded"
    ):
        build_byo(tmp_path / "byo", ByoConfig(**found))
    dataset = build_byo(tmp_path / "byo", ByoConfig(**found, on_bad_sample="skip"))
    assert dataset.manifest["splits"]["raw"]["damaged"][0]["key"] == "raw001_0007"
    stream = SuperBatchStream(dataset, "raw", 59, seed=0)  # the default, error, now accepts the split
    assert stream.pool_size == 59 and "raw001_0007" not in next(iter(stream)).keys


def test_data_arguments_open_or_make_the_dataset_once(tmp_path: Path, tiny_dataset: Dataset) -> None:
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    work = tmp_path / "work"
    found = patterns(tmp_path / "mine")
    args = parser.parse_args([arg for split, pattern in found.items() for arg in (f"--{split}", pattern)])
    first = dataset_from_args(args, work)
    assert first.root.parent == work / "datasets" and first.root.name.startswith("byo-")
    built = (first.root / "manifest.json").stat().st_mtime_ns
    assert dataset_from_args(args, work).root == first.root
    assert (first.root / "manifest.json").stat().st_mtime_ns == built  # reused, not rebuilt

    write_shards(tmp_path / "mine", "raw", 2, 31)  # the user's shards change: the dataset is remade
    assert dataset_from_args(args, work).split_size("raw") == 62

    assert (
        dataset_from_args(parser.parse_args(["--data", str(tiny_dataset.root)]), work).root
        == tiny_dataset.root
    )
    with pytest.raises(DataError, match="not both"):
        dataset_from_args(parser.parse_args(["--data", "shapes", "--raw", found["raw"]]), work)
    with pytest.raises(DataError, match="needs --curated, --eval"):
        dataset_from_args(parser.parse_args(["--raw", found["raw"]]), work)
    with pytest.raises(DataError, match="neither a dataset directory nor a built-in"):
        dataset_from_args(parser.parse_args(["--data", "imagenet"]), work)
    with pytest.raises(DataError, match="does not exist"):
        dataset_from_args(
            parser.parse_args(["--curated", str(tmp_path / "none-{0..1}.tar"), "--raw", "x", "--eval", "y"]),
            work,
        )


def test_a_key_in_two_shards_of_a_split_is_refused(tmp_path: Path) -> None:
    found = patterns(tmp_path / "mine")
    again = write_shards(tmp_path / "copy", "raw", 1, 5)  # same keys as the first raw shard
    with pytest.raises(
        BadSampleError, match=r"key 'raw000_0000': the key appears in another shard of split 'raw'"
    ):
        build_byo(tmp_path / "byo", ByoConfig(**{**found, "raw": found["raw"] + "::" + again}))


def test_empty_and_cut_own_shards_are_reported_as_such_not_as_damaged_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = patterns(tmp_path / "mine")
    raw = tmp_path / "mine"
    write_shards(raw, "raw", 4, 30)  # raw-000 .. raw-003
    tarfile.open(raw / "raw-004.tar", "w").close()  # a valid tar with no samples
    (raw / "raw-005.tar").write_bytes(b"")  # a 0-byte file
    cut = raw / "raw-003.tar"
    with tarfile.open(cut) as tar:
        eleventh = tar.getmembers()[3 * 10]  # three members per sample
    with open(cut, "r+b") as f:
        f.truncate(eleventh.offset_data + 10)  # inside sample 10: it and the 19 after it are gone
    found["raw"] = str(raw / "raw-{000..005}.tar")
    flags = [arg for split, pattern in found.items() for arg in (f"--{split}", pattern)]

    with pytest.raises(BadSampleError) as caught:
        build_byo(tmp_path / "byo", ByoConfig(**found))
    message = str(caught.value)
    assert (
        "raw-004.tar: holds no sample at all" in message and "raw-005.tar: holds no sample at all" in message
    )
    assert "raw-003.tar, key 'raw003_0010'" in message

    out = tmp_path / "byo"
    assert main(["data", "build", "byo", "--out", str(out), *flags, "--on-bad-sample", "skip"]) == 0
    assert "raw: left out 1 damaged, 2 empty shards, 1 truncated shard" in capsys.readouterr().out
    dataset = open_dataset(out)
    assert len(dataset.shards("raw")) == 6  # every shard given is listed, the empty ones with count 0
    assert [s.count for s in dataset.shards("raw")] == [30, 30, 30, 11, 0, 0]
    stream = SuperBatchStream(dataset, "raw", 8, seed=0)  # accepted when made: read without --on-bad-sample
    assert stream.left_out.as_dict() == {
        "usable": 100,
        "damaged": 1,
        "lost": 0,  # unknown: the user's shards carry no count of their own
        "empty_shards": 2,
        "truncated_shards": 1,
    }
    assert main(["data", "validate", str(out)]) == 0
    assert "left out: 1 damaged, 2 empty shards, 1 truncated shard" in capsys.readouterr().out


def test_own_class_names_and_prompt_templates_are_used_for_zero_shot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels that are codes, not words of the captions: --classes names them as prompts should."""
    found = patterns(tmp_path / "mine", labels="index")  # indices with class_name = the colour
    classes = tmp_path / "classes.toml"
    classes.write_text('classes = ["crimson", "emerald", "cobalt", "amber"]\ntemplates = ["a {} thing"]\n')
    flags = [arg for split, pattern in found.items() for arg in (f"--{split}", pattern)]
    out = tmp_path / "byo"
    command = ["data", "build", "byo", "--out", str(out), *flags, "--classes", str(classes)]
    assert main([*command, "--prompt-template", "a {} square", "--prompt-template", "{}"]) == 0
    dataset = open_dataset(out)
    assert dataset.class_names == ["crimson", "emerald", "cobalt", "amber"]
    assert dataset.zero_shot_templates == ["a {} square", "{}"]  # the command line's override the file's
    prompts = [t.format(n) for n in dataset.class_names for t in dataset.zero_shot_templates]
    ids, truncated = dataset.tokenizer.encode(prompts, dataset.context_length)
    assert truncated == 0 and len({tuple(row) for row in ids.tolist()}) == len(prompts)

    # labels given by name can be renamed by a table; samples still find their label
    renamed = build_byo(
        tmp_path / "renamed",
        ByoConfig(**patterns(tmp_path / "named"), classes={"red": "crimson"}, prompt_templates=("a {}",)),
    )
    assert renamed.class_names == ["blue", "green", "crimson", "yellow"]
    evaluation = load_split(renamed, "eval")
    assert evaluation.labels is not None
    for caption, label in zip(evaluation.captions, evaluation.labels.tolist(), strict=True):
        assert caption.split()[1] == ["blue", "green", "red", "yellow"][label]

    with pytest.raises(DataError, match="'violet' that no sample has"):
        build_byo(tmp_path / "bad", ByoConfig(**patterns(tmp_path / "named"), classes={"violet": "purple"}))
    with pytest.raises(DataError, match="one \\{\\}"):
        ByoConfig(**patterns(tmp_path / "named"), prompt_templates=("a photo",))


def test_zero_shot_is_left_out_of_the_score_when_two_classes_prompts_encode_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.evaluate import Evaluator
    from harness.flops import model_flops
    from harness.models import build_model

    dataset = build_byo(
        tmp_path / "byo",
        ByoConfig(**patterns(tmp_path / "mine"), classes={"red": "Square", "green": "square"}),
    )
    evaluator = Evaluator(dataset, ("eval",))
    warning = capsys.readouterr().err
    assert "zero-shot is left out of the mean score" in warning and "'square' = 'Square'" in warning
    model = build_model(
        "tiny",
        vocab_size=dataset.tokenizer.vocab_size,
        image_size=dataset.image_size,
        channels=dataset.channels,
        context_length=dataset.context_length,
    )
    (evaluation,) = evaluator.evaluate(model, model_flops(model.config))
    scores = evaluation.scores
    assert scores.zero_shot is None and scores.few_shot is not None
    assert scores.mean == pytest.approx((scores.few_shot + scores.i2t_recall + scores.t2i_recall) / 3)
    row = scores.as_dict()
    assert row["zero_shot"] is None and "'square' = 'Square'" in str(row["zero_shot_excluded"])
    assert "zero-shot" not in capsys.readouterr().err  # warned once, at the start


def test_commands_that_train_take_class_names_and_templates_and_reuse_the_dataset(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    classes = tmp_path / "classes.toml"
    classes.write_text('[classes]\nred = "crimson"\n')
    found = patterns(tmp_path / "mine")
    flags = [arg for split, pattern in found.items() for arg in (f"--{split}", pattern)]
    args = parser.parse_args([*flags, "--classes", str(classes), "--prompt-template", "a {} square"])
    work = tmp_path / "work"
    first = dataset_from_args(args, work)
    assert first.class_names == ["blue", "green", "crimson", "yellow"]
    assert first.zero_shot_templates == ["a {} square"]
    built = (first.root / "manifest.json").stat().st_mtime_ns
    assert (dataset_from_args(args, work).root / "manifest.json").stat().st_mtime_ns == built
    with pytest.raises(DataError, match="describe your own shards"):
        dataset_from_args(parser.parse_args(["--data", "shapes", "--classes", str(classes)]), work)


def test_a_dataset_made_by_an_older_jestbench_is_refused_or_remade(tmp_path: Path) -> None:
    """Manifest version 1 held a word-level tokenizer: such a dataset cannot be read as it is."""
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    found = patterns(tmp_path / "mine")
    args = parser.parse_args([arg for split, pattern in found.items() for arg in (f"--{split}", pattern)])
    work = tmp_path / "work"
    made = dataset_from_args(args, work)
    manifest = json.loads((made.root / "manifest.json").read_text())
    (made.root / "manifest.json").write_text(json.dumps({**manifest, "version": 1}))
    with pytest.raises(StaleDatasetError, match="rebuild the dataset"):
        open_dataset(made.root)
    remade = dataset_from_args(args, work)  # made under WORK/datasets by a command: remade
    assert remade.root == made.root and remade.manifest["version"] == manifest["version"]


def test_moved_own_shards_are_named_missing_where_the_dataset_expected_them(tmp_path: Path) -> None:
    """The dataset references the user's shards where they were (docs/DATA.md): moved, each is named
    by its old path when a split is read, not silently read as empty."""
    dataset = build_byo(tmp_path / "byo", ByoConfig(**patterns(tmp_path / "mine")))
    (tmp_path / "mine").rename(tmp_path / "moved")
    with pytest.raises(BadSampleError) as refused:
        next(iter(SuperBatchStream(open_dataset(dataset.root), "raw", 8, seed=0)))
    for shard in ("raw-000.tar", "raw-001.tar"):
        assert f"shard {tmp_path / 'mine' / shard}: missing (30 samples lost)" in str(refused.value)
    # the advice is to put them back or make the dataset again, not to train without them
    assert "not where the dataset expects them" in str(refused.value)
    assert "move them back or make the dataset again" in str(refused.value)
