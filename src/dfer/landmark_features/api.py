"""Per-clip landmark feature maps on arrays (no files): the shard job uses it, and so can a
trainer that computes S2D's features on the fly (:func:`mobilefacenet_features` on its own
augmented frames, the faithful route)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dfer.core.devices import resolve_device
from dfer.landmark_features import heatmap_pool, mobilefacenet
from dfer.landmark_features.config import LandmarkFeaturesConfig
from dfer.landmark_features.kinds import GRID
from dfer.landmarks import fan_backend
from dfer.landmarks.boxes import crop_face_box

WEIGHTS_KEY = "landmark_features.weights"


def fan_weights_path(cfg: LandmarkFeaturesConfig) -> str:
    """The FAN checkpoint ``cfg`` uses (``weights``, or face-alignment's hub cache), or a
    ``MissingWeightsError`` naming ``landmark_features.weights``."""
    return str(fan_backend.resolve_weights(
        cfg.weights, config_key=WEIGHTS_KEY,
        offline_backend="landmark_features.backend: mobilefacenet with a local checkpoint"))


def mobilefacenet_weights_path(cfg: LandmarkFeaturesConfig) -> str:
    """The MobileFaceNet checkpoint file of ``cfg``; a clear error when none is configured."""
    if not cfg.weights:
        raise FileNotFoundError(
            f"landmark_features.backend: mobilefacenet needs its checkpoint: set {WEIGHTS_KEY} to a "
            "local copy of S2D's landmark/mobilefacenet_model_best.pth.tar (nothing is downloaded "
            "here), or use landmark_features.backend: fan_heatmaps (68 channels), or "
            "random_init: true for tests and the CPU demo"
        )
    if not Path(cfg.weights).expanduser().is_file():
        raise FileNotFoundError(f"MobileFaceNet weights not found at {cfg.weights} ({WEIGHTS_KEY}); "
                                "S2D's file is landmark/mobilefacenet_model_best.pth.tar of MSA-LMC/S2D")
    return str(Path(cfg.weights).expanduser())


@functools.lru_cache(maxsize=4)
def file_digest(path: str) -> str:
    """``sha256:<hex>`` of a weights file, for provenance (which weights, not only where)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


@functools.lru_cache(maxsize=4)
def _random_trunk(seed: int, device: str) -> mobilefacenet.MobileFaceNetConv4:
    net = mobilefacenet.random_trunk(seed)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(device)


def load_model(cfg: LandmarkFeaturesConfig):  # noqa: ANN201 - torch module
    """The network ``cfg`` runs, loaded once per process. The shard job calls this before its
    clip loop, so missing or unfit weights stop the job with one error naming the file and
    ``landmark_features.weights`` instead of failing every clip."""
    device = resolve_device(cfg.device)
    if cfg.backend == "fan_heatmaps":
        return fan_backend.load_fan(fan_weights_path(cfg), device)
    if cfg.random_init:
        return _random_trunk(cfg.init_seed, device)
    return mobilefacenet.load_mobilefacenet(mobilefacenet_weights_path(cfg), device)


def describe_model(cfg: LandmarkFeaturesConfig) -> dict[str, Any]:
    """What the maps are and which weights made them: the provenance fields of an artifact."""
    kind = cfg.kind
    if cfg.backend == "fan_heatmaps":
        path = fan_weights_path(cfg)
        model, weights = f"face_alignment:{fan_backend.NETWORK}", {"file": path, "digest": file_digest(path)}
    elif cfg.random_init:
        model, weights = "mobilefacenet_conv4", {"random_init_seed": cfg.init_seed}
    else:
        path = mobilefacenet_weights_path(cfg)
        model, weights = "mobilefacenet_conv4", {"file": path, "digest": file_digest(path)}
    return {"feature_kind": kind.name, "channels": kind.channels, "grid": GRID,
            "input_size": kind.input_size, "layout": "[T, C, H, W]", "model": model, "weights": weights}


def mobilefacenet_features(net, frames: np.ndarray, device: str, batch_size: int = 64,  # noqa: ANN001
                           normalization: str = "imagenet") -> np.ndarray:
    """``[T, 128, 14, 14]`` float32: MobileFaceNet ``conv_4`` of each frame (uint8 ``[T, H, W, 3]``)
    resized to 112 px, ``batch_size`` frames per forward pass."""
    import torch

    parts = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(frames[start:start + batch_size])).to(device)
            parts.append(net(mobilefacenet.network_input(chunk, normalization)).float().cpu().numpy())
    return np.concatenate(parts)


def fan_heatmap_features(net, frames: np.ndarray, device: str, batch_size: int = 64,  # noqa: ANN001
                         crop_margin: float = 0.25, flip_input: bool = False) -> np.ndarray:
    """``[T, 68, 14, 14]`` float32: FAN's heat maps of each frame's face crop (the face box the
    decode crop implies, ``crop_margin``), averaged over the cells of the frame's 14 x 14 grid
    (:func:`heatmap_pool.pool_to_frame_grid`)."""
    size = int(frames.shape[2])
    box = crop_face_box(size, crop_margin)
    heat, centers, scales = fan_backend.predict_heatmaps(net, frames, [box] * len(frames), device,
                                                         batch_size, flip_input)
    return heatmap_pool.pool_to_frame_grid(heat, centers, scales, size, GRID)


def extract_features(
    frames: np.ndarray, cfg: LandmarkFeaturesConfig | Mapping[str, Any] | None = None
) -> np.ndarray:
    """Landmark feature maps ``[T, C, 14, 14]`` float32 of one clip, ``frames`` uint8
    ``[T, S, S, 3]`` RGB face crops; ``C`` and what they are: ``cfg.kind``."""
    if not isinstance(cfg, LandmarkFeaturesConfig):
        cfg = LandmarkFeaturesConfig.from_dict(cfg)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] != frames.shape[2]:
        raise ValueError(f"expected uint8 square frames [T, S, S, 3], got {frames.dtype} {frames.shape}")
    if not len(frames):
        raise ValueError("a clip without frames has no landmark features")
    net, device = load_model(cfg), resolve_device(cfg.device)
    if cfg.backend == "fan_heatmaps":
        maps = fan_heatmap_features(net, frames, device, cfg.batch_size, cfg.crop_margin, cfg.flip_input)
    else:
        maps = mobilefacenet_features(net, frames, device, cfg.batch_size, cfg.normalization)
    want = (len(frames), cfg.kind.channels, GRID, GRID)
    if maps.shape != want:  # a checkpoint of another architecture that still loaded
        raise ValueError(f"the {cfg.backend} network gave maps {maps.shape}, expected {want}")
    return maps
