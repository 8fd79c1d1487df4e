"""The dual encoder: shapes, the FlexiViT resize, the learnable scale and bias, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from harness.errors import UserError
from harness.finite import NonFiniteError, require_finite
from harness.losses import sigmoid_loss
from harness.models import (
    PRESETS,
    ModelConfigError,
    ModelInputError,
    PatchEmbedding,
    build_model,
    preset_config,
    resize_patch_embedding,
)
from harness.models.flexivit import bilinear_resize
from strategies import Embeddings

VOCAB = 100


def _batch(model: torch.nn.Module, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = model.config
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, cfg.channels, cfg.image_size, cfg.image_size), generator=generator)
    tokens = torch.randint(1, cfg.vocab_size, (n, cfg.context_length), generator=generator)
    tokens[:, cfg.context_length // 2 :] = 0  # padding
    return images.to(torch.uint8), tokens


@pytest.fixture
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("tiny", vocab_size=VOCAB)


def test_presets_build_with_the_data_sizes() -> None:
    model = build_model("small", vocab_size=VOCAB, image_size=32, channels=1, context_length=12)
    cfg = model.config
    assert (cfg.vocab_size, cfg.image_size, cfg.channels, cfg.context_length) == (VOCAB, 32, 1, 12)
    assert cfg.width == PRESETS["small"].width
    assert set(PRESETS) == {"tiny", "small", "B/16"}
    b16 = PRESETS["B/16"]
    assert (b16.image_size, b16.patch_size, b16.width, b16.depth, b16.context_length) == (
        256,
        16,
        768,
        12,
        64,
    )
    assert (b16.text_width, b16.text_depth, b16.text_heads) == (768, 12, 12)


@pytest.mark.parametrize("resolution", ["full", "coarse"])
def test_embeddings_are_normalised_at_both_resolutions(tiny: torch.nn.Module, resolution: str) -> None:
    images, tokens = _batch(tiny, 5)
    image = tiny.encode_image(images, resolution)
    text = tiny.encode_text(tokens)
    assert image.shape == text.shape == (5, tiny.config.embed_dim)
    torch.testing.assert_close(image.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(text.norm(dim=1), torch.ones(5))


def test_uint8_images_are_normalised_inside(tiny: torch.nn.Module) -> None:
    images, _ = _batch(tiny, 3)
    as_float = images.float() / 127.5 - 1.0
    torch.testing.assert_close(tiny.encode_image(images), tiny.encode_image(as_float))


def test_padding_does_not_change_a_text(tiny: torch.nn.Module) -> None:
    tiny.eval()
    short = torch.tensor([[5, 6, 7]])
    padded = torch.tensor([[5, 6, 7] + [0] * (tiny.config.context_length - 3)])
    torch.testing.assert_close(tiny.encode_text(short), tiny.encode_text(padded))
    only_padding = torch.zeros(2, 4, dtype=torch.long)
    assert torch.isfinite(tiny.encode_text(only_padding)).all()


def test_embeddings_helper_gives_strategy_embeddings_without_gradients(tiny: torch.nn.Module) -> None:
    images, tokens = _batch(tiny, 4)
    embeddings = tiny.embeddings(images, tokens, "coarse")
    assert isinstance(embeddings, Embeddings)
    assert not embeddings.image.requires_grad and not embeddings.text.requires_grad
    scale, bias = tiny.scale_bias()
    assert embeddings.scale == pytest.approx(scale.item()) == pytest.approx(tiny.config.init_logit_scale)
    assert embeddings.bias == pytest.approx(bias.item()) == pytest.approx(tiny.config.init_logit_bias)


def test_resize_to_the_same_patch_size_is_the_identity(tiny: torch.nn.Module) -> None:
    base = tiny.patch_embedding("full")
    assert base.weight is tiny.image.patch_weight
    assert resize_patch_embedding(base, base.patch_size) is base


def test_resized_model_at_twice_the_patch_size_runs() -> None:
    torch.manual_seed(0)
    model = build_model("small", vocab_size=VOCAB)
    cfg = model.config
    coarse = model.patch_embedding("coarse")
    grid = cfg.image_size // cfg.coarse_patch_size
    assert coarse.weight.shape == (cfg.width, cfg.channels, cfg.coarse_patch_size, cfg.coarse_patch_size)
    assert coarse.position.shape == (1, cfg.width, grid, grid)
    images, _ = _batch(model, 2)
    assert model.encode_image(images, "coarse", patch=coarse).shape == (2, cfg.embed_dim)
    # Any patch size that tiles the image runs with the same weights (FlexiViT's point).
    assert model.encode_image(images, 2).shape == (2, cfg.embed_dim)


@pytest.mark.parametrize(("old", "new"), [(4, 8), (8, 16), (3, 7)])
def test_pinv_resize_preserves_tokens_of_upsampled_patches(old: int, new: int) -> None:
    """FlexiViT §3.4: with ŵ = pinv(Rᵀ)w, <resize(x), ŵ> = <x, w> for every patch x when upsampling."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 3, old, old, generator=generator, dtype=torch.float64)
    grid = new  # an image of old·new pixels: a grid of `new` patches of `old` pixels
    base = PatchEmbedding(
        weight, torch.zeros(6, dtype=torch.float64), torch.zeros(1, 6, grid, grid, dtype=torch.float64)
    )
    resized = resize_patch_embedding(base, new)
    patches = torch.randn(10, 3, old, old, generator=generator, dtype=torch.float64)
    tokens = F.conv2d(patches, weight, stride=old)
    tokens_resized = F.conv2d(bilinear_resize(patches, new), resized.weight, stride=new)
    torch.testing.assert_close(tokens_resized, tokens, rtol=1e-9, atol=1e-9)
    # A plain bilinear resize of the kernel does not have the property: the pinv is what matters.
    naive = bilinear_resize(weight, new) * (old / new) ** 2
    assert not torch.allclose(F.conv2d(bilinear_resize(patches, new), naive, stride=new), tokens, atol=1e-3)


