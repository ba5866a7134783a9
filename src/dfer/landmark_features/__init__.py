"""Per-frame landmark feature maps for methods that read one (S2D's landmark prompters).

Two backends, two kinds of map (:mod:`dfer.landmark_features.kinds`): ``mobilefacenet`` writes
MobileFaceNet ``conv_4`` features ``[T, 128, 14, 14]`` of 112 px frames (S2D's input; weights
from a local file), ``fan_heatmaps`` FAN's 68 heat maps averaged over the frame's 14 x 14 grid
(``[T, 68, 14, 14]``; FAN's weights only). Public API: :func:`extract_features` (one clip,
arrays in and out), :class:`LandmarkFeaturesConfig`, :func:`run_shard` (one shard, files in and
out), :func:`open_landmark_features` / :func:`read_landmark_features` (which refuse a shard of
the wrong kind).
"""

from dfer.core.lazy_exports import lazy_exports

# imported on first use: the Snakefile and the S2D registration read the config and the kinds
# while the workflow is parsed, without torch (dfer.core.lazy_exports)
_EXPORTS = {
    "extract_features": "dfer.landmark_features.api",
    "LandmarkFeaturesConfig": "dfer.landmark_features.config",
    "FEATURE_KINDS": "dfer.landmark_features.kinds",
    "GRID": "dfer.landmark_features.kinds",
    "FeatureKind": "dfer.landmark_features.kinds",
    "feature_kind": "dfer.landmark_features.kinds",
    "LandmarkFeatureShard": "dfer.landmark_features.reader",
    "WrongFeatureKindError": "dfer.landmark_features.reader",
    "open_landmark_features": "dfer.landmark_features.reader",
    "read_landmark_features": "dfer.landmark_features.reader",
    "SCHEMA": "dfer.landmark_features.shard",
    "run_shard": "dfer.landmark_features.shard",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
