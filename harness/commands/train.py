"""``jestbench train``: one learner run to its FLOP budget with one strategy."""

from __future__ import annotations

import argparse
import os
from typing import Any

from harness.commands.strategies import add_param_argument, parse_params
from harness.device import add_device_arguments
from harness.distributed import SCOPES
from harness.workdir import add_threads_argument, add_work_argument, set_threads, work_dir

DESCRIPTION = """\
Train a learner on the raw pool with one selection strategy until the next step would exceed the
budget, evaluating on the val and eval splits at a cadence and at the end. The run is keyed by its
config hash: rerunning the same command resumes it from its last checkpoint (or reports it done).

The budget is in FLOPs (--budget 2e12), in uniform-equivalent steps (--budget-steps 1000: what
1000 steps of uniform at this b cost) or in trained examples (--budget-examples 128000: every
strategy stops after the same examples whatever its FLOPs, which are still counted). Strategies that need reference embeddings use the reference
trained on this dataset (`jestbench reference train`): the one --reference names, or the only one
at --reference-seed, or the only one there is (several are an error that lists them).

One run over K processes (K GPUs, or K CPU processes with gloo): `torchrun --nproc-per-node K -m
harness train ...`; --selection-scope says whether the ranks select jointly over the whole
super-batch (global) or each from its own share (local). docs/DISTRIBUTED.md has the details.
"""


def add_run_arguments(parser: argparse.ArgumentParser, *, tuning: bool = False) -> None:
    """The options that make a run config (shared with ``jestbench tune``, where ``tuning`` makes
    the filter ratio searched unless given, and the seed the suite's first unless given)."""
    from harness.data import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument("--preset", default="small", help="model preset: tiny, small (default), B/16")
    parser.add_argument(
        "--batch-size", "-b", type=int, default=128, help="sub-batch size b trained per step (default 128)"
    )
    parser.add_argument(
        "--filter-ratio",
        "-f",
        type=float,
        default=None if tuning else 0.8,
        help="f in [0, 1): B = round(b / (1 - f)); "
        + ("held at this value in every trial (default: searched)" if tuning else "(default 0.8)"),
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget", type=float, metavar="FLOPS", help="budget in FLOPs (1 FLOP = 1 multiply-add)"
    )
    budget.add_argument(
        "--budget-steps", type=float, metavar="N", help="budget in uniform-equivalent steps (default 1000)"
    )
    budget.add_argument(
        "--budget-examples",
        type=int,
        metavar="N",
        help="budget in trained examples: stop before the step that would pass N (equal-examples track)",
    )
    parser.add_argument(
        "--seed",
        type=seed,
        default=None if tuning else 0,
        help="seed of the model, data order and selection "
        + ("(default: the suite's first seed, or 0)" if tuning else "(default 0)"),
    )
    parser.add_argument("--reference", metavar="ID", help="reference whose cached embeddings score the pool")
    parser.add_argument(
        "--reference-seed",
        type=int,
        metavar="N",
        help="without --reference: the reference trained on this data and preset with seed N",
    )
    parser.add_argument(
        "--uncached-reference",
        action="store_true",
        help="run the reference model on every super-batch instead of reading cached embeddings (charged F_ref·B per step)",
    )
    parser.add_argument(
        "--eval-every",
        type=eval_fraction,
        default=0.25,
        help="evaluate every this fraction of the budget (default 0.25)",
    )
    add_device_arguments(parser)
    parser.add_argument(
        "--selection-scope",
        choices=SCOPES,
        default="global",
        help="under torchrun: select from the whole super-batch gathered from every rank (global, the "
        "default) or b/K from each rank's own B/K (local)",
    )
    add_optim_arguments(parser)
    add_work_argument(parser)
    if tuning:  # per worker
        add_threads_argument(
            parser, "torch's choice with --workers 1, else the cores shared out between them"
        )
    else:
        add_threads_argument(parser)


def seed(text: str) -> int:
    """``--seed``: a whole number >= 0, refused by the parser with one line otherwise."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def eval_fraction(text: str) -> float:
    """``--eval-every``: a fraction of the budget in (0, 1], refused by the parser otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction of the budget in (0, 1]")
    return value


def budget_from_args(args: argparse.Namespace, default_steps: int) -> str:
    """``--budget FLOPS``, ``--budget-examples N`` (where the command has it) or ``--budget-steps N``
    (``default_steps`` when none is given) as a run config's budget; a budget <= 0 is refused here,
    before any data is built."""
    from harness.cost import Budget

    if args.budget is not None:
        text = f"{args.budget} flops"
    elif getattr(args, "budget_examples", None) is not None:
        text = f"{args.budget_examples} examples"
    else:
        text = f"{default_steps if args.budget_steps is None else args.budget_steps} steps"
    return Budget.parse(text).canonical()


