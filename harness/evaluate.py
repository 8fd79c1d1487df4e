"""Evaluation of a dual encoder on the val and eval splits by the paper's four metrics (DESIGN §6).

The splits (and the curated split, the few-shot pool) are read once and kept in memory; each
evaluation embeds them at full resolution without gradients. Zero-shot prompts come from the
dataset's class names and its prompt templates. Evaluation FLOPs are counted for the record and
never charged to the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.data import Dataset, SplitData, load_split
from harness.flops import ModelFlops
from harness.metrics import Scores, few_shot_accuracy, recall_at_1, zero_shot_accuracy
from harness.models import DualEncoder

_CHUNK = 512


@dataclass(frozen=True)
class Evaluation:
    """One split's scores and what computing them cost."""

    split: str
    scores: Scores
    flops: int


class Evaluator:
    """Scores a model on ``splits`` of ``dataset``; the curated split is the few-shot pool."""

    def __init__(self, dataset: Dataset, splits: Sequence[str] = ("val", "eval"), *, seed: int = 0) -> None:
        self.dataset = dataset
        self.splits = {split: load_split(dataset, split) for split in splits}
        self.seed = seed
        has_labels = dataset.class_names is not None and all(
            s.labels is not None for s in self.splits.values()
        )
        self.pool = load_split(dataset, "curated") if has_labels else None
        self.class_names = dataset.class_names if has_labels else None
        self.prompts = [
            [t.format(name) for t in dataset.zero_shot_templates] for name in self.class_names or []
        ]

    @torch.no_grad()
    def evaluate(self, model: DualEncoder, flops: ModelFlops) -> list[Evaluation]:
        """Scores on every split, and the FLOPs each took (full-resolution forward passes)."""
        was_training = model.training
        model.eval()
        try:
            context = model.config.context_length
            class_text = pool_image = None
            fixed_flops = 0
            if self.class_names is not None and self.pool is not None:
                flat = [p for prompts in self.prompts for p in prompts]
                tokens, _ = self.dataset.tokenizer.encode(flat, context)
                class_text = _encode_texts(model, tokens).reshape(
                    len(self.prompts), -1, model.config.embed_dim
                )
                pool_image = _encode_images(model, self.pool)
                fixed_flops = len(flat) * flops.text + len(self.pool) * flops.image_full
            results = []
            for split, data in self.splits.items():
                image = _encode_images(model, data)
                text = _encode_texts(model, data.tokens)
                i2t, t2i = recall_at_1(image, text, data.captions)
                zero_shot = few_shot = None
                if class_text is not None and pool_image is not None and data.labels is not None:
                    assert self.pool is not None and self.pool.labels is not None
                    zero_shot = zero_shot_accuracy(image, data.labels, class_text)
                    few_shot = few_shot_accuracy(
                        pool_image, self.pool.labels, image, data.labels, len(self.prompts), seed=self.seed
                    )
                cost = len(data) * flops.full + fixed_flops // len(self.splits)
                results.append(Evaluation(split, Scores(zero_shot, few_shot, i2t, t2i), cost))
            return results
        finally:
            model.train(was_training)


def _encode_images(model: DualEncoder, data: SplitData) -> torch.Tensor:
    """Image embeddings on the CPU, the model run where its weights are (uint8 pixels moved there)."""
    device = model.logit_scale.device
    return torch.cat([model.encode_image(chunk.to(device), "full").cpu() for chunk in _chunks(data.images)])


def _encode_texts(model: DualEncoder, tokens: torch.Tensor) -> torch.Tensor:
    device = model.logit_scale.device
    return torch.cat([model.encode_text(chunk.to(device)).cpu() for chunk in _chunks(tokens)])


def _chunks(tensor: torch.Tensor) -> list[torch.Tensor]:
    return [tensor[start : start + _CHUNK] for start in range(0, len(tensor), _CHUNK)]
