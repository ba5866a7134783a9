"""Per-clip face parsing on arrays (no files): the shard runner and ``dfer predict`` use it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dfer.core import weights
from dfer.core.devices import resolve_device
from dfer.core.weights import BackendChoice
from dfer.parsing import facer_backend, polygon
from dfer.parsing.config import ParsingConfig


def choose_backend(cfg: ParsingConfig) -> BackendChoice:
    """The parser ``cfg`` runs with, and why (:func:`dfer.core.weights.choose_backend`).

    A pinned ``facer`` never falls back to the polygon parser: a missing checkpoint raises
    :class:`dfer.core.weights.MissingWeightsError` (naming ``parsing.weights`` and the file) before
    any clip, even in a job with no clips. ``auto`` picks facer when CUDA is visible and the
    model's weights are found, the landmark polygons otherwise, and logs its choice.
    """
    return weights.choose_backend(
        "parsing", cfg.backend, gpu="facer", cpu="landmarks", weights_name=cfg.model,
        find_weights=lambda: facer_backend.resolve_weights(cfg.model, cfg.weights))


def resolve_backend(cfg: ParsingConfig) -> str:
    """The backend name of :func:`choose_backend` (what the provenance's ``backend`` holds)."""
    return choose_backend(cfg).backend


def model_name(cfg: ParsingConfig) -> str:
    """Provenance name of the parser the config resolves to."""
    return f"facer:{cfg.model}" if resolve_backend(cfg) == "facer" else "polygon68"


def _facer_parser(cfg: ParsingConfig):  # noqa: ANN202 - facer FaceParser
    device = resolve_device(cfg.device)
    path = facer_backend.resolve_weights(cfg.model, cfg.weights)
    return facer_backend.load_parser(cfg.model, str(path), device), device


def load_models(cfg: ParsingConfig, choice: BackendChoice | None = None) -> str:
    """Load the parser ``cfg`` needs now (for ``choice``, default :func:`choose_backend`) and
    return the backend name.

    Called by the shard job before its clip loop: missing facer weights stop the job with
    one clear error instead of becoming a failure row per clip.
    """
    backend = (choice or choose_backend(cfg)).backend
    if backend == "facer":
        _facer_parser(cfg)
    return backend


def parse_clip(
    frames: np.ndarray, points: np.ndarray, cfg: ParsingConfig | Mapping[str, Any] | None = None
) -> np.ndarray:
    """Canonical label maps uint8 [T, S, S] of one clip.

    ``frames`` uint8 [T, S, S, 3] (needed by facer; only the size is used by the polygon
    parser), ``points`` float32 [T, 68, 2] from the landmark stage (NaN rows: no face, the map
    is all background).
    """
    if not isinstance(cfg, ParsingConfig):
        cfg = ParsingConfig.from_dict(cfg)
    frames = np.asarray(frames)
    points = np.asarray(points, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [T, S, S, 3], got {frames.shape}")
    if points.shape != (len(frames), 68, 2):
        raise ValueError(
            f"expected points [{len(frames)}, 68, 2] for {len(frames)} frames, got {points.shape}"
        )
    if resolve_backend(cfg) == "facer":
        parser, device = _facer_parser(cfg)
        return facer_backend.parse_frames(parser, frames, points, device, cfg.batch_size)
    if frames.shape[1] != frames.shape[2]:
        raise ValueError(f"the polygon parser expects square frames, got {frames.shape[1:3]}")
    return polygon.parse_clip(points, int(frames.shape[1]))
