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
from typing import Any

from harness.errors import UserError
from strategies import Needs, TrainingPlan

HELP = """\
jestbench flops                         all presets
jestbench flops --preset B/16           one preset (repeat --preset for several)
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
        "--preset", action="append", metavar="P", help="model preset (repeatable; default all)"
    )
    parser.add_argument("--batch-size", "-b", type=int, default=256, help="sub-batch size b (default 256)")
    parser.add_argument(
        "--pool-size", type=int, default=100_000, help="raw-pool size, for the all-in column (default 100000)"
    )
    parser.add_argument(
        "--reference-examples",
        type=int,
        default=102_400,
        help="examples the reference trains on, for the all-in column (default 102400 = 400 steps of 256)",
    )
    parser.add_argument(
        "--steps", type=int, default=400, help="steps of the run, for the all-in column (default 400)"
    )
    parser.add_argument("--output", type=Path, help="also write the report to this Markdown file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.models import PRESETS

    presets = args.preset or list(PRESETS)
    for name, value in (
        ("--batch-size", args.batch_size),
        ("--pool-size", args.pool_size),
        ("--reference-examples", args.reference_examples),
        ("--steps", args.steps),
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
        "FLOPs per example counted by fvcore on the actual towers; a training step on one example costs "
        "3x its forward pass. `docs/FLOPS.md` says where and why these differ from the JEST paper's.",
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
    from harness.batching import BatchShape
    from harness.cost import CostModel, UniformStep, measure_pairwise
    from harness.flops import image_tower_flops, model_flops
    from harness.models import preset_config
    from strategies import default_registry

    config = preset_config(preset)
    flops = model_flops(config)
    is_paper = preset == PAPER_PRESET
    p, q = config.patch_size, config.coarse_patch_size
    lines = [
        f"## `{preset}`: {config.image_size} px x {config.channels} channels, patch {p} (coarse {q}), "
        f"width {config.width} x {config.depth} layers; text {config.context_length} tokens, width "
        f"{config.text_width} x {config.text_depth} layers; embeddings of {config.embed_dim}",
        "",
        "| quantity (1 FLOP = 1 multiply-add) | ours | paper | ours vs paper |",
        "|---|---:|---:|---:|",
        f"| F_img per example, patch {p} | {_flops(flops.image_full)} | | |",
        f"| F_img per example, patch {q} | {_flops(flops.image_coarse)} | | |",
        f"| F_txt per example, {flops.text_length} tokens | {_flops(flops.text)} | | |",
        f"| F = F_img + F_txt | {_flops(flops.full)} | | |",
        _compare_row(
            "A = F_img,coarse / F_img", flops.coarse_ratio, PAPER_COARSE_RATIO if is_paper else None, "{:.3f}"
        ),
        f"| FlexiViT resize to patch {q} (forward), once per step that uses it | {_flops(flops.resize)} | | |",
    ]
    if is_paper:
        at_224 = image_tower_flops(dataclasses.replace(config, image_size=224), [p])[p]
        lines.append(_compare_row(f"ViT-B/{p} image tower at 224 px", at_224, PAPER_VIT_B16_224, "{}"))

    cost = CostModel(flops)
    uncached = dataclasses.replace(cost, reference_cached=False)
    unit = UniformStep.of(cost, batch_size)
    pool_steps = unit.to_steps(cost.reference_pool_flops(pool_size))
    reference_steps = unit.to_steps(cost.reference_training_flops(reference_examples))
    lines += [
        f"| reference: embedding the pool of {pool_size:,} (one-off) | {_flops(cost.reference_pool_flops(pool_size))}"
        f" = {pool_steps:.1f} uniform steps | | |",
        f"| reference: training on {reference_examples:,} examples (one-off) | "
        f"{_flops(cost.reference_training_flops(reference_examples))} = {reference_steps:.1f} uniform steps | | |",
        "",
        f"Per-step cost relative to `uniform` (b = {batch_size}; uniform = {_flops(unit.flops)} per step):",
        "",
        "| strategy | f | B | as charged | paper's formula (A.4) | paper's figure | charged vs figure "
        "| formula vs figure | all-in |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    paper_uniform = cost.paper_step_cost(Needs(), TrainingPlan(), BatchShape(batch_size, batch_size))
    registry = default_registry()
    for name in registry.list_strategies():
        strategy = registry.get_strategy(name)
        for filter_ratio in FILTER_RATIOS:
            shape = BatchShape.from_filter_ratio(batch_size, filter_ratio)
            strategy.check_sizes(shape.batch_size, shape.super_batch_size)
            figure = _paper_figure(strategy.needs, strategy.training, filter_ratio) if is_paper else None
            pairwise = measure_pairwise(strategy, shape, flops.embed_dim)
            modes = [(name, cost, figure and figure[0])]
            if strategy.needs.reference:
                modes.append((f"{name}, uncached reference", uncached, figure and figure[1]))
            for label, model, paper in modes:
                step = model.step_cost(strategy.needs, strategy.training, shape, pairwise=pairwise)
                charged = step.total / unit.flops
                formula = model.paper_step_cost(strategy.needs, strategy.training, shape) / paper_uniform
                one_off = reference_steps + (pool_steps if model.reference_cached else 0.0)
                all_in = charged + (one_off / steps if strategy.needs.reference else 0.0)
                lines.append(
                    f"| {label} | {shape.filter_ratio:.2f} | {shape.super_batch_size} | {charged:.2f}x | "
                    f"{formula:.2f}x | {_ratio(paper)} | {_difference(charged, paper)} | "
                    f"{_difference(formula, paper)} | {all_in:.2f}x |"
                )
    return "\n".join(lines)


def _paper_figure(
    needs: Needs, training: TrainingPlan, filter_ratio: float
) -> tuple[float | None, float | None] | None:
    """The paper's per-step figure (reference cached, uncached) for a strategy's needs and training,
    where the paper gives one: only at f = 0.8, for learner scoring at full resolution (JEST's 2.33x,
    its uncached-reference 4x) and for coarse scoring with two-resolution training (Flexi-JEST's 1.10x)."""
    if filter_ratio != PAPER_FILTER_RATIO or not needs.learner:
        return None
    uncached = PAPER_UNCACHED_REFERENCE if needs.reference else None
    if needs.learner_resolution == "full" and tuple(training.resolutions) == ("full",):
        return PAPER_LEARNER_SCORED, uncached
    if needs.learner_resolution == "coarse" and set(training.resolutions) == {"full", "coarse"}:
        return PAPER_FLEXI, None
    return None


def _flops(value: float) -> str:
    for scale, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value:.0f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _difference(ours: float, paper: float | None) -> str:
    return "" if paper is None else f"{(ours / paper - 1) * 100:+.1f}%"


def _compare_row(quantity: str, ours: float, paper: float | None, fmt: str) -> str:
    show = _flops if fmt == "{}" else fmt.format
    return (
        f"| {quantity} | {show(ours)} | {'' if paper is None else show(paper)} | {_difference(ours, paper)} |"
    )
