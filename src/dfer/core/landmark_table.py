"""Reading a landmarks shard back: rows sorted by (clip, frame), points as one array.

Parsing, captions and training all read ``landmarks/shard-{s}.parquet``. This module needs
only pyarrow and numpy (not the detectors of :mod:`dfer.landmarks`), so the captions stage can
use it inside the separate vLLM environment too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

LANDMARK_POINTS = 68


def read_sorted(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> pa.Table:
    """The shard's rows (``columns``, or all) sorted by ``(clip_id, frame)``; stable."""
    from dfer.core.integrity import require

    require(path)
    table = pq.read_table(path, columns=list(columns) if columns is not None else None)
    return table.sort_by([("clip_id", "ascending"), ("frame", "ascending")])


def clip_ids(table: pa.Table) -> np.ndarray:
    """The ``clip_id`` column as a numpy array of ``str``."""
    return np.asarray(table.column("clip_id").to_pylist(), dtype=object).astype(str)


def clip_bounds(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, stops)`` of each clip's run of rows in ``ids`` sorted by clip."""
    if len(ids) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return starts, np.r_[starts[1:], len(ids)]


def points_array(table: pa.Table, path: str | os.PathLike[str]) -> np.ndarray:
    """float32 ``[rows, 68, 2]`` from the ``points`` column (fixed-size or nested lists)."""
    arr = table.column("points").combine_chunks()
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        arr = arr.flatten()
    values = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float32)
    rows = table.num_rows
    if values.size != rows * LANDMARK_POINTS * 2:
        raise ValueError(f"{path}: {values.size} landmark values for {rows} rows, "
                         f"expected {LANDMARK_POINTS * 2} per row")
    return values.reshape(rows, LANDMARK_POINTS, 2)
