"""Forward FLOPs per example and per tower, counted by fvcore on the actual modules (docs/DESIGN.md §4).

Convention, everywhere in jestbench: **one multiply-add = one FLOP** (fvcore's). fvcore counts the
multiply-adds of matrix products, convolutions and attention, and 5 per element for a layer norm
with affine parameters; element-wise ops (GELU, residual additions, softmax inside attention, pixel
normalisation, the final L2 normalisation) do no multiply-adds and count zero, as fvcore's defaults
do for every model it is used on. ``torch.utils.flop_counter`` counts 2 per multiply-add instead.

Two things fvcore misses on torch 2.13 are handled here: ``aten::scaled_dot_product_attention``
(counted zero without a handle; registered below as the two products ``QKᵀ`` and ``AV``), and the
ops that do no multiply-adds are named explicitly as such, so that :func:`flop_analysis` reports
*nothing* unsupported for our models and any op that appears later (a new layer) shows up there
instead of silently counting zero. The towers use no ``nn.MultiheadAttention``, whose fast path hides
the projections from fvcore (:mod:`harness.models.transformer`).

Counts are per example (traced at batch 1), per tower, per patch size and text length, and cached
in-process per frozen :class:`ModelConfig`; counting ViT-B/16 takes seconds, the small presets
milliseconds. The model is built on the ``meta`` device and materialised uninitialised: FLOPs depend
on shapes only.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.models import DualEncoder, ModelConfig, PatchEmbedding, resize_patch_embedding
from harness.opcount import flop_counter, multiply_adds
from strategies import Resolution

with warnings.catch_warnings():
    # fvcore.nn imports a module that calls torch.jit.script at import time (docs/DESIGN.md §4).
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=DeprecationWarning)
    from fvcore.nn import FlopCountAnalysis

CONVENTION = "1 FLOP = 1 multiply-add (fvcore's convention; torch.utils.flop_counter counts 2)"

# Ops in our towers that do no multiply-adds: counted zero, by name, rather than left "unsupported".
NO_MULTIPLY_ADD_OPS: tuple[str, ...] = (
    "aten::add",  # residuals, position embeddings
    "aten::mul",  # pooling weights; shape arithmetic in the resize
    "aten::div",  # pooling
    "aten::sum",  # pooling
    "aten::mean",  # pooling
    "aten::gelu",
    "aten::ne",  # the padding mask
    "aten::fill_",  # the padding mask
    "aten::embedding",  # a table lookup
)


def _sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``: ``QKᵀ`` and ``AV``, one FLOP per
    multiply-add: ``B·H·Nq·Nk·(d_k + d_v)``. The mask, scaling and softmax add no multiply-adds."""
    query, key, value = (v.type().sizes() for v in inputs[:3])
    *batch, n_query, d_key = query
    n_key, d_value = key[-2], value[-1]
    return int(math.prod(batch) * n_query * n_key * (d_key + d_value))


def flop_analysis(module: nn.Module, inputs: tuple[Any, ...]) -> FlopCountAnalysis:
    """fvcore's ``FlopCountAnalysis`` of ``module(*inputs)`` with jestbench's handles: attention
    counted, the no-multiply-add ops named, and fvcore's log warnings off (check
    ``unsupported_ops()`` instead)."""
    analysis = FlopCountAnalysis(module, inputs)
    analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop_jit)
    analysis.set_op_handle(**dict.fromkeys(NO_MULTIPLY_ADD_OPS))
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


class _ImageTowerAt(nn.Module):
    """The image tower with its patch embedding as inputs, so the trace covers the tower only."""

    def __init__(self, model: DualEncoder) -> None:
        super().__init__()
        self.tower = model.image

    def forward(
        self, images: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, position: torch.Tensor
    ) -> torch.Tensor:
        out: torch.Tensor = self.tower(images, PatchEmbedding(weight, bias, position))
        return out


class _Resize(nn.Module):
    """The FlexiViT resize of the base patch embedding to ``patch_size``, as a module to trace."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size

    def forward(
        self, weight: torch.Tensor, bias: torch.Tensor, position: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        return tuple(resize_patch_embedding(PatchEmbedding(weight, bias, position), self.patch_size))


Traced = tuple[nn.Module, tuple[torch.Tensor, ...]]


def _materialised(config: ModelConfig) -> DualEncoder:
    """The model with uninitialised weights: built on ``meta`` (no init cost), then given memory.
    FLOPs depend on shapes only."""
    with torch.device("meta"):
        model = DualEncoder(config)
    return model.to_empty(device="cpu").eval()


def _image_part(model: DualEncoder, patch_size: int) -> Traced:
    """The image tower at ``patch_size`` and its inputs: one image and the resized patch embedding."""
    cfg = model.config
    with torch.no_grad():
        patch = model.image.patch_embedding(patch_size)
    images = torch.zeros(1, cfg.channels, cfg.image_size, cfg.image_size)
    return _ImageTowerAt(model), (images, *patch)


def traced_parts(config: ModelConfig, text_length: int | None = None) -> dict[str, Traced]:
    """What :func:`model_flops` traces, as ``(module, inputs)`` per part: ``image_full``,
    ``image_coarse`` (one image), ``text`` (one text of ``text_length`` non-padding tokens, the
    context length by default) and ``resize`` (the base patch embedding to the coarse patch size)."""
    length = config.context_length if text_length is None else text_length
    if not 1 <= length <= config.context_length:
        raise ValueError(f"text length {length} is outside [1, context_length={config.context_length}]")
    model = _materialised(config)
    with torch.no_grad():
        base = tuple(model.image.patch_embedding(config.patch_size))
    return {
        "image_full": _image_part(model, config.patch_size),
        "image_coarse": _image_part(model, config.coarse_patch_size),
        "text": (model.text, (torch.ones(1, length, dtype=torch.long),)),
        "resize": (_Resize(config.coarse_patch_size), base),
    }


def count(module: nn.Module, inputs: tuple[Any, ...]) -> int:
    """fvcore's total for ``module(*inputs)``; refuses if any op was unsupported (it would count 0)."""
    analysis = flop_analysis(module, inputs)
    total = int(analysis.total())
    unsupported = analysis.unsupported_ops()
    if unsupported:
        raise RuntimeError(
            f"fvcore met ops it cannot count in {type(module).__name__}: {dict(unsupported)}; register a "
            "handle in harness.flops (or name the op in NO_MULTIPLY_ADD_OPS if it does no multiply-adds)"
        )
    return total


