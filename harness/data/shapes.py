"""``shapes``: the built-in procedural dataset (no download).

Each image shows one to three shapes of one kind (8 kinds) and one colour (8 colours), small or
large (three only small, so that they can be counted), grouped on the left, right, top or bottom,
or alone in the centre, on a dark background with pixel noise. Its caption comes from one of several templates ("two small red triangles on the
left", "a photo of one large blue circle in the centre"), so captions repeat but there are enough
distinct ones (thousands) for retrieval to mean something. The label for the headline metrics is
the shape; colour, count, size and position are kept in the ``json`` metadata.

Images are drawn at 4x resolution with PIL and reduced (anti-aliased), then stored as raw uint8.

Two settings (docs/DATA.md, "Data settings"): ``shapes`` draws its curated split with a mild shift
from the pool (darker backgrounds, 4 of the 6 templates) and records each sample's template and
background in its ``json``; ``shapes-v1`` draws every split alike and writes exactly the samples it
wrote before the settings were split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.data.build import BuildConfig, Builtin, CleanSample, sample_rng
from harness.data.noise import NoiseConfig
from harness.data.samples import ImageSpec

_PLURALS = {"cross": "crosses"}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 210),
    "orange": (245, 140, 25),
    "white": (240, 240, 240),
    "cyan": (40, 205, 215),
}
COUNT_WORDS = ("one", "two", "three")
SIZES = {"small": 0.11, "large": 0.17}  # radius as a fraction of the image side
# Where shape centres may lie, as fractions of the side: (x0, x1, y0, y1).
POSITIONS = {
    "on the left": (0.0, 0.45, 0.0, 1.0),
    "on the right": (0.55, 1.0, 0.0, 1.0),
    "at the top": (0.0, 1.0, 0.0, 0.45),
    "at the bottom": (0.0, 1.0, 0.55, 1.0),
    "in the centre": (0.4, 0.6, 0.4, 0.6),
}
TEMPLATES = (
    "{count} {size} {colour} {shapes} {position}",
    "a photo of {count} {size} {colour} {shapes} {position}",
    "{count} {colour} {shapes} {position}",
    "there {verb} {count} {size} {colour} {shapes} {position}",
    "{position}: {count} {size} {colour} {shapes}",
    "{count} {shapes}, {size} and {colour}, {position}",
)
# The curated split of ``shapes``: the written-out templates only (every word of the terse two occurs
# in them) and backgrounds from the darker half of the pool's range.
CURATED_TEMPLATES = (1, 3, 4, 5)
BACKGROUND_MAX = 70  # background channels are drawn from [0, BACKGROUND_MAX)
CURATED_BACKGROUND_MAX = 35
# Zero-shot prompts in the captions' own words, one shape of each class.
ZERO_SHOT_TEMPLATES = ("one {}", "a photo of one {}", "one small {}", "one large {}")
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class _Attributes:
    shape: int
    colour: str
    count: int
    size: str
    position: str
    template: int

    def caption(self) -> str:
        name = SHAPE_NAMES[self.shape]
        shapes = name if self.count == 1 else _PLURALS.get(name, name + "s")
        return TEMPLATES[self.template].format(
            count=COUNT_WORDS[self.count - 1],
            size=self.size,
            colour=self.colour,
            shapes=shapes,
            position=self.position,
            verb="is" if self.count == 1 else "are",
        )

    def metadata(self) -> dict[str, Any]:
        position = self.position.split()[-1]
        return {"colour": self.colour, "count": self.count, "size": self.size, "position": position}


class ShapesSource:
    """Clean ``shapes`` samples, each a pure function of (seed, split, index); with ``shifted_curated``
    the curated split's are drawn from the declared subset of templates and backgrounds."""

    def __init__(self, seed: int, image_size: int, *, shifted_curated: bool) -> None:
        self.seed = seed
        self.shifted_curated = shifted_curated
        self.class_names = list(SHAPE_NAMES)
        self.zero_shot_templates = list(ZERO_SHOT_TEMPLATES)
        self.image = ImageSpec(image_size, 3)

    def _shifted(self, split: str) -> bool:
        return self.shifted_curated and split == "curated"

    def _attributes(self, rng: np.random.Generator, split: str) -> _Attributes:
        count = int(rng.integers(1, 4))
        # A group does not fit in the centre, nor three large shapes side by side in a half.
        positions = list(POSITIONS) if count == 1 else list(POSITIONS)[:-1]
        sizes = list(SIZES) if count < 3 else ["small"]
        return _Attributes(
            shape=int(rng.integers(len(SHAPE_NAMES))),
            colour=list(COLOURS)[int(rng.integers(len(COLOURS)))],
            count=count,
            size=sizes[int(rng.integers(len(sizes)))],
            position=positions[int(rng.integers(len(positions)))],
            template=(
                CURATED_TEMPLATES[int(rng.integers(len(CURATED_TEMPLATES)))]
                if self._shifted(split)
                else int(rng.integers(len(TEMPLATES)))
            ),
        )

    def caption(self, split: str, index: int) -> str:
        return self._attributes(sample_rng(self.seed, split, index), split).caption()

    def sample(self, split: str, index: int) -> CleanSample:
        rng = sample_rng(self.seed, split, index)
        attributes = self._attributes(rng, split)  # drawn first: caption() sees the same draws
        top = CURATED_BACKGROUND_MAX if self._shifted(split) else BACKGROUND_MAX
        background = tuple(int(v) for v in rng.integers(0, top, 3))
        metadata = attributes.metadata()
        if self.shifted_curated:  # shapes-v1's json stays as it was
            metadata.update(template=attributes.template, background=list(background))
        return CleanSample(
            _render(attributes, background, self.image.size, rng),
            attributes.caption(),
            attributes.shape,
            metadata,
        )


