"""An example jestbench strategy: part learnability top-k, part uniform exploration."""

from __future__ import annotations

import torch

import jestbench


class LearnabilityMix(jestbench.Strategy):
    """Take the top ``fraction·b`` candidates by learnability (RHO-LOSS), and fill the rest of the
    sub-batch uniformly from the others, so some of every batch is spent on exploration."""

    name = "learnability-mix"
    params = (
        jestbench.Param(
            "fraction", float, 0.5, "share of the sub-batch taken by learnability", low=0.0, high=1.0
        ),
    )

    @property
    def needs(self) -> jestbench.Needs:
        return jestbench.Needs(learner=True, reference=True)

    def select(
        self, view: jestbench.SuperBatchView, batch_size: int, generator: torch.Generator
    ) -> torch.Tensor:
        n_top = round(self.config["fraction"] * batch_size)
        order = torch.argsort(view.scores("learnability"), descending=True)
        rest = order[n_top:][torch.randperm(view.size - n_top, generator=generator)]
        return torch.cat([order[:n_top], rest[: batch_size - n_top]])
