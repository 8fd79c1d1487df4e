"""The conformance kit: the contract every strategy must meet, as checks a plugin author calls.

    import jestbench

    def test_my_strategy_conforms():
        jestbench.check_strategy(MyStrategy)

Each check builds super-batch views from random embeddings (learner and reference both available,
so a strategy reading something it did not declare is caught by the view) and runs the strategy
through :class:`strategies.ValidatedStrategy`. A failing check raises ``AssertionError`` saying what
broke. jestbench runs the same kit over every registered strategy in its own test suite.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from harness.view import EmbeddingView
from strategies import Embeddings, Strategy, StrategyError, ValidatedStrategy

StrategyFactory = type[Strategy] | Callable[[], Strategy | ValidatedStrategy]

# Sub-batch sizes that are multiples of 16 serve the default chunk count of joint sampling and the
# two halves of two-resolution training.
_SHAPES = ((64, 16), (80, 32), (48, 48))
_DIM = 8


def random_embeddings(
    size: int, generator: torch.Generator, *, dim: int = _DIM, scale: float = 10.0, bias: float = -5.0
) -> Embeddings:
    """L2-normalised random image and text embeddings, image i loosely paired with text i."""
    image = torch.nn.functional.normalize(torch.randn(size, dim, generator=generator), dim=1)
    noise = torch.randn(size, dim, generator=generator)
    text = torch.nn.functional.normalize(image + 0.5 * noise, dim=1)
    return Embeddings(image, text, scale, bias)


def random_view(size: int, seed: int, *, scale: float = 10.0, bias: float = -5.0) -> EmbeddingView:
    """A view with learner and reference embeddings of ``size`` candidates, fixed by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    learner = random_embeddings(size, generator, scale=scale, bias=bias)
    reference = random_embeddings(size, generator, scale=scale, bias=bias)
    return EmbeddingView(learner, reference)


def _build(factory: StrategyFactory) -> ValidatedStrategy:
    made = factory()
    if isinstance(made, ValidatedStrategy):
        return made
    if not isinstance(made, Strategy):
        raise AssertionError(f"{factory!r} built {type(made).__name__}, not a Strategy")
    return ValidatedStrategy(made, made.name or type(made).__name__)


def _select(strategy: ValidatedStrategy, view: EmbeddingView, batch_size: int, seed: int) -> torch.Tensor:
    try:
        return strategy.select(view, batch_size, torch.Generator().manual_seed(seed))
    except StrategyError as err:
        raise AssertionError(str(err)) from err
    except Exception as err:
        raise AssertionError(
            f"{strategy.name}: selecting b={batch_size} of B={view.size} raised {type(err).__name__}: {err}"
        ) from err


def check_distinct_in_range(factory: StrategyFactory) -> None:
    """``b`` distinct indices in ``[0, B)``, as a LongTensor, for several shapes."""
    strategy = _build(factory)
    for size, batch_size in _SHAPES:
        _select(strategy, random_view(size, seed=size), batch_size, seed=0)


def check_reproducible(factory: StrategyFactory) -> None:
    """The same view and generator seed give the same indices."""
    strategy = _build(factory)
    first = _select(strategy, random_view(64, seed=1), 16, seed=7)
    again = _select(strategy, random_view(64, seed=1), 16, seed=7)
    assert torch.equal(first, again), (
        f"{strategy.name}: same seed gave {first.tolist()} then {again.tolist()}"
    )


def check_full_super_batch(factory: StrategyFactory) -> None:
    """``b == B`` (filter ratio 0) selects every candidate once."""
    strategy = _build(factory)
    index = _select(strategy, random_view(32, seed=2), 32, seed=0)
    assert sorted(index.tolist()) == list(range(32)), f"{strategy.name}: b == B did not select all candidates"


def check_oversized_refused(factory: StrategyFactory) -> None:
    """``b > B`` is refused with a StrategyError, not answered with a short or repeated selection."""
    strategy = _build(factory)
    try:
        strategy.select(random_view(16, seed=3), 32, torch.Generator().manual_seed(0))
    except StrategyError:
        return
    except Exception as err:
        raise AssertionError(
            f"{strategy.name}: b=32 > B=16 raised {type(err).__name__}, not StrategyError"
        ) from err
    raise AssertionError(f"{strategy.name}: selecting b=32 from B=16 was not refused")


def check_extreme_scores(factory: StrategyFactory) -> None:
    """Huge logit scales (losses near 1e6, so ``exp`` of them overflows), identical candidates (ties)
    and scores whose softmax weights underflow to zero still give ``b`` distinct indices."""
    strategy = _build(factory)
    for scale, bias in ((1e6, -1e6), (1e6, 1e6), (1e-6, 0.0)):
        _select(strategy, random_view(64, seed=4, scale=scale, bias=bias), 16, seed=0)
    same = Embeddings(torch.ones(64, _DIM) / _DIM**0.5, torch.ones(64, _DIM) / _DIM**0.5, 10.0, -5.0)
    _select(strategy, EmbeddingView(same, same), 16, seed=0)


def check_declared_needs(factory: StrategyFactory) -> None:
    """The strategy reads only what its needs declare (the view refuses anything else)."""
    strategy = _build(factory)
    _select(strategy, random_view(64, seed=5), 16, seed=0)


CONFORMANCE_CHECKS: dict[str, Callable[[StrategyFactory], None]] = {
    "distinct_in_range": check_distinct_in_range,
    "reproducible": check_reproducible,
    "full_super_batch": check_full_super_batch,
    "oversized_refused": check_oversized_refused,
    "extreme_scores": check_extreme_scores,
    "declared_needs": check_declared_needs,
}


def check_strategy(factory: StrategyFactory) -> None:
    """Run every conformance check; raise one AssertionError listing each that failed."""
    failures = []
    for name, check in CONFORMANCE_CHECKS.items():
        try:
            check(factory)
        except AssertionError as err:
            failures.append(f"{name}: {err}")
    if failures:
        raise AssertionError("conformance failed:\n  " + "\n  ".join(failures))
