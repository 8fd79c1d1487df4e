"""Suites: TOML files that describe sets of runs, each set (a section) on one dataset, one track and one
budget, with its own leaderboard.

A suite has a ``[data]`` table (the options of ``--data`` or the bring-your-own patterns), a ``[run]``
table (preset, b, budget, filter ratio, seeds, evaluation cadence, ``[run.optim]``), a
``[reference]`` table (how the references are trained: ``seeds = [0, 1]`` trains one per seed) and
``[[strategies]]`` entries (a strategy name, its ``params``, any ``[run]`` key it overrides such as
``filter_ratio``, ``references = "all"`` to run against every reference instead of the first, and
``pool = "clean"`` for the clean-only oracle). Lists expand to a grid: ``filter_ratio = [0.5, 0.8]``
or ``params = { n_chunks = [4, 16] }`` make one configuration per value, and every configuration runs
once per seed (and per reference it runs against).

``[[sections]]`` split a suite into several leaderboards: each has a ``name``, optional
``description``/``note``/``track`` and its own ``data``, ``run``, ``reference`` tables and
``strategies``; its tables override the suite's top-level ones key by key, and it takes the top-level
``[[strategies]]`` when it lists none. The track is ``"flops"`` (equal FLOPs, the default) or
``"examples"`` (equal trained examples: the budget must be ``"N examples"``). A suite without sections
is one section named after the suite. A ``[tune]`` table holds what ``jestbench tune`` needs beyond the
run (docs/TUNING.md).

Built-in suites live beside this file: ``quick`` (the README's main command) and ``full`` (the
committed leaderboards). ``jestbench run PATH.toml`` runs a suite of your own.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness.cost import Budget
from harness.data import Dataset
from harness.device import DEVICES, PRECISIONS, check_precision, resolve_device
from harness.distributed import SCOPES
from harness.errors import UserError
from harness.runconfig import POOLS, OptimConfig, RunConfig
from harness.workdir import checked_name
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
DATA_KEYS = (
    "data",
    "curated",
    "raw",
    "val",
    "eval",
    "image_size",
    "channels",
    "classes",
    "prompt_template",
    "on_bad_sample",
)
REFERENCE_KEYS = ("preset", "batch_size", "budget", "seed", "seeds", "optim")
STRATEGY_KEYS = ("name", "params", "references", "pool", *GRID_KEYS)
SECTION_KEYS = ("name", "description", "note", "track", "data", "run", "reference", "strategies")
TOP_KEYS = ("name", "description", "note", "data", "run", "reference", "strategies", "sections", "tune")
TRACKS = ("flops", "examples")
REFERENCE_CHOICES = ("first", "all")
# The [tune] table (docs/TUNING.md); its search-space specs are checked by harness.tune, which knows
# the strategy being tuned.
TUNE_KEYS = ("trials", "pruner", "filter_ratio", "learning_rate", "params")


class SuiteError(UserError):
    """A suite file that cannot be read or does not describe runs; the message names file and key."""


@dataclass(frozen=True)
class Entry:
    """One configuration of a section (before seeds and references): a strategy, its parameters, the
    run's settings, which references it runs against (``"first"`` or ``"all"``) and its pool."""

    strategy: str
    params: dict[str, Any]
    settings: dict[str, Any]
    references: str = "first"
    pool: str = "all"


