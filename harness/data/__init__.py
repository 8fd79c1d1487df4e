"""Data: WebDataset shards for the curated, raw, val and eval splits, built-in datasets (``shapes``,
``fashion-mnist``) and the user's own shards, the web-like noise model, the tokenizer, super-batch
streaming, and cached reference embeddings. docs/DATA.md describes the formats and choices.
"""

from harness.data.arguments import add_data_arguments, dataset_from_args, open_data
from harness.data.build import BuildConfig, build_dataset, builtin_names
from harness.data.byo import ByoConfig, build_byo
from harness.data.dataset import SPLITS, Dataset, LeftOut, ShardRecord, open_dataset
from harness.data.errors import BadSampleError, DataError, ReferenceCacheError, StaleDatasetError
from harness.data.noise import NOISE_KINDS, RECORDED_NOISE_KINDS, NoiseConfig
from harness.data.pool import OnBadSample
from harness.data.reference_cache import ReferenceCache, write_reference_cache
from harness.data.stream import SplitData, SuperBatch, SuperBatchStream, load_split
from harness.data.tokenizer import BpeTokenizer

__all__ = [
    "NOISE_KINDS",
    "RECORDED_NOISE_KINDS",
    "SPLITS",
    "BadSampleError",
    "BpeTokenizer",
    "BuildConfig",
    "ByoConfig",
    "DataError",
    "Dataset",
    "LeftOut",
    "NoiseConfig",
    "OnBadSample",
    "ReferenceCache",
    "ReferenceCacheError",
    "ShardRecord",
    "SplitData",
    "StaleDatasetError",
    "SuperBatch",
    "SuperBatchStream",
    "add_data_arguments",
    "build_byo",
    "build_dataset",
    "builtin_names",
    "dataset_from_args",
    "load_split",
    "open_data",
    "open_dataset",
    "write_reference_cache",
]
