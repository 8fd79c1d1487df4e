"""Suites: TOML files that describe a set of runs on one dataset and preset at one budget.

A suite has a ``[data]`` table (the options of ``--data`` or the bring-your-own patterns), a ``[run]``
table (preset, b, budget, filter ratio, seeds, evaluation cadence, ``[run.optim]``), a
``[reference]`` table (how the suite's one reference is trained) and ``[[strategies]]`` entries (a
strategy name, its ``params``, and any ``[run]`` key it overrides, such as ``filter_ratio``). Lists
expand to a grid: ``filter_ratio = [0.5, 0.8, 0.9]`` or ``params = { n_chunks = [4, 16] }`` make one
configuration per value, and every configuration runs once per seed. A ``[tune]`` table holds what
``jestbench tune`` needs beyond the run: trial count, pruner and search-space overrides (docs/TUNING.md).

Built-in suites live beside this file: ``quick`` (the README's main command) and ``full`` (the
committed leaderboard). ``jestbench run PATH.toml`` runs a suite of your own.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness.data import Dataset
from harness.device import DEVICES, PRECISIONS, check_precision, resolve_device
from harness.distributed import SCOPES
from harness.errors import UserError
from harness.runconfig import OptimConfig, RunConfig
from strategies import default_registry

RUN_KEYS = (
    "preset",
    "batch_size",
    "budget",
    "filter_ratio",
    "seeds",
    "eval_every",
    "reference_cached",
    "device",
    "precision",
    "selection_scope",
)
# Where and how the runs compute (docs/DISTRIBUTED.md): one value per suite, with these choices.
PLACEMENT_KEYS = {"device": DEVICES, "precision": PRECISIONS, "selection_scope": SCOPES}
GRID_KEYS = ("preset", "batch_size", "budget", "filter_ratio", "eval_every", "reference_cached")
DATA_KEYS = ("data", "curated", "raw", "val", "eval", "image_size", "channels", "on_bad_sample")
REFERENCE_KEYS = ("preset", "batch_size", "budget", "seed", "optim")
TOP_KEYS = ("name", "description", "note", "data", "run", "reference", "strategies", "tune")
# The [tune] table (docs/TUNING.md); its search-space specs are checked by harness.tune, which knows
# the strategy being tuned.
TUNE_KEYS = ("trials", "pruner", "filter_ratio", "learning_rate", "params")


class SuiteError(UserError):
    """A suite file that cannot be read or does not describe runs; the message names file and key."""


@dataclass(frozen=True)
class Entry:
    """One configuration of a suite (before seeds): a strategy, its parameters and the run's settings."""

    strategy: str
    params: dict[str, Any]
    settings: dict[str, Any]


@dataclass(frozen=True)
class Suite:
    """A parsed suite; :meth:`entries` expands its grid and :meth:`run_configs` makes its runs."""

    name: str
    description: str
    note: str | None
    source: str
    data: dict[str, Any]
    run: dict[str, Any]
    optim: dict[str, Any]
    reference: dict[str, Any]
    strategies: list[dict[str, Any]]
    tune: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1  # ranks per run: `jestbench run --nproc K`, not a suite key

    @property
    def seeds(self) -> list[int]:
        seeds = self.run.get("seeds", [0])
        return list(seeds) if isinstance(seeds, list) else [int(seeds)]

    def entries(self) -> list[Entry]:
        """Every configuration of the grid, parameters validated and completed with their defaults."""
        entries = []
        for spec in self.strategies:
            settings = {
                k: spec.get(k, self.run.get(k)) for k in GRID_KEYS if spec.get(k, self.run.get(k)) is not None
            }
            params = spec.get("params", {})
            grid = {f"run.{k}": v for k, v in settings.items() if isinstance(v, list)}
            grid |= {f"param.{k}": v for k, v in params.items() if isinstance(v, list)}
            for values in itertools.product(*grid.values()):
                chosen = dict(zip(grid, values, strict=True))
                run = {k: chosen.get(f"run.{k}", v) for k, v in settings.items()}
                raw = {k: chosen.get(f"param.{k}", v) for k, v in params.items()}
                strategy = default_registry().get_strategy(spec["name"], **raw)
                entries.append(Entry(spec["name"], dict(strategy.config), run))
        return entries

    def needs_reference(self) -> bool:
        """Whether any configuration reads the reference (then the suite trains one)."""
        return any(
            default_registry().get_strategy(e.strategy, **e.params).needs.reference for e in self.entries()
        )

    def optim_config(self) -> OptimConfig:
        return OptimConfig(**self.optim)

    def placed(self, *, device: str | None = None, precision: str | None = None, nproc: int = 1) -> Suite:
        """This suite with the command line's ``--device``, ``--precision`` and ``--nproc``, where given."""
        if nproc < 1:
            raise SuiteError(f"--nproc {nproc} must be >= 1")
        given = {k: v for k, v in {"device": device, "precision": precision}.items() if v is not None}
        return dataclasses.replace(self, run={**self.run, **given}, world_size=nproc)

    @property
    def device(self) -> str:
        """The resolved device of the suite's runs and reference (``auto``: CUDA when present)."""
        return resolve_device(str(self.run.get("device", "auto")))

    @property
    def precision(self) -> str:
        return check_precision(str(self.run.get("precision", "fp32")), self.device)

    def run_config(self, entry: Entry, seed: int, dataset: Dataset, reference: str | None) -> RunConfig:
        """The run of ``entry`` at ``seed`` (the same config a ``jestbench train`` would make)."""
        needs = default_registry().get_strategy(entry.strategy, **entry.params).needs
        settings = entry.settings
        return RunConfig(
            dataset=str(dataset.root),
            dataset_id=dataset.content_id,
            preset=settings["preset"],
            strategy=entry.strategy,
            params=entry.params,
            batch_size=int(settings["batch_size"]),
            filter_ratio=float(settings.get("filter_ratio", 0.0)),
            budget=str(settings["budget"]),
            seed=seed,
            reference=reference if needs.reference else None,
            reference_cached=bool(settings.get("reference_cached", True)),
            on_bad_sample=self.data.get("on_bad_sample", "error"),
            eval_every=float(settings.get("eval_every", 0.25)),
            optim=self.optim_config(),
            device=self.device,
            precision=self.precision,
            world_size=self.world_size,
            selection_scope=str(self.run.get("selection_scope", "global")),
        )

    def run_configs(self, dataset: Dataset, reference: str | None) -> list[RunConfig]:
        """Every run of the suite: each configuration at each seed, in file order."""
        return [self.run_config(e, seed, dataset, reference) for e in self.entries() for seed in self.seeds]


