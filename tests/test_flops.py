"""FLOP counting: fvcore on the actual towers against an analytic count of the same model, against
``torch.utils.flop_counter`` (2 per multiply-add), and ViT-B/16 against the well-known fvcore figure."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from harness.flops import CONVENTION, count, flop_analysis, image_tower_flops, model_flops, traced_parts
from harness.models import ModelConfig, preset_config

# A config unlike the presets (uneven heads, mlp ratio 3, towers of different sizes), so the
# analytic check is not tuned to them.
ODD = dataclasses.replace(
    preset_config("tiny"),
    image_size=24,
    channels=1,
    patch_size=4,
    coarse_patch_size=12,
    width=48,
    depth=2,
    heads=3,
    mlp_ratio=3,
    text_width=40,
    text_depth=3,
    text_heads=5,
    context_length=10,
    embed_dim=24,
)
CONFIGS = {"tiny": preset_config("tiny"), "small": preset_config("small"), "odd": ODD}


def _blocks(tokens: int, width: int, depth: int, mlp_ratio: int) -> int:
    """Multiply-adds of ``depth`` pre-norm blocks and a final layer norm over ``tokens`` tokens:
    q, k, v and output projections 4·N·d², attention products QKᵀ and AV 2·N²·d, MLP 2·r·N·d², two
    layer norms at 5 per element (fvcore's count with affine parameters)."""
    n, d = tokens, width
    block = 4 * n * d * d + 2 * n * n * d + 2 * mlp_ratio * n * d * d + 2 * 5 * n * d
    return depth * block + 5 * n * d


def analytic_image(cfg: ModelConfig, patch: int) -> int:
    n = (cfg.image_size // patch) ** 2
    patchify = n * cfg.channels * patch * patch * cfg.width
    return patchify + _blocks(n, cfg.width, cfg.depth, cfg.mlp_ratio) + cfg.width * cfg.embed_dim


def analytic_text(cfg: ModelConfig, length: int) -> int:
    return _blocks(length, cfg.text_width, cfg.text_depth, cfg.mlp_ratio) + cfg.text_width * cfg.embed_dim


def analytic_resize(cfg: ModelConfig) -> int:
    """PI-resize: a (p² -> p'²) matrix applied to each of the C·D kernels; bilinear position
    interpolation at fvcore's 4 per output element."""
    p, q = cfg.patch_size, cfg.coarse_patch_size
    grid = cfg.image_size // q
    return p * p * q * q * cfg.channels * cfg.width + 4 * cfg.width * grid * grid


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fvcore_count_equals_the_analytic_count(name: str) -> None:
    cfg = CONFIGS[name]
    flops = model_flops(cfg)
    expected = {
        "image_full": analytic_image(cfg, cfg.patch_size),
        "image_coarse": analytic_image(cfg, cfg.coarse_patch_size),
        "text": analytic_text(cfg, cfg.context_length),
        "resize": analytic_resize(cfg),
    }
    for field, value in expected.items():
        assert getattr(flops, field) == pytest.approx(value, rel=0.01), field
    assert flops.coarse_ratio == pytest.approx(expected["image_coarse"] / expected["image_full"], rel=0.01)
    assert model_flops(cfg, 4).text == pytest.approx(analytic_text(cfg, 4), rel=0.01)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_no_op_is_left_unsupported(name: str) -> None:
    """Every op of both towers (at both patch sizes) and of the resize is counted or named as doing
    no multiply-adds; attention in particular is counted (it is fvcore's blind spot)."""
    parts = traced_parts(CONFIGS[name])
    assert set(parts) == {"image_full", "image_coarse", "text", "resize"}
    for part, (module, inputs) in parts.items():
        analysis = flop_analysis(module, inputs)
        assert analysis.total() > 0
        assert not analysis.unsupported_ops(), part
        if part != "resize":
            assert analysis.by_operator()["scaled_dot_product_attention"] > 0, part


def test_an_uncountable_op_is_refused() -> None:
    class Cumulative(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cumsum(x, dim=0)

    with pytest.raises(RuntimeError, match=r"aten::cumsum"):
        count(Cumulative(), (torch.ones(3),))


def test_the_count_does_not_depend_on_the_mode() -> None:
    """No fast path hides projections under eval() + no_grad (docs/DESIGN.md §4)."""
    for part in ("image_full", "text"):
        module, inputs = traced_parts(CONFIGS["small"])[part]
        module.train()
        training = flop_analysis(module, inputs).total()
        module.eval()
        with torch.no_grad():
            evaluating = flop_analysis(module, inputs).total()
        assert training == evaluating, part


def _flop_counter_mode(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """torch's own counter (2 per multiply-add); on CPU attention runs as an op it has no formula
    for, so it gets torch's own SDPA formula."""

    def sdpa(query: list[int], key: list[int], value: list[int], *args: object, **kwargs: object) -> int:
        return int(sdpa_flop_count(query, key, value))

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: sdpa}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        module(*inputs)
    return counter.get_total_flops()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_flop_counter_mode_agrees_in_its_own_convention(name: str) -> None:
    """torch.utils.flop_counter counts 2 per multiply-add and neither layer norms nor interpolation:
    half its count is fvcore's without those two."""
    for part, (module, inputs) in traced_parts(CONFIGS[name]).items():
        by_operator = flop_analysis(module, inputs).by_operator()
        products = sum(by_operator.values()) - by_operator["layer_norm"] - by_operator["upsample_bilinear2d"]
        assert products > 0, part
        assert _flop_counter_mode(module, inputs) / 2 == pytest.approx(products, rel=0.01), part


def test_counts_are_per_example_and_cached() -> None:
    cfg = CONFIGS["tiny"]
    assert model_flops(cfg) is model_flops(cfg)
    module, (images, *patch) = traced_parts(cfg)["image_full"]
    assert count(module, (images.expand(3, -1, -1, -1), *patch)) == 3 * model_flops(cfg).image_full
    module, (tokens,) = traced_parts(cfg)["text"]
    assert count(module, (tokens.expand(3, -1),)) == 3 * model_flops(cfg).text


def test_vit_b16_against_the_paper_and_fvcore() -> None:
    """ViT-B/16 at 224 px: 17.58 GFLOPs by fvcore for the standard model with a class token (197
    tokens) and a 1000-class head; ours pools the 196 patch tokens (no class token) into a 768-d
    embedding, 0.5% less. At 256 px, coarse patch 32 costs A ≈ 0.245 of the image tower (paper: 0.28)."""
    b16 = preset_config("B/16")
    at_224 = image_tower_flops(dataclasses.replace(b16, image_size=224), [16])[16]
    assert at_224 == pytest.approx(17.58e9, rel=0.01)
    assert at_224 == analytic_image(dataclasses.replace(b16, image_size=224), 16)
    flops = model_flops(b16)
    assert flops.image_full == analytic_image(b16, 16)
    assert flops.text == analytic_text(b16, 64)
    assert 0.24 < flops.coarse_ratio < 0.25


def test_convention_is_stated() -> None:
    assert "1 FLOP = 1 multiply-add" in CONVENTION
