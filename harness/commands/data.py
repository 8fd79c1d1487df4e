"""``jestbench data``: build, validate and inspect datasets."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.errors import UserError

HELP = """\
jestbench data build NAME --out DIR [options]   build a dataset: shapes (default, procedural),
                                                fashion-mnist (real photos) or byo (your shards)
jestbench data validate DIR                     check every shard against the manifest
jestbench data inspect DIR                      splits, counts, noise, captions + a contact sheet

A dataset directory holds curated/ (small, clean: trains the reference), raw/ (large, noisy: the
learner's pool), val/ (tuning) and eval/ (the leaderboard's) WebDataset shards, manifest.json and
tokenizer.json. docs/DATA.md describes the format, the noise model and its defaults.
"""

BUILD_HELP = """\
examples:
  jestbench data build shapes --out work/datasets/shapes
  jestbench data build shapes --out /tmp/tiny --tiny --raw-size 1000
  jestbench data build shapes --out DIR --noise mismatched=0.4 --noise redundant=0.05
  jestbench data build fashion-mnist --out DIR [--source DIR_WITH_IDX_GZ_FILES]
  jestbench data build byo --out DIR --curated 'c/{000..003}.tar' --raw 'r/{000..099}.tar' --eval 'e/000.tar'
      [--classes classes.toml] [--prompt-template 'a photo of a {}' ...]

The raw pool's noise (shapes, fashion-mnist): clean 35%, redundant 15% (groups of 4 near-copies of one
image), mismatched 25%, uninformative 15%, unlearnable 10%. The curated, val and eval splits are clean.
shapes-v1 is the earlier setting, kept as an ablation: redundant copies of only 20 images and a
curated split of 4,000 from the pool's own distribution (docs/DATA.md, "Data settings").
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "data",
        help="build, validate or inspect datasets",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    commands = parser.add_subparsers(title="data commands", metavar="COMMAND")
    _register_build(commands)

    validate = commands.add_parser(
        "validate",
        help="check every shard against the manifest",
        description="Check every shard of a dataset: present, sha256 as in the manifest, every sample's "
        "fields present and decodable, counts and keys as the manifest says, reference caches consistent. "
        "Exits 1 if anything is wrong, naming each shard and key.",
    )
    validate.add_argument("dir", type=Path, metavar="DIR")
    validate.set_defaults(handler=run_validate)

    inspect = commands.add_parser(
        "inspect",
        help="describe a dataset and write a contact sheet",
        description="Print splits, counts, fields, the noise breakdown and example captions, and write a "
        "contact sheet (PNG) of samples with their captions and noise kind.",
    )
    inspect.add_argument("dir", type=Path, metavar="DIR")
    inspect.add_argument(
        "--sheet", type=Path, help="where to write the contact sheet (default DIR/contact-sheet.png)"
    )
    inspect.add_argument("--split", default="raw", help="split shown on the contact sheet (default raw)")
    inspect.add_argument(
        "--per-kind", type=int, default=6, help="samples per noise kind on the sheet (default 6)"
    )
    inspect.set_defaults(handler=run_inspect)


