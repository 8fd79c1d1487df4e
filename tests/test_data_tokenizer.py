"""The byte-level BPE tokenizer (Hugging Face ``tokenizers``): ids, truncation, hash, its file, and
prompts that stay distinct when class names are not words of the captions."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from harness.data import BpeTokenizer, DataError, Dataset, load_split
from harness.data.tokenizer import PAD_ID

CAPTIONS = ["two small red triangles", "one red circle", "IMG_4821.jpg", "two red circles, small"] * 3


def test_encode_pads_with_zero_counts_truncation_and_decodes_back() -> None:
    tokenizer = BpeTokenizer.train(CAPTIONS)
    ids, truncated = tokenizer.encode(["Two RED circle", "red red red red red", ""], context_length=4)
    assert ids.dtype == torch.long and ids.shape == (3, 4)
    assert truncated == 1  # five words, four ids
    assert ids[2].tolist() == [PAD_ID] * 4
    red = tokenizer.encode(["red"], 1)[0].item()
    assert ids[1].tolist() == [red] * 4  # a word seen often is one id
    assert tokenizer.pieces("two small red triangles") == ["Ġtwo", "Ġsmall", "Ġred", "Ġtriangles"]
    # byte-level: nothing is unknown, and decoding gives the (lower-cased) text back
    wide, _ = tokenizer.encode(["Ångström sandals"], 32)
    assert tokenizer.decode(wide[0].tolist()) == "ångström sandals"


def test_names_never_seen_in_the_captions_still_encode_apart() -> None:
    """The word tokenizer mapped every unseen class name to <unk>: 9 classes became 4 prompts."""
    tokenizer = BpeTokenizer.train(CAPTIONS)
    names = ["sandal", "sneaker", "ankle boot", "pullover", "dress", "coat", "shirt", "bag", "trouser"]
    ids, _ = tokenizer.encode([f"a photo of a {name}" for name in names], 32)
    assert len({tuple(row) for row in ids.tolist()}) == len(names)


def test_training_is_deterministic_and_the_hash_follows_the_vocabulary(tmp_path: Path) -> None:
    first, again = BpeTokenizer.train(CAPTIONS), BpeTokenizer.train(list(CAPTIONS))
    assert first.hash == again.hash
    assert first.hash != BpeTokenizer.train([*CAPTIONS, "blue blue", "blue blue"]).hash
    path = tmp_path / "tokenizer.json"
    first.save(path)
    loaded = BpeTokenizer.load(path)
    assert loaded.hash == first.hash and loaded.vocab_size == first.vocab_size
    assert Tokenizer.from_file(str(path)).encode("one red circle").ids == list(
        loaded.encode(["one red circle"], 3)[0][0]
    )  # the file is the library's own format
    assert pickle.loads(pickle.dumps(loaded)).hash == first.hash
    with pytest.raises(DataError, match="vocab-size > 257"):
        BpeTokenizer.train(CAPTIONS, vocab_size=100)


def test_the_dataset_tokenizer_fits_its_captions_and_prompts(tiny_dataset: Dataset) -> None:
    split = load_split(tiny_dataset, "raw")
    assert (split.tokens[:, 0] != PAD_ID).all()
    assert split.tokens.shape[1] == tiny_dataset.context_length == 16  # the presets' context
    assert tiny_dataset.manifest["splits"]["raw"]["truncated_captions"] == 0
    longest = max(tiny_dataset.tokenizer.token_count(c) for c in split.captions)
    assert longest <= 12
    for caption in load_split(tiny_dataset, "curated").captions:  # templated: a word (or ":", ","), an id
        assert len(tiny_dataset.tokenizer.pieces(caption)) == len(re.findall(r"\w+|[^\w\s]", caption))
    prompts = [t.format(n) for n in tiny_dataset.class_names or [] for t in tiny_dataset.zero_shot_templates]
    ids, truncated = tiny_dataset.tokenizer.encode(prompts, tiny_dataset.context_length)
    assert truncated == 0 and len({tuple(row) for row in ids.tolist()}) == len(prompts)
