"""A word-level tokenizer built from a dataset's training captions.

Word-level rather than byte-level because the text tower's cost grows with the sequence length: a
caption such as "two small red triangles on the left" is 7 word tokens against 36 bytes, so a small
context length holds whole captions. It is built from the captions of the training splits (curated
and raw), saved as ``tokenizer.json`` inside the dataset and never downloaded. Its hash covers every
rule and the vocabulary, so that anything derived from token ids (a trained reference, cached
reference embeddings) can say which tokenizer it was made with.

Ids: 0 is padding, 1 stands for any word not in the vocabulary (rare words such as file names in web
captions), words follow from 2, most frequent first.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import torch

from harness.data.errors import DataError

PAD_ID = 0
UNKNOWN_ID = 1
_SPECIAL = ("<pad>", "<unk>")
_FORMAT = "jestbench-word-tokenizer"
_VERSION = 1
# Lower-cased words (letters, digits, underscore) and single punctuation marks.
_PATTERN = r"\w+|[^\w\s]"
_WORDS = re.compile(_PATTERN)


def split_words(text: str) -> list[str]:
    """The words of ``text`` as the tokenizer sees them: lower-cased, punctuation split off."""
    return _WORDS.findall(text.lower())


class WordTokenizer:
    """Maps captions to word ids; see the module docstring for the id layout.

    Args:
        words: the vocabulary, without the two special tokens, in id order (id = position + 2).
    """

    def __init__(self, words: Sequence[str]) -> None:
        if len(set(words)) != len(words) or any(w in _SPECIAL for w in words):
            raise DataError("tokenizer vocabulary has duplicate words or reuses <pad>/<unk>")
        self.words: tuple[str, ...] = tuple(words)
        self._ids = {word: i + len(_SPECIAL) for i, word in enumerate(self.words)}
        self.hash = hashlib.sha256(json.dumps(self._config(), sort_keys=True).encode()).hexdigest()[:16]
        # Captions repeat a lot (templates, web boilerplate): memoise the split-and-lookup per text.
        self._text_ids = lru_cache(maxsize=1 << 16)(self._lookup)

    def __reduce__(self) -> tuple[type[WordTokenizer], tuple[tuple[str, ...]]]:
        # The memo is a closure; pickle the vocabulary (loader workers started by spawn get a copy).
        return (WordTokenizer, (self.words,))

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included: the text tower's embedding table size."""
        return len(self.words) + len(_SPECIAL)

    @classmethod
    def build(cls, captions: Iterable[str], *, min_count: int = 2, max_size: int = 16384) -> WordTokenizer:
        """A vocabulary of the words seen at least ``min_count`` times, at most ``max_size`` ids.

        ``min_count=2`` keeps one-off strings (file names, numbers in web boilerplate) out of the
        vocabulary: they become the unknown id. Ties in frequency are broken alphabetically so the
        same captions always give the same tokenizer.
        """
        if min_count < 1 or max_size <= len(_SPECIAL):
            raise DataError(
                f"tokenizer needs min_count >= 1 and max_size > {len(_SPECIAL)}; got {min_count}, {max_size}"
            )
        counts = Counter(word for caption in captions for word in split_words(caption))
        ranked = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(ranked[: max_size - len(_SPECIAL)])

    def _lookup(self, text: str) -> tuple[int, ...]:
        return tuple(self._ids.get(word, UNKNOWN_ID) for word in split_words(text))

    def token_count(self, text: str) -> int:
        """How many ids ``text`` becomes before padding or truncation."""
        return len(self._text_ids(text))

    def encode(self, texts: Sequence[str], context_length: int) -> tuple[torch.Tensor, int]:
        """Ids of ``texts`` as a ``(len(texts), context_length)`` LongTensor padded with 0.

        Returns the ids and how many texts were longer than ``context_length`` and cut (the loop
        reports it: a text tower that never sees the end of long captions is worth knowing about).
        """
        if context_length < 1:
            raise DataError(f"context length must be >= 1; got {context_length}")
        rows = [self._text_ids(text) for text in texts]
        truncated = sum(len(ids) > context_length for ids in rows)
        padding = (PAD_ID,) * context_length
        padded = [(ids + padding)[:context_length] for ids in rows]
        return torch.tensor(padded, dtype=torch.long).reshape(len(texts), context_length), truncated

    def decode(self, ids: Iterable[int]) -> str:
        """The words of ``ids`` joined by spaces, padding dropped (for inspection and tests)."""
        vocab = (*_SPECIAL, *self.words)
        return " ".join(vocab[i] for i in ids if i != PAD_ID)

    def _config(self) -> dict[str, object]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "pattern": _PATTERN,
            "lowercase": True,
            "special": list(_SPECIAL),
            "words": list(self.words),
        }

    def save(self, path: Path) -> None:
        """Write ``tokenizer.json`` (the rules, the vocabulary and the hash)."""
        path.write_text(json.dumps({**self._config(), "hash": self.hash}, indent=0) + "\n")

    @classmethod
    def load(cls, path: Path) -> WordTokenizer:
        """Read a tokenizer saved by :meth:`save`, refusing one written under other rules."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read tokenizer {path}: {err}; rebuild the dataset") from None
        tokenizer = cls(data.get("words", []))
        if data.get("format") != _FORMAT or tokenizer._config() != {
            k: data.get(k) for k in tokenizer._config()
        }:
            raise DataError(
                f"{path} was written by another tokenizer version or edited; rebuild the dataset "
                "(`jestbench data build ...`)"
            )
        if data.get("hash") != tokenizer.hash:
            raise DataError(
                f"{path}: stored hash {data.get('hash')} does not match its vocabulary ({tokenizer.hash})"
            )
        return tokenizer
