"""68-point landmarks with face-alignment's FAN (2D), batched over frames.

We drive face-alignment's network and its crop utility directly instead of ``FaceAlignment``:
its constructor also loads a face detector (more weights to download) and post-processes faces
one at a time, while our frames are already face crops with known boxes and should go through
the network in batches. ``torch.compile`` is not used (``compile=False`` in face-alignment's
terms: it only pays off for long GPU runs and fails on some CPU setups).

Heat maps are decoded by :func:`decode_heatmaps`, a vectorised numpy version of the standard
FAN decoding (arg-max, quarter-pixel shift towards the larger neighbour, inverse crop
transform). face-alignment's own decoder is numba-jitted per process (about 15 s of
compilation on a small CPU, paid again by every shard job) and rounds to whole pixels; ours
keeps sub-pixel coordinates.

Weights cannot be downloaded here: they are read from the configured path or from the torch
hub cache where face-alignment itself stores them.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from dfer.core.face_detect import FaceBox
from dfer.core.weights import find_checkpoint

NETWORK = "2DFAN-4"
#: side of the square crop FAN reads and of the heat maps it writes (face-alignment's values).
CROP_RESOLUTION = 256
#: heat maps are ``CROP_RESOLUTION / 4`` pixels square.
HEATMAP_RESOLUTION = 64


def weights_filename() -> str:
    """File name face-alignment caches the 2D FAN checkpoint under."""
    from face_alignment.api import models_urls

    return os.path.basename(urlparse(models_urls[NETWORK]).path)


def resolve_weights(
    weights: str | os.PathLike[str] | None,
    config_key: str = "landmarks.weights",
    offline_backend: str = "landmarks.backend: dlib",
) -> Path:
    """Locate the FAN checkpoint; raise a FileNotFoundError that says how to supply it.

    ``config_key`` / ``offline_backend`` name the setting of the stage that asks (the landmark
    stage by default; the landmark-feature stage reads FAN too).
    """
    from face_alignment.api import models_urls

    return find_checkpoint(
        weights_filename(), weights, what="face-alignment FAN", config_key=config_key,
        url=models_urls[NETWORK], offline_backend=offline_backend,
    )


def weights_available(weights: str | None) -> bool:
    """True when :func:`resolve_weights` would find a checkpoint (used by ``backend: auto``)."""
    try:
        resolve_weights(weights)
    except FileNotFoundError:
        return False
    return True


def num_modules(state: dict) -> int:
    """Stacked hourglass modules of a FAN checkpoint (4 for 2DFAN-4), from its ``l{i}`` heads."""
    heads = {int(m.group(1)) for k in state if (m := re.fullmatch(r"l(\d+)\.weight", k))}
    if not heads:
        raise ValueError("not a FAN checkpoint: no heat-map heads (l0.weight, l1.weight, ...)")
    return max(heads) + 1


@functools.lru_cache(maxsize=2)
def load_fan(weights_path: str, device: str):  # noqa: ANN201 - torch module
    """The FAN network with its checkpoint loaded, in eval mode on ``device``."""
    import torch
    from face_alignment.models import FAN

    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - say which file is broken
        raise ValueError(f"cannot read the FAN checkpoint {weights_path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    net = FAN(num_modules(state))
    net.load_state_dict(state)
    return net.to(device).eval()


def center_scale(box: FaceBox) -> tuple[np.ndarray, float]:
    """face-alignment's box -> (centre, scale) convention (as in ``FaceAlignment``)."""
    from face_alignment.utils import CENTER_Y_OFFSET, REFERENCE_SCALE

    w, h = box.x1 - box.x0, box.y1 - box.y0
    center = np.array([box.x0 + w / 2.0, box.y0 + h / 2.0 - h * CENTER_Y_OFFSET])
    return center, (w + h) / REFERENCE_SCALE


