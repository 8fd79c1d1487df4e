"""The search space of a study, checked against the strategy and the run before any trial runs.

A study searches the run's filter ratio, the strategy's declared parameters and, when asked, the
peak learning rate. Each is a *dimension*: a fixed value, a list of choices, or a range. Defaults come
from the strategy's :class:`strategies.Param` declarations (their types and ranges); a suite's
``[tune]`` table overrides them (docs/TUNING.md)::

    [tune]
    filter_ratio = { low = 0.5, high = 0.9 }
    learning_rate = { low = 3e-4, high = 1e-2, log = true }

    [tune.params.jest]
    n_chunks = { low = 4, high = 32 }   # powers of two, searched as the exponent
    score = "learnability"              # fixed: not searched
    gain = [10.0, 100.0, 1000.0]        # choices

A space that no run could use (a filter ratio of 1 or more, a chunk count that does not divide ``b``,
a name that is not a parameter) is refused here, naming what is wrong, so that no trial is spent on
finding out.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import optuna

from harness.batching import BatchShape
from harness.errors import UserError
from harness.runconfig import OptimConfig, RunConfig, TrainingError
from strategies import Param, ParameterError, StrategyError, default_registry

FILTER_RATIO = "filter_ratio"
LEARNING_RATE = "learning_rate"
RUN_DIMENSIONS = (FILTER_RATIO, LEARNING_RATE)
# The filter ratio's default range: from no selection to keeping 1 in 20 (B = 20 b).
DEFAULT_FILTER_RATIO = (0.0, 0.95)
# A parameter whose declared range reaches past this multiple of its default (JEST's gain: default
# 100, declared up to 1e6) is searched on a log scale within this factor of its default.
WIDE = 100.0
# Integer ranges with at most this many values are checked value by value against the strategy.
CHECK_ALL_INTEGERS = 4096
_RANGE_KEYS = ("low", "high", "log")


class SpaceError(UserError):
    """A search space that cannot be searched; the message names the dimension and the bad value."""


class Dimension(Protocol):
    """One searched (or fixed) quantity: how a trial draws it and what values must be checked."""

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """The value of this dimension in ``trial`` (drawn through Optuna, or fixed)."""
        ...

    def values_to_check(self) -> tuple[Any, ...]:
        """The values that must all be valid for the whole dimension to be (ends of ranges)."""
        ...

    def describe(self) -> str:
        """The dimension in words, for reports and for recognising a study's space again."""
        ...


@dataclass(frozen=True)
class Fixed:
    value: Any

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return self.value

    def values_to_check(self) -> tuple[Any, ...]:
        return (self.value,)

    def describe(self) -> str:
        return f"fixed at {self.value!r}"


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def values_to_check(self) -> tuple[Any, ...]:
        return self.values

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def values_to_check(self) -> tuple[Any, ...]:
        return (self.low, self.high)

    def describe(self) -> str:
        return f"{'log-uniform' if self.log else 'uniform'} in [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_int(name, self.low, self.high)

    def values_to_check(self) -> tuple[Any, ...]:
        if self.high - self.low < CHECK_ALL_INTEGERS:
            return tuple(range(self.low, self.high + 1))
        return (self.low, self.high)

    def describe(self) -> str:
        return f"integers in [{self.low}, {self.high}]"


@dataclass(frozen=True)
class PowerOfTwo:
    """``2**e`` for an integer exponent ``e``: JEST's chunk count must divide ``b``, and the divisors
    that matter are powers of two; searching the exponent keeps the sampler's notion of "near"."""

    low_exponent: int
    high_exponent: int

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return 2 ** trial.suggest_int(f"log2_{name}", self.low_exponent, self.high_exponent)

    def values_to_check(self) -> tuple[Any, ...]:
        return tuple(2**e for e in range(self.low_exponent, self.high_exponent + 1))

    def describe(self) -> str:
        return (
            f"powers of two in [{2**self.low_exponent}, {2**self.high_exponent}] "
            f"(searched as log2 in [{self.low_exponent}, {self.high_exponent}])"
        )


