"""The word-level tokenizer: vocabulary, ids, truncation, hash, and its file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.data import DataError, Dataset, WordTokenizer
from harness.data.tokenizer import PAD_ID, UNKNOWN_ID

CAPTIONS = ["two small red triangles", "one red circle", "IMG_4821.jpg", "two red circles, small"]


def test_vocabulary_keeps_words_seen_often_enough_most_frequent_first() -> None:
    tokenizer = WordTokenizer.build(CAPTIONS, min_count=2)
    assert tokenizer.words == ("red", "small", "two")  # red x3; small, two x2 (ties alphabetical)
    assert tokenizer.vocab_size == 5  # plus <pad> and <unk>


def test_encode_pads_with_zero_maps_unknown_words_and_counts_truncation() -> None:
    tokenizer = WordTokenizer.build(CAPTIONS, min_count=2)
    ids, truncated = tokenizer.encode(["Two RED squares", "red red red red red", ""], context_length=4)
    red, two = tokenizer.words.index("red") + 2, tokenizer.words.index("two") + 2
    assert ids.dtype == torch.long
    assert ids.tolist() == [[two, red, UNKNOWN_ID, PAD_ID], [red] * 4, [PAD_ID] * 4]
    assert truncated == 1
    assert tokenizer.decode(ids[0].tolist()) == "two red <unk>"


def test_hash_is_a_function_of_the_vocabulary() -> None:
    assert WordTokenizer.build(CAPTIONS).hash == WordTokenizer.build(list(CAPTIONS)).hash
    assert WordTokenizer.build(CAPTIONS).hash != WordTokenizer.build([*CAPTIONS, "blue blue"]).hash


def test_saved_tokenizer_loads_identically_and_refuses_edits(tmp_path: Path) -> None:
    tokenizer = WordTokenizer.build(CAPTIONS, min_count=1)
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    loaded = WordTokenizer.load(path)
    assert loaded.words == tokenizer.words and loaded.hash == tokenizer.hash
    data = json.loads(path.read_text())
    data["words"][0] = "blue"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="does not match its vocabulary"):
        WordTokenizer.load(path)


def test_the_dataset_tokenizer_covers_its_captions(tiny_dataset: Dataset) -> None:
    from harness.data import load_split

    split = load_split(tiny_dataset, "curated")
    assert (split.tokens != UNKNOWN_ID).all()  # templated captions: every word seen at least twice
    assert (split.tokens[:, 0] != PAD_ID).all()
    assert split.tokens.shape[1] == tiny_dataset.context_length
