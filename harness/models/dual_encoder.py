"""The dual encoder: FlexiViT image tower, text tower, and the learnable logit scale and bias
(docs/DESIGN.md §2): the logit of image ``i`` against text ``j`` is ``a · z_i_im · z_j_txt + c``, with ``a``
stored as ``log a`` so that it stays positive."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import UserError
from harness.finite import require_finite
from harness.models.config import ModelConfig, preset_config
from harness.models.flexivit import FlexiViT, PatchEmbedding
from harness.models.transformer import TextTransformer, init_linear_layers
from strategies import Embeddings, Resolution


class ModelInputError(UserError, ValueError):
    """Images or tokens that do not fit the model; the message names the shape expected."""


class DualEncoder(nn.Module):
    """Image and text towers producing L2-normalised embeddings, with logit scale and bias.

    ``resolution`` is ``"full"`` (the config's ``patch_size``), ``"coarse"`` (``coarse_patch_size``)
    or a patch size given directly. Texts longer than ``context_length`` are refused, not truncated:
    a truncation would silently change what is trained and what is counted.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.image = FlexiViT(config)
        self.text = TextTransformer(config)
        init_linear_layers(self)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(config.init_logit_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(config.init_logit_bias)))

    def patch_embedding(self, resolution: Resolution | int) -> PatchEmbedding:
        """The image tower's patch embedding at ``resolution``: the FlexiViT resize, to run once per
        step (with gradients when training) and pass to every :meth:`encode_image` of that step."""
        return self.image.patch_embedding(self.config.patch_size_for(resolution))

    def encode_image(
        self,
        images: torch.Tensor,
        resolution: Resolution | int = "full",
        *,
        patch: PatchEmbedding | None = None,
    ) -> torch.Tensor:
        """L2-normalised image embeddings, ``B x embed_dim``.

        Args:
            images: ``B x C x H x W``; uint8 pixels are mapped to ``[-1, 1]``, floats are used as given.
            resolution: the patch size to run at.
            patch: the step's :meth:`patch_embedding` at this resolution; resized here when omitted.
        """
        cfg = self.config
        expected = (cfg.channels, cfg.image_size, cfg.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ModelInputError(
                f"images of shape {tuple(images.shape)} do not fit the model: expected "
                f"(batch, {', '.join(map(str, expected))}) (channels, height, width)"
            )
        patch_size = cfg.patch_size_for(resolution)
        if patch is None:
            patch = self.image.patch_embedding(patch_size)
        elif patch.patch_size != patch_size:
            raise ModelInputError(
                f"the patch embedding given is for patch size {patch.patch_size}, but resolution "
                f"{resolution!r} runs at patch size {patch_size}"
            )
        pixels = images.to(torch.float32) / 127.5 - 1.0 if images.dtype == torch.uint8 else images
        embedded = require_finite(self.image(pixels, patch), f"image embeddings (patch size {patch_size})")
        return F.normalize(embedded, dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """L2-normalised text embeddings, ``B x embed_dim``, from ``tokens`` (long, ``B x L``, pad 0)."""
        if tokens.ndim != 2 or tokens.dtype != torch.long:
            raise ModelInputError(
                f"tokens must be a long tensor of shape (batch, length); got {tokens.dtype} "
                f"{tuple(tokens.shape)}"
            )
        if tokens.shape[1] > self.config.context_length:
            raise ModelInputError(
                f"texts of {tokens.shape[1]} tokens exceed the model's context of "
                f"{self.config.context_length}; they are refused, not truncated (tokenize with "
                f"context_length={self.config.context_length} or build the model with a longer context)"
            )
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.config.vocab_size):
            raise ModelInputError(
                f"token ids must lie in [0, {self.config.vocab_size}); got ids from {int(tokens.min())} "
                f"to {int(tokens.max())} (a tokenizer with another vocabulary?)"
            )
        return F.normalize(require_finite(self.text(tokens), "text embeddings"), dim=-1)

    def scale_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The logit scale ``a = exp(logit_scale)`` and bias ``c``, as tensors carrying gradients."""
        return self.logit_scale.exp(), self.logit_bias

    @torch.no_grad()
    def embeddings(
        self,
        images: torch.Tensor,
        tokens: torch.Tensor,
        resolution: Resolution | int = "full",
        *,
        patch: PatchEmbedding | None = None,
    ) -> Embeddings:
        """Both towers without gradients, for scoring a super-batch: the strategies' ``Embeddings``."""
        scale, bias = self.scale_bias()
        return Embeddings(
            self.encode_image(images, resolution, patch=patch),
            self.encode_text(tokens),
            float(require_finite(scale, "logit scale")),
            float(require_finite(bias, "logit bias")),
        )


def build_model(
    preset: str,
    *,
    vocab_size: int,
    image_size: int | None = None,
    channels: int | None = None,
    context_length: int | None = None,
) -> DualEncoder:
    """A freshly initialised dual encoder of a preset, sized for the data (see :func:`preset_config`)."""
    return DualEncoder(
        preset_config(
            preset,
            vocab_size=vocab_size,
            image_size=image_size,
            channels=channels,
            context_length=context_length,
        )
    )
