"""Joint example selection (docs/DESIGN.md §3): exactness, distribution, quality against the Gibbs yardstick,
numerical safety, and the O(B·b) cost of its pairwise products."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from harness.view import EmbeddingView, dense_scores
from strategies import SCORE_KINDS, Embeddings, default_registry
from strategies.sampling import gibbs_sample, joint_sample_transcribed, subset_score


def _random_embeddings(n: int, d: int, seed: int, dtype=torch.float64, scale=10.0, bias=-5.0) -> Embeddings:
    g = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)
    text = F.normalize(image + torch.randn(n, d, generator=g, dtype=dtype), dim=1)
    return Embeddings(image, text, scale, bias)


@pytest.mark.parametrize("kind", SCORE_KINDS)
@pytest.mark.parametrize("n_chunks", [1, 4, 8, 32])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_sampler_picks_what_a_transcription_of_algorithm_1_picks(kind, n_chunks, seed):
    """Float64, the same Gumbel noise: the same indices in the same order (docs/DESIGN.md §3)."""
    learner, reference = _random_embeddings(160, 16, seed), _random_embeddings(160, 16, seed + 100)
    gain = 5.0
    jest = default_registry().get_strategy("jest", score=kind, n_chunks=n_chunks, gain=gain)
    ours = jest.select(EmbeddingView(learner, reference), 32, torch.Generator().manual_seed(seed))
    dense = dense_scores(EmbeddingView(learner, reference), kind)
    theirs = joint_sample_transcribed(dense, 32, n_chunks, gain, torch.Generator().manual_seed(seed))
    assert ours.tolist() == theirs.tolist()


def _exact_pair_probabilities(logits: torch.Tensor) -> dict[tuple[int, int], float]:
    """P({i, j}) for two draws without replacement with p ∝ exp(logits), enumerated."""
    p = torch.softmax(logits.double(), dim=0)
    return {
        (i, j): float(p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j]))
        for i, j in itertools.combinations(range(len(p)), 2)
    }


def _chi_square_p_value(strategy, view_factory, exact, draws: int, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    counts = dict.fromkeys(exact, 0)
    for _ in range(draws):
        i, j = sorted(strategy.select(view_factory(), 2, generator).tolist())
        counts[(i, j)] += 1
    statistic = sum((counts[k] - draws * q) ** 2 / (draws * q) for k, q in exact.items())
    dof = torch.tensor((len(exact) - 1) / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(dof, torch.tensor(statistic / 2, dtype=torch.float64)))


def test_jest_with_one_chunk_and_prioritized_draw_from_the_exact_distribution():
    """B = 6, b = 2: all 15 subsets enumerated; chi-square against the exact probabilities."""
    learner = _random_embeddings(6, 4, seed=3, scale=2.0, bias=0.0)
    reference = _random_embeddings(6, 4, seed=4, scale=2.0, bias=0.0)
    gain = 0.7

    def view():
        return EmbeddingView(learner, reference)

    exact = _exact_pair_probabilities(gain * view().scores("learnability"))
    assert min(exact.values()) > 0.005  # every cell expects dozens of draws
    jest = default_registry().get_strategy("jest", n_chunks=1, gain=gain)
    prioritized = default_registry().get_strategy("prioritized", gain=gain)
    assert _chi_square_p_value(jest, view, exact, draws=8000, seed=0) > 1e-3
    assert _chi_square_p_value(prioritized, view, exact, draws=8000, seed=1) > 1e-3
    # The test has power: uniform sampling is rejected against the same probabilities.
    uniform = default_registry().get_strategy("uniform")
    assert _chi_square_p_value(uniform, view, exact, draws=8000, seed=2) < 1e-6


def _clustered(size: int, seed: int) -> tuple[Embeddings, Embeddings]:
    """Eight clusters: pairs within a cluster are hard negatives, more so for the learner (tighter
    clusters) than for the reference."""
    g = torch.Generator().manual_seed(seed)
    dim = 32
    centers = F.normalize(torch.randn(8, dim, generator=g), dim=1)
    cluster = torch.randint(0, 8, (size,), generator=g)

    def model(spread: float) -> Embeddings:
        image = F.normalize(centers[cluster] + spread * torch.randn(size, dim, generator=g), dim=1)
        text = F.normalize(image + 0.1 * torch.randn(size, dim, generator=g), dim=1)
        return Embeddings(image, text, 10.0, -5.0)

    return model(0.1), model(0.3)


def test_jest_batches_are_jointly_more_learnable_and_near_the_gibbs_yardstick():
    """f = 0.8 on clustered embeddings: JEST beats independent top-b on joint learnability, and
    (s_jest - s_random) / (s_gibbs - s_random) >= 0.8 over seeds, with 10^4 Gibbs swaps (docs/DESIGN.md §3)."""
    size, batch_size, gain = 320, 64, 1.0
    jest = default_registry().get_strategy("jest", n_chunks=16, gain=gain)
    top_b = default_registry().get_strategy("learnability")
    ratios = []
    for seed in range(4):
        learner, reference = _clustered(size, seed)
        scores = gain * dense_scores(EmbeddingView(learner, reference), "learnability")
        s_jest = (
            sum(
                subset_score(
                    scores,
                    jest.select(
                        EmbeddingView(learner, reference), batch_size, torch.Generator().manual_seed(s)
                    ),
                )
                for s in range(5)
            )
            / 5
        )
        s_top = subset_score(
            scores, top_b.select(EmbeddingView(learner, reference), batch_size, torch.Generator())
        )
        g = torch.Generator().manual_seed(seed)
        s_random = (
            sum(subset_score(scores, torch.randperm(size, generator=g)[:batch_size]) for _ in range(100))
            / 100
        )
        trace: list[float] = []
        gibbs_sample(
            scores,
            batch_size,
            10_000,
            torch.Generator().manual_seed(seed),
            on_swap=lambda _, s, trace=trace: trace.append(s),
        )
        s_gibbs = sum(trace[5000:]) / len(trace[5000:])  # after burn-in
        assert s_jest > s_top
        ratios.append((s_jest - s_random) / (s_gibbs - s_random))
    assert sum(ratios) / len(ratios) >= 0.8, ratios


def test_gibbs_moves_towards_higher_joint_scores():
    learner, reference = _clustered(120, seed=9)
    scores = 3.0 * dense_scores(EmbeddingView(learner, reference), "learnability")
    trace: list[float] = []
    start = torch.arange(24)
    chosen = gibbs_sample(
        scores, 24, 3000, torch.Generator().manual_seed(0), init=start, on_swap=lambda _, s: trace.append(s)
    )
    assert chosen.numel() == 24 and chosen.unique().numel() == 24
    assert trace[-1] == pytest.approx(subset_score(scores, chosen), rel=1e-6)
    assert trace[-1] > subset_score(scores, start)


@pytest.mark.parametrize("name", ["jest", "prioritized", "flexi-jest"])
def test_logits_that_overflow_an_unshifted_exp_still_give_distinct_indices(name):
    """Losses near 1e4 times gain 100: exp() of them is inf in float32 and float64 (docs/DESIGN.md §3)."""
    learner = _random_embeddings(256, 8, seed=0, dtype=torch.float32, scale=1e4, bias=0.0)
    reference = _random_embeddings(256, 8, seed=1, dtype=torch.float32, scale=1.0, bias=0.0)
    view = EmbeddingView(learner, reference)
    assert torch.isinf(torch.exp(100 * view.scores("learnability"))).any()
    strategy = default_registry().get_strategy(name, gain=100.0)
    index = strategy.select(view, 64, torch.Generator().manual_seed(0))
    assert index.unique().numel() == 64


@pytest.mark.parametrize(("name", "params"), [("jest", {}), ("jest", {"n_chunks": 1}), ("prioritized", {})])
def test_weights_that_underflow_to_zero_do_not_fill_the_batch_with_chosen_indices(name, params):
    """Five candidates dominate, so every other softmax weight underflows to zero and b = 32 exceeds
    the nonzero weights; a sampler drawing from those weights (torch.multinomial) repeats indices or
    fails (docs/DESIGN.md §3). An exact draw gives 32 distinct indices; drawing independently (one chunk) it
    takes the five first."""
    image = F.normalize(torch.randn(200, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    text = image.clone()
    text[:5] = -text[:5]  # candidates 0..4 are anti-matched: huge learner loss
    learner = Embeddings(image, text, 100.0, 0.0)
    weights = torch.softmax(100.0 * EmbeddingView(learner).scores("hard"), dim=0)
    assert int((weights > 0).sum()) == 5
    strategy = default_registry().get_strategy(name, score="hard", gain=100.0, **params)
    index = strategy.select(EmbeddingView(learner), 32, torch.Generator().manual_seed(0))
    assert index.unique().numel() == 32
    if params.get("n_chunks") == 1 or name == "prioritized":
        assert sorted(index[:5].tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("size", "batch_size", "n_chunks"), [(640, 128, 16), (500, 100, 4), (64, 64, 8)])
def test_joint_sampling_computes_only_blocks_against_chosen_chunks(size, batch_size, n_chunks):
    """The pairwise products counted by the view are exactly the diagonal plus, for every chunk but the
    last, its rows and columns, per model: O(B·b·d), never the B x B matrix."""
    dim = 16
    learner, reference = _random_embeddings(size, dim, 0), _random_embeddings(size, dim, 1)
    view = EmbeddingView(learner, reference)
    default_registry().get_strategy("jest", n_chunks=n_chunks).select(view, batch_size, torch.Generator())
    chunk = batch_size // n_chunks
    per_model = size * dim + (n_chunks - 1) * 2 * size * chunk * dim
    assert view.pairwise_macs == 2 * per_model
    assert view.pairwise_macs < size * size * dim or n_chunks * chunk == size


@pytest.mark.parametrize("name", ["hard-learner", "easy-reference", "learnability"])
def test_independent_strategies_take_the_top_b_of_their_score(name):
    learner, reference = _random_embeddings(100, 8, 0), _random_embeddings(100, 8, 1)
    view = EmbeddingView(learner, reference)
    kind = {"hard-learner": "hard", "easy-reference": "easy", "learnability": "learnability"}[name]
    expected = set(torch.topk(view.scores(kind), 20).indices.tolist())
    index = default_registry().get_strategy(name).select(view, 20, torch.Generator())
    assert set(index.tolist()) == expected
    if kind == "easy":
        assert set(index.tolist()) == set(torch.topk(-reference_losses(reference), 20).indices.tolist())


def reference_losses(e: Embeddings) -> torch.Tensor:
    return -F.logsigmoid(e.scale * (e.image * e.text).sum(1) + e.bias)


@pytest.mark.parametrize(("batch_size", "n_chunks"), [(205, 16), (3, 16), (0, 4), (8, 0)])
def test_joint_sample_called_directly_refuses_a_chunk_count_that_does_not_divide_b(batch_size, n_chunks):
    """A plugin author calling ``jestbench.joint_sample`` gets the error the jest wrapper gives, never
    N·⌊b/N⌋ indices (192 for b = 205, N = 16; none for b = 3)."""
    import jestbench

    view = EmbeddingView(_random_embeddings(320, 8, 0), _random_embeddings(320, 8, 1))
    with pytest.raises(
        ValueError, match=rf"b={batch_size}\b.*n_chunks={n_chunks}\b|n_chunks={n_chunks}\b.*b={batch_size}\b"
    ):
        jestbench.joint_sample(
            view, "learnability", batch_size, n_chunks, 1.0, torch.Generator().manual_seed(0)
        )


def test_joint_sample_called_directly_returns_b_distinct_indices_when_n_divides_b():
    import jestbench

    view = EmbeddingView(_random_embeddings(320, 8, 0), _random_embeddings(320, 8, 1))
    index = jestbench.joint_sample(view, "learnability", 208, 16, 1.0, torch.Generator().manual_seed(0))
    assert len(set(index.tolist())) == 208
