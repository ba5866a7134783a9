"""Configuration of the landmark stage (the ``landmarks`` section of config/config.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from dfer.core.strict_config import from_mapping

Backend = Literal["auto", "face_alignment", "dlib"]
FillRule = Literal["nearest", "missing"]
Detector = Literal["hog", "mmod", "crop"]

#: Keys that only decide where or how fast the stage runs, not its landmarks
#: (``dfer.core.execution_keys``): changing them re-runs no landmarks job. FAN runs in eval mode
#: frame by frame, so the frames per forward pass change speed and memory, not the points.
EXECUTION_KEYS: tuple[str, ...] = ("device", "batch_size")


@dataclass(frozen=True)
class LandmarksConfig:
    """Settings of :func:`dfer.landmarks.detect_landmarks`.

    ``detector`` finds the face box the 68-point model is fitted in. Input frames are already
    face crops, so ``crop`` skips detection and assumes the face box is the crop minus the
    decode margin (``crop_margin``, the decode stage's ``margin``): fastest, never misses,
    but trusts the decode crop blindly.
    """

    backend: Backend = "auto"
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    weights: str | None = None        # FAN checkpoint file or folder (None: torch hub cache)
    batch_size: int = 64              # frames per FAN forward pass
    fill: FillRule = "nearest"        # rule for frames on which no face was found
    detector: Detector = "hog"
    upsample: int = 0                 # dlib upsampling (crops hold one big face)
    crop_margin: float = 0.25
    flip_input: bool = True           # FAN test-time flip averaging

    @classmethod
    def from_dict(cls, section: Mapping[str, Any] | None) -> LandmarksConfig:
        """Build from a config section, rejecting unknown keys (a typo must not pass silently)."""
        cfg = from_mapping(cls, section, "landmarks setting")
        if cfg.backend not in ("auto", "face_alignment", "dlib"):
            raise ValueError(f"landmarks.backend must be auto, face_alignment or dlib, got {cfg.backend!r}")
        if cfg.fill not in ("nearest", "missing"):
            raise ValueError(f"landmarks.fill must be nearest or missing, got {cfg.fill!r}")
        if cfg.detector not in ("hog", "mmod", "crop"):
            raise ValueError(f"landmarks.detector must be hog, mmod or crop, got {cfg.detector!r}")
        if cfg.batch_size < 1:
            raise ValueError(f"landmarks.batch_size must be >= 1, got {cfg.batch_size}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
