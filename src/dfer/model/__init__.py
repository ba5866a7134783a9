"""FineCLIPER model: frozen open_clip backbone + adapters + PN descriptors.

The names are imported on first use: the Snakefile reads ``dfer.model.config`` (which levels
a run's model reads, to declare its inputs) while it is parsed, on every cluster job too, and
must not pay for importing torch and open_clip there.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_EXPORTS = {
    "load_checkpoint": "dfer.model.checkpoint",
    "read_checkpoint": "dfer.model.checkpoint",
    "save_checkpoint": "dfer.model.checkpoint",
    "TINY_CLIP_CFG": "dfer.model.config",
    "ModelConfig": "dfer.model.config",
    "FineCLIPER": "dfer.model.fineclip",
    "FineCLIPEROutput": "dfer.model.fineclip",
    "count_parameters": "dfer.model.fineclip",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
