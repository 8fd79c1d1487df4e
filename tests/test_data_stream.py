"""Super-batch streaming: exact sizes, a seeded order that resumes exactly, epochs without
repeats, workers and ranks without duplicates; and whole splits for evaluation."""

from __future__ import annotations

import itertools

import pytest
import torch

from harness.data import DataError, Dataset, SuperBatch, SuperBatchStream, load_split
from harness.data.noise import NOISE_KINDS

B = 40  # 384 raw samples: 9 super-batches per epoch, 24 left over


def take(stream: SuperBatchStream, n: int) -> list[SuperBatch]:
    return list(itertools.islice(stream, n))


def same(a: SuperBatch, b: SuperBatch) -> bool:
    return (
        a.keys == b.keys
        and torch.equal(a.images, b.images)
        and torch.equal(a.tokens, b.tokens)
        and torch.equal(a.labels, b.labels)
        and (a.epoch, a.index, a.number) == (b.epoch, b.index, b.number)
    )


def test_super_batches_hold_exactly_b_aligned_samples(tiny_dataset: Dataset) -> None:
    batch = next(iter(SuperBatchStream(tiny_dataset, "raw", B, seed=0)))
    assert len(batch) == B and len(set(batch.keys)) == B
    assert batch.images.shape == (B, 3, 32, 32) and batch.images.dtype == torch.uint8
    assert batch.tokens.shape == (B, tiny_dataset.context_length) and batch.tokens.dtype == torch.long
    assert batch.labels.shape == (B,) and batch.labels.dtype == torch.long
    assert len(batch.captions) == len(batch.noise) == B and set(batch.noise) <= set(NOISE_KINDS)
    assert batch.reference is None
    assert torch.equal(batch.labels == -1, torch.tensor([kind == "unlearnable" for kind in batch.noise]))
    for tokens, caption in zip(batch.tokens, batch.captions, strict=True):
        assert tiny_dataset.tokenizer.decode(tokens.tolist()) == caption.lower()


def test_the_order_is_a_pure_function_of_the_seed(tiny_dataset: Dataset) -> None:
    first = take(SuperBatchStream(tiny_dataset, "raw", B, seed=5), 3)
    again = take(SuperBatchStream(tiny_dataset, "raw", B, seed=5), 3)
    other = take(SuperBatchStream(tiny_dataset, "raw", B, seed=6), 3)
    assert all(same(a, b) for a, b in zip(first, again, strict=True))
    assert [b.keys for b in first] != [b.keys for b in other]


def test_resuming_with_start_gives_exactly_the_same_super_batches(tiny_dataset: Dataset) -> None:
    stream = SuperBatchStream(tiny_dataset, "raw", B, seed=1)
    per_epoch = stream.super_batches_per_epoch
    assert per_epoch == 384 // B
    straight = take(stream, 2 * per_epoch + 3)
    for start in (1, per_epoch - 1, per_epoch, 2 * per_epoch + 1):
        resumed = take(SuperBatchStream(tiny_dataset, "raw", B, seed=1, start=start), 2)
        assert all(same(a, b) for a, b in zip(straight[start : start + 2], resumed, strict=True))


def test_skipping_ahead_decodes_nothing(tiny_dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = SuperBatchStream(tiny_dataset, "raw", B, seed=1, start=10_000)
    reads: list[int] = []
    read = stream.pool.read
    monkeypatch.setattr(
        stream.pool, "read", lambda positions: reads.append(len(positions)) or read(positions)
    )
    batch = next(iter(stream))
    assert reads == [B]
    assert (batch.number, batch.epoch, batch.index) == (
        10_000,
        *divmod(10_000, stream.super_batches_per_epoch),
    )


def test_each_epoch_is_a_fresh_shuffle_without_repeats(tiny_dataset: Dataset) -> None:
    stream = SuperBatchStream(tiny_dataset, "raw", B, seed=2)
    per_epoch = stream.super_batches_per_epoch
    assert stream.pool_size == 384 and stream.samples_per_epoch == per_epoch * B
    batches = take(stream, 3 * per_epoch)
    epochs = [[k for b in batches[e * per_epoch : (e + 1) * per_epoch] for k in b.keys] for e in range(3)]
    for e, keys in enumerate(epochs):
        assert len(keys) == len(set(keys)) == stream.samples_per_epoch
        assert {b.epoch for b in batches[e * per_epoch : (e + 1) * per_epoch]} == {e}
    assert epochs[0] != epochs[1]
    # the left-over remainder changes from epoch to epoch, so no sample is left out for good
    assert set(epochs[0]) | set(epochs[1]) | set(epochs[2]) == set(stream.pool.keys)


def test_workers_give_the_same_stream_without_duplicates(tiny_dataset: Dataset) -> None:
    alone = take(SuperBatchStream(tiny_dataset, "raw", B, seed=3), 5)
    workers = take(SuperBatchStream(tiny_dataset, "raw", B, seed=3, workers=2), 5)
    assert all(same(a, b) for a, b in zip(alone, workers, strict=True))


def test_ranks_split_each_super_batch_into_disjoint_shares(tiny_dataset: Dataset) -> None:
    whole = take(SuperBatchStream(tiny_dataset, "raw", 2 * B, seed=4), 3)
    ranks = [
        take(SuperBatchStream(tiny_dataset, "raw", B, seed=4, rank=r, world_size=2), 3) for r in range(2)
    ]
    for step in range(3):
        first, second = ranks[0][step].keys, ranks[1][step].keys
        assert not set(first) & set(second)
        assert first + second == whole[step].keys


def test_impossible_streams_are_refused_with_the_reason(tiny_dataset: Dataset) -> None:
    with pytest.raises(DataError, match="fewer than one super-batch"):
        SuperBatchStream(tiny_dataset, "raw", 385, seed=0)
    with pytest.raises(DataError, match="rank 2"):
        SuperBatchStream(tiny_dataset, "raw", B, seed=0, rank=2, world_size=2)
    with pytest.raises(DataError, match="has no split 'test'"):
        SuperBatchStream(tiny_dataset, "test", B, seed=0)
    with pytest.raises(DataError, match="on_bad_sample"):
        SuperBatchStream(tiny_dataset, "raw", B, seed=0, on_bad_sample="ignore")  # type: ignore[arg-type]


def test_load_split_reads_a_whole_split_in_order(tiny_dataset: Dataset) -> None:
    data = load_split(tiny_dataset, "eval")
    assert len(data) == tiny_dataset.split_size("eval") == data.images.shape[0] == data.tokens.shape[0]
    assert data.labels is not None and data.labels.min() >= 0 and data.labels.max() < 8
    assert data.class_names == tiny_dataset.class_names
    assert data.keys == sorted(data.keys) and set(data.noise) == {"clean"}
    for i in range(len(data)):
        assert tiny_dataset.class_names is not None
        assert tiny_dataset.class_names[int(data.labels[i])] in data.captions[i]
