"""References as random variables: a seed, an id that names the trained weights, their own scores,
and cached pool embeddings refused when other weights computed them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.data import Dataset, ReferenceCacheError
from harness.data.reference_cache import reference_cache_dir
from harness.records import load_trained_model
from harness.reference import reference_config, train_reference
from harness.reference_store import (
    SCORES,
    MissingReferenceError,
    check_reference_cache,
    find_reference,
    weights_hash,
)
from harness.runconfig import RunConfig
from harness.train import train

TINY = {"preset": "tiny", "budget": "3 steps", "batch_size": 16}


def _train(dataset: Dataset, work: Path, seed: int) -> dict[str, Any]:
    return train_reference(reference_config(dataset, seed=seed, **TINY), work, show_progress=False)


def test_reference_ids_name_the_weights_and_differ_by_seed(
    tiny_copy: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    first, second = _train(tiny_copy, work, 0), _train(tiny_copy, work, 1)
    assert first["hash"] != second["hash"] and first["weights_hash"] != second["weights_hash"]
    for record, seed in ((first, 0), (second, 1)):
        assert record["hash"] == f"{record['config_hash']}-{record['weights_hash']}"
        assert weights_hash(load_trained_model(work, record["config_hash"])) == record["weights_hash"]
        assert record["seed"] == record["config"]["seed"] == seed
        # Its own scores, evaluated once trained, on val and eval.
        assert set(record["scores"]) == {"val", "eval"}
        assert all(set(scores) == set(SCORES) for scores in record["scores"].values())
        meta = json.loads((reference_cache_dir(tiny_copy, record["hash"]) / "meta.json").read_text())
        assert meta["weights_hash"] == record["weights_hash"]
    assert _train(tiny_copy, work, 0) == first  # the same config reuses its training run and id

    with pytest.raises(MissingReferenceError, match="2 references fit") as error:
        find_reference(work, tiny_copy, "tiny")
    assert first["hash"] in str(error.value) and second["hash"] in str(error.value)
    assert "--reference-seed" in str(error.value)
    assert find_reference(work, tiny_copy, "tiny", seed=1) == second["hash"]
    with pytest.raises(MissingReferenceError, match="--seed 5"):
        find_reference(work, tiny_copy, "tiny", seed=5)

    command = ["reference", "train", "--data", str(tiny_copy.root), "--work", str(work), "-q"]
    assert main([*command, "--preset", "tiny", "-b", "16", "--budget-steps", "3", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "seed 2" in out and "  val: zero_shot" in out and "  eval: zero_shot" in out


def test_a_cache_computed_by_other_weights_is_refused(tiny_copy: Dataset, tmp_path: Path) -> None:
    work = tmp_path / "work"
    record = _train(tiny_copy, work, 0)
    meta_path = reference_cache_dir(tiny_copy, record["hash"]) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["weights_hash"] = "0123456789ab"  # as if another training of this config had written it
    meta_path.write_text(json.dumps(meta))
    config = RunConfig(
        dataset=str(tiny_copy.root),
        dataset_id=tiny_copy.content_id,
        preset="tiny",
        strategy="easy-reference",
        params={},
        batch_size=16,
        filter_ratio=0.8,
        budget="2 steps",
        reference=record["hash"],
    )
    with pytest.raises(ReferenceCacheError) as error:
        train(config, work, show_progress=False)
    message = str(error.value)
    assert "0123456789ab" in message and record["weights_hash"] in message
    assert "jestbench reference train" in message and "--seed 0" in message
    # Training the reference again writes the cache of its own weights, which is then accepted.
    assert _train(tiny_copy, work, 0)["hash"] == record["hash"]
    check_reference_cache(tiny_copy, record)
