"""68-point landmarks with face-alignment's FAN (2D, large), batched over frames.

We drive face-alignment's network and its crop / heat-map utilities directly instead of
``FaceAlignment``: its constructor also loads a face detector (more weights to download) and
its ``get_landmarks_from_batch`` loops over images one at a time, while our frames are already
face crops with known boxes and should go through the network in batches. ``torch.compile``
is not used (it only pays off for long GPU runs and fails on some CPU setups).

Weights cannot be downloaded here: they are read from the configured path or from the torch
hub cache where face-alignment itself stores them.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from dfer.face_detect import FaceBox

NETWORK = "2DFAN-4"


def weights_filename() -> str:
    """File name face-alignment caches the 2D FAN checkpoint under."""
    from face_alignment.api import models_urls

    return os.path.basename(urlparse(models_urls[NETWORK]).path)


def resolve_weights(weights: str | os.PathLike[str] | None) -> Path:
    """Locate the FAN checkpoint; raise a FileNotFoundError that says how to supply it."""
    import torch

    name = weights_filename()
    if weights:
        path = Path(weights)
        if path.is_dir():
            path = path / name
        if path.is_file():
            return path
        raise FileNotFoundError(
            f"face-alignment FAN weights not found at {path} (landmarks.weights); "
            f"expected the file {name} or a folder holding it"
        )
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
    if cached.is_file():
        return cached
    from face_alignment.api import models_urls

    raise FileNotFoundError(
        f"face-alignment FAN weights {name} are not in the torch hub cache ({cached}) and cannot "
        f"be downloaded here; fetch {models_urls[NETWORK]} on a machine with internet access and "
        "either copy it there or set landmarks.weights to its path "
        "(or use landmarks.backend: dlib)"
    )


def weights_available(weights: str | None) -> bool:
    try:
        resolve_weights(weights)
    except FileNotFoundError:
        return False
    return True


@functools.lru_cache(maxsize=2)
def load_fan(weights_path: str, device: str):  # noqa: ANN201 - torch module
    """The FAN network with its checkpoint loaded, in eval mode on ``device``."""
    import torch
    from face_alignment.models import FAN

    net = FAN(4)
    state = torch.load(weights_path, map_location=device, weights_only=True)
    net.load_state_dict(state)
    return net.to(device).eval()


def _center_scale(box: FaceBox) -> tuple[np.ndarray, float]:
    """face-alignment's box -> (centre, scale) convention (as in FaceAlignment)."""
    from face_alignment.utils import CENTER_Y_OFFSET, REFERENCE_SCALE

    w, h = box.x1 - box.x0, box.y1 - box.y0
    center = np.array([box.x0 + w / 2.0, box.y0 + h / 2.0 - h * CENTER_Y_OFFSET])
    return center, (w + h) / REFERENCE_SCALE


def predict_points(
    net,  # noqa: ANN001 - torch module
    frames: np.ndarray,
    boxes: list[FaceBox | None],
    device: str,
    batch_size: int = 64,
    flip_input: bool = True,
) -> np.ndarray:
    """Points [T, 68, 2] (float32, crop pixels; NaN where ``boxes[t]`` is None)."""
    import torch
    from face_alignment.utils import crop, flip, get_preds_fromhm

    out = np.full((len(frames), 68, 2), np.nan, dtype=np.float32)
    todo = [t for t, b in enumerate(boxes) if b is not None]
    for start in range(0, len(todo), batch_size):
        idx = todo[start:start + batch_size]
        geoms = [_center_scale(boxes[t]) for t in idx]  # type: ignore[arg-type]
        crops = np.stack(
            [crop(frames[t], c, s).transpose(2, 0, 1) for t, (c, s) in zip(idx, geoms, strict=True)]
        ).astype(np.float32) / 255.0
        with torch.inference_mode():
            inp = torch.from_numpy(crops).to(device)
            heat = net(inp)[-1]
            if flip_input:
                heat = heat + flip(net(flip(inp))[-1], is_label=True)
            heat = heat.float().cpu().numpy()
        for k, (t, (c, s)) in enumerate(zip(idx, geoms, strict=True)):
            _, pts_img, _ = get_preds_fromhm(heat[k:k + 1], c, s)
            out[t] = pts_img.reshape(68, 2)
    return out
