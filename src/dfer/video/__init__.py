"""Video input: uniform frame sampling, PyAV / frame-folder reading, per-clip face crops.

``decode_clip`` is the per-clip API (used by the decode shard runner and by ``dfer predict``),
``decode_array`` the same on frames already in memory; ``decode_shard`` writes one shard's
frames artifacts. The small test videos are written by ``tests/support/videos.py``.
"""

from dfer.core.frame_sampling import sample_indices
from dfer.video.api import DecodedClip, decode_array, decode_clip
from dfer.video.config import DecodeConfig
from dfer.video.errors import DecodeError
from dfer.video.reader import SampledFrames, list_frame_files, read_frame_folder, read_video
from dfer.video.shard import INDEX_SCHEMA, ShardResult, decode_shard

__all__ = [
    "INDEX_SCHEMA",
    "DecodeConfig",
    "DecodeError",
    "DecodedClip",
    "SampledFrames",
    "ShardResult",
    "decode_array",
    "decode_clip",
    "decode_shard",
    "list_frame_files",
    "read_frame_folder",
    "read_video",
    "sample_indices",
]
