"""Per-frame landmark feature maps for methods that read one (S2D's landmark prompters).

Two backends, two kinds of map (:mod:`dfer.landmark_features.kinds`): ``mobilefacenet`` writes
MobileFaceNet ``conv_4`` features ``[T, 128, 14, 14]`` of 112 px frames (S2D's input; weights
from a local file), ``fan_heatmaps`` FAN's 68 heat maps averaged over the frame's 14 x 14 grid
(``[T, 68, 14, 14]``; FAN's weights only). Public API: :func:`extract_features` (one clip,
arrays in and out), :class:`LandmarkFeaturesConfig`, :func:`run_shard` (one shard, files in and
out), :func:`open_landmark_features` / :func:`read_landmark_features` (which refuse a shard of
the wrong kind).
"""

from dfer.landmark_features.api import extract_features
from dfer.landmark_features.config import LandmarkFeaturesConfig
from dfer.landmark_features.kinds import FEATURE_KINDS, GRID, FeatureKind, feature_kind
from dfer.landmark_features.reader import (
    LandmarkFeatureShard,
    WrongFeatureKindError,
    open_landmark_features,
    read_landmark_features,
)
from dfer.landmark_features.shard import SCHEMA, run_shard

__all__ = [
    "FEATURE_KINDS",
    "GRID",
    "SCHEMA",
    "FeatureKind",
    "LandmarkFeatureShard",
    "LandmarkFeaturesConfig",
    "WrongFeatureKindError",
    "extract_features",
    "feature_kind",
    "open_landmark_features",
    "read_landmark_features",
    "run_shard",
]