def test_position_embeddings_are_interpolated(tiny: torch.nn.Module) -> None:
    coarse = tiny.patch_embedding("coarse")
    # Halving a grid with bilinear half-pixel sampling averages each 2x2 block.
    expected = F.avg_pool2d(tiny.image.position, 2)
    torch.testing.assert_close(coarse.position, expected)


def test_gradients_flow_through_the_resize_to_the_base_weights(tiny: torch.nn.Module) -> None:
    images, tokens = _batch(tiny, 4)
    patch = tiny.patch_embedding("coarse")  # once per step, used by both passes
    scale, bias = tiny.scale_bias()
    loss = sigmoid_loss(
        tiny.encode_image(images, "coarse", patch=patch), tiny.encode_text(tokens), scale, bias
    )
    with torch.no_grad():
        tiny.encode_image(images, "coarse", patch=patch)  # a scoring pass reuses the resized weights
    loss.backward()
    for parameter in (tiny.image.patch_weight, tiny.image.position):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_scale_and_bias_learn() -> None:
    """Five steps on random, unpaired data move both, each the way the loss says. With nothing to
    align, random similarities only hurt, so log a falls; and with one positive against 63 negatives
    per row the best constant bias is -log 63 ≈ -4.14, below tiny's initial -log 32 ≈ -3.47, so c falls.
    (Scale and bias get their own learning rate, as SigLIP-style training often does; the towers'
    small rate keeps their similarities near zero so the directions are the predictable ones.)"""
    torch.manual_seed(0)
    model = build_model("tiny", vocab_size=VOCAB)
    towers = [p for name, p in model.named_parameters() if not name.startswith("logit_")]
    scale_bias = [model.logit_scale, model.logit_bias]
    assert len(towers) + 2 == len(list(model.parameters()))
    optimizer = torch.optim.Adam([{"params": towers, "lr": 1e-3}, {"params": scale_bias, "lr": 5e-2}])
    log_scale, bias = model.logit_scale.item(), model.logit_bias.item()
    images, tokens = _batch(model, 64)
    losses = []
    for _ in range(5):
        scale, c = model.scale_bias()
        loss = sigmoid_loss(model.encode_image(images), model.encode_text(tokens), scale, c)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert model.logit_scale.item() < log_scale - 0.1
    assert model.logit_bias.item() < bias - 0.05
    assert losses[-1] < losses[0]


