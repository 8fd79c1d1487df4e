"""The four evaluation metrics on embeddings whose right answers are known."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.metrics import Scores, few_shot_accuracy, recall_at_1, zero_shot_accuracy


def _classes(n_per_class: int, n_classes: int, dim: int, noise: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centers = F.normalize(torch.randn(n_classes, dim, generator=g), dim=1)
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    image = F.normalize(centers[labels] + noise * torch.randn(len(labels), dim, generator=g), dim=1)
    return centers, labels, image


def test_zero_shot_is_perfect_when_prompts_sit_on_the_class_centres_and_chance_when_shuffled():
    centers, labels, image = _classes(50, 6, 32, noise=0.05, seed=0)
    prompts = centers[:, None, :].expand(6, 3, 32)
    assert zero_shot_accuracy(image, labels, prompts) == 1.0
    shuffled = prompts[torch.tensor([1, 2, 3, 4, 5, 0])]
    assert zero_shot_accuracy(image, labels, shuffled) == 0.0


def test_few_shot_ridge_separates_separable_classes_and_not_random_ones():
    _, pool_labels, pool = _classes(40, 5, 16, noise=0.1, seed=1)
    _, labels, image = _classes(40, 5, 16, noise=0.1, seed=1)
    assert few_shot_accuracy(pool, pool_labels, image, labels, 5) > 0.95
    g = torch.Generator().manual_seed(2)
    random_labels = torch.randint(0, 5, labels.shape, generator=g)
    chance = few_shot_accuracy(pool, pool_labels, image, random_labels, 5)
    assert chance < 0.4


def test_recall_counts_a_retrieved_duplicate_caption_as_a_hit():
    image = torch.eye(4)
    text = torch.eye(4)[[1, 0, 2, 3]]  # image 0 retrieves text 1 and vice versa
    assert recall_at_1(image, text, ["a", "b", "c", "d"]) == (0.5, 0.5)
    assert recall_at_1(image, text, ["a", "a", "c", "d"]) == (1.0, 1.0)


def test_mean_averages_the_available_metrics():
    assert Scores(0.5, 0.7, 0.2, 0.4).mean == pytest.approx(0.45)
    assert Scores(None, None, 0.2, 0.4).mean == pytest.approx(0.3)
    assert Scores(None, None, 0.2, 0.4).as_dict()["zero_shot"] is None