@dataclass(frozen=True)
class Section:
    """One leaderboard's runs: a dataset, a track, a budget; :meth:`entries` expands its grid and
    :meth:`run_configs` makes its runs."""

    name: str
    description: str
    note: str | None
    source: str
    track: str
    data: dict[str, Any]
    run: dict[str, Any]
    optim: dict[str, Any]
    reference: dict[str, Any]
    strategies: list[dict[str, Any]]
    world_size: int = 1  # ranks per run: `jestbench run --nproc K`, not a suite key

    @property
    def seeds(self) -> list[int]:
        seeds = self.run.get("seeds", [0])
        return list(seeds) if isinstance(seeds, list) else [int(seeds)]

    @property
    def reference_seeds(self) -> list[int]:
        """The seeds of the section's references: one reference per seed (default: one, seed 0)."""
        if "seeds" in self.reference:
            seeds = self.reference["seeds"]
            return list(seeds) if isinstance(seeds, list) else [int(seeds)]
        return [int(self.reference.get("seed", 0))]

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
                entries.append(
                    Entry(
                        spec["name"],
                        dict(strategy.config),
                        run,
                        references=spec.get("references", "first"),
                        pool=spec.get("pool", "all"),
                    )
                )
        return entries

    def needs_reference(self) -> bool:
        """Whether any configuration reads the reference (then the section trains its references)."""
        return any(
            default_registry().get_strategy(e.strategy, **e.params).needs.reference for e in self.entries()
        )

    def optim_config(self) -> OptimConfig:
        return OptimConfig(**self.optim)

    @property
    def device(self) -> str:
        """The resolved device of the section's runs and references (``auto``: CUDA when present)."""
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
            pool=entry.pool,
            device=self.device,
            precision=self.precision,
            world_size=self.world_size,
            selection_scope=str(self.run.get("selection_scope", "global")),
        )

    def run_configs(self, dataset: Dataset, references: Sequence[str]) -> list[RunConfig]:
        """Every run of the section: each configuration against its references (the first, or all of
        ``references`` for ``references = "all"``; none if it reads no reference) at each seed, in
        file order."""
        configs = []
        for entry in self.entries():
            needs = default_registry().get_strategy(entry.strategy, **entry.params).needs
            against: Sequence[str | None] = [None]
            if needs.reference and references:
                against = references if entry.references == "all" else references[:1]
            configs += [self.run_config(entry, seed, dataset, r) for r in against for seed in self.seeds]
        return configs


@dataclass(frozen=True)
class Suite:
    """A parsed suite: its sections (one for a suite without ``[[sections]]``) and its ``[tune]`` table."""

    name: str
    description: str
    note: str | None
    source: str
    sections: list[Section]
    tune: dict[str, Any] = field(default_factory=dict)
    sectioned: bool = False  # has [[sections]]: each renders its own leaderboard beside an index

    @property
    def world_size(self) -> int:
        """Ranks per run (every section's: :meth:`placed` sets them alike)."""
        return self.sections[0].world_size

    def placed(self, *, device: str | None = None, precision: str | None = None, nproc: int = 1) -> Suite:
        """This suite with the command line's ``--device``, ``--precision`` and ``--nproc``, where
        given, in every section."""
        if nproc < 1:
            raise SuiteError(f"--nproc {nproc} must be >= 1")
        given = {k: v for k, v in {"device": device, "precision": precision}.items() if v is not None}
        sections = [dataclasses.replace(s, run={**s.run, **given}, world_size=nproc) for s in self.sections]
        return dataclasses.replace(self, sections=sections)

    def section_for(self, strategy: str) -> Section:
        """The first section that lists ``strategy`` (the first section if none does): what ``jestbench
        tune`` tunes on."""
        return next(
            (s for s in self.sections if any(e.strategy == strategy for e in s.entries())), self.sections[0]
        )


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
    name = str(data.get("name", Path(source).stem))
    tune = dict(data.get("tune", {}))
    _known(tune, TUNE_KEYS, source, "[tune]")
    trials = tune.get("trials", 0)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
        raise SuiteError(f"{source}: [tune] trials = {trials!r} must be a whole number >= 0")
    specs = [dict(s) for s in data.get("sections", [])]
    if not specs:
        specs = [{"name": name}]
    sections = [_parse_section(data, spec, source) for spec in specs]
    names = [s.name for s in sections]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SuiteError(f"{source}: two [[sections]] are named {repeated[0]!r}; give each its own name")
    return Suite(
        name=name,
        description=str(data.get("description", "")),
        note=data.get("note"),
        source=source,
        sections=sections,
        tune=tune,
        sectioned="sections" in data,
    )


