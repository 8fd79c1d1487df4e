"""``jestbench flops``: FLOPs per example and per step for each model preset, beside the JEST paper's.

For each preset: ``F_img`` at the full and coarse patch sizes, ``F_txt``, ``A = F_img,coarse / F_img``
and the FlexiViT resize; then every registered strategy's per-step cost relative to ``uniform`` at
several filter ratios, as charged (what runs in PyTorch) and by the paper's idealised appendix-A.4
formula, with the paper's own figures beside ours where it gives them. ``docs/FLOPS.md`` explains the
differences.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from strategies import Needs, TrainingPlan

if TYPE_CHECKING:  # the handler imports these lazily, so `jestbench --help` stays fast
    from harness.cost import CostModel, UniformStep
    from harness.models import ModelConfig
    from strategies import Registry

HELP = """\
jestbench flops                         all presets
jestbench flops --preset B/16 small     some presets
jestbench flops --output results/bench/flops.md   also write the tables as Markdown

All figures count one multiply-add as one FLOP (fvcore's convention). Ratios are per training step
relative to uniform at the same b. "all-in" adds the reference's one-off costs (embedding the pool,
training the reference) spread over --steps steps.
"""

FILTER_RATIOS = (0.5, 0.8, 0.9)

# The JEST paper's figures (Evans et al. 2024, arXiv 2406.17711, §3.3 and appendix A.4), for ViT-B/16
# at 256 px, f = 0.8: coarse scoring at patch 32 costs A = 0.28 of the image tower (72% fewer FLOPs);
# JEST with the scoring pass reused 2.33x uniform per step; Flexi-JEST 1.10x; an uncached reference
# "4x per iteration". ViT-B/16 at 224 px is 17.58 GFLOPs by fvcore (the common reference count).
PAPER_PRESET = "B/16"
PAPER_COARSE_RATIO = 0.28
PAPER_VIT_B16_224 = 17.58e9
PAPER_FILTER_RATIO = 0.8
PAPER_LEARNER_SCORED = 7 / 3  # printed as 2.33x: F·(B + 2b) / 3F·b at B = 5b
PAPER_FLEXI = 1.10
PAPER_UNCACHED_REFERENCE = 4.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "flops",
        help="FLOPs per example and per step of each model preset, beside the JEST paper's",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset", action="extend", nargs="+", metavar="P", help="model preset(s) (default: all)"
    )
    parser.add_argument(
        "--batch-size",
        "-b",
        type=int,
        default=128,
        help="sub-batch size b (default 128, the built-in suites')",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=40_000,
        help="raw-pool size, for the all-in column (default 40000, shapes')",
    )
    parser.add_argument(
        "--reference-examples",
        type=int,
        default=128_000,
        help="examples the reference trains on, for the all-in column (default 128000 = the quick suite's 1000 steps of 128)",
    )
    parser.add_argument(
        "--steps", type=int, default=1000, help="steps of the run, for the all-in column (default 1000)"
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="K",
        help="also list the bytes K ranks exchange per step (communication, not FLOPs)",
    )
    parser.add_argument("--output", type=Path, help="also write the report to this Markdown file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.models import PRESETS, preset_config

    presets = args.preset or list(PRESETS)
    for preset in presets:
        preset_config(preset)  # refuse an unknown name before counting anything
    for name, value in (
        ("--batch-size", args.batch_size),
        ("--pool-size", args.pool_size),
        ("--reference-examples", args.reference_examples),
        ("--steps", args.steps),
        ("--nproc", args.nproc),
    ):
        if value < 1:
            raise UserError(f"{name} must be >= 1; got {value}")
    report = flops_report(
        presets,
        batch_size=args.batch_size,
        pool_size=args.pool_size,
        reference_examples=args.reference_examples,
        steps=args.steps,
    )
    if args.nproc > 1:
        report += "\n\n" + "\n\n".join(
            _communication_section(p, args.batch_size, args.nproc) for p in presets
        )
    print(report)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report + "\n")
    return 0


def flops_report(
    presets: Sequence[str], *, batch_size: int, pool_size: int, reference_examples: int, steps: int
) -> str:
    """The whole report: one section per preset, Markdown."""
    header = [
        "# FLOPs per example and per step",
        "",
        "One FLOP = one multiply-add (fvcore's convention; `torch.utils.flop_counter` counts 2). Forward "
        "FLOPs per example counted by fvcore on the actual towers; a training step on one example is charged "
        "3x its forward pass (the measured ratio is in each preset's table). `docs/FLOPS.md` says where and "
        "why these differ from the JEST paper's.",
        f"Per-step ratios are relative to `uniform` at b = {batch_size}, with reference embeddings cached "
        f"beside the pool unless a row says otherwise. all-in adds the reference's one-off costs (embedding "
        f"a pool of {pool_size:,}, training it on {reference_examples:,} examples) spread over {steps} steps.",
    ]
    sections = [
        _preset_section(
            preset,
            batch_size=batch_size,
            pool_size=pool_size,
            reference_examples=reference_examples,
            steps=steps,
        )
        for preset in presets
    ]
    return "\n".join(header) + "\n\n" + "\n\n".join(sections)


def _preset_section(
    preset: str, *, batch_size: int, pool_size: int, reference_examples: int, steps: int
) -> str:
    from harness.cost import CostModel, UniformStep
    from harness.flops import model_flops
    from harness.models import preset_config

    config = preset_config(preset)
    flops = model_flops(config)
    cost = CostModel(flops)
    unit = UniformStep.of(cost, batch_size)
    # The reference's one-off costs, in uniform steps (embedding the pool is skipped when uncached).
    one_off = {
        "pool": unit.to_steps(cost.reference_pool_flops(pool_size)),
        "training": unit.to_steps(cost.reference_training_flops(reference_examples)),
    }
    p, q = config.patch_size, config.coarse_patch_size
    title = (
        f"## `{preset}`: {config.image_size} px x {config.channels} channels, patch {p} (coarse {q}), "
        f"width {config.width} x {config.depth} layers; text {config.context_length} tokens, width "
        f"{config.text_width} x {config.text_depth} layers; embeddings of {config.embed_dim}"
    )
    is_paper = preset == PAPER_PRESET
    quantities = _quantities_table(
        is_paper, config, cost, unit, pool_size=pool_size, reference_examples=reference_examples
    )
    strategies = _strategies_table(is_paper, cost, unit, batch_size, one_off, steps)
    return "\n\n".join([title, quantities, strategies])


def _quantities_table(
    is_paper: bool,
    config: ModelConfig,
    cost: CostModel,
    unit: UniformStep,
    *,
    pool_size: int,
    reference_examples: int,
) -> str:
    """Tower FLOPs, A, the resize, ViT-B/16 at 224 px for the paper's preset, and the reference's
    one-off costs."""
    from harness.flops import image_tower_flops

    flops = cost.learner
    p, q = config.patch_size, config.coarse_patch_size
    rows = [
        "| quantity (1 FLOP = 1 multiply-add) | ours | paper | ours vs paper |",
        "|---|---:|---:|---:|",
        _row(f"F_img per example, patch {p}", _flops(flops.image_full)),
        _row(f"F_img per example, patch {q}", _flops(flops.image_coarse)),
        _row(f"F_txt per example, {flops.text_length} tokens", _flops(flops.text)),
        _row("F = F_img + F_txt", _flops(flops.full)),
        _row(
            "A = F_img,coarse / F_img",
            f"{flops.coarse_ratio:.3f}",
            *(
                (f"{PAPER_COARSE_RATIO:.3f}", _difference(flops.coarse_ratio, PAPER_COARSE_RATIO))
                if is_paper
                else ()
            ),
        ),
        _row(f"FlexiViT resize to patch {q} (forward), once per step that uses it", _flops(flops.resize)),
        _training_row(config),
    ]
    if is_paper:
        at_224 = image_tower_flops(dataclasses.replace(config, image_size=224), [p])[p]
        rows.append(
            _row(
                f"ViT-B/{p} image tower at 224 px",
                _flops(at_224),
                _flops(PAPER_VIT_B16_224),
                _difference(at_224, PAPER_VIT_B16_224),
            )
        )
    pool, training = cost.reference_pool_flops(pool_size), cost.reference_training_flops(reference_examples)
    rows += [
        _row(
            f"reference: embedding the pool of {pool_size:,} (one-off)",
            f"{_flops(pool)} = {unit.to_steps(pool):.1f} uniform steps",
        ),
        _row(
            f"reference: training on {reference_examples:,} examples (one-off)",
            f"{_flops(training)} = {unit.to_steps(training):.1f} uniform steps",
        ),
    ]
    return "\n".join(rows)


def _communication_section(preset: str, batch_size: int, world_size: int) -> str:
    """What K ranks exchange per step for each strategy at f = 0.8 (uniform at f = 0), global and
    local selection: bytes summed over ranks, beside the step's FLOPs (docs/DISTRIBUTED.md)."""
    from harness.batching import BatchShape
    from harness.cost import CostModel
    from harness.distributed import step_communication
    from harness.flops import model_flops
    from harness.models import DualEncoder, preset_config
    from strategies import default_registry

    config = preset_config(preset)
    parameters = sum(p.numel() for p in DualEncoder(config).parameters())
    sample_bytes = (
        config.channels * config.image_size**2 + 8 * config.context_length
    )  # uint8 pixels, int64 tokens
    cost = CostModel(model_flops(config))
    rows = [
        f"## `{preset}` over {world_size} ranks: bytes exchanged per step, summed over ranks (b = {batch_size}; "
        f"{parameters:,} parameters, fp32)",
        "",
        "| strategy | f | scope | gradients | loss texts | embeddings | samples (expected) | total | FLOPs per step |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    registry = default_registry()
    for name in registry.list_strategies():
        strategy = registry.get_strategy(name)
        shape = BatchShape.from_filter_ratio(batch_size, 0.0 if name == "uniform" else 0.8)
        step = cost.strategy_step_cost(strategy, shape).total
        for scope in ("global", "local"):
            sent = step_communication(
                strategy.needs, world_size, scope, shape.batch_size, shape.super_batch_size,
                config.embed_dim, parameters, sample_bytes,
            )  # fmt: skip
            cells = [_bytes(sent.get(k, 0.0)) for k in ("gradients", "loss_texts", "embeddings", "samples")]
            rows.append(
                _row(
                    name, f"{shape.filter_ratio:.2f}", scope, *cells, _bytes(sum(sent.values())), _flops(step)
                )
            )
    return "\n".join(rows)


def _bytes(value: float) -> str:
    return "0" if not value else f"{value / 1e6:.3g} MB"


def _training_row(config: ModelConfig) -> str:
    """What a training pass costs in forward passes, measured, against the 3 the ledger charges."""
    from harness.flops import training_cost

    measured = training_cost(config)
    return _row(
        "training pass / forward pass per example, measured by FlopCounterMode (image, text, both); "
        "the ledger charges 3",
        f"{measured.image_ratio:.2f}, {measured.text_ratio:.2f}, {measured.ratio:.3f}: 3F is "
        f"{measured.overcharge:+.1%} of what runs",
    )


def _strategies_table(
    is_paper: bool,
    cost: CostModel,
    unit: UniformStep,
    batch_size: int,
    one_off: dict[str, float],
    steps: int,
) -> str:
    """Every registered strategy at each filter ratio (and, if it reads the reference, with the
    reference uncached): as charged, by the paper's formula, and the paper's figure where it gives one.
    A plugin that fails to load or to select gets one row saying so, with its error and package."""
    from harness.batching import BatchShape
    from strategies import PluginError, default_registry

    paper_uniform = cost.paper_step_cost(Needs(), TrainingPlan(), BatchShape(batch_size, batch_size))
    rows = [
        f"Per-step cost relative to `uniform` (b = {batch_size}; uniform = {_flops(unit.flops)} per step):",
        "",
        "| strategy | f | B | as charged | paper's formula (A.4) | paper's figure | charged vs figure "
        "| formula vs figure | all-in |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    registry = default_registry()
    for name in registry.list_strategies():
        try:
            rows += _strategy_rows(
                registry, name, is_paper, cost, unit, paper_uniform, batch_size, one_off, steps
            )
        except Exception as err:
            if registry.source(name) == "built-in":
                raise
            # A broken plugin is marked, and the others are still counted.
            message = str(err) if isinstance(err, PluginError) else f"{type(err).__name__}: {err}"
            rows.append(f"| {name} | not counted: {message} |" + " |" * 7)
    return "\n".join(rows)


def _strategy_rows(
    registry: Registry,
    name: str,
    is_paper: bool,
    cost: CostModel,
    unit: UniformStep,
    paper_uniform: float,
    batch_size: int,
    one_off: dict[str, float],
    steps: int,
) -> list[str]:
    """One strategy's rows: at each filter ratio, and with the reference uncached if it reads one."""
    from harness.batching import BatchShape
    from harness.cost import measure_selection

    strategy = registry.get_strategy(name)
    needs, training = strategy.needs, strategy.training
    rows = []
    for filter_ratio in FILTER_RATIOS:
        shape = BatchShape.from_filter_ratio(batch_size, filter_ratio)
        strategy.check_sizes(shape.batch_size, shape.super_batch_size)
        measured = measure_selection(strategy, shape, cost.learner.embed_dim)
        for cached in (True, False) if needs.reference else (True,):
            model = dataclasses.replace(cost, reference_cached=cached)
            charged = (
                model.step_cost(
                    needs, training, shape, pairwise=measured.pairwise, selection=measured.selection
                ).total
                / unit.flops
            )
            formula = model.paper_step_cost(needs, training, shape) / paper_uniform
            paper = _paper_figure(needs, training, filter_ratio, cached) if is_paper else None
            reference_one_off = one_off["training"] + (one_off["pool"] if cached else 0.0)
            all_in = charged + (reference_one_off / steps if needs.reference else 0.0)
            label = name if cached else f"{name}, uncached reference"
            rows.append(
                _row(
                    label,
                    f"{shape.filter_ratio:.2f}",
                    str(shape.super_batch_size),
                    f"{charged:.2f}x",
                    f"{formula:.2f}x",
                    "" if paper is None else f"{paper:.2f}x",
                    _difference(charged, paper),
                    _difference(formula, paper),
                    f"{all_in:.2f}x",
                )
            )
    return rows


def _paper_figure(needs: Needs, training: TrainingPlan, filter_ratio: float, cached: bool) -> float | None:
    """The paper's per-step figure for a strategy's needs and training plan, where it gives one: only
    at f = 0.8, for learner scoring at full resolution (JEST's 2.33x; 4x with the reference uncached)
    and for coarse scoring with two-resolution training (Flexi-JEST's 1.10x, reference cached)."""
    if filter_ratio != PAPER_FILTER_RATIO or not needs.learner:
        return None
    if needs.learner_resolution == "full" and tuple(training.resolutions) == ("full",):
        if cached:
            return PAPER_LEARNER_SCORED
        return PAPER_UNCACHED_REFERENCE if needs.reference else None
    if needs.learner_resolution == "coarse" and set(training.resolutions) == {"full", "coarse"} and cached:
        return PAPER_FLEXI
    return None


def _row(*cells: str) -> str:
    """A Markdown table row; missing trailing cells of a 4-column quantity row are left empty."""
    padded = list(cells) + [""] * (4 - len(cells))
    return "| " + " | ".join(padded) + " |"


def _flops(value: float) -> str:
    for scale, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value:.0f}"


def _difference(ours: float, paper: float | None) -> str:
    return "" if paper is None else f"{(ours / paper - 1) * 100:+.1f}%"
