"""Configuration of the landmark-feature stage (the ``landmark_features`` section of config/config.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from dfer.core.strict_config import from_mapping
from dfer.landmark_features.kinds import KIND_OF_BACKEND, FeatureKind

Backend = Literal["mobilefacenet", "fan_heatmaps"]
Normalization = Literal["imagenet", "none"]
StorageDtype = Literal["float16", "float32"]

#: keys that only decide where or how fast the stage runs: not in the artifact's provenance
#: ``params`` (changing them changes no stored value beyond float rounding)
SPEED_ONLY = ("device", "batch_size")


@dataclass(frozen=True)
class LandmarkFeaturesConfig:
    """Settings of :func:`dfer.landmark_features.extract_features`.

    There is no ``auto`` backend: the two write different kinds of map (128 or 68 channels)
    and a method is configured for one, so the choice is never made behind the user's back.
    """

    backend: Backend = "mobilefacenet"
    #: mobilefacenet: its checkpoint file (required unless ``random_init``); fan_heatmaps: the
    #: FAN checkpoint file or a folder holding it (null: the torch hub cache, as the landmark stage)
    weights: str | None = None
    #: mobilefacenet only: random weights drawn from ``init_seed`` instead of a file (tests,
    #: the CPU demo); recorded in provenance, never a silent fallback
    random_init: bool = False
    init_seed: int = 0
    #: mobilefacenet input: ``imagenet`` mean/std (what S2D feeds it: its normalised clip) or
    #: ``none`` (pixels in [0, 1])
    normalization: Normalization = "imagenet"
    crop_margin: float = 0.25  #: fan_heatmaps: the decode margin, which gives FAN's face box
    flip_input: bool = False  #: fan_heatmaps: mean of the crop's and the mirrored crop's maps
    dtype: StorageDtype = "float16"  #: stored values (computed in float32)
    device: str = "auto"  #: auto | cpu | cuda | cuda:N
    batch_size: int = 64  #: frames per forward pass

    @classmethod
    def from_dict(cls, section: Mapping[str, Any] | None) -> LandmarkFeaturesConfig:
        """Build from a config section, rejecting unknown keys and impossible combinations."""
        cfg = from_mapping(cls, section, "landmark_features setting")
        if cfg.backend not in KIND_OF_BACKEND:
            raise ValueError(f"landmark_features.backend must be one of {sorted(KIND_OF_BACKEND)}, "
                             f"got {cfg.backend!r}")
        if cfg.normalization not in ("imagenet", "none"):
            raise ValueError(f"landmark_features.normalization must be imagenet or none, got {cfg.normalization!r}")
        if cfg.dtype not in ("float16", "float32"):
            raise ValueError(f"landmark_features.dtype must be float16 or float32, got {cfg.dtype!r}")
        if cfg.batch_size < 1:
            raise ValueError(f"landmark_features.batch_size must be >= 1, got {cfg.batch_size}")
        if cfg.crop_margin < 0:
            raise ValueError(f"landmark_features.crop_margin must be >= 0, got {cfg.crop_margin}")
        if cfg.random_init and cfg.backend != "mobilefacenet":
            raise ValueError("landmark_features.random_init is for backend mobilefacenet only "
                             "(FAN's random weights come from a checkpoint file, as in the tests)")
        if cfg.random_init and cfg.weights:
            raise ValueError("landmark_features: set weights or random_init, not both")
        return cfg

    @property
    def kind(self) -> FeatureKind:
        """The kind of map this config writes."""
        return KIND_OF_BACKEND[self.backend]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def output_params(self) -> dict[str, Any]:
        """The keys that define the stored values (provenance ``params``)."""
        return {k: v for k, v in asdict(self).items() if k not in SPEED_ONLY}
