"""Cached reference embeddings: written by key, delivered aligned with each super-batch, and
refused when a key is missing, the dimension is wrong or the hash does not match."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.data import (
    Dataset,
    ReferenceCacheError,
    SuperBatchStream,
    load_split,
    write_reference_cache,
)
from harness.data.reference_cache import reference_cache_dir
from strategies import Embeddings

DIM = 6


def embed(keys: list[str]) -> Embeddings:
    """Deterministic unit vectors per key, so the test can recompute what each sample should get."""
    rows = [np.random.default_rng(zlib.crc32(k.encode())).normal(size=(2, DIM)) for k in keys]
    image = torch.tensor(np.stack([r[0] for r in rows]), dtype=torch.float32)
    text = torch.tensor(np.stack([r[1] for r in rows]), dtype=torch.float32)
    return Embeddings(
        torch.nn.functional.normalize(image, dim=1),
        torch.nn.functional.normalize(text, dim=1),
        scale=10.0,
        bias=-5.0,
    )


def test_the_stream_delivers_cached_embeddings_aligned_by_key(tiny_copy: Dataset) -> None:
    keys = load_split(tiny_copy, "raw").keys
    shuffled = [keys[i] for i in np.random.default_rng(0).permutation(len(keys))]  # row order need not match
    directory = write_reference_cache(tiny_copy, shuffled, embed(shuffled), "ref-a1")
    assert json.loads((directory / "meta.json").read_text())["tokenizer_hash"] == tiny_copy.tokenizer.hash

    batch = next(
        iter(SuperBatchStream(tiny_copy, "raw", 32, seed=0, reference_hash="ref-a1", reference_dim=DIM))
    )
    assert batch.reference is not None
    expected = embed(batch.keys)
    assert torch.equal(batch.reference.image, expected.image) and torch.equal(
        batch.reference.text, expected.text
    )
    assert (batch.reference.scale, batch.reference.bias) == (10.0, -5.0)


def test_missing_keys_wrong_dimension_and_wrong_hash_are_refused(
    tiny_copy: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = load_split(tiny_copy, "raw").keys
    write_reference_cache(tiny_copy, keys[:-3], embed(keys[:-3]), "partial")
    with pytest.raises(
        ReferenceCacheError, match=f"no embeddings for 3 of {len(keys)} samples, e.g. '{keys[-3]}'"
    ):
        SuperBatchStream(tiny_copy, "raw", 32, seed=0, reference_hash="partial")
    assert main(["data", "validate", str(tiny_copy.root)]) == 1
    assert (
        "0 key(s) that are not samples of the split, 3 sample(s) without embeddings"
        in capsys.readouterr().out
    )

    write_reference_cache(tiny_copy, keys, embed(keys), "whole")
    with pytest.raises(ReferenceCacheError, match=f"dimension {DIM}; the reference model produces 8"):
        SuperBatchStream(tiny_copy, "raw", 32, seed=0, reference_hash="whole", reference_dim=8)
    with pytest.raises(
        ReferenceCacheError,
        match=r"no cached embeddings of reference other .*it holds caches for partial, whole",
    ):
        SuperBatchStream(tiny_copy, "raw", 32, seed=0, reference_hash="other")

    directory = reference_cache_dir(tiny_copy, "whole")
    meta = json.loads((directory / "meta.json").read_text())
    (directory / "meta.json").write_text(json.dumps({**meta, "tokenizer_hash": "0" * 16}))
    with pytest.raises(ReferenceCacheError, match="made with tokenizer 0000000000000000"):
        SuperBatchStream(tiny_copy, "raw", 32, seed=0, reference_hash="whole")
    (directory / "meta.json").write_text(json.dumps(meta))
    np.save(directory / "text.npy", np.zeros((len(keys), DIM + 1), dtype=np.float32))
    with pytest.raises(ReferenceCacheError, match="inconsistent"):
        SuperBatchStream(tiny_copy, "raw", 32, seed=0, reference_hash="whole")


def test_writing_refuses_keys_that_are_not_samples_and_bad_values(tiny_copy: Dataset) -> None:
    keys = load_split(tiny_copy, "raw").keys[:4]
    with pytest.raises(ReferenceCacheError, match=r"not samples of split 'raw'.*'curated-0000000'"):
        write_reference_cache(tiny_copy, [*keys[:3], "curated-0000000"], embed(keys), "r")
    with pytest.raises(ReferenceCacheError, match="3 keys for 4 embedding rows"):
        write_reference_cache(tiny_copy, keys[:3], embed(keys), "r")
    nan = embed(keys)
    nan.image[0, 0] = float("nan")
    with pytest.raises(ReferenceCacheError, match="NaN"):
        write_reference_cache(tiny_copy, keys, nan, "r")
    with pytest.raises(ReferenceCacheError, match="names a directory"):
        write_reference_cache(tiny_copy, keys, embed(keys), "../escape")