@dataclass(frozen=True)
class SearchSpace:
    """A strategy's space at one ``b``: run dimensions (filter ratio, learning rate) and parameters."""

    strategy: str
    run: dict[str, Dimension]
    params: dict[str, Dimension]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw a point: ``{"filter_ratio": ..., ["learning_rate": ...,] "params": {...}}``."""
        point: dict[str, Any] = {name: dim.suggest(trial, name) for name, dim in self.run.items()}
        point["params"] = {name: dim.suggest(trial, name) for name, dim in self.params.items()}
        return point

    def describe(self) -> dict[str, str]:
        """Every dimension in words; two studies with equal descriptions search the same space."""
        return {name: dim.describe() for name, dim in {**self.run, **self.params}.items()}

    def needs_reference(self) -> bool:
        """Whether any point of the space runs a strategy that reads the reference (a searched score
        kind can make some trials need it and others not)."""
        discrete = {
            name: dim.values_to_check() if isinstance(dim, Fixed | Choice) else dim.values_to_check()[:1]
            for name, dim in self.params.items()
        }
        registry = default_registry()
        return any(
            registry.get_strategy(self.strategy, **dict(zip(discrete, values, strict=True))).needs.reference
            for values in itertools.product(*discrete.values())
        )

    def apply(self, base: RunConfig, point: Mapping[str, Any], reference: str | None) -> RunConfig:
        """The run of ``point``: ``base`` with the point's filter ratio, parameters (validated, defaults
        filled, so equal points have equal run ids) and learning rate; the reference only if read."""
        strategy = default_registry().get_strategy(self.strategy, **point["params"])
        optim = base.optim
        if LEARNING_RATE in point:
            optim = dataclasses.replace(optim, learning_rate=float(point[LEARNING_RATE]))
        return dataclasses.replace(
            base,
            strategy=self.strategy,
            params=dict(strategy.config),
            filter_ratio=float(point.get(FILTER_RATIO, base.filter_ratio)),
            reference=reference if strategy.needs.reference else None,
            optim=optim,
        )


def build_space(
    strategy: str, batch_size: int, overrides: Mapping[str, Any] | None = None, *, source: str = "[tune]"
) -> SearchSpace:
    """The space of ``strategy`` at sub-batch size ``batch_size``, with a ``[tune]`` table's overrides.

    Args:
        strategy: a registered strategy name.
        batch_size: the run's ``b`` (a chunk count must divide it).
        overrides: the suite's ``[tune]`` table (``filter_ratio``, ``learning_rate``, and
            ``params.<strategy>.<name>``); other keys of the table are not looked at here.
        source: where the overrides come from, for error messages.

    Raises:
        SpaceError: a dimension that names no parameter, has a malformed spec, or holds a value that
            no run of this strategy at this ``b`` accepts.
    """
    overrides = overrides or {}
    registry = default_registry()
    declared = {p.name: p for p in registry.get_class(strategy).params}
    clash = sorted(set(declared) & set(RUN_DIMENSIONS))
    if clash:
        raise SpaceError(f"strategy {strategy!r} declares {clash[0]!r}, which names a run setting in [tune]")
    tables = overrides.get("params", {})
    if not isinstance(tables, Mapping):
        raise SpaceError(f"{source}: [tune.params] must be a table of per-strategy tables")
    for name, table in tables.items():
        _check_param_names(name, table, source)

    run: dict[str, Dimension] = {
        FILTER_RATIO: _dimension(
            overrides,
            FILTER_RATIO,
            float,
            FloatRange(*DEFAULT_FILTER_RATIO),
            f"{source}: [tune] {FILTER_RATIO}",
        )
    }
    if LEARNING_RATE in overrides:
        run[LEARNING_RATE] = _dimension(
            overrides, LEARNING_RATE, float, None, f"{source}: [tune] {LEARNING_RATE}"
        )
    # The defaults first, cut down to what serves this b, so that a range the table gives in part
    # (n_chunks = { low = 4 }) takes its other end from what can run.
    defaults = {name: _default_dimension(param) for name, param in declared.items()}
    defaults = _check(SearchSpace(strategy, run, defaults), batch_size, source, strict=False).params
    given = tables.get(strategy, {})
    params: dict[str, Dimension] = {}
    for name, param in declared.items():
        where = f"{source}: [tune.params.{strategy}] {name}"
        params[name] = _dimension(given, name, param.type, defaults[name], where)
    return _check(SearchSpace(strategy, run, params), batch_size, source)


def with_params(
    overrides: Mapping[str, Any], strategy: str, params: Mapping[str, str], source: str = "--param"
) -> dict[str, Any]:
    """``overrides`` (a ``[tune]`` table) with each of ``params`` (``-p k=v``, as strings) held fixed
    for ``strategy``, converted by its declaration: a parameter given on the command line is not
    searched.

    Raises:
        SpaceError: a name that is not a parameter of the strategy, or a value it refuses.
    """
    if not params:
        return dict(overrides)
    declared = {p.name: p for p in default_registry().get_class(strategy).params}
    fixed: dict[str, Any] = {}
    for name, value in params.items():
        if name not in declared:
            raise SpaceError(
                f"{source}: {name!r} is not a parameter of {strategy} "
                f"(its parameters: {', '.join(declared) or 'none'})"
            )
        try:
            fixed[name] = declared[name].validate(value, strategy)
        except ParameterError as err:
            raise SpaceError(f"{source}: {err}") from None
    tables = dict(overrides.get("params", {}))
    tables[strategy] = {**tables.get(strategy, {}), **fixed}
    return {**overrides, "params": tables}


def _check_param_names(strategy: str, table: Any, source: str) -> None:
    registry = default_registry()
    known = registry.list_strategies()
    if strategy not in known:
        close = difflib.get_close_matches(strategy, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SpaceError(f"{source}: [tune.params.{strategy}] names no registered strategy{hint}")
    if not isinstance(table, Mapping):
        raise SpaceError(f"{source}: [tune.params.{strategy}] must be a table of parameter specs")
    declared = [p.name for p in registry.get_class(strategy).params]
    for name in table:
        if name not in declared:
            raise SpaceError(
                f"{source}: {name!r} in [tune.params.{strategy}] is not a parameter of {strategy} "
                f"(its parameters: {', '.join(declared) or 'none'})"
            )


def _default_dimension(param: Param) -> Dimension:
    """A declared parameter's default search: its choices, or its range (on a log scale when the
    range is far wider than the default); a parameter with neither is held at its default."""
    if param.choices is not None:
        return Choice(tuple(param.choices))
    if param.type is bool:
        return Choice((False, True))
    if param.type not in (int, float) or param.low is None or param.high is None:
        return Fixed(param.default)
    default = float(param.default)
    if param.type is int:
        if default > 0 and param.high > WIDE * default:
            return PowerOfTwo(math.ceil(math.log2(max(param.low, 1))), math.floor(math.log2(param.high)))
        return IntRange(int(param.low), int(param.high))
    if default > 0 and param.high > WIDE * default:
        return FloatRange(max(param.low, default / WIDE), min(param.high, default * WIDE), log=True)
    return FloatRange(float(param.low), float(param.high))


def _dimension(
    table: Mapping[str, Any], name: str, kind: type[Any], default: Dimension | None, where: str
) -> Dimension:
    """The dimension ``table[name]`` describes: a scalar is fixed, a list is choices, a table a range
    (``low``/``high``/``log``, each taken from the default range when left out); ``where`` names it
    in errors."""
    if name not in table:
        assert default is not None, f"{where}: a dimension without a default is only built when given"
        return default
    spec = table[name]
    if isinstance(spec, list):
        if not spec or not all(isinstance(v, bool | int | float | str) for v in spec):
            raise SpaceError(
                f"{where} = {spec!r}: choices must be a non-empty list of numbers, strings or booleans"
            )
        return Choice(tuple(_convert(v, kind, where) for v in spec))
    if not isinstance(spec, Mapping):
        return Fixed(_convert(spec, kind, where))
    unknown = [k for k in spec if k not in _RANGE_KEYS]
    if unknown:
        raise SpaceError(f"{where}: unknown key {unknown[0]!r} in a range (known: {', '.join(_RANGE_KEYS)})")
    if kind not in (int, float):
        raise SpaceError(
            f"{where}: a {kind.__name__} parameter takes a value or a list of choices, not a range"
        )
    base: dict[str, Any] = {}
    if isinstance(default, FloatRange):
        base = {"low": default.low, "high": default.high, "log": default.log}
    elif isinstance(default, IntRange):
        base = {"low": default.low, "high": default.high, "log": False}
    elif isinstance(default, PowerOfTwo):
        base = {"low": 2**default.low_exponent, "high": 2**default.high_exponent, "log": True}
    merged = {**base, **spec}
    for key in ("low", "high"):
        if key not in merged:
            raise SpaceError(f"{where}: the range needs {key!r}")
    low, high = (_convert(merged[k], kind, where) for k in ("low", "high"))
    log = merged.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: log = {log!r} must be true or false")
    if not low < high:
        raise SpaceError(
            f"{where}: low={low!r} must be below high={high!r} (a single value is written without a table)"
        )
    if log and low <= 0:
        raise SpaceError(f"{where}: a log-scale range needs low > 0, got low={low!r}")
    if kind is float:
        return FloatRange(float(low), float(high), log=log)
    if not log:
        return IntRange(int(low), int(high))
    for end in (low, high):
        if end & (end - 1):
            raise SpaceError(
                f"{where}: {end} is not a power of two; an integer range with log = true searches powers "
                "of two (give log = false to search every integer)"
            )
    return PowerOfTwo(int(low).bit_length() - 1, int(high).bit_length() - 1)


def _convert(value: Any, kind: type[Any], where: str) -> Any:
    """A TOML value as ``kind``: an integer where a float is wanted is fine, the reverse is not."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SpaceError(f"{where}: {value!r} is not a {kind.__name__}")
    return value


