"""The pool of a split: its usable samples in a fixed order, and random-access reading of them.

Opening a pool hashes every shard, takes its index from the cache (or indexes it, checking every
sample, when its bytes are new), compares what it found with the manifest, and then either refuses
the split, naming each shard and key that cannot be read (``on_bad_sample="error"``, the default),
or leaves those samples out and counts them (``"skip"``). Either way nothing is lost silently, and
the pool's order (shard by shard as the manifest lists them, tar order within) is fixed before any
shuffling, so that a shuffled order is a pure function of its seed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from harness.data.dataset import Dataset, LeftOut
from harness.data.errors import BadSampleError, DataError
from harness.data.samples import (
    IMAGE_EXTENSIONS,
    SampleDecodeError,
    decode_caption,
    decode_image,
    decode_meta,
)
from harness.data.shards import (
    Problem,
    load_index,
    read_fields,
    read_span,
    save_index,
    scan_shard,
)

OnBadSample = Literal["error", "skip"]
ON_BAD_SAMPLE: tuple[OnBadSample, ...] = ("error", "skip")
_SHOWN_PROBLEMS = 10


@dataclass(frozen=True)
class Samples:
    """Decoded samples, aligned: ``images`` uint8 ``(n, C, H, W)``, ``tokens`` long ``(n, L)``,
    ``labels`` long ``(n,)`` with -1 where a sample has no label; ``truncated`` counts captions cut
    at the context length."""

    images: torch.Tensor
    tokens: torch.Tensor
    labels: torch.Tensor
    keys: list[str]
    captions: list[str]
    noise: list[str]
    truncated: int


class SplitPool:
    """The usable samples of one split and where each lies on disk. Picklable (open files are not
    carried along: each process opens its own), so loader workers can read from it."""

    def __init__(
        self,
        dataset: Dataset,
        split: str,
        shard_paths: list[Path],
        keys: list[str],
        shard_of: list[int],
        spans: list[list[int]],
        image_extensions: list[int],
        problems: list[str],
        left_out: LeftOut,
    ) -> None:
        self.dataset = dataset
        self.split = split
        self.shard_paths = shard_paths
        self.keys = keys
        self.problems = problems
        self.left_out = left_out
        # Per sample: its shard, where its image, caption and meta lie (offset, size each; meta offset
        # -1 if absent) and its image's extension. Lists: indexing them is faster than arrays.
        self._shard_of = shard_of
        self._spans = spans
        self._image_extensions = image_extensions
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()
        # Caption, label and noise kind of each sample read once, so that later epochs read only
        # its image: at f = 0.8 the loop reads 5x the samples it trains on, on cores it shares.
        self._text: dict[int, tuple[str, int, str]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def skipped(self) -> int:
        """Samples left out of the pool (damaged or lost)."""
        return self.left_out.samples

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fds": {}}

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # a forked worker: its own descriptors
            self._fds, self._pid = {}, os.getpid()
        if shard not in self._fds:
            self._fds[shard] = os.open(self.shard_paths[shard], os.O_RDONLY)
        return self._fds[shard]

    def close(self) -> None:
        """Close the files this process opened (also done when the pool is garbage-collected)."""
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = {}

    __del__ = close

    def read(self, positions: Sequence[int] | np.ndarray) -> Samples:
        """Decode the samples at ``positions`` of the pool, in that order."""
        dataset = self.dataset
        spec = dataset.image_spec
        images = np.empty((len(positions), spec.size, spec.size, spec.channels), dtype=np.uint8)
        labels = np.full(len(positions), -1, dtype=np.int64)
        captions: list[str] = []
        noise: list[str] = []
        keys: list[str] = []
        for row, position in enumerate(np.asarray(positions, dtype=np.int64).tolist()):
            key = self.keys[position]
            shard = self._shard_of[position]
            try:
                known = self._text.get(position)
                if known is None:
                    image, caption, meta = read_fields(self._fd(shard), self._spans[position])
                    decoded = decode_meta(meta)
                    known = self._text[position] = (
                        decode_caption(caption),
                        self._label(decoded.label),
                        decoded.noise,
                    )
                else:
                    spans = self._spans[position]
                    image = read_span(self._fd(shard), spans[0], spans[1])
                images[row] = decode_image(image, IMAGE_EXTENSIONS[self._image_extensions[position]], spec)
            except (SampleDecodeError, OSError) as err:
                raise BadSampleError(
                    f"shard {self.shard_paths[shard]}, key {key!r}: {err}. The shard changed after it was "
                    f"indexed; run `jestbench data validate {dataset.root}`"
                ) from None
            captions.append(known[0])
            labels[row] = known[1]
            noise.append(known[2])
            keys.append(key)
        tokens, truncated = dataset.tokenizer.encode(captions, dataset.context_length)
        return Samples(
            images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
            tokens=tokens,
            labels=torch.from_numpy(labels),
            keys=keys,
            captions=captions,
            noise=noise,
            truncated=truncated,
        )

    def _label(self, label: int | str | None) -> int:
        if label is None:
            return -1
        names = self.dataset.class_names
        if isinstance(label, str):
            if label not in self.dataset.class_index:
                raise SampleDecodeError(f"class name {label!r} is not one of the dataset's classes")
            return self.dataset.class_index[label]
        if names is not None and label >= len(names):
            raise SampleDecodeError(f"label {label} is out of range for {len(names)} classes")
        return label


# What to do about a split that is refused: for a training split, skipping is an option.
TRAINING_ADVICE = (
    "`jestbench data validate {root}` checks every shard; to train without these samples, pass "
    "--on-bad-sample skip (they are then left out, counted and reported, and the data gets its own "
    "dataset id, so these runs never mix with runs on the intact data)"
)
# Shards not found where the manifest names them: a dataset references its shards where they were.
MISSING_ADVICE = (
    "{n} shard(s) are not where the dataset expects them: a dataset of your own references your shards "
    "where they were when it was made, so if you moved them, move them back or make the dataset again "
    "from their new place (`jestbench data build byo --out DIR ...`); otherwise "
)
# Evaluation splits are read whole: every run of a leaderboard is scored on the same samples.
EVALUATION_ADVICE = (
    "an evaluation split is always read whole, whatever --on-bad-sample says, so that every run is "
    "scored on the same samples: restore its shards (copy them again, or rebuild the dataset with "
    "`jestbench data build`; for your own shards, fix them and run the command again) and check them "
    "with `jestbench data validate {root}`"
)


def open_pool(
    dataset: Dataset, split: str, on_bad_sample: OnBadSample = "error", *, advice: str = TRAINING_ADVICE
) -> SplitPool:
    """Index ``split`` and check it against the manifest (see the module docstring).

    What is left out is counted by cause (:class:`harness.data.dataset.LeftOut`) and recorded on the
    dataset (:meth:`Dataset.left_out`). A shard whose bytes are the manifest's holds only what the
    dataset was made with (for your own shards, damage accepted with ``skip`` and listed in the
    manifest): its damage is counted, not refused. Anything else that cannot be read is a problem,
    refused with ``"error"`` (with ``advice``, ``{root}`` standing for the dataset's directory).
    """
    if on_bad_sample not in ON_BAD_SAMPLE:
        raise DataError(f"on_bad_sample={on_bad_sample!r} must be one of {', '.join(ON_BAD_SAMPLE)}")
    from tqdm import tqdm

    belongs, wanted = _membership(dataset, split)
    split_is_subset = bool(wanted)  # an "only these keys" split: report listed keys not found
    records = dataset.shards(split)
    problems: list[str] = []
    # Samples found damaged when the dataset was made (your own shards, with skip): excluded by key.
    damaged = int(dataset.manifest["splits"][split].get("left_out", {}).get("damaged", 0))
    lost = empty_shards = truncated_shards = missing = 0
    keys: list[str] = []
    shard_of: list[int] = []
    spans: list[list[int]] = []
    extensions: list[int] = []
    # A split held out of another's shards (your own val) leaves shard-level counts to that split.
    shard_level = "held_out_of" not in dataset.manifest["splits"][split]
    for number, record in enumerate(
        tqdm(records, desc=f"index {split}", unit="shard", disable=None, leave=False)
    ):
        sha256 = dataset.shard_sha256(record.path)
        if sha256 is None:
            problems.append(f"shard {record.path}: missing ({record.count} samples lost)")
            lost += record.count
            missing += 1
            continue
        cache = dataset.index_dir / f"{sha256}.json"
        index = load_index(cache, sha256)
        if index is None:
            index = scan_shard(record.path, sha256)
            save_index(cache, index)
        changed = sha256 != record.sha256
        shard_problems = [p for p in index.problems if p.key is None or belongs(p.key)]
        damaged += len({p.key for p in shard_problems if p.key is not None})
        if shard_level:
            empty_shards += index.empty
            truncated_shards += index.cut
        missing = record.count - len(index.samples) - index.bad_samples
        if missing > 0:
            shard_problems.append(
                Problem(
                    None,
                    f"holds {record.count - missing} samples where the manifest has {record.count}: "
                    f"{missing} lost",
                )
            )
            lost += missing
        if index.empty and (changed or record.count):  # else accepted empty when the dataset was made
            shard_problems.append(Problem(None, "holds no sample at all (an empty file or tar)"))
        for sample in index.samples:
            if not belongs(sample.key):
                continue
            if wanted.get(sample.key):
                problem = Problem(sample.key, f"the key appears in another shard of split {split!r} too")
                problems.append(problem.describe(record.path))
                damaged += 1
                continue
            wanted[sample.key] = True
            keys.append(sample.key)
            shard_of.append(number)
            meta = sample.meta or (-1, 0)
            spans.append([*sample.image, *sample.caption, *meta])
            extensions.append(IMAGE_EXTENSIONS.index(sample.image_extension))
        if changed:  # an unchanged shard holds only what the dataset was made with (docstring)
            problems += [p.describe(record.path) for p in shard_problems]
    if split_is_subset:
        absent = sorted(key for key, found in wanted.items() if not found)
        problems += [f"split {split}: key {key!r} is missing from its shards" for key in absent]
        lost += len(absent)
    counts = LeftOut(len(keys), damaged, lost, empty_shards, truncated_shards)
    if problems and on_bad_sample == "error":
        what_to_do = advice.format(root=dataset.root)
        if missing:  # moved rather than damaged: skipping them would train on a part of the split
            what_to_do = MISSING_ADVICE.format(n=missing) + what_to_do
        raise BadSampleError(
            problem_report(f"split {split!r} of {dataset.root} ({counts.describe()})", problems, what_to_do)
        )
    dataset.record_left_out(split, counts)
    return SplitPool(
        dataset,
        split,
        [r.path for r in records],
        keys,
        shard_of,
        spans,
        extensions,
        problems,
        counts,
    )


def _membership(dataset: Dataset, split: str) -> tuple[Callable[[str], bool], dict[str, bool]]:
    """Which keys of the split's shards belong to it (all, unless the split is a subset of shards
    it shares with another), and a ``key -> found`` record of the keys seen so far."""
    key_filter = dataset.key_filter(split)
    if key_filter is None:
        return (lambda key: True), {}
    mode, listed = key_filter
    chosen = set(listed)
    if mode == "only":
        return chosen.__contains__, dict.fromkeys(listed, False)
    return (lambda key: key not in chosen), {}


def problem_report(what: str, problems: list[str], advice: str) -> str:
    """``problems`` (at most the first 10) under a header, with what to do about them."""
    shown = "\n  ".join(problems[:_SHOWN_PROBLEMS])
    more = f"\n  ... and {len(problems) - _SHOWN_PROBLEMS} more" if len(problems) > _SHOWN_PROBLEMS else ""
    return f"{what} has {len(problems)} problem(s):\n  {shown}{more}\n{advice}"
