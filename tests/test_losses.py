"""The sigmoid contrastive loss math of harness.losses against the SigLIP formula as open_clip writes it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.losses import conditional_losses, pair_losses, sigmoid_loss, unconditional_losses


def _embeddings(n: int, d: int = 16, seed: int = 0, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)
    text = F.normalize(image + torch.randn(n, d, generator=g, dtype=dtype), dim=1)
    return image, text


def open_clip_siglip_loss(image, text, logit_scale, logit_bias):
    """open_clip's SigLipLoss._loss for one device: logits, labels 2*eye - 1, -logsigmoid sum / n."""
    logits = logit_scale * image @ text.T + logit_bias
    n = image.shape[0]
    labels = 2 * torch.eye(n, dtype=image.dtype) - torch.ones(n, n, dtype=image.dtype)
    return -F.logsigmoid(labels * logits).sum() / n


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("scale", "bias"), [(10.0, -10.0), (3.0, -4.5), (1.0, 0.0)])
def test_batch_loss_equals_open_clip_formula(dtype, scale, bias):
    image, text = _embeddings(37, dtype=dtype)
    ours = sigmoid_loss(image, text, scale, bias)
    theirs = open_clip_siglip_loss(image, text, scale, bias)
    assert abs(float(ours) - float(theirs)) <= 1e-6 * max(1.0, abs(float(theirs)))


@pytest.mark.parametrize("chunk_size", [1, 5, 16, 37, 100])
def test_chunked_loss_equals_dense(chunk_size):
    image, text = _embeddings(37)
    dense = sigmoid_loss(image, text, 5.0, -3.0)
    chunked = sigmoid_loss(image, text, 5.0, -3.0, chunk_size=chunk_size)
    torch.testing.assert_close(chunked, dense, rtol=0, atol=1e-12)


def test_per_example_losses_are_rows_and_diagonal_of_the_pair_matrix():
    image, text = _embeddings(23)
    dense = pair_losses(image, text, 5.0, -3.0)
    torch.testing.assert_close(conditional_losses(image, text, 5.0, -3.0, chunk_size=4), dense.sum(dim=1))
    torch.testing.assert_close(unconditional_losses(image, text, 5.0, -3.0), dense.diagonal())


def test_blocks_against_a_subset_equal_slices_of_the_dense_matrix():
    image, text = _embeddings(23)
    dense = pair_losses(image, text, 5.0, -3.0)
    subset = torch.tensor([7, 0, 22, 3])
    torch.testing.assert_close(pair_losses(image, text, 5.0, -3.0, rows=subset), dense[subset])
    torch.testing.assert_close(pair_losses(image, text, 5.0, -3.0, columns=subset), dense[:, subset])
    torch.testing.assert_close(
        pair_losses(image, text, 5.0, -3.0, rows=subset, columns=subset), dense[subset][:, subset]
    )


def test_loss_is_differentiable_in_embeddings_scale_and_bias():
    image, text = _embeddings(8)
    image.requires_grad_(True)
    log_scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    sigmoid_loss(image, text, log_scale.exp(), bias, chunk_size=3).backward()
    assert image.grad is not None and log_scale.grad is not None and bias.grad is not None
    assert float(log_scale.grad.abs()) > 0 and float(bias.grad.abs()) > 0
