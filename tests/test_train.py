"""The training loop on the tiny preset and a small budget: it runs to the budget and no further, it
learns, its selections are what the strategies promise, it is reproducible, and bad input is named."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import Learning

from harness.errors import UserError
from harness.records import RunFile
from harness.reference_store import MissingReferenceError
from harness.runconfig import OptimConfig, RunConfig, TrainingError
from harness.train import train

BUDGET = "150 steps"
METRICS = ("zero_shot", "few_shot", "i2t_recall", "t2i_recall")


def config(learning: Learning, strategy: str, **overrides) -> RunConfig:
    fields = {
        "dataset": str(learning.dataset.root),
        "dataset_id": learning.dataset.content_id,
        "preset": "tiny",
        "strategy": strategy,
        "params": {},
        "batch_size": 32,
        "filter_ratio": 0.8,
        "budget": BUDGET,
        "seed": 0,
        "reference": learning.reference["hash"],
        "eval_every": 0.5,
    }
    fields.update(overrides)
    if strategy == "uniform" and "filter_ratio" not in overrides:
        fields["filter_ratio"] = 0.0
    return RunConfig(**fields)


def final_rows(run: RunFile) -> dict[str, dict]:
    return {row["split"]: row for row in run.rows if row["steps"] == run.summary["steps"]}


@pytest.mark.parametrize("strategy", ["uniform", "jest"])
def test_a_run_spends_its_budget_and_stops_before_exceeding_it(learning: Learning, tmp_path: Path, strategy):
    result = train(config(learning, strategy), learning.private_work_dir(tmp_path), show_progress=False)
    run = result.run
    assert run.status == "complete"
    ledger = run.summary["flops"]
    spent = sum(ledger["spent"].values())
    step = sum(run.summary["predicted_step_flops"].values())
    assert spent <= ledger["budget_flops"] < spent + step
    # Evaluations at 0, half the budget and the end, on both splits.
    assert [r["evaluation"] for r in run.rows if r["split"] == "eval"] == [0, 1, 2]
    assert {r["split"] for r in run.rows} == {"val", "eval"}
    final = final_rows(run)["eval"]
    assert final["examples_seen"] == run.summary["steps"] * 32
    assert final["flops_spent"] == spent
    if strategy == "uniform":
        # 150 uniform-equivalent steps of uniform are exactly 150 steps.
        assert run.summary["steps"] == 150
        assert final["flops_scoring"] == 0 and final["flops_all_in"] == spent
        assert final["reference_score"] is None and final["reference_seed"] is None
    else:
        # A learner-scored step at f = 0.8 costs (B/b + 3)/3 = 2.67 uniform steps, plus pairwise products.
        assert run.summary["steps"] == ledger["budget_flops"] // step < 150 / 2.6
        assert final["flops_scoring"] > 0
        assert (
            final["flops_all_in"]
            == spent + learning.reference["training_flops"] + learning.reference["pool_embedding_flops"]
        )
        # The reference's own score on the row's split, for the leaderboard to show beside the learner's.
        assert final["reference_score"] == learning.reference["scores"]["eval"]["mean"]
        assert final["reference_seed"] == learning.reference["seed"] == 0


def test_the_loss_falls_and_logit_scale_and_bias_move(learning: Learning, tmp_path: Path):
    """On the clean curated split (on the noisy raw pool the loss falls too, but slowly at this size)."""
    cfg = config(learning, "uniform", eval_every=0.25, split="curated")
    result = train(cfg, learning.private_work_dir(tmp_path), show_progress=False)
    losses = [r["loss"] for r in result.run.rows if r["split"] == "eval" and r["evaluation"] > 0]
    assert losses[-1] < losses[0] * 0.8, losses
    scale, bias = (t.detach() for t in result.model.scale_bias())
    init = result.model.config
    assert abs(math.log(float(scale)) - math.log(init.init_logit_scale)) > 0.05
    assert abs(float(bias) - init.init_logit_bias) > 0.05


def _chance_recall(captions: list[str]) -> float:
    return sum(captions.count(c) for c in captions) / len(captions) ** 2


def test_the_reference_beats_chance_on_every_metric(learning: Learning):
    from harness.data import load_split

    scores = learning.reference["scores"]["val"]
    n_classes = len(learning.dataset.class_names)
    val = load_split(learning.dataset, "val")
    for metric in ("zero_shot", "few_shot"):
        chance = 1 / n_classes
        margin = 2 * math.sqrt(chance * (1 - chance) / len(val))
        assert scores[metric] > chance + margin, (metric, scores[metric])
    chance = _chance_recall(val.captions)
    for metric in ("i2t_recall", "t2i_recall"):
        assert scores[metric] > 10 * chance, (metric, scores[metric], chance)


@pytest.mark.parametrize("strategy", ["learnability", "jest", "easy-reference"])
def test_selection_by_the_reference_avoids_mismatched_captions_and_uniform_does_not(
    learning: Learning, tmp_path: Path, strategy
):
    work = learning.private_work_dir(tmp_path)
    uniform = final_rows(train(config(learning, "uniform", filter_ratio=0.8), work, show_progress=False).run)[
        "eval"
    ]
    chosen = final_rows(train(config(learning, strategy), work, show_progress=False).run)["eval"]

    def rate(row: dict, which: str) -> float:
        total = sum(v for k, v in row.items() if k.startswith(f"{which}_") and k != f"{which}_repeats")
        return row[f"{which}_mismatched"] / total

    # Uniform's sub-batches hold the pool's rate (within 4 binomial standard errors)...
    pool_rate = rate(uniform, "super")
    n = uniform["examples_seen"]
    assert abs(rate(uniform, "selected") - pool_rate) < 4 * math.sqrt(pool_rate * (1 - pool_rate) / n)
    # ...while a reference-scored strategy's hold far fewer mismatched captions than its super-batches.
    assert rate(chosen, "selected") < 0.5 * rate(chosen, "super")


def test_the_same_config_and_threads_give_identical_metrics(learning: Learning, tmp_path: Path):
    runs = [
        train(
            config(learning, "jest", params={"n_chunks": 4}),
            learning.private_work_dir(tmp_path / str(i)),
            show_progress=False,
        ).run
        for i in range(2)
    ]
    first, second = (final_rows(run)["eval"] for run in runs)
    assert [first[m] for m in (*METRICS, "loss")] == [second[m] for m in (*METRICS, "loss")]


def test_flexi_jest_scores_coarse_and_trains_at_two_resolutions(learning: Learning, tmp_path: Path):
    work = learning.private_work_dir(tmp_path)
    flexi = train(config(learning, "flexi-jest", params={"n_chunks": 4}), work, show_progress=False).run
    jest = train(config(learning, "jest", params={"n_chunks": 4}), work, show_progress=False).run
    # Cheaper scoring and training per step, so more steps within the same budget.
    assert flexi.summary["steps"] > jest.summary["steps"]
    per_step = {
        name: {k: v for k, v in run.summary["predicted_step_flops"].items()}
        for name, run in (("flexi", flexi), ("jest", jest))
    }
    assert per_step["flexi"]["learner_scoring"] < per_step["jest"]["learner_scoring"]
    assert per_step["flexi"]["training"] < per_step["jest"]["training"]
    assert per_step["flexi"]["resize"] > 0 == per_step["jest"]["resize"]


def test_a_budget_below_one_step_is_refused_with_the_minimum(learning: Learning, tmp_path: Path):
    with pytest.raises(
        TrainingError, match=r"smaller than one step of jest .* the minimum is .* uniform-equivalent steps"
    ):
        train(
            config(learning, "jest", budget="1 steps"),
            learning.private_work_dir(tmp_path),
            show_progress=False,
        )


def test_a_strategy_needing_the_reference_without_one_names_the_command(learning: Learning, tmp_path: Path):
    with pytest.raises(UserError, match="jestbench reference train"):
        train(config(learning, "learnability", reference=None), tmp_path / "work", show_progress=False)
    with pytest.raises(MissingReferenceError, match="jestbench reference train"):
        train(
            config(learning, "learnability", reference="0123456789abcdef"),
            tmp_path / "work",
            show_progress=False,
        )


def test_a_diverging_loss_stops_the_run_at_its_step_and_keeps_the_rows(learning: Learning, tmp_path: Path):
    work = learning.private_work_dir(tmp_path)
    absurd = OptimConfig(warmup=0.0, weight_decay=1e30)  # decoupled decay: weights x (1 - 1e30) per step
    cfg = config(learning, "uniform", optim=absurd)
    with pytest.raises(TrainingError, match=r"stopped at step \d+: .* not finite"):
        train(cfg, work, show_progress=False)
    run = RunFile.load(RunFile.path_for(work, cfg.run_id))
    assert run.status == "failed" and "stopped at step" in run.error
    assert [r["evaluation"] for r in run.rows] == [0, 0]  # the untrained model's rows on val and eval


def test_the_uncached_reference_charges_a_reference_pass_per_step(learning: Learning, tmp_path: Path):
    work = learning.private_work_dir(tmp_path)
    cached = train(config(learning, "easy-reference"), work, show_progress=False).run
    uncached = train(
        config(learning, "easy-reference", reference_cached=False), work, show_progress=False
    ).run
    assert cached.summary["predicted_step_flops"]["reference"] == 0
    assert uncached.summary["predicted_step_flops"]["reference"] > 0
    assert uncached.summary["steps"] < cached.summary["steps"]
    # Scored by the reference model itself, the selections still avoid mismatched captions.
    row = final_rows(uncached)["eval"]
    assert (
        row["selected_mismatched"] / row["examples_seen"]
        < 0.5 * row["super_mismatched"] / row["examples_scored"]
    )


def test_an_eval_split_without_labels_reports_classification_unavailable(tmp_path: Path):
    """Bring-your-own shards without labels (written with tarfile): retrieval still runs."""
    from test_data_byo import patterns

    from harness.cli import main

    shards = patterns(tmp_path / "mine", labels=None)
    work = tmp_path / "work"
    args = [f"--{split}={pattern}" for split, pattern in shards.items()]
    args += ["--preset", "tiny", "-b", "8", "-f", "0", "--budget-steps", "6", "--work", str(work), "-q"]
    assert main(["train", *args]) == 0
    (path,) = (work / "runs").glob("*.json")
    rows = RunFile.load(path).rows
    assert {row["split"] for row in rows} == {"val", "eval"}
    for row in rows:
        assert row["zero_shot"] is None and row["few_shot"] is None
        assert 0 <= row["i2t_recall"] <= 1 and row["mean"] == pytest.approx(
            (row["i2t_recall"] + row["t2i_recall"]) / 2
        )


def test_a_complete_run_is_not_trained_again(learning: Learning, tmp_path: Path):
    work = learning.private_work_dir(tmp_path)
    cfg = config(learning, "uniform", budget="20 steps")
    first = train(cfg, work, show_progress=False)
    evaluated: list[int] = []
    again = train(cfg, work, show_progress=False, on_evaluation=lambda k, _: evaluated.append(k))
    assert evaluated == []
    assert json.dumps(again.run.rows, sort_keys=True) == json.dumps(first.run.rows, sort_keys=True)
    trained = first.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in again.model.state_dict().items())
