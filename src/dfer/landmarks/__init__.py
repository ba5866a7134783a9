"""68-point facial landmarks per decoded frame (FAN on GPU, dlib on CPU).

Public API: :func:`detect_landmarks` (one clip, arrays in and out), :class:`LandmarkResult`,
:class:`LandmarksConfig`, :func:`run_shard` (one shard, files in and out), :func:`read_landmarks`.
"""

from dfer.landmarks.api import LandmarkResult, NoFaceError, detect_landmarks, resolve_backend
from dfer.landmarks.config import LandmarksConfig
from dfer.landmarks.shard import run_shard
from dfer.landmarks.table import SCHEMA, read_landmarks

__all__ = [
    "SCHEMA",
    "LandmarkResult",
    "LandmarksConfig",
    "NoFaceError",
    "detect_landmarks",
    "read_landmarks",
    "resolve_backend",
    "run_shard",
]
