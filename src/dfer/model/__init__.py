"""FineCLIPER model: frozen open_clip backbone + adapters + PN descriptors."""

from dfer.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from dfer.model.config import TINY_CLIP_CFG, ModelConfig
from dfer.model.fineclip import FineCLIPER, FineCLIPEROutput, count_parameters

__all__ = [
    "TINY_CLIP_CFG",
    "FineCLIPER",
    "FineCLIPEROutput",
    "ModelConfig",
    "count_parameters",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]