def builtin_suites() -> list[str]:
    """The names of the suites shipped with jestbench."""
    return sorted(
        p.name.removesuffix(".toml") for p in resources.files(__name__).iterdir() if p.name.endswith(".toml")
    )


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name (``quick``, ``full``) or a suite file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SuiteError(f"no suite file {path}")
        text, source = path.read_text(), str(path)
    elif name_or_path in builtin_suites():
        text = resources.files(__name__).joinpath(f"{name_or_path}.toml").read_text()
        source = f"built-in suite {name_or_path!r}"
    else:
        raise SuiteError(
            f"no suite {name_or_path!r}: give a .toml file or one of the built-in suites ({', '.join(builtin_suites())})"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SuiteError(f"{source}: not valid TOML: {err}") from None
    return parse_suite(data, source)


def parse_suite(data: Mapping[str, Any], source: str) -> Suite:
    """Check a suite's tables and keys, naming the first one that is wrong."""
    _known(data, TOP_KEYS, source, "the top level")
    run = dict(data.get("run", {}))
    optim = run.pop("optim", {})
    _known(run, RUN_KEYS, source, "[run]")
    fields = {f.name for f in dataclasses.fields(OptimConfig)}
    _known(optim, tuple(fields), source, "[run.optim]")
    for key in ("preset", "batch_size", "budget"):
        if key not in run:
            raise SuiteError(f"{source}: [run] needs {key!r}")
    for key, choices in PLACEMENT_KEYS.items():
        if key in run and run[key] not in choices:
            raise SuiteError(f"{source}: [run] {key} = {run[key]!r} is not one of {', '.join(choices)}")
    data_table = dict(data.get("data", {"data": "shapes"}))
    _known(data_table, DATA_KEYS, source, "[data]")
    reference = dict(data.get("reference", {}))
    _known(reference, REFERENCE_KEYS, source, "[reference]")
    strategies = [dict(s) for s in data.get("strategies", [])]
    if not strategies:
        raise SuiteError(f"{source}: no [[strategies]] entries")
    tune = dict(data.get("tune", {}))
    _known(tune, TUNE_KEYS, source, "[tune]")
    trials = tune.get("trials", 0)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
        raise SuiteError(f"{source}: [tune] trials = {trials!r} must be a whole number >= 0")
    for spec in strategies:
        if "name" not in spec:
            raise SuiteError(f"{source}: a [[strategies]] entry has no name")
        _known(spec, ("name", "params", *GRID_KEYS), source, f"[[strategies]] {spec['name']!r}")
    suite = Suite(
        name=str(data.get("name", Path(source).stem)),
        description=str(data.get("description", "")),
        note=data.get("note"),
        source=source,
        data=data_table,
        run=run,
        optim=optim,
        reference=reference,
        strategies=strategies,
        tune=tune,
    )
    try:
        suite.entries()
        suite.optim_config()
    except (UserError, ValueError, TypeError) as err:
        raise SuiteError(f"{source}: {err}") from None
    return suite


def _known(table: Mapping[str, Any], allowed: tuple[str, ...], source: str, where: str) -> None:
    import difflib

    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SuiteError(f"{source}: unknown key {key!r} in {where}{hint} (known: {', '.join(allowed)})")
