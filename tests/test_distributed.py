"""Devices and runs over several processes: the CPU path is what it was, CUDA and bf16 are refused
where they cannot run, and two gloo ranks (started through torchrun's API) select, train, count and
resume as one process does, and fail with the failing rank's error instead of hanging."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import distributed_entries as entries
import pytest
import torch

from harness.cli import main
from harness.data import Dataset
from harness.device import DeviceError, check_precision, fp32_loss, resolve_device
from harness.distributed import (
    DistributedError,
    check_layout,
    gathered_embeddings_bytes,
    gathered_text_bytes,
    gradient_bytes,
    launch,
)
from harness.losses import sigmoid_loss
from harness.records import RunFile
from harness.runconfig import RunConfig, TrainingError
from harness.step import Stepper
from harness.suites import SuiteError, load_suite
from harness.view import EmbeddingView
from strategies import Embeddings, default_registry

# Losses of five steps, run ids and ledger totals, recorded with main at 1813166 (the code without
# devices and ranks; main's new default `shapes` data and BPE tokenizer changed them from the values
# first recorded at 70de239): the CPU path must reproduce them bit for bit. A deliberate change to
# the training numerics re-records them.
RECORDED = {
    "flexi-jest": (
        "f6d987449ecd06be",
        [
            "0x1.0069b40000000p+2",
            "0x1.fcb2180000000p+3",
            "0x1.048f800000000p+3",
            "0x1.9396440000000p+1",
            "0x1.28de3c0000000p+2",
        ],
        154539520,
    ),
    "uniform": (
        "bc845de89b1d4dd2",
        [
            "0x1.0985ae0000000p+2",
            "0x1.77f4e20000000p+3",
            "0x1.1479bc0000000p+2",
            "0x1.3d95b20000000p+2",
            "0x1.24b2100000000p+2",
        ],
        98549760,
    ),
}
SETTINGS = {"flexi-jest": ({"score": "hard", "n_chunks": 4}, 0.5), "uniform": ({}, 0.0)}


def run_config(dataset: Dataset, strategy: str, **overrides) -> RunConfig:
    params, f = SETTINGS.get(strategy, ({}, 0.5))
    fields = {
        "dataset": str(dataset.root),
        "dataset_id": dataset.content_id,
        "preset": "tiny",
        "strategy": strategy,
        "params": params,
        "batch_size": 16,
        "filter_ratio": f,
        "budget": "40 steps",
        "seed": 3,
    }
    return RunConfig(**(fields | overrides))


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank that hangs fails the run in a minute, not the default quarter of an hour."""
    monkeypatch.setenv("JESTBENCH_DIST_TIMEOUT", "60")


@pytest.mark.parametrize("strategy", ["flexi-jest", "uniform"])
@pytest.mark.parametrize("explicit", [False, True])
def test_the_cpu_path_is_bit_for_bit_what_it_was(tiny_dataset: Dataset, tmp_path: Path, strategy, explicit):
    """Five steps on the CPU in one process, placement fields left out or given at their defaults,
    give main's losses, run ids and ledger bit for bit (RECORDED: main at 1813166, computed there
    without the device and distributed code)."""
    extra = (
        {"device": "cpu", "precision": "fp32", "world_size": 1, "selection_scope": "local"}
        if explicit
        else {}
    )
    config = run_config(tiny_dataset, strategy, **extra)
    run_id, losses, flops = RECORDED[strategy]
    assert config.run_id == run_id
    stepper = Stepper(config, tmp_path)
    batches = iter(stepper.stream())
    seen = []
    for _ in range(5):
        stepper.step(next(batches))
        seen.append(stepper.progress.last_loss.hex())
    assert seen == losses
    assert stepper.ledger.total == flops


