"""A byte-level BPE tokenizer trained on a dataset's own texts with Hugging Face ``tokenizers``.

Byte-level BPE (GPT-2's scheme; CLIP uses BPE too, SigLIP a SentencePiece model) rather than a word
list: any text encodes, nothing becomes an unknown token, so a class name that never occurs in the
captions still encodes to pieces of its own and two different names never encode alike (the word
tokenizer this replaces mapped such names to one ``<unk>`` and collapsed their zero-shot prompts).
It is trained when a dataset is built, on the captions of the training splits (curated and raw), the
class names and the zero-shot prompts, and saved as the dataset's ``tokenizer.json`` — the file
``tokenizers.Tokenizer.from_file`` reads — never downloaded. Texts are NFC-normalised and
lower-cased; the vocabulary stops growing at ``vocab_size`` ids or when no pair of pieces occurs
``min_frequency`` times, so templated captions become one id per word (a shapes caption is about 8
ids, which keeps the text tower's sequence, and its cost, short).

Ids: 0 is padding (``<pad>``), then the 256 byte symbols, then the merges. The hash is that of the
saved file, so anything derived from token ids (a trained reference, cached reference embeddings)
can say which tokenizer it was made with.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import torch

from harness.data.errors import DataError

# Loader workers are forked after a dataset is opened; the Rust thread pool must not be in use then
# (tokenizers would warn and disable it anyway). Training on a dataset's captions takes about a second.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PAD_ID = 0
PAD = "<pad>"
DEFAULT_VOCAB_SIZE = 8192
DEFAULT_MIN_FREQUENCY = 2


class BpeTokenizer:
    """Maps texts to token ids; see the module docstring for the scheme and the id layout.

    Args:
        serialized: the tokenizer as ``tokenizers`` serialises it (the content of ``tokenizer.json``).
    """

    def __init__(self, serialized: str) -> None:
        try:
            self._tokenizer = Tokenizer.from_str(serialized)
        except Exception as err:  # tokenizers raises a bare Exception for malformed JSON
            raise DataError(f"not a tokenizers tokenizer ({err}); rebuild the dataset") from None
        if self._tokenizer.token_to_id(PAD) != PAD_ID:
            raise DataError(f"the tokenizer's id {PAD_ID} is not {PAD}; rebuild the dataset")
        self._serialized = serialized
        self.hash = hashlib.sha256(serialized.encode()).hexdigest()[:16]
        # Captions repeat a lot (templates, web boilerplate): memoise the encoding per text.
        self._text_ids = lru_cache(maxsize=1 << 16)(self._lookup)

    def __reduce__(self) -> tuple[type[BpeTokenizer], tuple[str]]:
        # The memo is a closure; pickle the serialised form (loader workers started by spawn get a copy).
        return (BpeTokenizer, (self._serialized,))

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        vocab_size: int = DEFAULT_VOCAB_SIZE,
        min_frequency: int = DEFAULT_MIN_FREQUENCY,
    ) -> BpeTokenizer:
        """Train on ``texts`` (deterministic: the same texts give the same file and hash)."""
        if vocab_size <= 257 or min_frequency < 1:
            raise DataError(
                f"tokenizer needs vocab-size > 257 (padding and the 256 bytes) and min-frequency >= 1; "
                f"got {vocab_size}, {min_frequency}"
            )
        tokenizer = Tokenizer(models.BPE())
        tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[PAD],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer)
        return cls(tokenizer.to_str())

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size())

    def _lookup(self, text: str) -> tuple[int, ...]:
        return tuple(self._tokenizer.encode(text, add_special_tokens=False).ids)

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
        """The text of ``ids`` (normalised: lower-cased), padding dropped (for inspection and tests)."""
        return str(self._tokenizer.decode([i for i in ids if i != PAD_ID])).strip()

    def pieces(self, text: str) -> list[str]:
        """The pieces ``text`` is cut into (byte-level symbols: ``Ġ`` marks a leading space)."""
        return list(self._tokenizer.encode(text, add_special_tokens=False).tokens)

    def save(self, path: Path) -> None:
        """Write ``tokenizer.json`` (the file ``tokenizers.Tokenizer.from_file`` reads)."""
        path.write_text(self._serialized)

    @classmethod
    def load(cls, path: Path) -> BpeTokenizer:
        """Read a tokenizer saved by :meth:`save`."""
        try:
            return cls(path.read_text())
        except OSError as err:
            raise DataError(f"cannot read tokenizer {path}: {err}; rebuild the dataset") from None