def _check(space: SearchSpace, batch_size: int, source: str, *, strict: bool = True) -> SearchSpace:
    """Refuse any value of the space that a run could not use: every filter ratio must make a batch
    shape, every learning rate an optimiser, and every parameter value a strategy that serves ``b``
    at the super-batch sizes of the filter ratio's ends. Not ``strict`` (the default search), a
    parameter is narrowed to the values that work instead: JEST's declared chunk counts go up to
    65536, and only the divisors of ``b`` are its space."""
    super_batches: set[int] = set()
    for value in space.run[FILTER_RATIO].values_to_check():
        try:
            super_batches.add(BatchShape.from_filter_ratio(batch_size, value).super_batch_size)
        except UserError as err:
            raise SpaceError(f"{source}: [tune] {FILTER_RATIO} = {value!r}: {err}") from None
    if LEARNING_RATE in space.run:
        for value in space.run[LEARNING_RATE].values_to_check():
            try:
                OptimConfig(learning_rate=value)
            except TrainingError as err:
                raise SpaceError(f"{source}: [tune] {LEARNING_RATE} = {value!r}: {err}") from None
    registry = default_registry()
    for name, dim in space.params.items():  # each value of the parameter's own type and range
        for value in dim.values_to_check():
            try:
                registry.get_strategy(space.strategy, **{name: value})
            except ParameterError as err:
                raise SpaceError(
                    f"{source}: [tune.params.{space.strategy}] {name} = {value!r} is not a valid value: {err}"
                ) from None

    def problem(point: dict[str, Any]) -> str | None:
        try:
            strategy = registry.get_strategy(space.strategy, **point)
            for size in sorted(super_batches):
                strategy.check_sizes(batch_size, size)
        except StrategyError as err:
            return str(err)
        return None

    # Judge each value with the other parameters at values that work: JEST's default of 16 chunks
    # must not make every score kind look refused at b = 24.
    others = {name: dim.values_to_check()[0] for name, dim in space.params.items()}
    for name, dim in space.params.items():
        if problem(others) is not None:
            others[name] = next(
                (v for v in dim.values_to_check() if not problem({**others, name: v})), others[name]
            )
    params: dict[str, Dimension] = {}
    # Single values first: they cannot move out of the way, so a conflict is theirs to name.
    for name, dim in sorted(space.params.items(), key=lambda item: len(item[1].values_to_check()) > 1):
        verdicts = [(value, problem({**others, name: value})) for value in dim.values_to_check()]
        accepted = [value for value, error in verdicts if error is None]
        refused = next(((value, error) for value, error in verdicts if error is not None), None)
        if refused and strict:
            value, error = refused
            raise SpaceError(
                f"{source}: [tune.params.{space.strategy}] {name} = {value!r} cannot run at b={batch_size}: {error}"
            )
        params[name] = _narrowed(dim, accepted) if refused and accepted else dim
    return dataclasses.replace(space, params={name: params[name] for name in space.params})


def _narrowed(dim: Dimension, accepted: list[Any]) -> Dimension:
    """``dim`` cut down to the ``accepted`` values among those it holds."""
    if isinstance(dim, PowerOfTwo):
        exponents = [int(v).bit_length() - 1 for v in accepted]
        if exponents == list(range(exponents[0], exponents[-1] + 1)):
            return PowerOfTwo(exponents[0], exponents[-1])
    elif isinstance(dim, IntRange) and accepted == list(range(accepted[0], accepted[-1] + 1)):
        return IntRange(accepted[0], accepted[-1])
    return Choice(tuple(accepted)) if len(accepted) > 1 else Fixed(accepted[0])
