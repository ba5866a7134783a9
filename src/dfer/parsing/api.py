"""Per-clip face parsing on arrays (no files): the shard runner and ``dfer predict`` use it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dfer.parsing import facer_backend, polygon
from dfer.parsing.config import ParsingConfig
from dfer.weights import BackendChoice, announce


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def choose_backend(cfg: ParsingConfig) -> BackendChoice:
    """The parser ``cfg`` runs with, and why.

    A pinned ``facer`` never falls back to the polygon parser: its checkpoint is looked up
    here, so a missing one raises :class:`dfer.weights.MissingWeightsError` (naming
    ``parsing.weights`` and the file) before any clip, even in a job with no clips. ``auto``
    picks facer when CUDA is visible and the model's weights are found, the landmark polygons
    otherwise, and logs its choice.
    """
    if cfg.backend == "facer":
        path = facer_backend.resolve_weights(cfg.model, cfg.weights)
        return BackendChoice("parsing", cfg.backend, cfg.backend,
                             f"pinned by parsing.backend; {cfg.model} weights {path}")
    if cfg.backend != "auto":
        return BackendChoice("parsing", cfg.backend, cfg.backend, "pinned by parsing.backend")
    import torch

    if not torch.cuda.is_available():
        choice = BackendChoice("parsing", "auto", "landmarks",
                               "no CUDA device is visible, so not facer", substitute=True)
    else:
        try:
            path = facer_backend.resolve_weights(cfg.model, cfg.weights)
        except FileNotFoundError as exc:
            choice = BackendChoice("parsing", "auto", "landmarks",
                                   f"CUDA is visible but not the {cfg.model} weights: {exc}",
                                   substitute=True)
        else:
            choice = BackendChoice("parsing", "auto", "facer",
                                   f"CUDA is visible and the {cfg.model} weights are at {path}")
    return announce(choice)


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


def load_models(cfg: ParsingConfig) -> str:
    """Load the parser ``cfg`` needs now and return the resolved backend name.

    Called by the shard runner before its clip loop: missing facer weights stop the job with
    one clear error instead of becoming a failure row per clip.
    """
    backend = resolve_backend(cfg)
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
