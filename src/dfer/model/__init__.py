"""Shared model parts of every method: backbone loading, adapters, the text encoder taking
embeddings, the temporal transformer, pixel handling, the DDP batch share.

The methods live in :mod:`dfer.methods` (one module each, behind :mod:`dfer.methods.registry`);
checkpoints, which must know the method, in :mod:`dfer.methods.checkpoint`. FineCLIPER's names
are still exported here for code written before the registry. The names are imported on first use: the Snakefile reads
``dfer.model.config`` while it is parsed, on every cluster job too, and must not pay for
importing torch and open_clip there.
"""

from __future__ import annotations

from dfer.core.lazy_exports import lazy_exports

#: public name -> the module that defines it
_EXPORTS = {
    "TINY_CLIP_CFG": "dfer.model.config",
    "BackboneConfig": "dfer.model.config",
    "build_clip": "dfer.model.backbone",
    "build_open_clip": "dfer.model.backbone",
    # compatibility: FineCLIPER's names as this package exported them before the method
    # registry (code and notes written against them keep working); new code imports them from
    # dfer.methods.fineclipper / dfer.methods.checkpoint
    "ModelConfig": "dfer.methods.specs.fineclipper",
    "FineCLIPER": "dfer.methods.fineclipper",
    "FineCLIPEROutput": "dfer.methods.fineclipper",
    "count_parameters": "dfer.methods.fineclipper",
    "load_checkpoint": "dfer.methods.checkpoint",
    "read_checkpoint": "dfer.methods.checkpoint",
    "save_checkpoint": "dfer.methods.checkpoint",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
