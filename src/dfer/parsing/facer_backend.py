"""FaRL face parsing through pyfacer (``farl/lapa/448`` or ``farl/celebm/448``).

The parser is aligned with five points per face; we derive them from our 68 landmarks
(:func:`dfer.landmarks.points.five_points`) instead of running facer's RetinaFace detector,
which would need another set of weights and could disagree with the landmark stage.
Weights cannot be downloaded here: they are read from ``parsing.weights`` or facer's
torch-hub cache.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from dfer.core.weights import find_checkpoint
from dfer.landmarks.points import five_points
from dfer.parsing.labels import seg_to_canonical

MODELS = ("farl/lapa/448", "farl/celebm/448")


def _conf(model: str) -> str:
    if model not in MODELS:
        raise ValueError(f"unknown facer parser {model!r}; expected one of {MODELS}")
    return model.split("/", 1)[1]


def weights_url(model: str) -> str:
    from facer.face_parsing.farl import pretrain_settings

    return pretrain_settings[_conf(model)]["url"][0]


def label_names(model: str) -> list[str]:
    """The class names facer's ``model`` predicts, in its own order."""
    from facer.face_parsing.farl import pretrain_settings

    return list(pretrain_settings[_conf(model)]["label_names"])


def resolve_weights(model: str, weights: str | os.PathLike[str] | None) -> Path:
    """Locate the TorchScript checkpoint of ``model``; FileNotFoundError says how to supply it."""
    url = weights_url(model)
    return find_checkpoint(
        os.path.basename(urlparse(url).path), weights, what=f"facer {model}",
        config_key="parsing.weights", url=url, offline_backend="parsing.backend: landmarks",
    )


def weights_available(model: str, weights: str | None) -> bool:
    try:
        resolve_weights(model, weights)
    except FileNotFoundError:
        return False
    return True


@functools.lru_cache(maxsize=2)
def load_parser(model: str, weights_path: str, device: str):  # noqa: ANN201 - torch module
    import facer

    return facer.face_parser(model, device=device, model_path=weights_path)


def parse_frames(
    parser,  # noqa: ANN001 - facer FaceParser
    frames: np.ndarray,
    points: np.ndarray,
    device: str,
    batch_size: int = 16,
) -> np.ndarray:
    """Canonical label maps uint8 [T, H, W] for frames [T, H, W, 3] with 68 points [T, 68, 2].

    Frames whose points are missing (NaN) get an all-background map.
    """
    import torch

    t, h, w = frames.shape[:3]
    out = np.zeros((t, h, w), dtype=np.uint8)
    valid = [i for i in range(t) if np.isfinite(points[i]).all()]
    five = five_points(points)
    for start in range(0, len(valid), batch_size):
        idx = valid[start:start + batch_size]
        # float in [0, 1]: facer rejects uint8 images whose maximum is <= 1 (a dark frame)
        images = torch.from_numpy(np.ascontiguousarray(frames[idx])).permute(0, 3, 1, 2)
        images = (images.float() / 255.0).to(device)
        data = {
            "points": torch.from_numpy(five[idx]).to(device),
            "image_ids": torch.arange(len(idx), device=device),
        }
        with torch.inference_mode():
            result = parser(images, data)
        out[idx] = seg_to_canonical(result["seg"])
    return out
