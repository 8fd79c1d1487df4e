"""``jestbench data validate``: check every shard of a dataset against its manifest.

Per shard: that it exists, that its sha256 is the manifest's, and a fresh index of its bytes with
every sample decoded (the cached index is replaced, so a cache that went stale cannot hide damage).
Per split: sample counts, keys unique, held-out keys present — the checks the loader makes — and the
cached reference embeddings, if any, are readable, consistent and keyed by samples of the split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.data.dataset import Dataset
from harness.data.errors import DataError
from harness.data.pool import open_pool
from harness.data.reference_cache import ReferenceCache
from harness.data.shards import save_index, scan_shard, sha256_file


@dataclass
class SplitReport:
    """What validation found in one split."""

    split: str
    shards: int
    samples: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def validate_dataset(dataset: Dataset) -> list[SplitReport]:
    """Check ``dataset`` (module docstring); a report per split, problems listed in each."""
    from tqdm import tqdm

    reports = []
    total = sum(len(dataset.shards(split)) for split in dataset.splits)
    with tqdm(total=total, desc="validate", unit="shard", disable=None) as bar:
        for split in dataset.splits:
            records = dataset.shards(split)
            report = SplitReport(split, len(records), 0)
            for record in records:
                bar.update()
                if not record.path.is_file():
                    continue  # the pool reports it with its sample count
                sha256 = sha256_file(record.path)
                if sha256 != record.sha256:
                    report.problems.append(
                        f"shard {record.path}: sha256 {sha256[:16]}... differs from the manifest's "
                        f"{record.sha256[:16]}...: its bytes changed after the dataset was built"
                    )
                save_index(dataset.index_dir / f"{sha256}.json", scan_shard(record.path, sha256))
            pool = open_pool(dataset, split, "skip")
            report.samples = len(pool)
            report.problems += pool.problems
            if pool.left_out.anything:
                report.notes.append(
                    f"left out: {pool.left_out.describe()}"
                    + ("" if pool.problems else " (as when the dataset was made: see manifest.json)")
                )
            report.problems += _check_references(dataset, split, set(pool.keys))
            reports.append(report)
    return reports


def _check_references(dataset: Dataset, split: str, keys: set[str]) -> list[str]:
    problems = []
    for directory in sorted(dataset.reference_dir.glob(f"*/{split}")):
        try:
            cache = ReferenceCache.load(dataset, directory.parent.name, split)
        except DataError as err:
            problems.append(str(err))
            continue
        unknown = set(cache.keys) - keys
        missing = keys - set(cache.keys)
        if unknown or missing:
            problems.append(
                f"reference cache {directory}: {len(unknown)} key(s) that are not samples of the split, "
                f"{len(missing)} sample(s) without embeddings"
            )
    return problems
