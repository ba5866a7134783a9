"""Face parsing label maps per decoded frame (FaRL via facer on GPU, landmark polygons offline).

Public API: :func:`parse_clip` (one clip, arrays), :class:`ParsingConfig`, :func:`run_shard`,
and the canonical label set in :mod:`dfer.parsing.labels`.
"""

from dfer.parsing.api import parse_clip, resolve_backend
from dfer.parsing.config import ParsingConfig
from dfer.parsing.labels import LABEL_INDEX, LABELS, seg_to_canonical
from dfer.parsing.shard import SCHEMA, run_shard

__all__ = [
    "LABELS",
    "LABEL_INDEX",
    "SCHEMA",
    "ParsingConfig",
    "parse_clip",
    "resolve_backend",
    "run_shard",
    "seg_to_canonical",
]
