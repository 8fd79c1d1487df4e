"""The web-like noise of the raw pool: which kinds, at which rates, and how each is made.

Kinds (recorded per sample in its ``json`` as ``noise``):

- ``clean``: the image with its own caption.
- ``redundant``: a near-copy (pixel noise, brightness jitter) of a *source* image, with that image's
  caption. Clean, but each adds little once the model has learnt its source. Web pools are full of
  these (stock photos, product shots, memes re-posted many times). ``shapes`` makes them in groups of
  ``redundant_copies`` (4) near-copies of one image, so that a batch rarely holds two copies of one
  image (they would be each other's negatives in the loss); ``shapes-v1`` draws each copy's image at
  random from ``redundant_sources`` (20) images. docs/DATA.md, "Data settings", has the arithmetic.
- ``mismatched``: the image with the caption of another sample, as when alt text describes
  something else on the page.
- ``uninformative``: the image with boilerplate alt text ("image", "IMG_0412.jpg", "click to
  enlarge").
- ``unlearnable``: an image of uniform pixel noise with the caption of a random sample.

Defaults and why (docs/DATA.md has the longer argument): 35% clean, 15% redundant, 25% mismatched,
15% uninformative, 10% unlearnable. A prototype of this benchmark (docs/DESIGN.md §5) showed that selection
can only fill a clean sub-batch when the clean fraction exceeds ``b/B`` (0.2 at filter ratio 0.8), and
that JEST beat uniform on FLOPs at 30% clean but not at 55%; DataComp's best filters keep roughly the
top 30% of a raw web pool. Without redundant pairs a reference trained on clean data is simply a
noise filter, and easy-reference scoring beats learnability, unlike on web data; with them, the
reference keeps rating the copies easy while the learner soon learns them, which is what separates
learnability from easy-reference scoring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.data.errors import DataError
from harness.data.samples import UNKNOWN_NOISE

NOISE_KINDS = ("clean", "redundant", "mismatched", "uninformative", "unlearnable")
# What a sample's noise kind can read: the built-in kinds, or "unknown" (your own data, unless its
# json says). Run files count selections for each of these; reports show those a pool holds.
RECORDED_NOISE_KINDS = (*NOISE_KINDS, UNKNOWN_NOISE)
_RATE_KINDS = NOISE_KINDS[1:]  # clean is what the others leave
_SCHEMES = ("redundant_copies", "redundant_sources")  # how redundant copies are made (one is set)

# Alt text that says nothing about the image; "{n}" takes a random number (a one-off word).
UNINFORMATIVE_CAPTIONS = (
    "image",
    "photo",
    "picture",
    "untitled",
    "thumbnail",
    "stock photo",
    "click to enlarge",
    "image not available",
    "no description available",
    "view full size",
    "product image",
    "screenshot",
    "cover image",
    "download",
    "IMG_{n}.jpg",
    "DSC{n}",
    "photo {n}",
    "gallery image {n}",
)


@dataclass(frozen=True)
class NoiseConfig:
    """Rates of each noise kind in the raw pool (the rest is clean) and how the redundant near-copies
    are made: in groups of ``redundant_copies`` copies of one image each, or (``shapes-v1``, when
    ``redundant_sources`` is given instead) each a copy of one of ``redundant_sources`` images drawn
    at random. Exactly one of the two is set."""

    redundant: float = 0.15
    mismatched: float = 0.25
    uninformative: float = 0.15
    unlearnable: float = 0.10
    redundant_copies: int | None = 4
    redundant_sources: int | None = None

    def __post_init__(self) -> None:
        rates = self.rates()
        bad = {k: v for k, v in rates.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise DataError(f"noise rates must lie in [0, 1]; got {bad}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise DataError(f"noise rates add up to {sum(rates.values()):.3f} > 1: {rates}")
        schemes = {"redundant_copies": self.redundant_copies, "redundant_sources": self.redundant_sources}
        given = {name: value for name, value in schemes.items() if value is not None}
        if len(given) != 1:
            raise DataError(f"set one of redundant_copies and redundant_sources; got {schemes}")
        for name, value in given.items():
            if value < 1:
                raise DataError(f"{name} must be >= 1; got {value}")

    def rates(self) -> dict[str, float]:
        """The noise rates by kind (clean excluded)."""
        return {kind: float(getattr(self, kind)) for kind in _RATE_KINDS}

    @property
    def redundant_scheme(self) -> tuple[str, int]:
        """How the redundant samples are made: ``("copies", c)``, groups of c copies of one image, or
        ``("sources", n)``, each a copy of one of n images drawn at random (``shapes-v1``)."""
        if self.redundant_sources is not None:
            return "sources", self.redundant_sources
        return "copies", int(self.redundant_copies or 0)  # __post_init__ saw that exactly one is set

    @property
    def clean(self) -> float:
        return 1.0 - sum(self.rates().values())

    def counts(self, n: int) -> dict[str, int]:
        """Exact counts of each kind among ``n`` samples (rounded; clean takes the rest)."""
        counts = {kind: round(rate * n) for kind, rate in self.rates().items()}
        overflow = sum(counts.values()) - n
        if overflow > 0:  # rounding up pushed the total past n: take it back from the largest kind
            counts[max(counts, key=lambda k: counts[k])] -= overflow
        return {"clean": n - sum(counts.values()), **counts}

    def with_assignments(self, assignments: Sequence[str]) -> NoiseConfig:
        """This config with ``KIND=RATE``, ``redundant_copies=N`` or ``redundant_sources=N`` assignments
        applied (setting one of the last two unsets the other)."""
        changes: dict[str, Any] = {}
        for assignment in assignments:
            kind, sep, value = assignment.partition("=")
            kind = kind.strip().replace("-", "_")
            if not sep or kind not in (*_RATE_KINDS, *_SCHEMES):
                raise DataError(
                    f"--noise {assignment!r}: expected KIND=RATE with KIND one of "
                    f"{', '.join(_RATE_KINDS)} (clean takes the rest), redundant_copies=N or redundant_sources=N"
                )
            try:
                changes[kind] = int(value) if kind in _SCHEMES else float(value)
            except ValueError:
                raise DataError(f"--noise {assignment!r}: {value!r} is not a number") from None
            if kind in _SCHEMES:
                changes.update({other: None for other in _SCHEMES if other != kind})
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": round(self.clean, 6),
            **self.rates(),
            **{name: getattr(self, name) for name in _SCHEMES},
        }


NO_NOISE = NoiseConfig(redundant=0.0, mismatched=0.0, uninformative=0.0, unlearnable=0.0)


def assign_kinds(n: int, config: NoiseConfig, rng: np.random.Generator) -> list[str]:
    """The noise kind of each of ``n`` samples: exactly :meth:`NoiseConfig.counts`, in a seeded order."""
    kinds = [kind for kind, count in config.counts(n).items() for _ in range(count)]
    return [kinds[i] for i in rng.permutation(n)]


def copy_groups(positions: Sequence[int], copies: int, rng: np.random.Generator) -> list[list[int]]:
    """A seeded partition of the redundant samples' ``positions`` into groups of ``copies`` (the last
    smaller when ``copies`` does not divide their number): each group is near-copies of one image."""
    shuffled = [positions[i] for i in rng.permutation(len(positions))]
    return [shuffled[start : start + copies] for start in range(0, len(shuffled), copies)]


def uninformative_caption(rng: np.random.Generator) -> str:
    template = UNINFORMATIVE_CAPTIONS[int(rng.integers(len(UNINFORMATIVE_CAPTIONS)))]
    return template.format(n=int(rng.integers(1000, 10000)))


def near_copy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A near-copy of ``image``: brightness scaled by up to ±10% and pixel noise of sd 6."""
    scaled = image.astype(np.float32) * rng.uniform(0.9, 1.1) + rng.normal(0.0, 6.0, image.shape)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def noise_image(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """An unlearnable image: independent uniform pixels."""
    return rng.integers(0, 256, size=shape, dtype=np.uint8)