def _render(
    attributes: _Attributes, background: tuple[int, ...], size: int, rng: np.random.Generator
) -> np.ndarray:
    from PIL import Image, ImageDraw

    side = size * _SUPERSAMPLE
    canvas = Image.new("RGB", (side, side), background)
    draw = ImageDraw.Draw(canvas)
    radius = SIZES[attributes.size] * side
    base = np.array(COLOURS[attributes.colour])
    colour = tuple(int(v) for v in np.clip(base + rng.integers(-20, 21, 3), 0, 255))
    rotation = float(rng.uniform(-0.25, 0.25))
    for x, y in _centres(attributes, side, radius, rng):
        draw.polygon(_outline(SHAPE_NAMES[attributes.shape], x, y, radius, rotation), fill=colour)
    image = np.asarray(canvas.reduce(_SUPERSAMPLE), dtype=np.float32)
    return np.clip(np.rint(image + rng.normal(0.0, 5.0, image.shape)), 0, 255).astype(np.uint8)


def _centres(
    attributes: _Attributes, side: int, radius: float, rng: np.random.Generator
) -> list[tuple[float, float]]:
    """Centres inside the position's region and the image, spread out so that a count can be
    seen: each is the best of 16 random candidates by its distance to the centres placed before."""
    x0, x1, y0, y1 = POSITIONS[attributes.position]
    low_x, high_x = max(radius, x0 * side), min(side - radius, x1 * side)
    low_y, high_y = max(radius, y0 * side), min(side - radius, y1 * side)
    centres = np.empty((0, 2))
    for _ in range(attributes.count):
        xs, ys = rng.uniform(low_x, max(low_x, high_x), 16), rng.uniform(low_y, max(low_y, high_y), 16)
        candidates = np.stack([xs, ys], axis=1)
        gaps = np.linalg.norm(candidates[:, None] - centres[None], axis=2).min(axis=1, initial=np.inf)
        centres = np.vstack([centres, candidates[int(np.argmax(gaps))]])
    return [(float(x), float(y)) for x, y in centres]


def _outline(shape: str, x: float, y: float, r: float, rotation: float) -> list[tuple[float, float]]:
    """The polygon of ``shape`` rotated by ``rotation``, scaled to radius ``r``, centred at (x, y)."""
    cos, sin = math.cos(rotation), math.sin(rotation)
    return [(x + r * (u * cos - v * sin), y + r * (u * sin + v * cos)) for u, v in _UNIT_OUTLINES[shape]]


def _regular(n: int, start: float, radius: float = 1.0) -> list[tuple[float, float]]:
    return [
        (radius * math.cos(start + 2 * math.pi * k / n), radius * math.sin(start + 2 * math.pi * k / n))
        for k in range(n)
    ]


def _star() -> list[tuple[float, float]]:
    outer, inner = _regular(5, -math.pi / 2, 1.2), _regular(5, -math.pi / 2 + math.pi / 5, 0.5)
    return [point for pair in zip(outer, inner, strict=True) for point in pair]


def _heart() -> list[tuple[float, float]]:
    # the classic parametric heart, scaled to about unit radius
    return [
        (
            math.sin(t) ** 3,
            -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)) / 15,
        )
        for t in (2 * math.pi * k / 32 for k in range(32))
    ]


# Outlines centred at the origin with about unit radius, image coordinates (y grows downwards).
_ARM = 0.38  # half the width of a cross's arms
_UNIT_OUTLINES = {
    "circle": _regular(32, 0.0),
    "square": _regular(4, math.pi / 4, 1.15),
    "triangle": _regular(3, -math.pi / 2, 1.2),
    "diamond": [(0.0, -1.2), (0.75, 0.0), (0.0, 1.2), (-0.75, 0.0)],
    "star": _star(),
    "cross": [
        (_ARM, -1.0),
        (_ARM, -_ARM),
        (1.0, -_ARM),
        (1.0, _ARM),
        (_ARM, _ARM),
        (_ARM, 1.0),
        (-_ARM, 1.0),
        (-_ARM, _ARM),
        (-1.0, _ARM),
        (-1.0, -_ARM),
        (-_ARM, -_ARM),
        (-_ARM, -1.0),
    ],
    "hexagon": _regular(6, 0.0),
    "heart": _heart(),
}
SHAPE_NAMES = tuple(_UNIT_OUTLINES)  # the class names; the label is the index


SHAPES = Builtin(
    name="shapes",
    defaults=BuildConfig(curated_size=2000, raw_size=40000, val_size=2000, eval_size=2000),
    make_source=lambda config: ShapesSource(config.seed, config.image_size, shifted_curated=True),
)
"""The default setting (docs/DATA.md, "Data settings"): groups of 4 redundant copies, a smaller
curated split with a mild shift."""

SHAPES_V1 = Builtin(
    name="shapes-v1",
    defaults=BuildConfig(
        curated_size=4000,
        raw_size=40000,
        val_size=2000,
        eval_size=2000,
        noise=NoiseConfig(redundant_copies=None, redundant_sources=20),
    ),
    make_source=lambda config: ShapesSource(config.seed, config.image_size, shifted_curated=False),
)
"""The ablation: the setting before "Data settings" (copies of 20 images, curated from the pool's
own distribution), sample for sample."""
