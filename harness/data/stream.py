"""Super-batches for the training loop, and whole small splits for evaluation.

Order (what makes a resumed or distributed run see exactly the data it should):

- An epoch is a permutation of the split's pool drawn from a generator seeded by ``(seed, epoch)``.
  Super-batch ``i`` of the epoch is the ``i``-th run of ``B * world_size`` samples of it; rank ``r``
  takes the ``r``-th ``B`` of those. So no sample appears twice within an epoch, ranks see disjoint
  samples, and the ranks' super-batches together are what one process with ``B * world_size``
  would see.
- The ``pool_size mod (B * world_size)`` samples left at the end of a permutation are not used in
  that epoch; the next epoch's permutation is fresh, so which samples are left out changes every
  epoch and none is left out for good.
- Super-batch number ``n`` (counted over epochs) is epoch ``n // per_epoch``, index
  ``n % per_epoch``: a pure function of ``(seed, n)``. ``start`` skips to it by arithmetic, decoding
  nothing.
- Loader workers take super-batch numbers in turn and PyTorch's DataLoader hands them back in order,
  so the stream is the same with 0, 1 or more workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.data.dataset import Dataset, LeftOut
from harness.data.errors import DataError
from harness.data.pool import TRAINING_ADVICE, OnBadSample, open_pool
from harness.data.reference_cache import ReferenceCache
from strategies import Embeddings


@dataclass(frozen=True)
class SuperBatch:
    """``B`` samples for one training step.

    ``images`` uint8 ``(B, C, H, W)``; ``tokens`` long ``(B, L)``; ``labels`` long ``(B,)``, -1 where
    unknown; ``noise`` the noise kind of each sample (``clean``, ``redundant``, ``mismatched``,
    ``uninformative``, ``unlearnable``, or ``unknown`` for data that does not record it);
    ``reference`` the cached reference embeddings of these samples, when the stream was given a
    reference. ``epoch`` and ``index`` (within the epoch) place it; ``number`` counts super-batches
    from the start of the stream's first epoch. ``truncated`` counts captions cut at the context length.
    """

    images: torch.Tensor
    tokens: torch.Tensor
    labels: torch.Tensor
    keys: list[str]
    captions: list[str]
    noise: list[str]
    reference: Embeddings | None
    epoch: int
    index: int
    number: int
    truncated: int

    def __len__(self) -> int:
        return len(self.keys)


class SuperBatchStream:
    """An endless, seeded stream of super-batches of exactly ``super_batch_size`` samples of ``split``.

    Args:
        dataset: an opened dataset.
        split: usually ``"raw"``, the learner's pool (``"curated"`` to train a reference).
        super_batch_size: ``B``, samples per super-batch on this rank.
        seed: with the epoch, fixes the order (module docstring).
        start: super-batches already consumed (a resumed run passes how many it trained on).
        workers: loader processes (0 reads in this process; on 2 cores, 0 is usually best).
        on_bad_sample: ``"error"`` refuses a split with damaged samples, naming each; ``"skip"``
            leaves them out of the pool and counts them in :attr:`left_out`.
        rank, world_size: this process's share in a distributed run.
        reference_hash: attach the cached embeddings of this reference (see
            :mod:`harness.data.reference_cache`); every sample must have them.
        reference_dim: the reference model's embedding width, checked against the cache.
    """

    def __init__(
        self,
        dataset: Dataset,
        split: str,
        super_batch_size: int,
        seed: int,
        start: int = 0,
        workers: int = 0,
        on_bad_sample: OnBadSample = "error",
        rank: int = 0,
        world_size: int = 1,
        reference_hash: str | None = None,
        reference_dim: int | None = None,
    ) -> None:
        if super_batch_size < 1 or start < 0 or workers < 0:
            raise DataError(
                f"super_batch_size must be >= 1, start and workers >= 0; got {super_batch_size}, {start}, {workers}"
            )
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} must lie in [0, world_size={world_size})")
        self.dataset = dataset
        self.split = split
        self.super_batch_size = super_batch_size
        self.seed = seed
        self.start = start
        self.workers = workers
        self.rank = rank
        self.world_size = world_size
        self.pool = open_pool(dataset, split, on_bad_sample)
        step = super_batch_size * world_size
        if len(self.pool) < step:
            raise DataError(
                f"split {split!r} of {dataset.root} has {len(self.pool)} usable samples, fewer than one "
                f"super-batch of {super_batch_size} x {world_size} rank(s); use a smaller super-batch or a larger split"
            )
        self.super_batches_per_epoch = len(self.pool) // step
        self._reference: ReferenceCache | None = None
        self._reference_rows: np.ndarray | None = None
        if reference_hash is not None:
            self._reference = ReferenceCache.load(dataset, reference_hash, split, dim=reference_dim)
            self._reference_rows = self._reference.rows(self.pool.keys)
        self._permutation: tuple[int, np.ndarray] | None = None

    @property
    def pool_size(self) -> int:
        """Usable samples in the split: what "epochs over the pool" divide by."""
        return len(self.pool)

    @property
    def samples_per_epoch(self) -> int:
        """Samples read per epoch over all ranks (the pool minus the left-over remainder)."""
        return self.super_batches_per_epoch * self.super_batch_size * self.world_size

    @property
    def skipped(self) -> int:
        """Samples left out of the pool, damaged or lost (see :attr:`left_out`)."""
        return self.pool.skipped

    @property
    def left_out(self) -> LeftOut:
        """What the split's pool left out, by cause (damaged, lost, empty and truncated shards)."""
        return self.pool.left_out

    @property
    def problems(self) -> list[str]:
        """What was wrong with the skipped samples, naming shard and key."""
        return list(self.pool.problems)

    def positions(self, number: int) -> tuple[int, int, np.ndarray]:
        """``(epoch, index, pool positions)`` of super-batch ``number``, without reading anything."""
        epoch, index = divmod(number, self.super_batches_per_epoch)
        if self._permutation is None or self._permutation[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._permutation = (epoch, rng.permutation(len(self.pool)))
        first = (index * self.world_size + self.rank) * self.super_batch_size
        return epoch, index, self._permutation[1][first : first + self.super_batch_size]

    def read(self, number: int) -> SuperBatch:
        """Decode super-batch ``number``."""
        epoch, index, positions = self.positions(number)
        samples = self.pool.read(positions)
        reference = None
        if self._reference is not None and self._reference_rows is not None:
            reference = self._reference.embeddings(self._reference_rows[positions])
        return SuperBatch(
            images=samples.images,
            tokens=samples.tokens,
            labels=samples.labels,
            keys=samples.keys,
            captions=samples.captions,
            noise=samples.noise,
            reference=reference,
            epoch=epoch,
            index=index,
            number=number,
            truncated=samples.truncated,
        )

    def __iter__(self) -> Iterator[SuperBatch]:
        if self.workers == 0:
            return map(self.read, itertools.count(self.start))
        loader = torch.utils.data.DataLoader(
            _Reader(self),
            batch_size=None,
            sampler=_Numbers(self.start),
            num_workers=self.workers,
            collate_fn=_as_is,
        )
        return iter(loader)


class _Reader(torch.utils.data.Dataset[SuperBatch]):
    """Super-batch number -> super-batch, for DataLoader workers."""

    def __init__(self, stream: SuperBatchStream) -> None:
        self.stream = stream

    def __getitem__(self, number: int) -> SuperBatch:
        return self.stream.read(number)


class _Numbers(torch.utils.data.Sampler[int]):
    """Super-batch numbers from ``start`` on, endlessly."""

    def __init__(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.start)


def _as_is(batch: Any) -> Any:
    return batch


@dataclass(frozen=True)
class SplitData:
    """A whole (small) split in memory, for evaluation: aligned ``images`` uint8 ``(N, C, H, W)``,
    ``tokens`` long ``(N, L)``, ``labels`` long ``(N,)`` (None when the dataset has no labels),
    ``class_names`` (None when unnamed), ``keys``, ``captions`` and ``noise``; ``left_out`` says what
    reading it left out."""

    images: torch.Tensor
    tokens: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str] | None
    keys: list[str]
    captions: list[str]
    noise: list[str]
    left_out: LeftOut

    def __len__(self) -> int:
        return len(self.keys)


def load_split(
    dataset: Dataset, split: str, on_bad_sample: OnBadSample = "error", *, advice: str = TRAINING_ADVICE
) -> SplitData:
    """Read all of ``split`` (in pool order: shard by shard, tar order) for evaluation; ``advice``
    is what a refusal tells the user to do (:data:`harness.data.pool.EVALUATION_ADVICE` for a split
    that must be read whole)."""
    pool = open_pool(dataset, split, on_bad_sample, advice=advice)
    samples = pool.read(np.arange(len(pool)))
    pool.close()
    return SplitData(
        images=samples.images,
        tokens=samples.tokens,
        labels=samples.labels if dataset.has_labels else None,
        class_names=dataset.class_names,
        keys=samples.keys,
        captions=samples.captions,
        noise=samples.noise,
        left_out=pool.left_out,
    )
