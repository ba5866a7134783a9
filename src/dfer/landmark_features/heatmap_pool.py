"""FAN heat maps, which live in FAN's face crop, averaged over the cells of the frame's grid.

A landmark feature map must line up with the frame it belongs to: S2D adds landmark token
``(i, j)`` to the ViT patch token ``(i, j)`` of the same frame. FAN's heat maps cover its own
square crop around the face box (side ``200 * scale``, larger than the decode crop), so they
are mapped back into frame pixels before pooling: output cell ``(i, j)`` of a ``G x G`` grid
over the ``S x S`` frame holds the mean of the heat map over that cell's area, each heat-map
cell counted by the area it shares with it (zero outside the crop). The geometry is the one
:func:`dfer.landmarks.fan_backend.decode_heatmaps` inverts: heat-map cell ``k`` spans frame
pixels ``[o + k c, o + (k + 1) c)`` with ``o = center - 100 scale`` and ``c = 200 scale / R``.

The weights are separable (rows and columns), so pooling is two small matrix products.
"""

from __future__ import annotations

import numpy as np


def overlap_weights(origin: float, cell: float, cells: int, size: float, grid: int) -> np.ndarray:
    """``[grid, cells]``: the share of output interval ``i`` (``[i size/grid, (i+1) size/grid)``)
    that input cell ``k`` (``[origin + k cell, origin + (k+1) cell)``) covers."""
    out_lo = np.arange(grid)[:, None] * (size / grid)
    out_hi = out_lo + size / grid
    in_lo = origin + np.arange(cells)[None, :] * cell
    in_hi = in_lo + cell
    shared = np.clip(np.minimum(out_hi, in_hi) - np.maximum(out_lo, in_lo), 0.0, None)
    return shared / (size / grid)


def pool_to_frame_grid(
    heat: np.ndarray, centers: np.ndarray, scales: np.ndarray, frame_size: int, grid: int
) -> np.ndarray:
    """Heat maps ``[N, K, R, R]`` of crops with ``centers`` ``[N, 2]`` (x, y) and ``scales`` ``[N]``
    -> ``[N, K, grid, grid]`` float32: their area means over the cells of the square frame."""
    heat = np.asarray(heat, dtype=np.float64)
    n, _, res, res_x = heat.shape
    if res != res_x:
        raise ValueError(f"expected square heat maps, got {res} x {res_x}")
    out = np.empty((n, heat.shape[1], grid, grid), dtype=np.float32)
    for i in range(n):
        side = 200.0 * float(scales[i])
        cx, cy = (float(v) for v in centers[i])
        wx = overlap_weights(cx - side / 2, side / res, res, frame_size, grid)
        wy = overlap_weights(cy - side / 2, side / res, res, frame_size, grid)
        out[i] = np.einsum("gr,krs,hs->kgh", wy, heat[i], wx)
    return out
