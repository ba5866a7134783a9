"""Per-clip landmark detection on arrays (no files): the shard runner and ``dfer predict`` use it."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dfer.core import weights
from dfer.core.devices import resolve_device
from dfer.core.weights import BackendChoice
from dfer.landmarks import dlib_backend, fan_backend
from dfer.landmarks.boxes import find_boxes
from dfer.landmarks.config import LandmarksConfig
from dfer.landmarks.fill import fill_sources


class NoFaceError(ValueError):
    """The detector found no face on any frame of a clip (nothing to fill from)."""


@dataclass
class LandmarkResult:
    """Landmarks of one clip of T frames.

    ``points`` [T, 68, 2] float32 in crop pixels (NaN where no face and no fill),
    ``bbox`` [T, 4] float32 x0,y0,x1,y1 of the box the points were fitted in (copied with the
    points on filled frames), ``score`` [T] float32 detector score (NaN for ``crop`` boxes and
    missing frames), ``has_face`` [T] bool (a face was found on this very frame),
    ``filled_from`` [T] int16 (index of the frame the points were copied from, -1 if none).
    """

    points: np.ndarray
    bbox: np.ndarray
    score: np.ndarray
    has_face: np.ndarray
    filled_from: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(len(self.points))

    @property
    def num_detected(self) -> int:
        return int(self.has_face.sum())

    @property
    def num_filled(self) -> int:
        return int((self.filled_from >= 0).sum())


def choose_backend(cfg: LandmarksConfig) -> BackendChoice:
    """The backend ``cfg`` runs with, and why (:func:`dfer.core.weights.choose_backend`).

    A pinned ``face_alignment`` never falls back: a missing FAN checkpoint raises
    :class:`dfer.core.weights.MissingWeightsError` (naming ``landmarks.weights`` and the file)
    before any clip, even in a job with no clips. ``auto`` picks face_alignment when CUDA is
    visible and the FAN weights are found, dlib otherwise, and logs its choice.
    """
    return weights.choose_backend("landmarks", cfg.backend, gpu="face_alignment", cpu="dlib",
                                  weights_name="FAN",
                                  find_weights=lambda: fan_backend.resolve_weights(cfg.weights))


def resolve_backend(cfg: LandmarksConfig) -> str:
    """The backend name of :func:`choose_backend` (what the provenance's ``backend`` holds)."""
    return choose_backend(cfg).backend


def model_name(cfg: LandmarksConfig) -> str:
    """Provenance name of the landmark model the config resolves to."""
    if resolve_backend(cfg) == "face_alignment":
        return f"face_alignment:{fan_backend.NETWORK}"
    return dlib_backend.MODEL_NAME


@functools.lru_cache(maxsize=8)
def _fan_for(weights: str | None, device: str):  # noqa: ANN202 - torch module
    path = fan_backend.resolve_weights(weights)
    return fan_backend.load_fan(str(path), device)


def load_models(cfg: LandmarksConfig, choice: BackendChoice | None = None) -> str:
    """Load the models ``cfg`` needs now (for ``choice``, default :func:`choose_backend`) and
    return the backend name.

    The shard job calls this before its clip loop so that missing or broken weights stop the
    job with one clear error instead of turning every clip into a failure row.
    """
    backend = (choice or choose_backend(cfg)).backend
    if cfg.detector == "mmod":
        from dfer.core.face_detect import MMOD_DETECTOR, model_file

        model_file(MMOD_DETECTOR)
    if backend == "face_alignment":
        _fan_for(cfg.weights, resolve_device(cfg.device))
    else:
        dlib_backend.load_predictor()
    return backend


def detect_landmarks(
    frames: np.ndarray, cfg: LandmarksConfig | Mapping[str, Any] | None = None
) -> LandmarkResult:
    """68-point landmarks of every frame of one clip, ``frames`` uint8 [T, H, W, 3] RGB.

    Frames without a detected face are handled by ``cfg.fill``; raises :class:`NoFaceError`
    when no frame has a face. Models are loaded once per process and reused across calls.
    """
    if not isinstance(cfg, LandmarksConfig):
        cfg = LandmarksConfig.from_dict(cfg)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    boxes = find_boxes(frames, cfg.detector, cfg.upsample, cfg.crop_margin)
    has_face = np.array([b is not None for b in boxes], dtype=bool)
    if not has_face.any():
        raise NoFaceError(
            f"no face found on any of {len(frames)} frames (landmarks.detector "
            f"{cfg.detector!r}, landmarks.upsample {cfg.upsample}). These frames are the decode "
            "crops: when decode found no face either (face_found_frac 0, a centre crop), raise "
            "decode.upsample or set decode.detector: mmod; when the crop does hold a face, "
            "landmarks.detector: crop fits the points in it without detecting"
        )
    if resolve_backend(cfg) == "face_alignment":
        device = resolve_device(cfg.device)
        points = fan_backend.predict_points(
            _fan_for(cfg.weights, device), frames, boxes, device, cfg.batch_size, cfg.flip_input
        )
    else:
        points = dlib_backend.predict_points(frames, boxes)
    nan4 = np.full(4, np.nan, dtype=np.float32)
    bbox = np.stack([b.as_array() if b is not None else nan4 for b in boxes])
    score = np.array([b.score if b is not None else np.nan for b in boxes], dtype=np.float32)
    filled_from = fill_sources(has_face, cfg.fill)
    for t in np.flatnonzero(filled_from >= 0):
        src = filled_from[t]
        points[t], bbox[t] = points[src], bbox[src]
    return LandmarkResult(points, bbox, score, has_face, filled_from)
