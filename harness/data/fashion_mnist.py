"""``fashion-mnist``: real product photos (Zalando's Fashion-MNIST, MIT licence).

70,000 greyscale 28x28 images in 10 named classes, read from the standard gzipped IDX files —
by default where Debian's ``dataset-fashion-mnist`` package puts them — and padded to 32x32 (28 is
divisible by neither 8 nor 16, the patch sizes of the models). The official test split is the eval
split; the training split is shuffled (seeded) into curated, val and raw.

Captions say more than the class name: three attributes measured from the pixels — how much of
the frame the item fills, how light it is, how busy its texture — each in three levels cut at the
training set's terciles, through several templates ("a large dark pullover", "a photo of a light
sneaker, plain").
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from harness.data.build import BuildConfig, Builtin, CleanSample, sample_rng
from harness.data.errors import DataError
from harness.data.samples import ImageSpec

DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASS_NAMES = [
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]
LEVELS = {
    "size": ("small", "medium-sized", "large"),
    "tone": ("dark", "grey", "light"),
    "texture": ("plain", "textured", "patterned"),
}
TEMPLATES = (
    "a {size} {tone} {name}",
    "a photo of a {tone} {name}, {texture}",
    "{name}, {size}, {tone}, {texture}",
    "product photo of a {size} {texture} {name}",
    "a {texture} {tone} {name}",
)
# Zero-shot prompts in the captions' own words.
ZERO_SHOT_TEMPLATES = ("a {}", "a photo of a {}", "product photo of a {}")
_PAD = 2  # 28 + 2 * 2 = 32
_INK = 25  # pixels above this belong to the item


def read_idx(path: Path) -> np.ndarray:
    """An array from a gzipped IDX file (the MNIST format: magic, dimensions, uint8 data)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise DataError(f"{path} is not a uint8 IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _attribute_levels(
    images: np.ndarray, cuts: dict[str, np.ndarray] | None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per image the level (0-2) of each attribute, and the tercile cuts used (computed here from
    ``images`` when ``cuts`` is None)."""
    pixels = images.astype(np.float32)
    ink = pixels > _INK
    area = ink.mean(axis=(1, 2))
    tone = (pixels * ink).sum(axis=(1, 2)) / np.maximum(ink.sum(axis=(1, 2)), 1)
    gradient = np.abs(np.diff(pixels, axis=2))[:, :-1, :] + np.abs(np.diff(pixels, axis=1))[:, :, :-1]
    texture = (
        (gradient * ink[:, :-1, :-1]).sum(axis=(1, 2))
        / np.maximum(ink.sum(axis=(1, 2)), 1)
        / np.maximum(tone, 1)
    )
    values = {"size": area, "tone": tone, "texture": texture}
    if cuts is None:
        cuts = {name: np.quantile(v, [1 / 3, 2 / 3]) for name, v in values.items()}
    levels = np.stack([np.searchsorted(cuts[name], values[name]) for name in LEVELS], axis=1)
    return levels, cuts


class FashionMnistSource:
    """Clean Fashion-MNIST samples: the seeded split of the training set and the test set."""

    def __init__(self, config: BuildConfig) -> None:
        directory = Path(config.source) if config.source else DEFAULT_SOURCE
        missing = [name for pair in FILES.values() for name in pair if not (directory / name).is_file()]
        if missing:
            raise DataError(
                f"Fashion-MNIST not found: {directory} lacks {', '.join(missing)}. Install it with "
                "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu, into "
                f"{DEFAULT_SOURCE}), or pass --source DIR holding the four gzipped IDX files from "
                "https://github.com/zalandoresearch/fashion-mnist"
            )
        if config.image_size != 32:
            raise DataError(
                f"fashion-mnist images are 28x28 padded to 32; --image-size {config.image_size} is not supported"
            )
        self.seed = config.seed
        self.class_names = list(CLASS_NAMES)
        self.zero_shot_templates = list(ZERO_SHOT_TEMPLATES)
        self.image = ImageSpec(32, 1)
        train_images, train_labels = (read_idx(directory / name) for name in FILES["train"])
        test_images, test_labels = (read_idx(directory / name) for name in FILES["test"])
        wanted = config.curated_size + config.val_size + config.raw_size
        if wanted > len(train_images) or config.eval_size > len(test_images):
            raise DataError(
                f"fashion-mnist has {len(train_images)} training images for curated + val + raw (asked "
                f"{wanted}) and {len(test_images)} test images for eval (asked {config.eval_size})"
            )
        order = np.random.default_rng([config.seed, 0xFA5]).permutation(len(train_images))
        bounds = np.cumsum([0, config.curated_size, config.val_size, config.raw_size])
        picks = {split: order[bounds[i] : bounds[i + 1]] for i, split in enumerate(("curated", "val", "raw"))}
        # eval: the whole official test split in its order, or a seeded subset of it.
        test_order = np.arange(len(test_images))
        if config.eval_size < len(test_images):
            test_order = np.sort(
                np.random.default_rng([config.seed, 0x7E5]).choice(
                    len(test_images), config.eval_size, replace=False
                )
            )
        train_levels, cuts = _attribute_levels(train_images, None)
        test_levels, _ = _attribute_levels(test_images, cuts)
        self._images = {split: train_images[idx] for split, idx in picks.items()} | {
            "eval": test_images[test_order]
        }
        self._labels = {split: train_labels[idx] for split, idx in picks.items()} | {
            "eval": test_labels[test_order]
        }
        self._levels = {split: train_levels[idx] for split, idx in picks.items()} | {
            "eval": test_levels[test_order]
        }

    def caption(self, split: str, index: int) -> str:
        return self._caption(split, index, sample_rng(self.seed, split, index))

    def _caption(self, split: str, index: int, rng: np.random.Generator) -> str:
        words = {
            name: LEVELS[name][level] for name, level in zip(LEVELS, self._levels[split][index], strict=True)
        }
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        return template.format(name=CLASS_NAMES[self._labels[split][index]], **words)

    def sample(self, split: str, index: int) -> CleanSample:
        rng = sample_rng(self.seed, split, index)
        image = np.pad(self._images[split][index], _PAD)[:, :, None]
        attributes = {
            name: LEVELS[name][level] for name, level in zip(LEVELS, self._levels[split][index], strict=True)
        }
        return CleanSample(
            image, self._caption(split, index, rng), int(self._labels[split][index]), attributes
        )


FASHION_MNIST = Builtin(
    name="fashion-mnist",
    defaults=BuildConfig(curated_size=5000, raw_size=53000, val_size=2000, eval_size=10000),
    make_source=FashionMnistSource,
)
