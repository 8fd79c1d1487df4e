"""``jestbench strategies``: list, show and check the registered selection strategies."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.errors import UserError

HELP = """\
jestbench strategies [PATTERN]          list strategies matching PATTERN (shell-style, e.g. 'jest*')
jestbench strategies show NAME          one strategy: parameters, defaults, ranges, needs
jestbench strategies check NAME         run the conformance kit on it

With --param k=v the strategy is built with those parameters (and refused if one is invalid); with
--batch-size and --filter-ratio the sizes of a selection are checked too (B = round(b / (1 - f))).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "strategies",
        help="list, show or check selection strategies",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("words", nargs="*", metavar="[show|check] NAME|PATTERN")
    add_param_argument(parser)
    parser.add_argument("--batch-size", "-b", type=int, help="sub-batch size b to check against")
    parser.add_argument("--filter-ratio", "-f", type=float, help="filter ratio f in [0, 1) to check against")
    parser.set_defaults(handler=run)


def add_param_argument(
    parser: argparse.ArgumentParser, help: str = "strategy parameter (repeatable)"
) -> None:
    """``--param k=v`` (repeatable): a strategy parameter, converted and checked by its declaration."""
    parser.add_argument("--param", "-p", action="append", default=[], metavar="K=V", help=help)


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``["n_chunks=8", "score=hard"]`` -> ``{"n_chunks": "8", "score": "hard"}``."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--param {pair!r} is not of the form name=value")
        params[key.strip()] = value.strip()
    return params


def run(args: argparse.Namespace) -> int:
    from strategies import default_registry

    registry = default_registry()
    words = list(args.words)
    if words and words[0] in ("show", "check"):
        if len(words) != 2:
            raise UserError(f"usage: jestbench strategies {words[0]} NAME")
        name = words[1]
        strategy = registry.get_strategy(name, **parse_params(args.param))
        for note in registry.notes().get(name, []):  # after loading: a misnamed class is known then
            print(f"jestbench: warning: {note}", file=sys.stderr)
        if args.batch_size is not None or args.filter_ratio is not None:
            _check_shape(strategy, args.batch_size, args.filter_ratio)
        if words[0] == "show":
            print(_describe(registry, name, strategy))
            return 0
        return _check(name, parse_params(args.param))
    if len(words) > 1:
        raise UserError("give at most one PATTERN (quote it: 'jest*')")
    pattern = words[0] if words else "*"
    names = registry.list_strategies(pattern)
    if not names:
        raise UserError(f"no strategy matches {pattern!r}; `jestbench strategies` lists them all")
    print(_table(registry, names))
    for name, error in sorted(registry.plugin_errors().items()):
        print(f"! {name}: {error}")
    for name, notes in sorted(registry.notes().items()):
        for note in notes:
            print(f"! {name}: {note}")
    return 0


def _check_shape(strategy: Any, batch_size: int | None, filter_ratio: float | None) -> None:
    from harness.batching import BatchShape

    if batch_size is None or filter_ratio is None:
        raise UserError("--batch-size and --filter-ratio go together")
    shape = BatchShape.from_filter_ratio(batch_size, filter_ratio)
    strategy.check_sizes(shape.batch_size, shape.super_batch_size)
    print(f"b={shape.batch_size} B={shape.super_batch_size} f={shape.filter_ratio:.4f}: accepted")


def _check(name: str, params: dict[str, str]) -> int:
    from harness.conformance import CONFORMANCE_CHECKS
    from strategies import default_registry

    failed = 0
    for check_name, check in CONFORMANCE_CHECKS.items():
        try:
            check(lambda: default_registry().get_strategy(name, **params))
        except AssertionError as err:
            failed += 1
            print(f"FAIL {check_name}: {err}")
        else:
            print(f"ok   {check_name}")
    return 1 if failed else 0


def _needs_text(strategy: Any) -> str:
    needs = strategy.needs
    parts = []
    if needs.learner:
        parts.append("learner" + (" (coarse patches)" if needs.learner_resolution == "coarse" else ""))
    if needs.reference:
        parts.append("reference")
    return ", ".join(parts) or "-"


def _params_text(cls: Any) -> str:
    return "; ".join(f"{p.name}: {p.valid_range()} = {p.default}" for p in cls.params) or "-"


def _table(registry: Any, names: list[str]) -> str:
    rows = [("name", "source", "needs (defaults)", "trains at", "parameters: range = default")]
    for name in names:
        try:
            strategy = registry.get_strategy(name)
        except Exception as err:
            rows.append((name, registry.source(name), "-", "-", f"unavailable: {err}"))
            continue
        trains = " + ".join(strategy.training.resolutions)
        rows.append(
            (
                name,
                registry.source(name),
                _needs_text(strategy),
                trains,
                _params_text(type(strategy.strategy)),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    )


def _describe(registry: Any, name: str, strategy: Any) -> str:
    cls = type(strategy.strategy)
    lines = [f"{name} ({registry.source(name)}: {cls.__module__}.{cls.__qualname__})", ""]
    lines += ["  " + line.strip() for line in (cls.__doc__ or "").strip().splitlines()]
    lines += [
        "",
        f"needs:     {_needs_text(strategy)}",
        f"trains at: {' + '.join(strategy.training.resolutions)}",
    ]
    lines += ["", "parameters:" if cls.params else "parameters: none"]
    for p in cls.params:
        lines.append(
            f"  {p.name} ({p.type.__name__}, {p.valid_range()}, default {p.default}; now {strategy.config[p.name]})"
        )
        lines.append(f"      {p.doc}")
    return "\n".join(lines)
