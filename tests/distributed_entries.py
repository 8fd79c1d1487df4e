"""What the ranks of the distributed tests run: module-level functions, so that the processes
torchrun's API spawns can import them. Each writes what the test checks into ``out`` (rank 0, or
every rank into a file of its own)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from harness.distributed import init_process_group, leave_process_group
from harness.runconfig import RunConfig
from harness.step import Stepper
from harness.train import RunStopped, train
from harness.view import EmbeddingView
from strategies import Embeddings, default_registry


def _rank() -> int:
    return int(os.environ["RANK"])


def steps(configs: list[dict[str, Any]], work: str, out: str, n: int) -> None:
    """``n`` steps of each config; rank 0 saves parameters, losses, ledger and counts."""
    torch.set_num_threads(1)
    results = []
    for data in configs:
        stepper = Stepper(RunConfig.from_dict(data), Path(work))
        batches = iter(stepper.stream())
        losses = []
        for _ in range(n):
            stepper.step(next(batches))
            losses.append(stepper.progress.last_loss)
        results.append(
            {
                "model": stepper.model.state_dict(),
                "losses": losses,
                "ledger": stepper.ledger.state_dict(),
                "progress": stepper.progress,
                "communication": stepper.ranks.communication.state_dict(),
            }
        )
    if stepper.ranks.is_main:
        torch.save(results, out)
    stepper.ranks.close()


def local_selection(config: dict[str, Any], work: str, out: str) -> None:
    """One local selection on each rank: its indices, its view's pairwise products and what is charged."""
    torch.set_num_threads(1)
    stepper = Stepper(RunConfig.from_dict(config), Path(work))
    batch = next(iter(stepper.stream()))
    view = stepper.view(batch)
    index = stepper.strategy.select(
        view, stepper.ranks.selection_size(stepper.shape.batch_size), stepper.generator
    )
    charged = stepper.ranks.pairwise(view.pairwise_macs)
    torch.save(
        {"index": index, "keys": batch.keys, "macs": view.pairwise_macs, "charged": charged},
        f"{out}.{_rank()}",
    )
    stepper.ranks.close()


def joint_selection(
    share: dict[str, Any], strategy: str, params: dict[str, Any], b: int, seed: int, out: str
) -> None:
    """A global selection over float64 embeddings of which each rank holds its ``B/K`` rows."""
    from harness.distributed import Ranks

    ranks = Ranks(2, "global", "cpu")
    rows = slice(ranks.rank * share["rows"], (ranks.rank + 1) * share["rows"])
    mine = {
        name: Embeddings(e.image[rows], e.text[rows], e.scale, e.bias)
        for name, e in share["embeddings"].items()
    }
    view = EmbeddingView(
        ranks.scoring(lambda: mine["learner"]),
        ranks.scoring(lambda: mine["reference"]),
        size=ranks.view_size(share["rows"]),
    )
    chosen = (
        default_registry()
        .get_strategy(strategy, **params)
        .select(view, b, torch.Generator().manual_seed(seed))
    )
    torch.save({"index": chosen, "macs": ranks.pairwise(view.pairwise_macs)}, f"{out}.{ranks.rank}")
    ranks.close()


class Stop(Exception):
    """Raised from the evaluation callback to interrupt a run, which stays resumable."""


def resume(config: dict[str, Any], whole: str, interrupted: str, out: str) -> None:
    """The same run uninterrupted, and stopped after its first evaluation then resumed."""
    torch.set_num_threads(1)
    init_process_group("cpu")  # joined here, so that the three runs share it
    run = RunConfig.from_dict(config)
    uninterrupted = train(run, Path(whole), show_progress=False).run

    def stop(k: int, _evaluations: Any) -> None:
        if k == 1:
            raise Stop

    with contextlib.suppress(Stop, RunStopped):  # rank 0's callback stops; the other ranks follow it
        # checkpoint_seconds=0: rank 0's clock says "checkpoint" after every step; the ranks agree on it
        train(run, Path(interrupted), show_progress=False, on_evaluation=stop, checkpoint_seconds=0.0)
    resumed = train(run, Path(interrupted), show_progress=False).run
    if _rank() == 0:
        torch.save({"whole": uninterrupted, "resumed": resumed}, out)
    leave_process_group()


def failing(config: dict[str, Any], work: str) -> None:
    """Rank 1 names a dataset that does not exist and fails; rank 0 starts training and waits for it."""
    data = dict(config)
    if _rank() == 1:
        data["dataset"] = str(Path(work) / "no-such-dataset")
    train(RunConfig.from_dict(data), Path(work), show_progress=False)