def add_optim_arguments(parser: argparse.ArgumentParser) -> None:
    """The optimiser options (shared with ``jestbench reference train``)."""
    optim = parser.add_argument_group("optimiser (Adam, warm-up then cosine over the budget)")
    optim.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    optim.add_argument("--beta2", type=float, default=0.95, help="Adam β2 (default 0.95, JEST A.2)")
    optim.add_argument(
        "--weight-decay",
        type=float,
        default=1e-4,
        help="decoupled weight decay on weight matrices (default 1e-4)",
    )
    optim.add_argument(
        "--warmup", type=float, default=0.05, help="warm-up, as a fraction of the budget (default 0.05)"
    )
    optim.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip (default 1.0)")
    optim.add_argument(
        "--scale-bias-lr",
        type=float,
        default=10.0,
        help="learning-rate multiple for the logit scale and bias (default 10)",
    )


def optim_from_args(args: argparse.Namespace) -> Any:
    from harness.runconfig import OptimConfig

    return OptimConfig(
        learning_rate=args.lr,
        beta2=args.beta2,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        grad_clip=args.grad_clip,
        scale_bias_lr=args.scale_bias_lr,
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a learner with one strategy to a FLOP budget",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--strategy", "-s", default="uniform", help="selection strategy (`jestbench strategies` lists them)"
    )
    add_param_argument(parser)
    add_run_arguments(parser)
    parser.add_argument(
        "--checkpoint-seconds", type=float, default=60.0, help="checkpoint at least this often (default 60)"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run_config_from_args(args: argparse.Namespace, strategy: str, params: dict[str, Any]) -> Any:
    """The :class:`harness.runconfig.RunConfig` that the run options describe."""
    from harness.data import dataset_from_args
    from harness.device import check_precision, resolve_device
    from harness.distributed import environment_world_size
    from harness.reference_store import find_reference
    from harness.runconfig import RunConfig
    from strategies import default_registry

    device = resolve_device(args.device)  # before anything is built: a missing GPU is said at once
    precision = check_precision(args.precision, device)
    budget = budget_from_args(args, 1000)
    optim = optim_from_args(args)
    work = work_dir(args)
    dataset = dataset_from_args(args, work)
    built = default_registry().get_strategy(strategy, **params)
    needs = built.needs
    reference = args.reference
    if needs.reference and reference is None:
        reference = find_reference(work, dataset, args.preset, args.reference_seed)
    return RunConfig(
        dataset=str(dataset.root),
        dataset_id=dataset.content_id,
        preset=args.preset,
        strategy=strategy,
        params=dict(built.config),  # validated, defaults filled: one spelling, one run id
        batch_size=args.batch_size,
        filter_ratio=args.filter_ratio,
        budget=budget,
        seed=args.seed,
        reference=reference if needs.reference else None,
        reference_cached=not args.uncached_reference,
        on_bad_sample=args.on_bad_sample,
        eval_every=args.eval_every,
        optim=optim,
        device=device,
        precision=precision,
        world_size=environment_world_size(),
        selection_scope=args.selection_scope,
    )


def run(args: argparse.Namespace) -> int:
    from harness.device import resolve_device
    from harness.distributed import (
        environment_world_size,
        init_process_group,
        leave_process_group,
        main_first,
    )
    from harness.train import train

    set_threads(args)
    if environment_world_size() > 1:  # under torchrun: rank 0 builds missing data before the others look
        init_process_group(resolve_device(args.device))
    with main_first():
        config = run_config_from_args(args, args.strategy, parse_params(args.param))
    result = train(
        config, work_dir(args), show_progress=not args.quiet, checkpoint_seconds=args.checkpoint_seconds
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(summarise(result.run))
    leave_process_group()
    return 0


def summarise(run: Any) -> str:
    """The final scores of a run, one line per split."""
    final = [row for row in run.rows if row["steps"] == run.summary["steps"]]
    lines = [f"run {run.run_id} ({run.status}): {run.summary['steps']} steps"]
    for row in final:
        metrics = ", ".join(
            f"{name} {row[name]:.3f}" if row[name] is not None else f"{name} n/a"
            for name in ("zero_shot", "few_shot", "i2t_recall", "t2i_recall", "mean")
        )
        lines.append(
            f"  {row['split']}: {metrics} | {row['examples_seen']} examples, {row['epochs']:.2f} epochs, "
            f"{row['flops_spent']:.3g} FLOPs"
            + (f" of {row['budget_flops']:.3g}" if row["budget_flops"] is not None else "")
        )
    return "\n".join(lines)