def _parse_section(top: Mapping[str, Any], spec: Mapping[str, Any], source: str) -> Section:
    """One section: its own tables over the suite's top-level ones, key by key."""
    if "name" not in spec:
        raise SuiteError(f"{source}: a [[sections]] entry has no name")
    name = str(spec["name"])
    try:
        checked_name(name, "section name")
    except UserError as err:
        raise SuiteError(f"{source}: {err}") from None
    where = f"[[sections]] {name!r} " if "sections" in top else ""
    _known(spec, SECTION_KEYS, source, where.strip() or "the top level")
    run = {**top.get("run", {}), **spec.get("run", {})}
    optim = {**top.get("run", {}).get("optim", {}), **spec.get("run", {}).get("optim", {})}
    run.pop("optim", None)
    _known(run, RUN_KEYS, source, f"{where}[run]")
    fields = {f.name for f in dataclasses.fields(OptimConfig)}
    _known(optim, tuple(fields), source, f"{where}[run.optim]")
    for key in ("preset", "batch_size", "budget"):
        if key not in run:
            raise SuiteError(f"{source}: {where}[run] needs {key!r}")
    for key, choices in PLACEMENT_KEYS.items():
        if key in run and run[key] not in choices:
            raise SuiteError(
                f"{source}: {where}[run] {key} = {run[key]!r} is not one of {', '.join(choices)}"
            )
    data_table = {**top.get("data", {"data": "shapes"}), **spec.get("data", {})}
    _known(data_table, DATA_KEYS, source, f"{where}[data]")
    inherited = dict(top.get("reference", {}))
    if {"seed", "seeds"} & set(spec.get("reference", {})):  # a section's seeds replace the suite's
        inherited = {k: v for k, v in inherited.items() if k not in ("seed", "seeds")}
    reference = {**inherited, **spec.get("reference", {})}
    _known(reference, REFERENCE_KEYS, source, f"{where}[reference]")
    if "seed" in reference and "seeds" in reference:
        raise SuiteError(f"{source}: {where}[reference] has both 'seed' and 'seeds'; give one")
    strategies = [dict(s) for s in spec.get("strategies", top.get("strategies", []))]
    if not strategies:
        raise SuiteError(f"{source}: {where}no [[strategies]] entries")
    for strategy in strategies:
        if "name" not in strategy:
            raise SuiteError(f"{source}: a [[strategies]] entry has no name")
        label = f"{where}[[strategies]] {strategy['name']!r}"
        _known(strategy, STRATEGY_KEYS, source, label)
        _choice(strategy.get("references", "first"), REFERENCE_CHOICES, source, f"{label} references")
        _choice(strategy.get("pool", "all"), POOLS, source, f"{label} pool")
    track = str(spec.get("track", "flops"))
    _choice(track, TRACKS, source, f"{where}track")
    section = Section(
        name=name,
        description=str(spec.get("description", top.get("description", ""))),
        note=spec.get("note", top.get("note")),
        source=source,
        track=track,
        data=data_table,
        run=run,
        optim=optim,
        reference=reference,
        strategies=strategies,
    )
    try:
        entries = section.entries()
        section.optim_config()
        for entry in entries:
            budget = Budget.parse(str(entry.settings["budget"]))
            if (budget.examples is not None) != (track == "examples"):
                wanted = "in examples ('512000 examples')" if track == "examples" else "in FLOPs or steps"
                raise SuiteError(
                    f"{where}track = {track!r} needs every budget {wanted}; "
                    f"{entry.strategy} has {entry.settings['budget']!r}"
                )
            needs = default_registry().get_strategy(entry.strategy, **entry.params).needs
            if entry.pool != "all" and (needs.learner or needs.reference):
                raise SuiteError(
                    f"{where}pool = {entry.pool!r} is for strategies that score nothing (the clean-only "
                    f"oracle is uniform); {entry.strategy!r} scores its super-batch"
                )
    except (UserError, ValueError, TypeError) as err:
        message = str(err).removeprefix(f"{source}: ")
        raise SuiteError(f"{source}: {message}") from None
    return section


def _choice(value: object, allowed: tuple[str, ...], source: str, where: str) -> None:
    if value not in allowed:
        raise SuiteError(f"{source}: {where} = {value!r} must be one of {', '.join(map(repr, allowed))}")


def _known(table: Mapping[str, Any], allowed: tuple[str, ...], source: str, where: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SuiteError(f"{source}: unknown key {key!r} in {where}{hint} (known: {', '.join(allowed)})")
