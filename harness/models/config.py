"""Model configurations and the named presets.

A :class:`ModelConfig` fixes every size of the dual encoder (docs/DESIGN.md §2): a FlexiViT image tower that
runs at two patch sizes (``patch_size`` for training and evaluation, ``coarse_patch_size`` for
Flexi-JEST's approximate scoring, paper §3.3) and a text transformer. Sizes that belong to the data
(image size, channels, vocabulary, context length) are overridden by :func:`preset_config`'s
keywords, so one preset serves every dataset.

The logit scale ``a`` and bias ``c`` are initialised per preset: SigLIP's ``a = 10, c = -10`` was
tuned for 32k batches; with ``n`` pairs per batch the loss is balanced near ``c ≈ -log n`` (one
positive against ``n - 1`` negatives per row), so the small presets start there.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from harness.errors import UserError
from strategies import Resolution


class ModelConfigError(UserError, ValueError):
    """A model configuration that cannot be built; the message names the field and what fits."""


@dataclass(frozen=True)
class ModelConfig:
    """Every size of a dual encoder. Frozen and hashable: FLOP counts are cached per config."""

    image_size: int
    channels: int
    patch_size: int
    coarse_patch_size: int
    width: int
    depth: int
    heads: int
    mlp_ratio: int
    text_width: int
    text_depth: int
    text_heads: int
    context_length: int
    vocab_size: int
    embed_dim: int
    init_logit_scale: float
    init_logit_bias: float

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "int" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ModelConfigError(f"model config: {field.name}={value!r} must be an integer >= 1")
        for name in ("patch_size", "coarse_patch_size"):
            check_patch_size(getattr(self, name), self.image_size, name)
        if self.width % self.heads:
            raise ModelConfigError(f"model config: heads={self.heads} does not divide width={self.width}")
        if self.text_width % self.text_heads:
            raise ModelConfigError(
                f"model config: text_heads={self.text_heads} does not divide text_width={self.text_width}"
            )
        if not (math.isfinite(self.init_logit_scale) and self.init_logit_scale > 0):
            raise ModelConfigError(
                f"model config: init_logit_scale={self.init_logit_scale!r} must be a finite number > 0 "
                "(it is the scale a itself; the model stores log a)"
            )
        if not math.isfinite(self.init_logit_bias):
            raise ModelConfigError(f"model config: init_logit_bias={self.init_logit_bias!r} must be finite")

    def patch_size_for(self, resolution: Resolution | int) -> int:
        """The patch size of a resolution: ``"full"``, ``"coarse"``, or a patch size given directly."""
        if resolution == "full":
            return self.patch_size
        if resolution == "coarse":
            return self.coarse_patch_size
        if isinstance(resolution, bool) or not isinstance(resolution, int):
            raise ModelConfigError(
                f"resolution {resolution!r} is neither 'full', 'coarse' nor a patch size (an int)"
            )
        return check_patch_size(resolution, self.image_size, "patch size")

    def tokens(self, resolution: Resolution | int) -> int:
        """The image tower's sequence length at a resolution: ``(image_size / patch_size)²``."""
        return (self.image_size // self.patch_size_for(resolution)) ** 2


def check_patch_size(patch_size: int, image_size: int, what: str) -> int:
    """Return ``patch_size`` if it tiles ``image_size`` exactly; otherwise raise naming both."""
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ModelConfigError(f"{what}={patch_size!r} must be an integer >= 1")
    if image_size % patch_size:
        fitting = [p for p in range(1, image_size + 1) if image_size % p == 0]
        raise ModelConfigError(
            f"{what}={patch_size} does not divide the image size {image_size}: the patches must tile "
            f"the image exactly (patch sizes that fit: {', '.join(map(str, fitting))})"
        )
    return patch_size


_TINY = ModelConfig(
    image_size=32,
    channels=3,
    patch_size=8,
    coarse_patch_size=16,
    width=32,
    depth=1,
    heads=2,
    mlp_ratio=2,
    text_width=32,
    text_depth=1,
    text_heads=2,
    context_length=16,
    vocab_size=512,
    embed_dim=32,
    init_logit_scale=10.0,
    init_logit_bias=-math.log(32),
)

PRESETS: Mapping[str, ModelConfig] = MappingProxyType(
    {
        # For tests: a step in ~12 ms; the tests' batches are of ~32 pairs, hence c = -log 32.
        "tiny": _TINY,
        # The default leaderboard on 2 CPU cores: 32 px images in 4x4 = 16 patches of 8 px (2x2 patches of
        # 16 px when coarse, A = 0.32), two layers of width 64 in each tower; c = -log 128 (b = 128 by default). Patch 8 rather
        # than 4: at equal FLOPs on shapes, uniform reached a mean score of 0.106 against 0.072 with
        # patch 4 (1.79e12 FLOPs each; patch 4's 2.7x cost per example buys fewer steps than it repays).
        "small": dataclasses.replace(
            _TINY,
            patch_size=8,
            coarse_patch_size=16,
            width=64,
            depth=2,
            heads=2,
            mlp_ratio=4,
            text_width=64,
            text_depth=2,
            text_heads=2,
            context_length=16,
            embed_dim=64,
            init_logit_bias=-math.log(128),
        ),
        # The paper's learner for FLOP accounting (never trained here): ViT-B/16 at 256 px as JEST
        # trains it, coarse patch 32, with a BERT-base-sized text tower over 64 tokens; SigLIP's init.
        "B/16": ModelConfig(
            image_size=256,
            channels=3,
            patch_size=16,
            coarse_patch_size=32,
            width=768,
            depth=12,
            heads=12,
            mlp_ratio=4,
            text_width=768,
            text_depth=12,
            text_heads=12,
            context_length=64,
            vocab_size=32_000,
            embed_dim=768,
            init_logit_scale=10.0,
            init_logit_bias=-10.0,
        ),
    }
)


def preset_config(
    preset: str,
    *,
    vocab_size: int | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    context_length: int | None = None,
) -> ModelConfig:
    """The config of a named preset, with the data-dependent sizes that are given replacing its own.

    Raises :class:`ModelConfigError` for an unknown preset (with the closest names) or for sizes that
    do not fit it (a patch size that does not divide the image size, ...).
    """
    try:
        config = PRESETS[preset]
    except KeyError:
        close = difflib.get_close_matches(preset, list(PRESETS), n=2, cutoff=0.4)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ModelConfigError(
            f"unknown model preset {preset!r}{hint} (presets: {', '.join(PRESETS)})"
        ) from None
    overrides = {
        "vocab_size": vocab_size,
        "image_size": image_size,
        "channels": channels,
        "context_length": context_length,
    }
    try:
        return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    except ModelConfigError as err:
        raise ModelConfigError(f"preset {preset!r}: {err}") from None
