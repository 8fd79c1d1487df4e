"""The seven built-in strategies of docs/DESIGN.md §3.

Independent strategies score each candidate alone, by the diagonal of the score matrix (the
unconditional loss ``L_ii``); ``jest`` and ``flexi-jest`` select jointly (paper Algorithm 1).
"""

from __future__ import annotations

from typing import Any

import torch

from strategies.protocol import (
    SCORE_KINDS,
    Needs,
    Param,
    ScoreKind,
    Strategy,
    StrategyError,
    SuperBatchView,
    TrainingPlan,
)
from strategies.sampling import gumbel_noise, gumbel_top_k, joint_sample

SCORE = Param(
    "score",
    str,
    "learnability",
    "score kind: hard (learner loss), easy (minus reference loss), learnability (learner minus reference)",
    choices=SCORE_KINDS,
)
GAIN_DOC = "score gain g, applied once in M = g·scores (paper Algorithm 2 uses 100)"
N_CHUNKS = Param(
    "n_chunks", int, 16, "chunks N of joint sampling; b must be a multiple of N", low=1, high=65536
)


class Uniform(Strategy):
    """``b`` candidates uniformly without replacement: the baseline every claim is measured against."""

    name = "uniform"
    params = (
        Param(
            "two_resolution",
            bool,
            False,
            "train half of each sub-batch at the coarse patch size, as "
            "Flexi-JEST does (paper Fig. 4, right), to separate its gain from cheaper training",
        ),
    )

    @property
    def training(self) -> TrainingPlan:
        return TrainingPlan(("full", "coarse") if self.config["two_resolution"] else ("full",))

    def select(self, view: SuperBatchView, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(view.size, generator=generator)[:batch_size]


class _TopK(Strategy):
    """Top-``b`` of a per-example score: deterministic, no parameters."""

    kind: ScoreKind

    @property
    def needs(self) -> Needs:
        return Needs.for_score(self.kind)

    def select(self, view: SuperBatchView, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return torch.topk(view.scores(self.kind), batch_size, sorted=True).indices


class HardLearner(_TopK):
    """Top-``b`` of the learner's loss: the hardest examples now (paper §3.1, "hard learner")."""

    name = "hard-learner"
    kind = "hard"


class EasyReference(_TopK):
    """Top-``b`` of minus the reference's loss: what a model trained on curated data finds easiest,
    a CLIPScore-like filter (paper §3.1, "easy reference")."""

    name = "easy-reference"
    kind = "easy"


class Learnability(_TopK):
    """Top-``b`` of learner loss minus reference loss: RHO-LOSS (Mindermann et al., ICML 2022)."""

    name = "learnability"
    kind = "learnability"


class Prioritized(Strategy):
    """Independent sampling of ``b`` without replacement with ``p_i ∝ exp(g·score_i)``: the softmax
    sampling that JEST is compared against. With the same score and gain it is ``jest`` with one chunk."""

    name = "prioritized"
    params = (SCORE, Param("gain", float, 1.0, GAIN_DOC, low=0.0, high=1e6))

    @property
    def needs(self) -> Needs:
        return Needs.for_score(self.config["score"])

    def select(self, view: SuperBatchView, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        logits = self.config["gain"] * view.scores(self.config["score"])
        return gumbel_top_k(
            logits, batch_size, gumbel_noise(logits.shape, generator, logits.dtype, logits.device)
        )


class Jest(Strategy):
    """Joint example selection (paper Algorithm 1, exact form in docs/DESIGN.md §3): chunks drawn in turn, each
    conditioned on the ones already chosen, so a sub-batch is chosen for its joint learnability."""

    name = "jest"
    params = (SCORE, Param("gain", float, 100.0, GAIN_DOC, low=0.0, high=1e6), N_CHUNKS)

    @property
    def needs(self) -> Needs:
        return Needs.for_score(self.config["score"])

    def check_sizes(self, batch_size: int, super_batch_size: int) -> None:
        n_chunks = self.config["n_chunks"]
        if batch_size % n_chunks:
            raise StrategyError(
                f"n_chunks={n_chunks} does not divide the sub-batch size b={batch_size}; "
                f"choose b as a multiple of n_chunks or n_chunks as a divisor of b"
            )

    def select(self, view: SuperBatchView, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        cfg: dict[str, Any] = self.config
        return joint_sample(view, cfg["score"], batch_size, cfg["n_chunks"], cfg["gain"], generator)


class FlexiJest(Jest):
    """JEST with the learner's image tower scored at the coarse patch size, and each sub-batch trained
    half at full and half at coarse resolution (paper §3.3, Algorithm 2)."""

    name = "flexi-jest"

    @property
    def needs(self) -> Needs:
        return Needs.for_score(self.config["score"], learner_resolution="coarse")

    @property
    def training(self) -> TrainingPlan:
        return TrainingPlan(("full", "coarse"))
