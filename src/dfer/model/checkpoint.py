"""Compatibility: checkpoints moved to :mod:`dfer.methods.checkpoint` (they record the method)."""

from dfer.methods.checkpoint import (
    CHECKPOINT_SCHEMA_VERSION,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)

__all__ = ["CHECKPOINT_SCHEMA_VERSION", "load_checkpoint", "read_checkpoint", "save_checkpoint"]