def test_devices_and_precisions_are_resolved_or_refused_in_one_line(capsys: pytest.CaptureFixture[str]):
    has_cuda = torch.cuda.is_available()
    assert resolve_device("auto") == ("cuda" if has_cuda else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match="bf16 runs on CUDA only"):
        check_precision("bf16", "cpu")
    with pytest.raises(DeviceError, match="is not one of"):
        resolve_device("tpu")
    if has_cuda:
        assert resolve_device("cuda") == "cuda" and check_precision("bf16", "cuda") == "bf16"
    else:
        assert main(["train", "--device", "cuda", "--data", "nowhere"]) == 2
        err = capsys.readouterr().err.strip()
        assert "--device cuda: torch sees no CUDA GPU" in err and len(err.splitlines()) == 1
    assert main(["train", "--device", "cpu", "--precision", "bf16", "--data", "nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert "bf16 runs on CUDA only" in err and len(err.splitlines()) == 1


def test_placement_stays_out_of_the_run_id_at_its_defaults(tiny_dataset: Dataset):
    base = run_config(tiny_dataset, "jest")
    assert "device" not in base.to_dict() and "world_size" not in base.to_dict()
    assert dataclasses.replace(base, selection_scope="local").run_id == base.run_id  # one process: no scope
    two = dataclasses.replace(base, world_size=2)
    ids = {base.run_id, two.run_id, dataclasses.replace(two, selection_scope="local").run_id}
    assert len(ids) == 3
    assert RunConfig.from_dict(two.to_dict()) == two


def test_a_share_of_rows_against_every_text_is_its_part_of_the_batch_loss():
    """What each rank computes, times 1/K and summed over ranks, is the one-process loss; its
    gradient likewise (what DDP's average of gradients relies on)."""
    generator = torch.Generator().manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(12, 8, generator=generator, dtype=torch.float64), dim=1)
    text = torch.nn.functional.normalize(torch.randn(12, 8, generator=generator, dtype=torch.float64), dim=1)
    whole = sigmoid_loss(image, text, 7.0, -2.0)
    shares = [sigmoid_loss(image[r * 4 : (r + 1) * 4], text, 7.0, -2.0, first_row=r * 4) for r in range(3)]
    assert torch.isclose(sum(shares) / 3, whole, rtol=1e-12)


def test_a_split_that_is_not_exact_is_refused():
    with pytest.raises(DistributedError, match="B=30 does not split over 4 ranks"):
        check_layout(4, "global", 16, 30, 1)
    with pytest.raises(DistributedError, match="must be a multiple of 8"):
        check_layout(4, "global", 12, 64, 2)
    with pytest.raises(DistributedError, match="selection-scope 'nearby'"):
        check_layout(2, "nearby", 16, 32, 1)
    check_layout(1, "global", 15, 31, 1)


def test_a_run_for_two_processes_started_as_one_names_torchrun(tiny_dataset: Dataset, tmp_path: Path):
    with pytest.raises(DistributedError, match="torchrun --nproc-per-node 2"):
        Stepper(run_config(tiny_dataset, "uniform", world_size=2), tmp_path)


def test_global_selection_over_two_ranks_is_one_process_selection(tmp_path: Path):
    """Float64 embeddings of a super-batch of 64 split over two ranks: after the all-gather, JEST's
    joint selection with the same generator picks what one process picks, index for index, and the
    pairwise products are charged once."""
    generator = torch.Generator().manual_seed(1)

    def embeddings() -> Embeddings:
        parts = [torch.randn(64, 16, generator=generator, dtype=torch.float64) for _ in range(2)]
        image, text = (torch.nn.functional.normalize(p, dim=1) for p in parts)
        return Embeddings(image, text, 10.0, -4.0)

    share = {"rows": 32, "embeddings": {"learner": embeddings(), "reference": embeddings()}}
    params = {"score": "learnability", "n_chunks": 4, "gain": 100.0}
    out = tmp_path / "selection"
    launch(entries.joint_selection, (share, "jest", params, 16, 5, str(out)), 2, "joint")
    view = EmbeddingView(share["embeddings"]["learner"], share["embeddings"]["reference"])
    one = default_registry().get_strategy("jest", **params).select(view, 16, torch.Generator().manual_seed(5))
    for rank in range(2):
        got = torch.load(f"{out}.{rank}")
        assert got["index"].tolist() == one.tolist()
        assert got["macs"] == view.pairwise_macs


def test_two_ranks_train_as_one_process_with_the_same_ledger(tiny_dataset: Dataset, tmp_path: Path):
    """Five steps of uniform and of Flexi-JEST (global selection, two resolutions) on 2 ranks x b/2
    against 1 rank x b: the same losses (to 1e-5), parameters (to 1e-3 absolute: Adam divides by
    the root of tiny second moments early on, so float rounding of the all-reduced gradients grows),
    selections (noise and repeat counts, in total and per eighth of the budget), and exactly the
    same ledger, in FLOPs and in trained examples (the equal-examples track)."""
    configs = [run_config(tiny_dataset, s, world_size=2) for s in ("uniform", "flexi-jest")]
    configs.append(run_config(tiny_dataset, "uniform", world_size=2, budget="640 examples"))
    out = tmp_path / "two.pt"
    launch(entries.steps, ([c.to_dict() for c in configs], str(tmp_path), str(out), 5), 2, "steps")
    two = torch.load(out, weights_only=False)
    for config, got in zip(configs, two, strict=True):
        one = Stepper(dataclasses.replace(config, world_size=1), tmp_path / "one")
        batches = iter(one.stream())
        losses = []
        for _ in range(5):
            one.step(next(batches))
            losses.append(one.progress.last_loss)
        assert got["losses"] == pytest.approx(losses, rel=1e-5)
        assert got["ledger"] == one.ledger.state_dict()
        for name, value in one.model.state_dict().items():
            assert torch.allclose(got["model"][name], value, atol=1e-3, rtol=0), name
        p, q = got["progress"], one.progress
        assert (p.selected_noise, p.super_noise, p.selected_repeats, p.super_repeats) == (
            q.selected_noise,
            q.super_noise,
            q.selected_repeats,
            q.super_repeats,
        )
        assert p.examples_seen == q.examples_seen and p.examples_scored == q.examples_scored
        assert p.eighths() == q.eighths()
        # Communication is counted in bytes, apart from FLOPs, as the cost model's formulas say:
        # gradients and the loss's texts each step; a learner-scored global selection also gathers
        # embeddings (and moves chosen samples between ranks).
        d, params = one.model.config.embed_dim, sum(t.numel() for t in one.model.parameters())
        sent = got["communication"]
        assert sent["gradients"] == 5 * gradient_bytes(2, params)
        assert sent["loss_texts"] == 5 * gathered_text_bytes(2, 16, d)
        if config.strategy == "flexi-jest":
            assert sent["embeddings"] == 5 * gathered_embeddings_bytes(2, 32, d) and sent["samples"] > 0
        else:
            assert "embeddings" not in sent


def test_the_clean_only_pool_over_ranks_needs_local_selection(tiny_dataset: Dataset, tmp_path: Path):
    """Each rank's share holds its own number of clean samples, so a global selection over them is
    refused in one line, before any process group starts."""
    config = run_config(tiny_dataset, "uniform", world_size=2, pool="clean", filter_ratio=0.5)
    with pytest.raises(
        TrainingError, match="over 2 ranks needs local selection: pass --selection-scope local"
    ):
        Stepper(config, tmp_path)


def test_local_selection_chooses_b_over_k_from_each_share(tiny_dataset: Dataset, tmp_path: Path):
    config = run_config(
        tiny_dataset, "jest", params={"score": "hard", "n_chunks": 2}, world_size=2, selection_scope="local"
    )
    out = tmp_path / "local"
    launch(entries.local_selection, (config.to_dict(), str(tmp_path), str(out)), 2, "local")
    ranks = [torch.load(f"{out}.{rank}") for rank in range(2)]
    assert not set(ranks[0]["keys"]) & set(ranks[1]["keys"])  # disjoint shares of B = 32
    for got in ranks:
        assert len(got["keys"]) == 16 and len(got["index"]) == 8 and int(got["index"].max()) < 16
        assert got["charged"] == ranks[0]["macs"] + ranks[1]["macs"]  # every rank's selection charged


def test_a_run_over_two_ranks_resumes_exactly(tiny_dataset: Dataset, tmp_path: Path):
    """Stopped after its first evaluation (rank 0 had written the checkpoint) and started again with
    the same two ranks, a local-selection run ends with the rows of an uninterrupted one."""
    config = run_config(
        tiny_dataset,
        "jest",
        params={"score": "hard", "n_chunks": 2},
        world_size=2,
        selection_scope="local",
        eval_every=0.5,
        budget="20 steps",
    )
    out = tmp_path / "resume.pt"
    launch(
        entries.resume, (config.to_dict(), str(tmp_path / "a"), str(tmp_path / "b"), str(out)), 2, "resume"
    )
    runs = torch.load(out, weights_only=False)
    whole, resumed = runs["whole"], runs["resumed"]
    assert whole.status == resumed.status == "complete"

    def kept(rows: list[dict]) -> str:  # JSON, where NaN (the first row's loss) equals NaN
        return json.dumps([{k: v for k, v in r.items() if k != "wall_time"} for r in rows], sort_keys=True)

    assert kept(resumed.rows) == kept(whole.rows)
    assert {r["world_size"] for r in whole.rows} == {2} and {r["selection_scope"] for r in whole.rows} == {
        "local"
    }
    assert RunFile.load_complete(tmp_path / "b", config.run_id) is not None  # one run file, by rank 0


def test_a_failing_rank_fails_the_run_with_its_error(tiny_dataset: Dataset, tmp_path: Path):
    config = run_config(tiny_dataset, "uniform", world_size=2)
    with pytest.raises(DistributedError, match=r"rank 1 of 2 failed: .*no-such-dataset"):
        launch(entries.failing, (config.to_dict(), str(tmp_path)), 2, "failing")


def test_a_suite_runs_over_two_processes(tiny_dataset: Dataset, tmp_path: Path):
    suite = tmp_path / "two.toml"
    suite.write_text(
        f"""name = "two"
[data]
data = "{tiny_dataset.root}"
[run]
preset = "tiny"
batch_size = 16
budget = "8 steps"
filter_ratio = 0.5
selection_scope = "local"
eval_every = 1.0
[[strategies]]
name = "uniform"
"""
    )
    work = tmp_path / "work"
    assert main(["run", str(suite), "--nproc", "2", "--work", str(work), "--quiet"]) == 0
    (config,) = load_suite(str(suite)).placed(nproc=2).sections[0].run_configs(tiny_dataset, [])
    run = RunFile.load_complete(work, config.run_id)
    assert run is not None and run.config["world_size"] == 2 and run.config["selection_scope"] == "local"
    assert {row["world_size"] for row in run.rows} == {2}
    assert main(["run", str(suite), "--nproc", "2", "--jobs", "2", "--work", str(work)]) == 2


def test_suite_placement_keys_are_checked(tmp_path: Path):
    suite = tmp_path / "bad.toml"
    suite.write_text(
        '[run]\npreset = "tiny"\nbatch_size = 16\nbudget = "8 steps"\nselection_scope = "nearby"\n[[strategies]]\nname = "uniform"\n'
    )
    with pytest.raises(SuiteError, match="selection_scope = 'nearby' is not one of global, local"):
        load_suite(str(suite))


def test_torchrun_trains_one_run_from_the_command_line(tiny_dataset: Dataset, tmp_path: Path):
    """`torchrun --nproc-per-node 2 -m harness train` (torchrun's own entry point, as a user runs it)."""
    work = tmp_path / "work"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "harness", "train", "--data", str(tiny_dataset.root), "--preset", "tiny", "-b", "16"]
    command += ["-f", "0.5", "--budget-steps", "6", "--eval-every", "1", "--work", str(work), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(complete)") == 1  # rank 0 alone prints
    (path,) = (work / "runs").glob("*.json")
    run = RunFile.load(path)
    assert run.status == "complete" and run.config["world_size"] == 2


def test_the_distributed_benchmark_runs_at_a_tiny_shape(tiny_dataset: Dataset, tmp_path: Path):
    """benchmarks/distributed.py as CI runs it: tiny preset, one and two processes, one repeat."""
    out = tmp_path / "distributed.csv"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "distributed.py"
    command = [sys.executable, str(script), "--preset", "tiny", "-b", "32", "--data", str(tiny_dataset.root)]
    command += ["--steps", "2", "--warmup", "1", "--repeats", "1", "--case", "jest, 1", "--case", "global"]
    command += ["--work", str(tmp_path / "work"), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["case"], r["processes"]) for r in rows] == [
        ("jest, 1 process", "1"),
        ("jest, 2 processes, global", "2"),
    ]
    one, two = rows
    assert float(one["steps_per_s"]) > 0 and float(two["steps_per_s"]) > 0
    assert one["bytes_per_step"] == "0" and int(two["bytes_per_step"]) > 0
    assert 0 < float(two["collective_share"]) < 1


