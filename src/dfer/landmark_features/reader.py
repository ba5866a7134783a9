"""Reading landmark feature shards back, for a method that needs one kind of map.

The kind is checked before any tensor is read: a shard of another kind (MobileFaceNet features
for a model configured for FAN heat maps, or the reverse) is refused with
:class:`WrongFeatureKindError`, which says what the shard holds, what was asked for, and which
setting makes the other one. Shapes are checked per clip as well.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from dfer.core.artifacts import read_meta
from dfer.landmark_features.kinds import GRID, FeatureKind, feature_kind

STAGE = "landmark_features"


class WrongFeatureKindError(ValueError):
    """A landmark feature shard of another kind than the reader asked for."""


def check_kind(meta: dict[str, Any], path: str | os.PathLike[str], kind: FeatureKind) -> None:
    """Refuse a shard whose provenance is not a landmark-feature shard of ``kind``."""
    if meta.get("stage") != STAGE:
        raise ValueError(f"{path} is not a landmark-feature shard (its provenance stage is "
                         f"{meta.get('stage')!r}, expected {STAGE!r})")
    have = meta.get("feature_kind")
    if have != kind.name:
        raise WrongFeatureKindError(
            f"{path} holds landmark features of kind {have!r} ({meta.get('channels')} channels, "
            f"landmark_features.backend {meta.get('backend')!r}), but {kind.name!r} "
            f"({kind.channels} channels) was asked for: re-run `dfer landmark-features` with "
            f"landmark_features.backend: {kind.backend}, or configure the method for {have!r}"
        )
    if meta.get("channels") != kind.channels or meta.get("grid") != GRID:
        raise ValueError(f"{path}: kind {have!r} with {meta.get('channels')} channels on a "
                         f"{meta.get('grid')} grid; this dfer expects {kind.channels} on {GRID}")


class LandmarkFeatureShard:
    """An open landmark feature shard (memory-mapped; one clip read at a time) of one kind."""

    def __init__(self, handle: Any, path: str | os.PathLike[str], kind: FeatureKind, meta: dict[str, Any]) -> None:
        self._handle = handle
        self._keys = set(handle.keys())
        self.path = str(path)
        self.kind = kind
        self.meta = meta

    def __contains__(self, clip_id: object) -> bool:
        return clip_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def clip_ids(self) -> list[str]:
        """The clips in the shard, sorted."""
        return sorted(self._keys)

    def get(self, clip_id: str) -> np.ndarray:
        """The clip's maps as float32 ``[T, C, 14, 14]``; ``KeyError`` naming the shard when absent."""
        if clip_id not in self._keys:
            raise KeyError(f"clip {clip_id!r} has no landmark features in {self.path}")
        maps = self._handle.get_tensor(clip_id)
        if maps.ndim != 4 or maps.shape[1:] != (self.kind.channels, GRID, GRID):
            raise ValueError(f"{self.path}: clip {clip_id!r} has maps {maps.shape}, expected "
                             f"[T, {self.kind.channels}, {GRID}, {GRID}]")
        return maps.astype(np.float32)


@contextlib.contextmanager
def open_landmark_features(path: str | os.PathLike[str], kind: str) -> Iterator[LandmarkFeatureShard]:
    """Open a landmark feature shard for reading, refusing one of another ``kind``
    (``mobilefacenet_conv4`` or ``fan_heatmap_14``)."""
    from safetensors import safe_open

    want = feature_kind(kind)
    meta = read_meta(path)
    check_kind(meta, path, want)
    with safe_open(str(path), framework="numpy") as handle:
        yield LandmarkFeatureShard(handle, path, want, meta)


def read_landmark_features(
    path: str | os.PathLike[str], kind: str, clip_ids: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """``{clip_id: float32 [T, C, 14, 14]}`` of a shard of ``kind`` (all clips, or ``clip_ids``)."""
    with open_landmark_features(path, kind) as shard:
        ids = shard.clip_ids() if clip_ids is None else list(clip_ids)
        return {c: shard.get(c) for c in ids}