def _register_build(commands: Any) -> None:
    from harness.data.arguments import add_byo_arguments
    from harness.data.build import builtin_names
    from harness.data.tokenizer import DEFAULT_MIN_FREQUENCY, DEFAULT_VOCAB_SIZE

    build = commands.add_parser(
        "build",
        help="build a dataset",
        description="Build a dataset into --out. The same --seed and options give the same samples "
        "(byte-identical shards).",
        epilog=BUILD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("name", choices=(*builtin_names(), "byo"), help="which dataset")
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write (created)")
    build.add_argument("--force", action="store_true", help="replace --out if it exists")
    build.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    sizes = build.add_argument_group(
        "sizes (built-in datasets; defaults: shapes 2000/40000/2000/2000, shapes-v1 4000/40000/2000/2000, "
        "fashion-mnist 5000/53000/2000/10000)"
    )
    for split in ("curated", "raw", "val", "eval"):
        sizes.add_argument(f"--{split}-size", type=int, metavar="N", help=f"samples in the {split} split")
    sizes.add_argument("--shard-size", type=int, metavar="N", help="samples per shard (default 1000)")
    sizes.add_argument(
        "--tiny",
        action="store_true",
        help="tiny sizes for smoke tests (96/384/48/48, 64 per shard); size options override them",
    )
    noise = build.add_argument_group("noise of the raw pool (built-in datasets)")
    noise.add_argument(
        "--noise",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help="set one rate (repeatable): redundant, mismatched, uninformative, unlearnable; clean takes "
        "the rest. redundant_copies=N sets the copies of each image (default 4); redundant_sources=N "
        "instead draws every copy's image from N images (shapes-v1: 20)",
    )
    text = build.add_argument_group("captions")
    text.add_argument(
        "--context-length",
        type=int,
        metavar="L",
        help="token ids per caption (default: fit the longest training caption)",
    )
    text.add_argument(
        "--vocab-size",
        type=int,
        default=DEFAULT_VOCAB_SIZE,
        metavar="N",
        help=f"the byte-level BPE tokenizer's vocabulary at most (default {DEFAULT_VOCAB_SIZE})",
    )
    text.add_argument(
        "--min-frequency",
        type=int,
        default=DEFAULT_MIN_FREQUENCY,
        metavar="N",
        help=f"the tokenizer merges two pieces only if they occur together N times (default {DEFAULT_MIN_FREQUENCY})",
    )
    build.add_argument(
        "--source", metavar="DIR", help="fashion-mnist: directory of the four gzipped IDX files"
    )
    byo = build.add_argument_group("bring your own (NAME byo)")
    add_byo_arguments(byo)
    byo.add_argument(
        "--on-bad-sample",
        choices=("error", "skip"),
        default="error",
        help="damaged samples in your shards stop the build, named (default), or are left out and listed",
    )
    build.set_defaults(handler=run_build)


def run_build(args: argparse.Namespace) -> int:
    import time

    from harness.data import LeftOut, build_byo, build_dataset
    from harness.data.arguments import byo_class_options
    from harness.data.build import TINY_SIZES, get_builtin
    from harness.data.byo import ByoConfig

    started = time.perf_counter()
    if args.name == "byo":
        missing = [f"--{s}" for s in ("curated", "raw", "eval") if getattr(args, s) is None]
        if missing:
            raise UserError(f"byo needs shard patterns {', '.join(missing)} (and optionally --val)")
        config = ByoConfig(
            curated=args.curated,
            raw=args.raw,
            val=args.val,
            eval=args.eval,
            seed=args.seed,
            image_size=args.image_size or 32,
            channels=args.channels or 3,
            context_length=args.context_length,
            vocab_size=args.vocab_size,
            min_frequency=args.min_frequency,
            on_bad_sample=args.on_bad_sample,
            **byo_class_options(args.classes, args.prompt_template),
        )
        dataset = build_byo(args.out, config, force=args.force)
    else:
        stray = [
            f"--{s.replace('_', '-')}"
            for s in ("curated", "raw", "val", "eval", "channels", "classes", "prompt_template")
            if getattr(args, s) is not None
        ]
        if stray:
            raise UserError(f"{', '.join(stray)} belong to byo builds, not {args.name}")
        options: dict[str, Any] = {
            "seed": args.seed,
            "vocab_size": args.vocab_size,
            "min_frequency": args.min_frequency,
            "context_length": args.context_length,
            "noise": get_builtin(args.name).defaults.noise.with_assignments(args.noise),
            "source": args.source,
        }
        if args.tiny:
            options.update(TINY_SIZES)
        for name in ("curated_size", "raw_size", "val_size", "eval_size", "shard_size", "image_size"):
            if getattr(args, name) is not None:
                options[name] = getattr(args, name)
        dataset = build_dataset(args.name, args.out, force=args.force, **options)
    seconds = time.perf_counter() - started
    samples = sum(dataset.split_size(split) for split in dataset.splits)
    for split in dataset.splits:
        left_out = LeftOut(**dataset.manifest["splits"][split].get("left_out", {}))
        if left_out.anything:
            print(f"{split}: left out {left_out.describe()} (listed in {dataset.root / 'manifest.json'})")
    print(
        f"built {dataset.name} in {dataset.root}: {samples} samples in {seconds:.1f} s "
        f"({samples / seconds:.0f} samples/s); `jestbench data inspect {dataset.root}` to look at it"
    )
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from harness.data import open_dataset
    from harness.data.validate import validate_dataset

    reports = validate_dataset(open_dataset(args.dir))
    failed = 0
    for report in reports:
        status = "ok" if not report.problems else f"{len(report.problems)} problem(s)"
        print(f"{report.split:<8} {report.shards:>4} shards {report.samples:>8} samples: {status}")
        for note in report.notes:
            print(f"  note: {note}")
        for problem in report.problems:
            print(f"  {problem}")
        failed += len(report.problems)
    if failed:
        print(
            f"{args.dir}: {failed} problem(s); training splits can be read past them with --on-bad-sample skip "
            "(the samples are then left out and counted, under a dataset id of their own); val and eval "
            "are always read whole, so restore their shards"
        )
        return 1
    print(f"{args.dir}: every shard matches the manifest")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from harness.data import open_dataset
    from harness.data.inspect import describe, write_contact_sheet

    dataset = open_dataset(args.dir)
    print(describe(dataset))
    sheet = write_contact_sheet(
        dataset, args.sheet or dataset.root / "contact-sheet.png", args.split, args.per_kind
    )
    print(f"\ncontact sheet of {args.split}: {sheet}")
    return 0
