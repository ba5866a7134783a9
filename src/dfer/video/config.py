"""The ``decode`` section of the config: frame count, crop size, detector ladder, crop mode.

Read by the decode shard job, by ``dfer predict`` (from a checkpoint's stored
preprocessing) and by the provenance of every frames artifact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dfer.core.face_detect import DetectorKind, parse_rung
from dfer.core.strict_config import from_mapping

#: Settings added after the first frames-index schema. Provenance lists them only when set to
#: something other than their default, so artifacts decoded with the default settings keep
#: their bytes: at the defaults they change nothing on a clip where the first detector pass
#: finds a face, and a clip escalation rescued says so in the index (``detector_used``).
_LATER_SETTINGS = ("crop", "track_smooth", "escalate", "max_bad_frames", "max_frame_pixels")
# ``max_bad_frames`` (a frame folder with unreadable images) and ``max_frame_pixels`` (frames
# larger than 4K UHD) only change clips that failed, or took many GB, before they existed.

#: Default of ``max_frame_pixels``: a 4K UHD frame (3840 x 2160). Every common video size is
#: at most this and decodes exactly as before; a larger frame is kept shrunk to it.
DEFAULT_MAX_FRAME_PIXELS = 3840 * 2160
# ``quick_frames``, ``detect_scale`` and ``detect_gray`` (the quick pass and the downscaled
# first try, see ``dfer.video.api``) are not later settings in that sense: at their defaults
# they do change the crops of clips decoded before they existed (the box of one downscaled
# frame where the face stays put, else the median of 8 boxes found on downscaled frames), so
# provenance always records them and artifacts made before them stay distinguishable.

#: What a recorded decode section without the quick-pass settings means: it was recorded
#: before they existed, when detection had no quick pass and ran on full-size RGB frames.
_BEFORE_QUICK_PASS: dict[str, Any] = {"quick_frames": 0, "detect_scale": 1.0,
                                      "detect_gray": False}


@dataclass(frozen=True)
class DecodeConfig:
    """The ``decode`` section of the config (see config/config.yaml for the meaning)."""

    num_frames: int = 16
    size: int = 224
    detector: DetectorKind = "hog"
    upsample: int = 0
    margin: float = 0.25
    on_no_face: Literal["center", "fail"] = "center"
    detect_frames: int = 8
    detect_max_side: int = 640
    folder_fps: float | None = None
    crop: Literal["median", "track"] = "median"
    track_smooth: int = 3
    escalate: tuple[str, ...] = ("hog-up1", "mmod-up0")
    quick_frames: int = 1
    detect_scale: float = 0.75
    detect_gray: bool = True
    max_bad_frames: float | None = None
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"decode.num_frames must be >= 1, got {self.num_frames}")
        if self.size < 1:
            raise ValueError(f"decode.size must be >= 1, got {self.size}")
        if self.detector not in ("hog", "mmod"):
            raise ValueError(f"decode.detector must be 'hog' or 'mmod', got {self.detector!r}")
        if self.on_no_face not in ("center", "fail"):
            raise ValueError(f"decode.on_no_face must be 'center' or 'fail', got {self.on_no_face!r}")
        if self.margin < 0:
            raise ValueError(f"decode.margin must be >= 0, got {self.margin}")
        if self.detect_frames < 0:
            raise ValueError(f"decode.detect_frames must be >= 0, got {self.detect_frames}")
        if self.crop not in ("median", "track"):
            raise ValueError(f"decode.crop must be 'median' or 'track', got {self.crop!r}")
        if self.track_smooth < 1:
            raise ValueError(f"decode.track_smooth must be >= 1, got {self.track_smooth}")
        if self.quick_frames < 0:
            raise ValueError(f"decode.quick_frames must be >= 0 (0: no quick pass), got "
                             f"{self.quick_frames}")
        if not 0 < self.detect_scale <= 1:
            raise ValueError(f"decode.detect_scale must be in (0, 1], got {self.detect_scale}")
        if not isinstance(self.detect_gray, bool):
            raise ValueError(f"decode.detect_gray must be true or false, got {self.detect_gray!r}")
        if self.max_bad_frames is not None and not 0 <= self.max_bad_frames <= 1:
            raise ValueError(f"decode.max_bad_frames must be a share in [0, 1] or null, got "
                             f"{self.max_bad_frames}")
        if self.max_frame_pixels < 0:
            raise ValueError(f"decode.max_frame_pixels must be >= 0 (0: never shrink), got "
                             f"{self.max_frame_pixels}")
        object.__setattr__(self, "escalate", tuple(self.escalate))  # YAML gives a list
        for name in self.escalate:
            try:
                parse_rung(name)
            except ValueError as exc:
                raise ValueError(f"decode.escalate: {exc}") from None

    def ladder(self) -> list[tuple[DetectorKind, int]]:
        """The detector settings tried in order: the configured one, then ``escalate``."""
        rungs: list[tuple[DetectorKind, int]] = [(self.detector, self.upsample)]
        for name in self.escalate:
            rung = parse_rung(name)
            if rung not in rungs:
                rungs.append(rung)
        return rungs

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> DecodeConfig:
        """Build from the config section; unknown keys are an error (typos must not pass)."""
        return from_mapping(cls, params, "decode option")

    @classmethod
    def from_provenance(cls, params: Mapping[str, Any] | None) -> DecodeConfig:
        """The settings a recorded decode section (an artifact's provenance ``params``, a
        checkpoint's stored preprocessing) was made with.

        The quick-pass settings are recorded always since they exist, so a section without
        them predates them and means the detection of that time (``_BEFORE_QUICK_PASS``), not
        today's defaults: ``dfer predict`` on an older checkpoint then crops as its training
        frames were cropped. Nothing recorded: today's defaults.
        """
        if not params:
            return cls()
        return cls.from_params({**_BEFORE_QUICK_PASS, **dict(params)})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def provenance_params(self) -> dict[str, Any]:
        """``as_dict`` without the later settings left at their defaults (see
        ``_LATER_SETTINGS``): the params recorded in every decode artifact."""
        defaults = DecodeConfig()
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.as_dict().items()
                if k not in _LATER_SETTINGS or getattr(defaults, k) != v}
