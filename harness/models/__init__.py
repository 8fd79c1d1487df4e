"""The learner and reference models: a FlexiViT image tower and a text transformer (docs/DESIGN.md §2).

``build_model(preset, vocab_size=..., ...)`` makes a :class:`DualEncoder`; :data:`PRESETS` lists the
configurations (``tiny`` for tests, ``small`` for the 2-core leaderboard, ``B/16`` for FLOP
accounting against the JEST paper).
"""

from harness.models.config import PRESETS, ModelConfig, ModelConfigError, preset_config
from harness.models.dual_encoder import DualEncoder, ModelInputError, build_model
from harness.models.flexivit import PatchEmbedding, resize_patch_embedding
from harness.models.transformer import PAD_ID

__all__ = [
    "PAD_ID",
    "PRESETS",
    "DualEncoder",
    "ModelConfig",
    "ModelConfigError",
    "ModelInputError",
    "PatchEmbedding",
    "build_model",
    "preset_config",
    "resize_patch_embedding",
]
