"""Per-clip face parsing on arrays (no files): the shard runner and ``dfer predict`` use it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dfer.parsing import facer_backend, polygon
from dfer.parsing.config import ParsingConfig


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_backend(cfg: ParsingConfig) -> str:
    """``auto`` picks facer when CUDA and the model's weights exist, the polygon parser otherwise."""
    if cfg.backend != "auto":
        return cfg.backend
    import torch

    if torch.cuda.is_available() and facer_backend.weights_available(cfg.model, cfg.weights):
        return "facer"
    return "landmarks"


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
