"""Evaluation of a dual encoder on the val and eval splits by the paper's four metrics (docs/DESIGN.md §6).

The splits (and the curated split, the few-shot pool) are read once and kept in memory; each
evaluation embeds them at full resolution without gradients. Zero-shot prompts come from the
dataset's class names and its prompt templates; when two classes' prompts encode identically,
zero-shot is left out of the mean score, with a warning naming them (harness.metrics). Evaluation
FLOPs are counted for the record and never charged to the budget.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.data import Dataset, OnBadSample, SplitData, load_split
from harness.data.pool import EVALUATION_ADVICE
from harness.flops import ModelFlops
from harness.metrics import Scores, few_shot_accuracy, identical_prompts, recall_at_1, zero_shot_accuracy
from harness.models import DualEncoder

_CHUNK = 512


@dataclass(frozen=True)
class Evaluation:
    """One split's scores and what computing them cost."""

    split: str
    scores: Scores
    flops: int


class Evaluator:
    """Scores a model on ``splits`` of ``dataset``; the curated split is the few-shot pool.

    The scored splits are read whole (a damaged one is refused whatever ``on_bad_sample`` says:
    every run must be scored on the same samples); the few-shot pool follows ``on_bad_sample``.
    """

    def __init__(
        self,
        dataset: Dataset,
        splits: Sequence[str] = ("val", "eval"),
        *,
        seed: int = 0,
        on_bad_sample: OnBadSample = "error",
    ) -> None:
        self.dataset = dataset
        self.splits = {split: load_split(dataset, split, advice=EVALUATION_ADVICE) for split in splits}
        self.seed = seed
        has_labels = dataset.class_names is not None and all(
            s.labels is not None for s in self.splits.values()
        )
        self.pool = load_split(dataset, "curated", on_bad_sample) if has_labels else None
        self.class_names = dataset.class_names if has_labels else None
        self.prompts = [
            [t.format(name) for t in dataset.zero_shot_templates] for name in self.class_names or []
        ]
        self.zero_shot_excluded = self._check_prompts()

    def _check_prompts(self) -> str | None:
        """Why zero-shot cannot be scored (classes whose prompts encode alike), or None; warns once."""
        if self.class_names is None:
            return None
        flat = [p for prompts in self.prompts for p in prompts]
        tokens, _ = self.dataset.tokenizer.encode(flat, self.dataset.context_length)
        groups = identical_prompts(tokens.reshape(len(self.prompts), -1), self.class_names)
        if not groups:
            return None
        named = "; ".join(" = ".join(repr(name) for name in group) for group in groups)
        reason = (
            f"classes whose prompts encode to the same tokens: {named} (a prompt template or the "
            f"context length of {self.dataset.context_length} cannot tell them apart)"
        )
        print(
            f"warning: zero-shot is left out of the mean score on {self.dataset.root}: {reason}; name the "
            "classes apart (bring your own data: --classes, docs/DATA.md)",
            file=sys.stderr,
        )
        return reason

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
                pool_image = _encode_images(model, self.pool)
                fixed_flops = len(self.pool) * flops.image_full
                if self.zero_shot_excluded is None:
                    flat = [p for prompts in self.prompts for p in prompts]
                    tokens, _ = self.dataset.tokenizer.encode(flat, context)
                    class_text = _encode_texts(model, tokens).reshape(
                        len(self.prompts), -1, model.config.embed_dim
                    )
                    fixed_flops += len(flat) * flops.text
            results = []
            for split, data in self.splits.items():
                image = _encode_images(model, data)
                text = _encode_texts(model, data.tokens)
                i2t, t2i = recall_at_1(image, text, data.captions)
                zero_shot = few_shot = None
                if pool_image is not None and data.labels is not None:
                    assert self.pool is not None and self.pool.labels is not None
                    if class_text is not None:
                        zero_shot = zero_shot_accuracy(image, data.labels, class_text)
                    few_shot = few_shot_accuracy(
                        pool_image, self.pool.labels, image, data.labels, len(self.prompts), seed=self.seed
                    )
                cost = len(data) * flops.full + fixed_flops // len(self.splits)
                scores = Scores(zero_shot, few_shot, i2t, t2i, zero_shot_excluded=self.zero_shot_excluded)
                results.append(Evaluation(split, scores, cost))
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
