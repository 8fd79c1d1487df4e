"""A synthetic but realistic suite of run files, with scores chosen so every leaderboard figure can be
worked out by hand.

b = 100; F = 1e6 FLOPs per example forward; the budget is 40 uniform steps = 1.2e10 FLOPs. Uniform
(f = 0) spends 3F per example and sees 4,000 examples; learner-scored strategies at f = 0.8 spend
(B/b + 3)F = 8F per example and see 1,500. Every seed's curve is the configuration's curve plus a
constant per seed (``Spec.jitter``: a permutation of -0.01, 0, +0.01, or of -0.03, 0, +0.03), so
means over three seeds are the curves below exactly, and seed-by-seed differences from uniform vary
by a known amount (the paired tests, worked out in tests/test_leaderboard.py).

- uniform: 0.10 … 0.40 at 4,000 examples; its final mean score, 0.40, is the target, and 0.325 and
  0.25 (75% and 50% of the way from 0.10) the lower ones, reached at 2,500 and 1,500 examples.
- jest: reaches 0.40 at 750 examples = 6e9 FLOPs, and 0.325 and 0.25 at 468.75 and 281.25
  examples: speedup 4000/750 in examples and 2.0 in FLOPs spent at each target; all-in 1.0 at 0.40
  (its reference cost 6e9 one-off); amortised over the 6 runs sharing that reference, 1.2e10 / 7e9.
- easy-reference (3F per example): reaches 0.40 half-way between 2,000 and 3,000 examples: 1.6 in
  examples and FLOPs spent; all-in 1.2e10 / (7.5e9 + 6e9).
- hard-learner: tops out at 0.25, never reaching 0.40.
- uniform with two-resolution training: one seed (n = 1).
- learnability: failed (NaN loss); prioritized: still running.

The val split's scores are 0.9 minus the eval split's, so a leaderboard that ranked on val would come
out reversed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data import NOISE_KINDS
from harness.records import RunFile
from harness.runconfig import RunConfig

B_SUB = 100
FORWARD = 1_000_000
BUDGET = 40 * 3 * FORWARD * B_SUB
REFERENCE_ONE_OFF = 6_000_000_000
SEEDS = (0, 1, 2)
REFERENCE = "ref0123456789abcd"

UNIFORM_EXAMPLES = (0, 1000, 2000, 3000, 4000)
SCORED_EXAMPLES = (0, 375, 750, 1125, 1500)


@dataclass(frozen=True)
class Spec:
    """One configuration of the synthetic suite."""

    strategy: str
    params: dict[str, Any]
    filter_ratio: float
    flops_per_example: int  # of FLOPs spent, per example trained on
    examples: tuple[int, ...]
    scores: tuple[float, ...]
    selected: dict[str, float]  # fraction of each noise kind among the selected examples
    repeats_per_batch: float
    seeds: tuple[int, ...] = SEEDS
    jitter: tuple[float, ...] = (-0.01, 0.0, 0.01)  # added to every score of seed 0, 1, 2
    needs_reference: bool = False
    needs_learner: bool = False
    reference: str = REFERENCE


SUPER = {"clean": 0.3, "redundant": 0.2, "mismatched": 0.3, "uninformative": 0.1, "unlearnable": 0.1}
SPECS = {
    "uniform": Spec(
        "uniform",
        {"two_resolution": False},
        0.0,
        3 * FORWARD,
        UNIFORM_EXAMPLES,
        (0.10, 0.20, 0.30, 0.35, 0.40),
        SUPER,
        20.0,
    ),
    "jest": Spec(
        "jest",
        {"gain": 100.0, "n_chunks": 4, "score": "learnability"},
        0.8,
        8 * FORWARD,
        SCORED_EXAMPLES,
        (0.10, 0.30, 0.40, 0.45, 0.50),
        {"clean": 0.85, "redundant": 0.05, "mismatched": 0.05, "uninformative": 0.03, "unlearnable": 0.02},
        8.7,
        jitter=(0.0, 0.01, -0.01),
        needs_reference=True,
        needs_learner=True,
    ),
    "easy-reference": Spec(
        "easy-reference",
        {},
        0.8,
        3 * FORWARD,
        UNIFORM_EXAMPLES,
        (0.10, 0.30, 0.36, 0.44, 0.48),
        {"clean": 0.7, "redundant": 0.28, "mismatched": 0.01, "uninformative": 0.01, "unlearnable": 0.0},
        23.5,
        jitter=(0.03, -0.03, 0.0),
        needs_reference=True,
    ),
    "hard-learner": Spec(
        "hard-learner",
        {},
        0.8,
        8 * FORWARD,
        SCORED_EXAMPLES,
        (0.10, 0.15, 0.20, 0.22, 0.25),
        {"clean": 0.05, "redundant": 0.0, "mismatched": 0.6, "uninformative": 0.05, "unlearnable": 0.3},
        2.0,
        jitter=(0.01, -0.01, 0.0),
        needs_learner=True,
    ),
    "uniform-2res": Spec(
        "uniform",
        {"two_resolution": True},
        0.0,
        2 * FORWARD,
        (0, 1500, 3000, 4500, 6000),
        (0.10, 0.22, 0.32, 0.37, 0.42),
        SUPER,
        20.0,
        seeds=(0,),
    ),
}


def config(spec: Spec, seed: int, dataset: Path) -> RunConfig:
    return RunConfig(
        dataset=str(dataset),
        dataset_id="d5e7a1c0ffee0001",
        preset="small",
        strategy=spec.strategy,
        params=spec.params,
        batch_size=B_SUB,
        filter_ratio=spec.filter_ratio,
        budget="40 steps",
        seed=seed,
        reference=spec.reference if spec.needs_reference else None,
    )


def _row(spec: Spec, run: RunConfig, split: str, evaluation: int, score: float) -> dict[str, Any]:
    super_size = round(B_SUB / (1 - spec.filter_ratio))
    examples = spec.examples[evaluation]
    steps = examples // B_SUB
    scored = steps * super_size
    spent = examples * spec.flops_per_example
    scoring = spent - 3 * FORWARD * examples if spec.needs_learner else 0
    one_off = REFERENCE_ONE_OFF if spec.needs_reference else 0
    row: dict[str, Any] = {
        "run_id": run.run_id,
        "strategy": spec.strategy,
        "params": spec.params,
        "b": B_SUB,
        "B": super_size,
        "f": 1 - B_SUB / super_size,
        "seed": run.seed,
        "dataset": "shapes",
        "dataset_id": run.dataset_id,
        "preset": run.preset,
        "split": split,
        "evaluation": evaluation,
        "steps": steps,
        "examples_seen": examples,
        "examples_scored": scored,
        "epochs": scored / 38_400,
        "budget_flops": BUDGET,
        "flops_training": spent - scoring,
        "flops_scoring": scoring,
        "flops_reference": 0,
        "flops_spent": spent,
        "flops_reference_one_off": one_off,
        "flops_all_in": spent + one_off,
        "flops_evaluation": 2_000_000 * (evaluation + 1),
        "wall_time": 0.5 * steps,
        "loss": 5.0 - score,
        "zero_shot": score + 0.05,
        "few_shot": score - 0.05,
        "i2t_recall": score + 0.02,
        "t2i_recall": score - 0.02,
        "mean": score,
        "selected_repeats": round(spec.repeats_per_batch * steps),
        "super_repeats": round(40.0 * steps),
        "config_hash": run.run_id,
        "jestbench_version": "0.1.0",
        "torch_version": "2.13.0+cpu",
        "python_version": "3.11.7",
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "cpu": "Synthetic CPU",
        "cpu_count": 2,
        "threads": 1,
        "hostname": "test",
    }
    for kind in NOISE_KINDS:
        row[f"selected_{kind}"] = round(spec.selected[kind] * examples)
        row[f"super_{kind}"] = round(SUPER[kind] * scored)
    return row


def run_file(spec: Spec, seed: int, dataset: Path) -> RunFile:
    """A complete run of ``spec`` at ``seed``: rows on val and eval at every evaluation point."""
    run = config(spec, seed, dataset)
    rows = []
    for evaluation, base in enumerate(spec.scores):
        score = base + spec.jitter[seed]
        rows.append(_row(spec, run, "val", evaluation, 0.9 - score))
        rows.append(_row(spec, run, "eval", evaluation, score))
    return RunFile(
        run.run_id,
        run.to_dict(),
        provenance={
            k: rows[0][k] for k in ("jestbench_version", "torch_version", "git_commit", "cpu", "threads")
        },
        status="complete",
        rows=rows,
        summary={"steps": rows[-1]["steps"]},
    )


@dataclass(frozen=True)
class Suite:
    """The run ids written, by configuration name, and the failed and running ones."""

    run_ids: dict[str, list[str]]
    failed: str
    running: str

    @property
    def all_ids(self) -> list[str]:
        return [i for ids in self.run_ids.values() for i in ids] + [self.failed, self.running]


def write_suite(work_dir: Path, names: tuple[str, ...] = tuple(SPECS)) -> Suite:
    """Write run files for ``names`` (every seed), plus a failed and an unfinished run."""
    dataset = work_dir / "datasets" / "shapes"
    run_ids: dict[str, list[str]] = {}
    for name in names:
        spec = SPECS[name]
        run_ids[name] = [run_file(spec, seed, dataset).save(work_dir).stem for seed in spec.seeds]
    broken = Spec("learnability", {}, 0.8, 8 * FORWARD, SCORED_EXAMPLES, (0.1, 0.2), SUPER, 10.0)
    failed = run_file(broken, 0, dataset)
    failed.status, failed.error = "failed", "stopped at step 12: the training loss holds NaN"
    failed.rows = failed.rows[:2]
    failed.save(work_dir)
    stopped = run_file(
        Spec("prioritized", {}, 0.8, 8 * FORWARD, SCORED_EXAMPLES, (0.1, 0.2), SUPER, 9.0), 0, dataset
    )
    stopped.status, stopped.rows = "running", stopped.rows[:2]
    stopped.save(work_dir)
    return Suite(run_ids, failed.run_id, stopped.run_id)
