"""68-point facial landmarks per decoded frame (FAN on GPU, dlib on CPU).

Public API: :func:`detect_landmarks` (one clip, arrays in and out), :class:`LandmarkResult`,
:class:`LandmarksConfig`, :func:`run_shard` (one shard, files in and out), :func:`read_landmarks`.

The names are imported on first use: the Snakefile reads ``dfer.landmarks.config`` while it
is parsed (every cluster job parses it again) and must not pay for dlib and numpy there.
"""

from __future__ import annotations

from dfer.core.lazy_exports import lazy_exports

#: public name -> the module that defines it
_EXPORTS = {
    "LandmarkResult": "dfer.landmarks.api",
    "NoFaceError": "dfer.landmarks.api",
    "detect_landmarks": "dfer.landmarks.api",
    "resolve_backend": "dfer.landmarks.api",
    "LandmarksConfig": "dfer.landmarks.config",
    "run_shard": "dfer.landmarks.shard",
    "SCHEMA": "dfer.landmarks.table",
    "read_landmarks": "dfer.landmarks.table",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