def test_flops_lists_what_k_ranks_exchange_per_step(capsys: pytest.CaptureFixture[str]):
    """The cost model's communication table: bytes by kind, apart from FLOPs (tiny: d = 32)."""
    assert main(["flops", "--preset", "tiny", "--nproc", "2", "-b", "128"]) == 0
    out = capsys.readouterr().out
    assert "## `tiny` over 2 ranks: bytes exchanged per step" in out
    jest_global = next(line for line in out.splitlines() if line.startswith("| jest | 0.80 | global |"))
    cells = [c.strip() for c in jest_global.strip("|").split("|")]
    embeddings = 2 * gathered_embeddings_bytes(2, 640, 32)  # learner and reference, B = 640
    assert (
        cells[5] == f"{embeddings / 1e6:.3g} MB"
        and cells[4] == f"{gathered_text_bytes(2, 128, 32) / 1e6:.3g} MB"
    )
    jest_local = next(line for line in out.splitlines() if line.startswith("| jest | 0.80 | local |"))
    assert [c.strip() for c in jest_local.strip("|").split("|")][5:7] == [
        "0",
        "0",
    ]  # nothing gathered or moved


def test_under_bf16_autocast_the_loss_is_computed_in_fp32():
    """bf16 runs the towers under autocast but the sigmoid loss in fp32 (CPU autocast stands in for
    CUDA's here: the wrapper is the same); fp32 runs call the loss itself, untouched."""
    device = torch.device("cpu")
    assert fp32_loss(sigmoid_loss, device, "fp32") is sigmoid_loss
    generator = torch.Generator().manual_seed(0)
    image, text = (
        torch.nn.functional.normalize(torch.randn(8, 16, generator=generator), dim=1) for _ in range(2)
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = sigmoid_loss(image, text, 10.0, -2.0)
        widened = fp32_loss(sigmoid_loss, device, "bf16")(image.bfloat16(), text.bfloat16(), 10.0, -2.0)
    assert half.dtype == torch.bfloat16 and widened.dtype == torch.float32
    exact = sigmoid_loss(image.bfloat16().float(), text.bfloat16().float(), 10.0, -2.0)
    assert torch.equal(widened, exact)
