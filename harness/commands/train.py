"""``jestbench train``: one learner run to its FLOP budget with one strategy."""

from __future__ import annotations

import argparse
import os
from typing import Any

from harness.commands.strategies import add_param_argument, parse_params
from harness.device import add_device_arguments
from harness.distributed import SCOPES
from harness.errors import UserError
from harness.workdir import add_threads_argument, add_work_argument, set_threads, work_dir

DESCRIPTION = """\
Train a learner on the raw pool with one selection strategy until the next step would exceed the
budget, evaluating on the val and eval splits at a cadence and at the end. The run is keyed by its
config hash: rerunning the same command resumes it from its last checkpoint (or reports it done).

The budget is in FLOPs (--budget 2e12) or in uniform-equivalent steps (--budget-steps 1000: what
1000 steps of uniform at this b cost). Strategies that need reference embeddings use the reference
trained on this dataset (`jestbench reference train`), or the one --reference names.

One run over K processes (K GPUs, or K CPU processes with gloo): `torchrun --nproc-per-node K -m
harness train ...`; --selection-scope says whether the ranks select jointly over the whole
super-batch (global) or each from its own share (local). docs/DISTRIBUTED.md has the details.
"""


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that make a run config (shared with ``jestbench tune``)."""
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
        default=0.8,
        help="f in [0, 1): B = round(b / (1 - f)) (default 0.8)",
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget", type=float, metavar="FLOPS", help="budget in FLOPs (1 FLOP = 1 multiply-add)"
    )
    budget.add_argument(
        "--budget-steps", type=float, metavar="N", help="budget in uniform-equivalent steps (default 1000)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the model, data order and selection (default 0)"
    )
    parser.add_argument(
        "--reference", metavar="HASH", help="reference whose cached embeddings score the pool"
    )
    parser.add_argument(
        "--uncached-reference",
        action="store_true",
        help="run the reference model on every super-batch instead of reading cached embeddings (charged F_ref·B per step)",
    )
    parser.add_argument(
        "--eval-every",
        type=float,
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
    add_threads_argument(parser)


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
    work = work_dir(args)
    dataset = dataset_from_args(args, work)
    built = default_registry().get_strategy(strategy, **params)
    needs = built.needs
    reference = args.reference
    if needs.reference and reference is None:
        reference = find_reference(work, dataset, args.preset)
    budget = f"{args.budget} flops" if args.budget is not None else f"{args.budget_steps or 1000} steps"
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
        optim=optim_from_args(args),
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
    if not 0 < config.eval_every <= 1:
        raise UserError(f"--eval-every {config.eval_every} must lie in (0, 1]")
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
            f"{row['flops_spent']:.3g} FLOPs of {row['budget_flops']:.3g}"
        )
    return "\n".join(lines)
