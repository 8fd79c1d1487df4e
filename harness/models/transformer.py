"""The transformer parts shared by both towers, and the text tower.

Attention is written with an explicit ``nn.Linear`` for the query/key/value projection and
``F.scaled_dot_product_attention`` for the two attention products, never ``nn.MultiheadAttention``:
under ``eval()`` and ``no_grad`` its fast path runs the projections inside one fused op that fvcore
does not see (docs/DESIGN.md §4), so the counted FLOPs would depend on the mode. Here the same ops run in
every mode, and :mod:`harness.flops` registers the handle fvcore lacks for the attention op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.config import ModelConfig

PAD_ID = 0
"""The token id of padding (the data's tokenizer reserves 0)."""


class SelfAttention(nn.Module):
    """Multi-head self-attention; ``mask`` (bool, True = attend) broadcasts to ``(B, heads, N, N)``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out: torch.Tensor = self.out(y.transpose(1, 2).reshape(batch, length, width))
        return out


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        out: torch.Tensor = x + self.mlp(self.norm2(x))
        return out


class Encoder(nn.Module):
    """``depth`` blocks and a final layer norm."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask)
        out: torch.Tensor = self.norm(x)
        return out


class TextTransformer(nn.Module):
    """The text tower: token and learned position embeddings, an encoder, and a linear head on the
    mean of the non-padding tokens.

    Padding (``PAD_ID``) is masked out of attention and pooling. Position 0 always counts, so that a
    text of padding only still has a defined embedding instead of a 0/0.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        width = config.text_width
        self.token_embedding = nn.Embedding(config.vocab_size, width)
        self.position = nn.Parameter(torch.empty(1, config.context_length, width))
        self.encoder = Encoder(width, config.text_depth, config.text_heads, config.mlp_ratio)
        self.head = nn.Linear(width, config.embed_dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position, std=width**-0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` (long, ``B x L`` with ``L <= context_length``) -> unnormalised ``B x embed_dim``."""
        keep = tokens != PAD_ID
        keep[:, 0] = True
        x = self.token_embedding(tokens) + self.position[:, : tokens.shape[1]]
        x = self.encoder(x, keep[:, None, None, :])
        weights = keep.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1)
        out: torch.Tensor = self.head(pooled)
        return out


def init_linear_layers(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every ``nn.Linear`` (as ViT and big_vision do)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
