"""What every caption backend takes and returns.

A backend describes a batch of clips at once (vLLM schedules a whole batch on the GPU; the
HTTP client keeps several requests in flight) and returns one :class:`Description` per clip,
in order. A clip that cannot be described comes back with ``error_type`` set instead of
raising, so that one bad clip never loses the rest of the shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ClipInput:
    """One clip as the backends see it: frames and/or landmarks, whichever they need."""

    clip_id: str
    frames: np.ndarray | None = None      # uint8 [T, H, W, 3] RGB face crops
    points: np.ndarray | None = None      # float [T, 68, 2] landmark pixels
    has_face: np.ndarray | None = None    # bool [T]


@dataclass(frozen=True)
class Description:
    """A backend's answer for one clip: the raw text, or why there is none."""

    clip_id: str
    text: str = ""
    num_tokens: int = 0
    seconds: float = 0.0
    error_type: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None


class Describer(Protocol):
    """A caption backend."""

    #: value of the ``backend`` column
    name: str
    #: value of the ``model`` column
    model: str
    #: whether :meth:`describe` needs ``ClipInput.frames`` / ``ClipInput.points``
    needs_frames: bool
    needs_landmarks: bool

    def describe(self, clips: Sequence[ClipInput], prompt: str) -> list[Description]:
        """One Description per clip, in the order of ``clips``."""
        ...

    def close(self) -> None:
        """Release engines, connections and threads."""
        ...


def sample_frames(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """``num_frames`` frames spread uniformly over ``frames`` (repeating when there are fewer).

    Qwen-VL models merge pairs of frames (temporal patch 2), so callers ask for an even
    count; a clip shorter than that gets frames repeated rather than a failure.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape [T, H, W, 3], got {list(frames.shape)}")
    if len(frames) == 0:
        raise ValueError("clip has no frames")
    idx = np.linspace(0, len(frames) - 1, num_frames).round().astype(int)
    return frames[idx]
