"""``jestbench reference train``: the reference model and its cached embeddings of the raw pool."""

from __future__ import annotations

import argparse
from typing import Any

from harness.commands.train import add_optim_arguments, budget_from_args, optim_from_args, seed
from harness.device import add_device_arguments
from harness.workdir import add_threads_argument, add_work_argument, set_threads, work_dir

DESCRIPTION = """\
Train the reference model on the curated split (uniform sampling, the same training loop), save it
under WORK/references/ID, score it on val and eval, and cache its embeddings of the whole raw pool
beside the dataset, where learner runs read them (JEST paper A.5). A reference is a random variable:
its ID is its config's hash (seed included) and a hash of its trained weights, so two seeds, or one
seed trained on two machines, are two references. Rerunning the same config reuses its training run.
Prints the ID, the reference's own scores, its training FLOPs and the pool-embedding FLOPs.
"""

DEFAULT_STEPS = 1000


def register(subparsers: Any) -> None:
    from harness.data import add_data_arguments

    parser = subparsers.add_parser(
        "reference",
        help="train the reference model and cache its embeddings of the raw pool",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=("train",), help="what to do (train)")
    add_data_arguments(parser)
    parser.add_argument("--preset", default="small", help="model preset (default small)")
    parser.add_argument("--batch-size", "-b", type=int, default=128, help="batch size (default 128)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=float, metavar="FLOPS", help="training budget in FLOPs")
    budget.add_argument(
        "--budget-steps", type=float, metavar="N", help=f"training steps (default {DEFAULT_STEPS})"
    )
    parser.add_argument(
        "--seed", type=seed, default=0, help="seed of the reference's init and data order (default 0)"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    add_device_arguments(parser)
    add_optim_arguments(parser)
    add_work_argument(parser)
    add_threads_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.data import dataset_from_args
    from harness.device import check_precision, resolve_device
    from harness.reference import reference_config, train_reference

    budget = budget_from_args(args, DEFAULT_STEPS)
    optim = optim_from_args(args)
    device = resolve_device(args.device)  # before anything is built: a missing GPU is said at once
    precision = check_precision(args.precision, device)
    set_threads(args)
    work = work_dir(args)
    dataset = dataset_from_args(args, work)
    config = reference_config(
        dataset,
        preset=args.preset,
        budget=budget,
        batch_size=args.batch_size,
        seed=args.seed,
        optim=optim,
        device=device,
        precision=precision,
    )
    record = train_reference(config, work, show_progress=not args.quiet)
    print(f"reference {record['hash']} (preset {args.preset}, seed {record['seed']}) on {dataset.root}")
    for split, scores in record["scores"].items():
        shown = ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in scores.items())
        print(f"  {split}: {shown}")
    print(
        f"  training: {record['training_flops']:.3g} FLOPs over {record['training_examples']} examples; "
        f"embedding the pool of {record['pool_size']}: {record['pool_embedding_flops']:.3g} FLOPs"
    )
    return 0
