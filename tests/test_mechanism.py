"""The mechanism check's numbers in the run rows: the per-eighth selection mix against selections
counted independently, the probe set's per-kind losses, learnability and rank correlation against a
hand computation from the saved model, the probe keys and the reference cache."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import Learning

from harness.data import NOISE_KINDS, Dataset, SuperBatchStream
from harness.data.pool import open_pool
from harness.data.reference_cache import ReferenceCache
from harness.probe import PER_KIND, average_ranks, draw_probe, spearman
from harness.records import load_trained_model
from harness.runconfig import RunConfig, TrainingError
from harness.train import Run, train
from harness.view import EmbeddingView
from strategies import default_registry


def test_spearman_on_known_answers() -> None:
    # 1 - 6·Σd²/(n(n²-1)) with d = (0, 1, 1, 0): 1 - 12/60.
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4])) == pytest.approx(0.8)
    # Ties take their mean rank: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): 4.5 / sqrt(4.5 · 5).
    assert average_ranks(np.array([5.0, 7, 7, 9])).tolist() == [1, 2.5, 2.5, 4]
    assert spearman(np.array([5.0, 7, 7, 9]), np.array([1.0, 2, 3, 4])) == pytest.approx(
        4.5 / math.sqrt(22.5)
    )
    # Any increasing transform keeps the ranks; reversing them gives -1; a constant has none.
    x = np.random.default_rng(0).normal(size=200)
    assert spearman(x, np.exp(3 * x)) == pytest.approx(1.0)
    assert spearman(x, -(x**3)) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones_like(x)))


def test_the_probe_set_is_fixed_and_covers_every_kind(tiny_dataset: Dataset) -> None:
    probe = draw_probe(tiny_dataset)
    counts = Counter(probe.noise)
    built = tiny_dataset.noise_counts("raw")
    assert counts == {kind: min(PER_KIND, n) for kind, n in built.items() if n}
    assert len(set(probe.keys)) == len(probe.keys)
    assert draw_probe(tiny_dataset).keys == probe.keys  # the same keys for every run of the dataset
    small = draw_probe(tiny_dataset, per_kind=3)
    assert Counter(small.noise) == {kind: min(3, n) for kind, n in built.items() if n}
    # Each key's noise kind is the pool's own.
    pool = open_pool(tiny_dataset, "raw")
    kind_of = dict(zip(pool.keys, pool.read(range(len(pool))).noise, strict=True))
    pool.close()
    assert all(kind_of[key] == kind for key, kind in zip(small.keys, small.noise, strict=True))


def _config(dataset: Dataset, strategy: str, **overrides) -> RunConfig:
    fields = {
        "dataset": str(dataset.root),
        "dataset_id": dataset.content_id,
        "preset": "tiny",
        "strategy": strategy,
        "params": {},
        "batch_size": 16,
        "filter_ratio": 0.75,
        "budget": "16 steps",
        "eval_every": 0.5,
    }
    return RunConfig(**{**fields, **overrides})


def test_the_mix_per_eighth_is_what_the_selections_were(tiny_dataset: Dataset, tmp_path: Path) -> None:
    """uniform at f = 0.75 for 16 equal steps: eighth e holds steps 2e and 2e + 1. Its picks are
    replayed from the data order and the seeded generator, and counted here."""
    run = train(_config(tiny_dataset, "uniform"), tmp_path / "work", show_progress=False).run
    final = run.rows[-1]
    eighths = json.loads(final["selection_by_eighth"])
    stream = SuperBatchStream(tiny_dataset, "raw", 64, seed=0)
    generator = torch.Generator().manual_seed(0)
    uniform = default_registry().get_strategy("uniform")
    expected = [Counter() for _ in range(8)]
    for step in range(16):
        batch = stream.read(step)
        index = uniform.select(EmbeddingView(size=64), 16, generator)
        picked = [batch.noise[i] for i in index.tolist()]
        captions = [batch.captions[i] for i in index.tolist()]
        counts = expected[step // 2]
        counts["steps"] += 1
        counts.update(f"selected_{kind}" for kind in picked)
        counts.update(f"super_{kind}" for kind in batch.noise)
        counts["selected_repeats"] += len(captions) - len(set(captions))
        counts["super_repeats"] += len(batch.captions) - len(set(batch.captions))
    assert [{k: v for k, v in e.items() if v} for e in eighths] == [+c for c in expected]
    for kind in NOISE_KINDS:  # the eighths add up to the cumulative counts
        assert sum(e[f"selected_{kind}"] for e in eighths) == final[f"selected_{kind}"]
    # No reference in the run: the reference's columns are empty, the learner's are not.
    assert math.isnan(final["probe_spearman"]) and math.isnan(final["reference_scale"])
    assert all(math.isfinite(final[f"probe_learner_loss_{kind}"]) for kind in NOISE_KINDS)


def test_the_probe_columns_match_a_hand_computation(learning: Learning, tmp_path: Path) -> None:
    work = learning.private_work_dir(tmp_path)
    config = _config(learning.dataset, "jest", budget="40 steps", reference=learning.reference["hash"])
    run = train(config, work, show_progress=False).run
    final = next(row for row in reversed(run.rows) if row["split"] == "eval")
    # By hand: the saved model's embeddings of the probe keys, -log σ(a·x·y + c) per pair, and the
    # reference's cached embeddings looked up by key.
    probe = draw_probe(learning.dataset)
    model = load_trained_model(work, config.run_id)
    with torch.no_grad():
        image = model.encode_image(probe.images, "full")
        text = model.encode_text(probe.tokens)
        a, c = (float(v) for v in model.scale_bias())
    learner = -torch.nn.functional.logsigmoid(a * (image * text).sum(1) + c).double().numpy()
    cache = ReferenceCache.load(learning.dataset, config.reference)
    row_of = {key: row for row, key in enumerate(cache.keys)}
    rows = [row_of[key] for key in probe.keys]
    ref_image, ref_text = np.asarray(cache.image[rows], np.float64), np.asarray(cache.text[rows], np.float64)
    logits = cache.scale * (ref_image * ref_text).sum(1) + cache.bias
    reference = np.log1p(np.exp(-logits))
    table = pd.DataFrame({"kind": probe.noise, "learner": learner, "reference": reference})
    means = table.groupby("kind").mean()
    assert final["probe_size"] == len(probe.keys)
    for kind in NOISE_KINDS:
        assert final[f"probe_{kind}"] == (table["kind"] == kind).sum()
        assert final[f"probe_learner_loss_{kind}"] == pytest.approx(means.loc[kind, "learner"], rel=1e-5)
        assert final[f"probe_reference_loss_{kind}"] == pytest.approx(means.loc[kind, "reference"], rel=1e-5)
        assert final[f"probe_learnability_{kind}"] == pytest.approx(
            means.loc[kind, "learner"] - means.loc[kind, "reference"], rel=1e-4, abs=1e-6
        )
    learnability = pd.Series(learner - reference)
    by_hand = learnability.rank().corr(pd.Series(-reference).rank())
    assert final["probe_spearman"] == pytest.approx(by_hand, abs=1e-4)
    assert final["learner_scale"] == pytest.approx(a) and final["learner_bias"] == pytest.approx(c)
    assert (final["reference_scale"], final["reference_bias"]) == pytest.approx((cache.scale, cache.bias))
    # Probing is evaluation: recorded with it, never charged.
    assert final["flops_evaluation"] > 0 and final["flops_spent"] <= final["budget_flops"]


def test_a_checkpoint_without_the_counts_per_eighth_is_refused_by_name(tiny_dataset: Dataset, tmp_path: Path):
    config = _config(tiny_dataset, "uniform")
    run = Run(config, tmp_path, checkpoint_seconds=60)
    del run.progress.by_eighth  # as pickled by a version from before the mechanism check
    run.checkpoint()
    with pytest.raises(TrainingError, match=r"older jestbench .* delete it"):
        Run(config, tmp_path, checkpoint_seconds=60)
