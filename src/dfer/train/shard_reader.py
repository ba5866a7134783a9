"""Bounded, per-process access to a dataset's shard artifacts for training and evaluation.

Why: holding every clip's landmark points and captions in RAM, or keeping a ``safe_open``
handle on every shard (each clip read then stays mapped), makes a training process grow with
the dataset (issue 6). Two pieces keep it flat:

* :class:`SideStore`: while the clip table is built, each shard's landmark points (sorted by
  clip and frame) and captions are appended, one shard at a time, to two flat files in a
  private temporary folder; the table keeps only each clip's row / byte range, and an item
  reads its slice with one positioned read (no mapping, nothing cached). Re-reading a whole
  Parquet shard per item instead would cost ~10 ms a clip under a shuffled sampler, where any
  small cache of shards misses almost always.
* :class:`ShardReader`: ``safe_open`` handles of frames / parsing shards in a small
  least-recently-used cache of at most ``max_open`` shards, so the mapped pages of clips read
  earlier are released with their shard. Handles are per process: dropped when the reader is
  pickled (spawned DataLoader workers) and reopened when used in a forked child.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dfer.core.landmark_table import (
    LANDMARK_POINTS,
    clip_bounds,
    clip_ids,
    points_array,
    read_sorted,
)
from dfer.core.paths import SAFETENSORS
from dfer.train.inputs import DataInputs

V = TypeVar("V")

#: Default number of shards of each kind (frames, parsing) kept open at once;
#: ``DataConfig.max_open_shards``.
DEFAULT_MAX_OPEN = 4


class LRU(Generic[V]):
    """A tiny least-recently-used cache: ``get(key, load)`` loads on a miss, evicting the oldest."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"cache size must be >= 1, got {size}")
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable, load: Callable[[], V]) -> V:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = load()
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)  # dropping the last reference closes / unmaps it
        return value

    def keys(self) -> list[Hashable]:
        """Cached keys, least recently used first."""
        return list(self._items)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def load_landmark_points(path: Path, with_ids: bool = False) -> Any:
    """float32 ``[rows, 68, 2]`` points of a landmarks shard sorted by ``(clip_id, frame)``
    (with ``with_ids``: also the matching clip ids, a str array)."""
    table = read_sorted(path, ["clip_id", "frame", "points"])
    points = np.ascontiguousarray(points_array(table, path))
    return (points, clip_ids(table)) if with_ids else points


def _release_arrow_memory() -> None:
    """Hand Arrow's freed pool memory back to the OS after each shard: otherwise its allocator
    keeps the high-water mark of every shard read (tens of MB, growing with the shard count)."""
    release = getattr(pa.default_memory_pool(), "release_unused", None)
    if release is not None:
        release()


def _remove_folder(folder: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:  # never from a forked child that inherited the store
        shutil.rmtree(folder, ignore_errors=True)


class SideStore:
    """Landmark points and captions of the clips of one clip table, in two flat files.

    ``points.f32``: float32 ``[rows, 68, 2]`` rows, each shard's rows sorted by (clip, frame);
    ``captions.txt``: UTF-8 captions back to back. The folder is removed when the store that
    created it is garbage collected (or at exit); unpickled copies (spawned workers) only read.
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self._owner = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="dfer-clips-")) if folder is None else Path(folder)
        self.points_path = self.folder / "points.f32"
        self.captions_path = self.folder / "captions.txt"
        self.num_points = 0
        self.caption_bytes = 0
        if self._owner:
            self.points_path.touch()
            self.captions_path.touch()
            self._finalizer = weakref.finalize(self, _remove_folder, str(self.folder), os.getpid())

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "num_points": self.num_points, "caption_bytes": self.caption_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["folder"])  # type: ignore[misc]
        self.num_points, self.caption_bytes = state["num_points"], state["caption_bytes"]

    def add_landmarks(self, path: Path) -> pd.DataFrame:
        """Append a landmarks shard; ``clip_id``, ``lm_start``, ``lm_stop`` (rows in the store)."""
        points, ids = load_landmark_points(path, with_ids=True)
        with open(self.points_path, "ab") as fh:
            fh.write(points.tobytes())
        _release_arrow_memory()
        if len(ids) == 0:
            return pd.DataFrame({"clip_id": pd.Series([], dtype=object), "lm_start": pd.Series([], dtype=np.int64),
                                 "lm_stop": pd.Series([], dtype=np.int64)})
        starts, stops = clip_bounds(ids)
        base = self.num_points
        self.num_points += len(ids)
        return pd.DataFrame({"clip_id": ids[starts], "lm_start": (starts + base).astype(np.int64),
                             "lm_stop": (stops + base).astype(np.int64)})

    def add_captions(self, path: Path) -> pd.DataFrame:
        """Append a captions shard; ``clip_id``, ``cap_offset``, ``cap_length`` (bytes in the store).

        A clip listed twice keeps its last caption (as a dict built from the rows would).
        """
        table = pq.read_table(path, columns=["clip_id", "caption"])
        last = {str(c): str(t) for c, t in zip(table.column("clip_id").to_pylist(),
                                               table.column("caption").to_pylist(), strict=True)}
        encoded = [t.encode("utf-8") for t in last.values()]
        lengths = np.fromiter((len(b) for b in encoded), np.int64, len(encoded))
        offsets = self.caption_bytes + np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
        with open(self.captions_path, "ab") as fh:
            fh.write(b"".join(encoded))
        _release_arrow_memory()
        self.caption_bytes += int(lengths.sum())
        return pd.DataFrame({"clip_id": list(last), "cap_offset": offsets[: len(encoded)], "cap_length": lengths})

    def points(self, start: int, stop: int) -> np.ndarray:
        """float32 ``[stop - start, 68, 2]``: rows ``start:stop`` (one positioned read)."""
        if not 0 <= start < stop <= self.num_points:
            raise IndexError(f"landmark rows {start}:{stop} outside {self.points_path} ({self.num_points} rows)")
        row = LANDMARK_POINTS * 2
        values = np.fromfile(self.points_path, dtype=np.float32, count=(stop - start) * row,
                             offset=start * row * 4)
        return values.reshape(stop - start, LANDMARK_POINTS, 2)

    def caption(self, offset: int, length: int) -> str:
        """The caption stored at bytes ``offset:offset + length``."""
        with open(self.captions_path, "rb") as fh:
            return os.pread(fh.fileno(), length, offset).decode("utf-8")


class ShardReader:
    """Reads one clip's frames / parsing tensor, keeping at most ``max_open`` shards of each
    kind open (LRU)."""

    def __init__(self, inputs: DataInputs, max_open: int = DEFAULT_MAX_OPEN) -> None:
        self.inputs = inputs  # the job's declared files: nothing else is opened
        self.max_open = int(max_open)
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self.handles: LRU[Any] = LRU(self.max_open)  # (stage, shard) -> safe_open

    def _check_process(self) -> None:
        if os.getpid() != self._pid:  # forked worker: never use the parent's handles
            self._reset()

    def __getstate__(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "max_open": self.max_open}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def tensor(self, stage: str, shard: str, clip_id: str) -> np.ndarray:
        """One clip's array from ``{stage}/shard-{shard}.safetensors`` (a copy, not a view)."""
        from safetensors import safe_open

        self._check_process()
        path = self.inputs.path(stage, shard, SAFETENSORS)
        fh = self.handles.get((stage, shard), lambda: safe_open(str(path), framework="numpy"))
        return fh.get_tensor(clip_id)
