"""The paper's four evaluation metrics over embeddings (docs/DESIGN.md §6), with no model in sight.

- zero-shot classification: each image takes the class whose prompt embeddings (averaged over
  templates, then re-normalised) it is most similar to;
- 10-shot classification: closed-form ridge regression on frozen image embeddings, as big_vision's
  few-shot evaluator does it (features whitened on the shots, a large constant bias feature, one-hot
  targets in {-1, 1}), averaged over several draws of the shots; the ridge strength is chosen from a
  fixed grid on held-out curated data, never on the split being scored;
- image→text and text→image recall@1, where a hit is a retrieved caption whose *text* equals the
  query's own (captions repeat, so the paired caption is not the only right answer).

Their mean is the headline score; metrics that need labels are ``None`` when a split has none, and
zero-shot is ``None`` too when two classes' prompts encode to the same token ids (the classifier
could not tell them apart, so its accuracy says nothing about the model: :func:`identical_prompts`);
the mean is then taken over the other metrics and ``zero_shot_excluded`` says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

BIAS_FEATURE = 100.0  # big_vision's constant: large, so the bias is almost unregularised
RIDGE_GRID = tuple(2.0**k for k in range(-6, 13, 2))
METRICS = ("zero_shot", "few_shot", "i2t_recall", "t2i_recall")


@dataclass(frozen=True)
class Scores:
    """The four metrics (``None`` where unavailable) and their mean over the available ones."""

    zero_shot: float | None
    few_shot: float | None
    i2t_recall: float
    t2i_recall: float
    zero_shot_excluded: str | None = None  # why zero-shot was left out of the mean, if it was

    @property
    def mean(self) -> float:
        available = [
            v for v in (self.zero_shot, self.few_shot, self.i2t_recall, self.t2i_recall) if v is not None
        ]
        return sum(available) / len(available)

    def as_dict(self) -> dict[str, float | str | None]:
        return {
            "zero_shot": self.zero_shot,
            "few_shot": self.few_shot,
            "i2t_recall": self.i2t_recall,
            "t2i_recall": self.t2i_recall,
            "mean": self.mean,
            "zero_shot_excluded": self.zero_shot_excluded,
        }


def identical_prompts(tokens: torch.Tensor, class_names: Sequence[str]) -> list[list[str]]:
    """Groups of classes whose prompts encode to the same token ids under every template.

    Args:
        tokens: (n_classes, n_templates, context_length) token ids of each class's prompts.
        class_names: the names, in class order.
    """
    groups: dict[tuple[int, ...], list[str]] = {}
    for name, ids in zip(class_names, tokens.reshape(len(class_names), -1).tolist(), strict=True):
        groups.setdefault(tuple(ids), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def zero_shot_accuracy(image: torch.Tensor, labels: torch.Tensor, class_text: torch.Tensor) -> float:
    """Accuracy of nearest-prompt classification.

    Args:
        image: (n, d) normalised image embeddings.
        labels: (n,) class indices.
        class_text: (n_classes, n_templates, d) normalised prompt embeddings.
    """
    classifier = F.normalize(class_text.mean(dim=1), dim=-1)
    return float((torch.argmax(image @ classifier.T, dim=1) == labels).double().mean())


def _ridge_fit(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float) -> tuple[torch.Tensor, ...]:
    x = x.double()
    mean, std = x.mean(dim=0, keepdim=True), x.std(dim=0, unbiased=False, keepdim=True) + 1e-5
    features = F.pad((x - mean) / std, (0, 1), value=BIAS_FEATURE)
    targets = 2.0 * F.one_hot(y, n_classes).double() - 1.0
    n, d = features.shape
    if n >= d:  # (XᵀX + λI)⁻¹ Xᵀ Y
        weights = torch.linalg.solve(
            features.T @ features + l2 * torch.eye(d, dtype=torch.float64), features.T @ targets
        )
    else:  # Xᵀ (XXᵀ + λI)⁻¹ Y, the same solution with an n x n system
        weights = features.T @ torch.linalg.solve(
            features @ features.T + l2 * torch.eye(n, dtype=torch.float64), targets
        )
    return weights, mean, std


def _ridge_accuracy(fit: tuple[torch.Tensor, ...], x: torch.Tensor, y: torch.Tensor) -> float:
    weights, mean, std = fit
    features = F.pad((x.double() - mean) / std, (0, 1), value=BIAS_FEATURE)
    return float((torch.argmax(features @ weights, dim=1) == y).double().mean())


def _draw_shots(labels: torch.Tensor, shots: int, n_classes: int, generator: torch.Generator) -> torch.Tensor:
    picks = []
    for c in range(n_classes):
        members = (labels == c).nonzero().squeeze(1)
        picks.append(members[torch.randperm(members.numel(), generator=generator)[:shots]])
    return torch.cat(picks)


def few_shot_accuracy(
    pool_image: torch.Tensor,
    pool_labels: torch.Tensor,
    image: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    *,
    shots: int = 10,
    draws: int = 3,
    seed: int = 0,
) -> float:
    """k-shot ridge-regression accuracy on ``(image, labels)``, shots drawn from the pool.

    The ridge strength is chosen from :data:`RIDGE_GRID` on the pool examples not drawn as shots (held
    out); the accuracy is averaged over ``draws`` draws of the shots.
    """
    generator = torch.Generator().manual_seed(seed)
    accuracies = []
    for _ in range(draws):
        shot_index = _draw_shots(pool_labels, shots, n_classes, generator)
        held_out = torch.ones(pool_labels.numel(), dtype=torch.bool)
        held_out[shot_index] = False
        x, y = pool_image[shot_index], pool_labels[shot_index]
        if held_out.any():
            l2 = max(
                RIDGE_GRID,
                key=lambda lam: _ridge_accuracy(
                    _ridge_fit(x, y, n_classes, lam), pool_image[held_out], pool_labels[held_out]
                ),
            )
        else:
            l2 = RIDGE_GRID[len(RIDGE_GRID) // 2]
        accuracies.append(_ridge_accuracy(_ridge_fit(x, y, n_classes, l2), image, labels))
    return sum(accuracies) / len(accuracies)


def recall_at_1(image: torch.Tensor, text: torch.Tensor, captions: Sequence[str]) -> tuple[float, float]:
    """Image→text and text→image recall@1; a hit retrieves a caption equal to the query's own."""
    caption_id = torch.tensor(_caption_ids(captions))
    similarity = image @ text.T
    i2t = caption_id[similarity.argmax(dim=1)] == caption_id
    t2i = caption_id[similarity.argmax(dim=0)] == caption_id
    return float(i2t.double().mean()), float(t2i.double().mean())


def _caption_ids(captions: Sequence[str]) -> list[int]:
    ids: dict[str, int] = {}
    return [ids.setdefault(c, len(ids)) for c in captions]