@dataclass(frozen=True)
class ModelFlops:
    """Forward FLOPs per example of one dual encoder, per tower (1 FLOP = 1 multiply-add).

    ``resize`` is the forward FLOPs of the FlexiViT resize of the patch embedding to the coarse patch
    size, which runs once per step that uses the coarse resolution (it does not scale with the batch).
    """

    image_full: int
    image_coarse: int
    text: int
    resize: int
    embed_dim: int
    text_length: int

    def image(self, resolution: Resolution) -> int:
        """``F_img`` at a resolution."""
        return self.image_full if resolution == "full" else self.image_coarse

    def forward(self, resolution: Resolution = "full") -> int:
        """``F_txt + F_img`` at a resolution: one example through both towers."""
        return self.text + self.image(resolution)

    @property
    def full(self) -> int:
        """``F``: one example through both towers at full resolution."""
        return self.forward("full")

    @property
    def coarse_ratio(self) -> float:
        """``A = F_img,coarse / F_img`` (JEST §3.3; the paper reports 0.28 for patch 32 vs 16)."""
        return self.image_coarse / self.image_full


@functools.cache
def model_flops(config: ModelConfig, text_length: int | None = None) -> ModelFlops:
    """Count ``F_img`` (full and coarse), ``F_txt`` and the resize of a config with fvcore, once per
    process per ``(config, text_length)``; ``text_length`` defaults to the context length."""
    parts = traced_parts(config, text_length)
    counts = {name: count(module, inputs) for name, (module, inputs) in parts.items()}
    text_inputs = parts["text"][1]
    return ModelFlops(**counts, embed_dim=config.embed_dim, text_length=text_inputs[0].shape[1])


def image_tower_flops(config: ModelConfig, patch_sizes: Sequence[int]) -> dict[int, int]:
    """``F_img`` per example at each of ``patch_sizes`` (FlexiViT runs at any that tiles the image)."""
    model = _materialised(config)
    return {p: count(*_image_part(model, p)) for p in patch_sizes}


@dataclass(frozen=True)
class TrainingCost:
    """Multiply-adds of one example through each tower, forward and forward + backward, counted by
    ``FlopCounterMode`` (:mod:`harness.opcount`, halved) on the actual modules in training mode.

    The ledger charges a training step ``3F`` (backward = 2x forward). What runs differs: the patch
    embedding of the image tower needs no gradient for its input (the pixels), so its backward is 1x
    its forward, and torch's attention backward counts 2.5x its forward. ``ratio`` is the measured
    ``(forward + backward) / forward``; both counts cover the same ops (matrix products, convolutions,
    attention; layer norms and element-wise ops count in neither), so the ratio applies to fvcore's F.
    """

    image_forward: int
    image_training: int
    text_forward: int
    text_training: int

    @property
    def image_ratio(self) -> float:
        return self.image_training / self.image_forward

    @property
    def text_ratio(self) -> float:
        return self.text_training / self.text_forward

    @property
    def ratio(self) -> float:
        """Both towers at full resolution: what one training example costs, in forward passes."""
        return (self.image_training + self.text_training) / (self.image_forward + self.text_forward)

    @property
    def overcharge(self) -> float:
        """How much ``3F`` per example exceeds what runs: ``3 / ratio - 1`` (negative: under-charged)."""
        return 3 / self.ratio - 1


@functools.cache
def training_cost(config: ModelConfig) -> TrainingCost:
    """Count a training pass (forward, then backward of the sum of the embeddings) of one example
    through each tower at full resolution, once per process per config. Weights are a constant: the
    counts depend on shapes only."""
    model = _materialised(config).train()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(0.01)
    images = torch.zeros(1, config.channels, config.image_size, config.image_size, dtype=torch.uint8)
    tokens = torch.ones(1, config.context_length, dtype=torch.long)
    towers: dict[str, Callable[[], torch.Tensor]] = {
        "image": lambda: model.encode_image(images, "full"),
        "text": lambda: model.encode_text(tokens),
    }
    counts: dict[str, int] = {}
    for name, run in towers.items():
        with flop_counter() as forward:
            run()
        with flop_counter() as training:
            torch.autograd.backward(run().sum())
        counts[f"{name}_forward"] = multiply_adds(forward)
        counts[f"{name}_training"] = multiply_adds(training)
    return TrainingCost(**counts)
