"""Face parsing label maps per decoded frame (FaRL via facer on GPU, landmark polygons offline).

Public API: :func:`parse_clip` (one clip, arrays), :class:`ParsingConfig`, :func:`run_shard`,
and the canonical label set in :mod:`dfer.parsing.labels`.

The names are imported on first use: the Snakefile reads ``dfer.parsing.config`` while it is
parsed (every cluster job parses it again) and must not pay for cv2 and numpy there.
"""

from __future__ import annotations

from dfer.core.lazy_exports import lazy_exports

#: public name -> the module that defines it
_EXPORTS = {
    "parse_clip": "dfer.parsing.api",
    "resolve_backend": "dfer.parsing.api",
    "ParsingConfig": "dfer.parsing.config",
    "LABELS": "dfer.parsing.labels",
    "LABEL_INDEX": "dfer.parsing.labels",
    "seg_to_canonical": "dfer.parsing.labels",
    "SCHEMA": "dfer.parsing.shard",
    "run_shard": "dfer.parsing.shard",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
