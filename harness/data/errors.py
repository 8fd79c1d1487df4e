"""Errors of the data layer; all are the user's to fix, so they subclass :class:`UserError`."""

from __future__ import annotations

from harness.errors import UserError


class DataError(UserError):
    """A dataset, option or file that cannot be used; the message names it and says what to do."""


class BadSampleError(DataError):
    """Samples that cannot be read as they are: truncated or damaged shards, missing fields,
    undecodable images. The message names the shard and the key of each."""


class ReferenceCacheError(DataError):
    """Cached reference embeddings that are missing, stale (another reference or tokenizer) or
    do not fit the samples they are attached to."""


class StaleDatasetError(DataError):
    """A dataset directory written by an older version of jestbench (another manifest format)."""