def test_scale_and_bias_initialisation_per_preset() -> None:
    assert PRESETS["B/16"].init_logit_bias == -10.0  # SigLIP's, for the paper's batches
    assert PRESETS["small"].init_logit_bias == pytest.approx(-math.log(128))  # b = 128
    model = build_model("small", vocab_size=VOCAB)
    scale, bias = model.scale_bias()
    assert scale.item() == pytest.approx(10.0) and bias.item() == pytest.approx(-math.log(128))


# -- bad input ----------------------------------------------------------------------------------


def test_patch_size_that_does_not_divide_the_image_is_refused() -> None:
    with pytest.raises(ModelConfigError, match=r"patch_size=8 does not divide the image size 28"):
        build_model("tiny", vocab_size=VOCAB, image_size=28)
    model = build_model("tiny", vocab_size=VOCAB)
    images, _ = _batch(model, 1)
    with pytest.raises(ModelConfigError, match=r"patch size=5 does not divide the image size 32.*1, 2, 4, 8"):
        model.encode_image(images, 5)


def test_unknown_preset_suggests_the_closest() -> None:
    with pytest.raises(ModelConfigError, match=r"unknown model preset 'smal'.*did you mean 'small'"):
        preset_config("smal")


def test_text_longer_than_the_context_is_refused(tiny: torch.nn.Module) -> None:
    tokens = torch.ones(2, tiny.config.context_length + 1, dtype=torch.long)
    with pytest.raises(
        ModelInputError, match=r"17 tokens exceed the model's context of 16.*refused, not truncated"
    ):
        tiny.encode_text(tokens)
    with pytest.raises(ModelInputError, match=r"token ids must lie in \[0, 100\)"):
        tiny.encode_text(torch.full((1, 4), VOCAB))


def test_images_of_the_wrong_shape_are_refused(tiny: torch.nn.Module) -> None:
    with pytest.raises(ModelInputError, match=r"expected \(batch, 3, 32, 32\)"):
        tiny.encode_image(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    patch = tiny.patch_embedding("full")
    with pytest.raises(ModelInputError, match="patch size 8, but resolution 'coarse' runs at patch size 16"):
        tiny.encode_image(torch.zeros(1, 3, 32, 32), "coarse", patch=patch)


def test_nan_in_embeddings_is_named(tiny: torch.nn.Module) -> None:
    images, tokens = _batch(tiny, 3)
    with torch.no_grad():
        tiny.image.head.weight[0, 0] = math.nan
    with pytest.raises(
        NonFiniteError, match=r"image embeddings \(patch size 8\) is not finite: 3 NaN.*rows 0, 1, 2 of 3"
    ):
        tiny.embeddings(images, tokens)
    assert isinstance(NonFiniteError("x"), UserError)


def test_nan_in_a_loss_is_named() -> None:
    with pytest.raises(NonFiniteError, match=r"training loss at step 7 is not finite: 1 NaN and 0 infinite"):
        require_finite(torch.tensor(math.nan), "training loss at step 7")
    losses = torch.tensor([1.0, math.inf, 2.0])
    with pytest.raises(NonFiniteError, match=r"0 NaN and 1 infinite value\(s\) in rows 1 of 3"):
        require_finite(losses, "per-example losses")
    finite = torch.tensor([1.0, 2.0])
    assert require_finite(finite, "x") is finite
