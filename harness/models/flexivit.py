"""The FlexiViT image tower (Beyer et al., "FlexiViT: One Model for All Patch Sizes", CVPR 2023).

One set of weights runs at any patch size that tiles the image. The patch-embedding kernel is kept at
the base (full-resolution) patch size and *resized* for another patch size with the paper's
pseudo-inverse resize (PI-resize, FlexiViT §3.4; big_vision's ``resample_patchemb``): if ``R`` is the
linear map that bilinearly resizes a ``p x p`` patch to ``p' x p'``, the resized kernel ``ŵ`` solves
``<R x, ŵ> = <x, w>`` for every patch ``x`` in the least-squares sense, ``ŵ = pinv(Rᵀ) w``; for
``p' >= p`` it holds exactly, so a token of an up-sampled patch equals the original token. The
learned position embeddings (a ``g x g`` grid at the base patch size) are bilinearly interpolated to
the new grid, as FlexiViT does.

The resize is a separate, differentiable step (:meth:`FlexiViT.patch_embedding`): the training loop
runs it once per step and passes the result to every forward pass at that patch size, gradients
flow through it to the base weights, and fvcore counts the tower's forward without it (the resize is
charged once per step, docs/DESIGN.md §4).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.config import ModelConfig, check_patch_size
from harness.models.transformer import Encoder


class PatchEmbedding(NamedTuple):
    """The patch-embedding parameters at one patch size: ``weight`` (``D x C x p x p``), ``bias``
    (``D``) and ``position`` (``1 x D x g x g`` with ``g = image_size / p``)."""

    weight: torch.Tensor
    bias: torch.Tensor
    position: torch.Tensor

    @property
    def patch_size(self) -> int:
        return int(self.weight.shape[-1])


def bilinear_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the last two dims of ``x`` (``N x C x h x w``) to ``size x size``: bilinear, half-pixel
    centres, no anti-aliasing (``tf.image.resize(method="bilinear")``, which big_vision's PI-resize
    uses)."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)


@functools.cache
def pinv_resize_matrix(old: int, new: int) -> torch.Tensor:
    """``pinv(R)`` (float64, ``old² x new²``), where ``R`` (``new² x old²``) is the bilinear resize of
    an ``old x old`` patch to ``new x new``: a flattened kernel ``w`` maps to ``w @ pinv(R)``.

    A constant of the two patch sizes, computed once per process (its few milliseconds are not
    charged: they do not grow with training).
    """
    basis = torch.eye(old * old, dtype=torch.float64, device="cpu").reshape(old * old, 1, old, old)
    resize = bilinear_resize(basis, new).reshape(old * old, new * new).T
    pinv: torch.Tensor = torch.linalg.pinv(resize)
    return pinv


def resize_patch_embedding(base: PatchEmbedding, patch_size: int) -> PatchEmbedding:
    """``base`` resized to ``patch_size``: PI-resize of the kernel, bilinear position embeddings.

    Differentiable in ``base``; returns ``base`` itself when the patch size is unchanged.
    """
    old = base.patch_size
    if patch_size == old:
        return base
    grid = base.position.shape[-1] * old // patch_size
    matrix = pinv_resize_matrix(old, patch_size).to(base.weight)
    weight = base.weight.flatten(2) @ matrix
    out_channels, in_channels = base.weight.shape[:2]
    return PatchEmbedding(
        weight.reshape(out_channels, in_channels, patch_size, patch_size),
        base.bias,
        bilinear_resize(base.position, grid),
    )


class FlexiViT(nn.Module):
    """ViT image tower with a per-call patch size: patchify, add position embeddings, encoder, mean
    of the tokens (global average pooling), linear head to the embedding dimension."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.image_size = config.image_size
        width, patch = config.width, config.patch_size
        grid = config.image_size // patch
        self.patch_weight = nn.Parameter(torch.empty(width, config.channels, patch, patch))
        self.patch_bias = nn.Parameter(torch.zeros(width))
        self.position = nn.Parameter(torch.empty(1, width, grid, grid))
        self.encoder = Encoder(width, config.depth, config.heads, config.mlp_ratio)
        self.head = nn.Linear(width, config.embed_dim)
        # LeCun-normal patch kernel and N(0, 1/width) position embeddings, as big_vision's ViT.
        nn.init.normal_(self.patch_weight, std=(config.channels * patch * patch) ** -0.5)
        nn.init.normal_(self.position, std=width**-0.5)

    def patch_embedding(self, patch_size: int) -> PatchEmbedding:
        """The patch-embedding parameters at ``patch_size`` (the FlexiViT resize; identity at the base
        patch size). Run it once per step and pass the result to :meth:`forward`."""
        check_patch_size(patch_size, self.image_size, "patch size")
        return resize_patch_embedding(
            PatchEmbedding(self.patch_weight, self.patch_bias, self.position), patch_size
        )

    def forward(self, images: torch.Tensor, patch: PatchEmbedding) -> torch.Tensor:
        """``images`` (float, ``B x C x H x W``, normalised) -> unnormalised ``B x embed_dim``."""
        p = patch.patch_size
        x = F.conv2d(images, patch.weight, patch.bias, stride=p)
        x = x.flatten(2).transpose(1, 2) + patch.position.flatten(2).transpose(1, 2)
        out: torch.Tensor = self.head(self.encoder(x).mean(dim=1))
        return out
