"""Cached reference embeddings, attached to a split's samples by key (paper A.5, docs/DESIGN.md §4–5).

The reference model is fixed while the learner trains, so its embeddings of the raw pool are
computed once and stored beside the dataset; each super-batch then carries them, aligned with its
samples, and reference scoring costs only the pairwise products. Format, one directory per
reference and split::

    DIR/reference/<reference_hash>/<split>/
        meta.json    {"format": "jestbench-reference-cache", "version": 1, "reference_hash": ...,
                      "weights_hash": ..., "tokenizer_hash": ..., "split": ..., "count": N,
                      "dim": d, "scale": a, "bias": c, "dtype": "float32"}
        keys.json    the N sample keys, in row order
        image.npy    float32 (N, d): L2-normalised image embeddings
        text.npy     float32 (N, d): L2-normalised text embeddings

``scale`` is the reference's logit scale ``a`` (exponentiated) and ``bias`` its ``c``. The
``reference_hash`` names the trained reference (its config and weights, and through them its
tokenizer); the tokenizer hash is stored as well, so that embeddings made with another tokenizer
are refused even if a caller's reference hash forgot to cover it. ``weights_hash`` is the hash of the
weights that computed the embeddings (:func:`harness.reference_store.weights_hash`); the training loop
refuses a cache whose weights hash is not its reference's (:func:`check_weights`).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.data.dataset import Dataset
from harness.data.errors import ReferenceCacheError
from strategies import Embeddings

_FORMAT = "jestbench-reference-cache"
_VERSION = 1
_HASH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHOWN_KEYS = 5


def reference_cache_dir(dataset: Dataset, reference_hash: str, split: str = "raw") -> Path:
    """Where the embeddings of ``split`` by reference ``reference_hash`` are cached."""
    if not _HASH.match(reference_hash):
        raise ReferenceCacheError(
            f"reference hash {reference_hash!r} must be 1-128 letters, digits, '.', '_' or '-' (it names a directory)"
        )
    return dataset.reference_dir / reference_hash / split


def write_reference_cache(
    dataset: Dataset,
    keys: Sequence[str],
    embeddings: Embeddings,
    reference_hash: str,
    split: str = "raw",
    *,
    weights_hash: str | None = None,
) -> Path:
    """Store a reference's embeddings of ``split``'s samples ``keys`` (rows aligned with
    ``embeddings``), replacing any earlier cache for the same reference and split; ``weights_hash``
    names the weights that computed them.

    Refuses keys that repeat or that the split does not hold, a row count that differs from the
    number of keys, and non-finite values. Returns the cache directory.
    """
    from harness.data.pool import open_pool

    directory = reference_cache_dir(dataset, reference_hash, split)
    image = embeddings.image.detach().to(torch.float32).cpu().numpy()
    text = embeddings.text.detach().to(torch.float32).cpu().numpy()
    if len(keys) != image.shape[0]:
        raise ReferenceCacheError(f"{len(keys)} keys for {image.shape[0]} embedding rows; they must match")
    if len(set(keys)) != len(keys):
        raise ReferenceCacheError("keys repeat; give each sample's embeddings once")
    if not (np.isfinite(image).all() and np.isfinite(text).all()):
        raise ReferenceCacheError(f"embeddings of reference {reference_hash} hold NaN or infinite values")
    unknown = sorted(set(keys) - set(open_pool(dataset, split, "skip").keys))
    if unknown:
        raise ReferenceCacheError(
            f"{len(unknown)} key(s) are not samples of split {split!r} of {dataset.root}, e.g. "
            f"{', '.join(repr(k) for k in unknown[:_SHOWN_KEYS])}"
        )
    meta = {
        "format": _FORMAT,
        "version": _VERSION,
        "reference_hash": reference_hash,
        "weights_hash": weights_hash,
        "tokenizer_hash": dataset.tokenizer.hash,
        "split": split,
        "count": len(keys),
        "dim": int(image.shape[1]),
        "scale": float(embeddings.scale),
        "bias": float(embeddings.bias),
        "dtype": "float32",
    }
    tmp = directory.with_name(f".{split}.writing")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "image.npy", image)
    np.save(tmp / "text.npy", text)
    (tmp / "keys.json").write_text(json.dumps(list(keys)))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    tmp.replace(directory)
    return directory


def check_weights(
    dataset: Dataset, reference_hash: str, weights_hash: str, rebuild: str, split: str = "raw"
) -> None:
    """Refuse the cache of ``reference_hash`` unless the weights that computed it hash to
    ``weights_hash`` (the reference's own); ``rebuild`` is the command that makes it again."""
    path = reference_cache_dir(dataset, reference_hash, split) / "meta.json"
    try:
        cached = json.loads(path.read_text()).get("weights_hash")
    except (OSError, ValueError) as err:
        raise ReferenceCacheError(
            f"reference cache {path} is unreadable ({err}); rebuild it with `{rebuild}`"
        ) from None
    if cached != weights_hash:
        raise ReferenceCacheError(
            f"the cached embeddings in {path.parent} were computed by weights {cached or '(not recorded)'}, "
            f"but reference {reference_hash} has weights {weights_hash}; rebuild them with `{rebuild}`"
        )


@dataclass(frozen=True)
class ReferenceCache:
    """A loaded cache: rows of ``image``/``text`` (memory-mapped) in the order of ``keys``."""

    reference_hash: str
    keys: list[str]
    image: np.ndarray
    text: np.ndarray
    scale: float
    bias: float

    @property
    def dim(self) -> int:
        return int(self.image.shape[1])

    @classmethod
    def load(
        cls, dataset: Dataset, reference_hash: str, split: str = "raw", dim: int | None = None
    ) -> ReferenceCache:
        """Load and check the cache of reference ``reference_hash`` for ``split``; ``dim``, when
        given, is the embedding width the caller's reference model produces."""
        directory = reference_cache_dir(dataset, reference_hash, split)
        if not (directory / "meta.json").is_file():
            others = sorted(p.parent.name for p in dataset.reference_dir.glob(f"*/{split}") if p.is_dir())
            found = f"it holds caches for {', '.join(others)}" if others else "it holds none"
            raise ReferenceCacheError(
                f"no cached embeddings of reference {reference_hash} for split {split!r} in "
                f"{dataset.reference_dir} ({found}); compute them with write_reference_cache "
                "after training the reference"
            )
        try:
            meta = json.loads((directory / "meta.json").read_text())
            keys = json.loads((directory / "keys.json").read_text())
            image = np.load(directory / "image.npy", mmap_mode="r")
            text = np.load(directory / "text.npy", mmap_mode="r")
        except (OSError, ValueError) as err:
            raise ReferenceCacheError(
                f"reference cache {directory} is unreadable ({err}); write it again"
            ) from None
        if meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
            raise ReferenceCacheError(f"{directory} is not a {_FORMAT} of version {_VERSION}; write it again")
        if meta["reference_hash"] != reference_hash:
            raise ReferenceCacheError(
                f"{directory} holds embeddings of reference {meta['reference_hash']}, not {reference_hash}"
            )
        if meta["tokenizer_hash"] != dataset.tokenizer.hash:
            raise ReferenceCacheError(
                f"reference cache {directory} was made with tokenizer {meta['tokenizer_hash']}, but the "
                f"dataset's tokenizer is now {dataset.tokenizer.hash}: retrain the reference and write it again"
            )
        shapes = {"image.npy": image.shape, "text.npy": text.shape}
        expected = (meta["count"], meta["dim"])
        if any(shape != expected for shape in shapes.values()) or len(keys) != meta["count"]:
            raise ReferenceCacheError(
                f"reference cache {directory} is inconsistent: meta.json says {meta['count']} rows of "
                f"dimension {meta['dim']}, the arrays are {shapes} and keys.json has {len(keys)} keys"
            )
        if dim is not None and meta["dim"] != dim:
            raise ReferenceCacheError(
                f"reference cache {directory} holds embeddings of dimension {meta['dim']}; the reference "
                f"model produces {dim}: it was written by another model, write it again"
            )
        return cls(reference_hash, keys, image, text, float(meta["scale"]), float(meta["bias"]))

    def rows(self, keys: Sequence[str]) -> np.ndarray:
        """The cache row of each of ``keys``; every key must have one."""
        row_of = {key: row for row, key in enumerate(self.keys)}
        missing = [key for key in keys if key not in row_of]
        if missing:
            raise ReferenceCacheError(
                f"the cache of reference {self.reference_hash} has no embeddings for {len(missing)} of "
                f"{len(keys)} samples, e.g. {', '.join(repr(k) for k in missing[:_SHOWN_KEYS])}; write it "
                "again over the whole split"
            )
        return np.fromiter((row_of[key] for key in keys), dtype=np.int64, count=len(keys))

    def embeddings(self, rows: np.ndarray) -> Embeddings:
        """The cached embeddings of ``rows`` with the reference's scale and bias."""
        return Embeddings(
            image=torch.from_numpy(np.ascontiguousarray(self.image[rows])),
            text=torch.from_numpy(np.ascontiguousarray(self.text[rows])),
            scale=self.scale,
            bias=self.bias,
        )
