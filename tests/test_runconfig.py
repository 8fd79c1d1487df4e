"""A run config is its run's identity: one budget has one spelling, values no run could use are refused
before anything starts (one line from the CLI), and run ids of configs that were already canonical hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.cost import BudgetError
from harness.runconfig import OptimConfig, RunConfig, TrainingError


def config(**overrides) -> RunConfig:
    fields = {
        "dataset": "/data/shapes",
        "dataset_id": "abc123",
        "preset": "small",
        "strategy": "jest",
        "params": {"n_chunks": 16},
        "batch_size": 128,
        "filter_ratio": 0.8,
        "budget": "4000 steps",
        "seed": 0,
        "reference": "r" * 16,
    }
    fields.update(overrides)
    return RunConfig(**fields)


@pytest.mark.parametrize("spelling", ["400 steps", "400.0 steps", "4e2 steps", "400 step", "400  STEPS"])
def test_one_budget_written_several_ways_is_one_run(spelling):
    assert config(budget=spelling).budget == "400 steps"
    assert config(budget=spelling).run_id == config(budget="400 steps").run_id


def test_flop_budgets_are_canonical_and_fractional_steps_are_kept():
    assert (
        config(budget="2.5e12").budget
        == config(budget="2500000000000.0 flops").budget
        == ("2500000000000 flops")
    )
    assert config(budget="400.5 steps").budget == "400.5 steps"
    assert config(budget="400.5 steps").run_id != config(budget="400 steps").run_id


def test_run_ids_of_already_canonical_budgets_do_not_change():
    """Computed before budgets were canonicalised: committed results keep their run ids."""
    assert config(budget="4000 steps").run_id == "c89540d298eee29e"
    assert config(budget="1500 steps").run_id == "16940081015ac730"
    uniform = config(strategy="uniform", params={}, filter_ratio=0.0, reference=None)
    assert uniform.run_id == "2acf0d17f0254cd7"
    assert "plugin" not in uniform.to_dict()  # built-ins carry no plugin identity


@pytest.mark.parametrize("budget", ["0 steps", "-5 steps", "0", "nan steps", "inf"])
def test_a_budget_of_zero_or_less_is_refused(budget):
    with pytest.raises(BudgetError, match="budget"):
        config(budget=budget)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", -1),
        ("batch_size", 0),
        ("filter_ratio", 1.0),
        ("filter_ratio", float("nan")),
        ("eval_every", 0.0),
        ("eval_every", 1.5),
        ("on_bad_sample", "ignore"),
        ("eval_splits", ()),
        ("pool", "noisy"),
    ],
)
def test_values_no_run_could_use_are_refused_by_name(field, value):
    with pytest.raises(TrainingError, match=f"^{field}="):
        config(**{field: value})


@pytest.mark.parametrize("rate", [1e38, 11.0, float("inf"), float("nan"), 0.0, -1e-3])
def test_a_learning_rate_outside_0_to_10_is_refused(rate):
    with pytest.raises(TrainingError, match=r"learning_rate=.* out of range"):
        OptimConfig(learning_rate=rate)


BAD_OPTIONS = [
    (["--seed=-1"], "argument --seed: '-1' is not a whole number >= 0"),
    (["--lr", "1e38"], "learning_rate=1e+38 is out of range (0 < learning_rate <= 10)"),
    (["--budget-steps", "0"], "a budget must be a finite amount > 0"),
    (["--budget", "-1"], "a budget must be a finite amount > 0"),
]


def _cli(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as exit:  # argparse's own refusals
        return int(exit.code or 0)


@pytest.mark.parametrize(
    ("command", "option", "message"),
    [(["train"], *case) for case in BAD_OPTIONS]
    + [(["reference", "train"], *case) for case in BAD_OPTIONS]
    + [(["train"], ["--eval-every", "2"], "argument --eval-every: '2' is not a fraction of the budget")],
)
def test_the_cli_refuses_bad_values_in_one_line_before_any_work(
    command, option, message, tmp_path: Path, capsys
):
    work = tmp_path / "work"
    # Data that does not exist: the refusal must come before it is looked at (or built).
    args = [*command, "--data", str(tmp_path / "no-such-data"), "--work", str(work), *option]
    assert _cli(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # one line: no usage block, no traceback
    assert message in line and "no-such-data" not in line
    assert not (work / "runs").exists() and not (work / "datasets").exists()