def decode_heatmaps(heat: np.ndarray, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Heat maps [N, 68, R, R] of crops with ``centers`` [N, 2] and ``scales`` [N] -> [N, 68, 2].

    The peak cell of each map, moved a quarter cell towards its larger neighbour on each axis
    (interior cells only), is mapped back through the crop transform: the crop covers
    ``200 * scale`` image pixels around ``center`` in ``R`` heat-map cells.
    """
    heat = np.asarray(heat, dtype=np.float32)
    n, k, res, res_x = heat.shape
    flat = heat.reshape(n, k, res * res_x)
    idx = flat.argmax(axis=-1)
    y, x = np.divmod(idx, res_x)
    pts = np.stack([x, y], axis=-1).astype(np.float32)
    inner = (x > 0) & (x < res_x - 1) & (y > 0) & (y < res - 1)
    xc, yc = np.clip(x, 1, res_x - 2), np.clip(y, 1, res - 2)
    b, j = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    dx = heat[b, j, yc, xc + 1] - heat[b, j, yc, xc - 1]
    dy = heat[b, j, yc + 1, xc] - heat[b, j, yc - 1, xc]
    pts += np.where(inner[..., None], np.sign(np.stack([dx, dy], axis=-1)) * 0.25, 0.0)
    pts += 0.5  # cell index -> cell centre, as face-alignment's ``(idx + 1) - 0.5``
    side = 200.0 * np.asarray(scales, dtype=np.float64).reshape(n, 1, 1)
    centers = np.asarray(centers, dtype=np.float64).reshape(n, 1, 2)
    return ((pts - res / 2.0) * side / res + centers).astype(np.float32)


def _last_stack(out):  # noqa: ANN001, ANN202 - torch tensors
    """FAN returns one heat-map tensor per hourglass; the last one is the prediction."""
    return out[-1] if isinstance(out, list | tuple) else out


def predict_heatmaps(
    net,  # noqa: ANN001 - torch module
    frames: np.ndarray,
    boxes: list[FaceBox],
    device: str,
    batch_size: int = 64,
    flip_input: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FAN's heat maps of ``frames`` [N, H, W, 3] in the crops around ``boxes`` (one per frame).

    Returns ``(heat [N, 68, R, R] float32, centers [N, 2], scales [N])``: the last hourglass's
    maps (with ``flip_input``, the mean of the crop's and the flipped crop's maps, the latter
    flipped back with face-alignment's landmark mirroring) and each crop's geometry, cell
    ``(x, y)`` of a map covering the image square of side ``200 * scale / R`` whose corner is
    ``center - 100 * scale + (x, y) * 200 * scale / R`` (the transform :func:`decode_heatmaps`
    inverts). ``batch_size`` crops per forward pass.
    """
    import torch
    from face_alignment.utils import crop, flip

    geoms = [center_scale(b) for b in boxes]
    centers = np.array([c for c, _ in geoms], dtype=np.float64).reshape(len(boxes), 2)
    scales = np.array([s for _, s in geoms], dtype=np.float64)
    parts: list[np.ndarray] = []
    for start in range(0, len(boxes), batch_size):
        idx = range(start, min(start + batch_size, len(boxes)))
        crops = np.stack(
            [crop(frames[t], centers[t], scales[t], CROP_RESOLUTION).transpose(2, 0, 1) for t in idx]
        ).astype(np.float32) / 255.0
        with torch.inference_mode():
            inp = torch.from_numpy(crops).to(device)
            heat = _last_stack(net(inp))
            if flip_input:
                heat = (heat + flip(_last_stack(net(flip(inp))), is_label=True)) / 2.0
            parts.append(heat.float().cpu().numpy())
    heat = np.concatenate(parts) if parts else np.zeros((0, 68, HEATMAP_RESOLUTION, HEATMAP_RESOLUTION), np.float32)
    return heat, centers, scales


def predict_points(
    net,  # noqa: ANN001 - torch module
    frames: np.ndarray,
    boxes: list[FaceBox | None],
    device: str,
    batch_size: int = 64,
    flip_input: bool = True,
) -> np.ndarray:
    """Points [T, 68, 2] (float32, crop pixels; NaN where ``boxes[t]`` is None).

    Only frames with a box go through the network, ``batch_size`` crops per forward pass
    (:func:`predict_heatmaps`; the flip mean decodes to the same points as the flip sum).
    """
    out = np.full((len(frames), 68, 2), np.nan, dtype=np.float32)
    todo = [t for t, b in enumerate(boxes) if b is not None]
    if todo:
        heat, centers, scales = predict_heatmaps(net, frames[todo], [boxes[t] for t in todo],  # type: ignore[misc]
                                                 device, batch_size, flip_input)
        out[todo] = decode_heatmaps(heat, centers, scales)
    return out
