"""``fashion-mnist`` built from the real IDX files that Debian's ``dataset-fashion-mnist`` installs
(.ci/debian-packages lists it, so CI has them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.data import DataError, build_dataset, load_split
from harness.data.fashion_mnist import CLASS_NAMES, DEFAULT_SOURCE, FILES, read_idx

SIZES = {"curated_size": 120, "val_size": 40, "raw_size": 200, "eval_size": 60, "shard_size": 100}


def test_built_from_the_real_files(tmp_path: Path) -> None:
    assert all((DEFAULT_SOURCE / name).is_file() for pair in FILES.values() for name in pair), (
        f"Fashion-MNIST is missing from {DEFAULT_SOURCE}: apt-get install dataset-fashion-mnist"
    )
    dataset = build_dataset("fashion-mnist", tmp_path / "fm", seed=0, **SIZES)
    assert dataset.class_names == CLASS_NAMES
    assert (dataset.image_size, dataset.channels) == (32, 1)

    test_images, test_labels = (read_idx(DEFAULT_SOURCE / name) for name in FILES["test"])
    assert test_images.shape == (10_000, 28, 28)
    train_images = read_idx(DEFAULT_SOURCE / FILES["train"][0])
    eval_split = load_split(dataset, "eval")
    assert eval_split.labels is not None
    for i in range(len(eval_split)):
        image = eval_split.images[i, 0].numpy()
        # padded by 2 on every side, the pixels themselves untouched
        assert (
            not image[:2].any()
            and not image[-2:].any()
            and not image[:, :2].any()
            and not image[:, -2:].any()
        )
        matches = np.flatnonzero((test_images == image[2:-2, 2:-2]).all(axis=(1, 2)))
        assert len(matches) >= 1 and test_labels[matches[0]] == eval_split.labels[i]
        assert CLASS_NAMES[int(eval_split.labels[i])] in eval_split.captions[i]

    curated = load_split(dataset, "curated")
    first = curated.images[0, 0, 2:-2, 2:-2].numpy()
    assert (train_images == first).all(axis=(1, 2)).any()  # curated comes from the training split
    # captions say more than the class name: a size, tone or texture word measured from the pixels
    assert all(
        len(caption.split()) > len(CLASS_NAMES[int(label)].split()) + 1
        for caption, label in zip(curated.captions, curated.labels, strict=True)
    )
    assert len(set(curated.captions)) > 30
    assert dataset.noise_counts("raw")["mismatched"] == 50
    val = {x.numpy().tobytes() for x in load_split(dataset, "val").images}
    assert not val & {x.numpy().tobytes() for x in curated.images}  # disjoint draws of the training set


def test_a_missing_source_says_how_to_install_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        build_dataset("fashion-mnist", tmp_path / "fm", source=str(tmp_path), **SIZES)
    assert (
        main(["data", "build", "fashion-mnist", "--out", str(tmp_path / "fm"), "--source", str(tmp_path)])
        == 2
    )
    assert "--source DIR" in capsys.readouterr().err
