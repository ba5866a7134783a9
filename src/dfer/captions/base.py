"""What every caption backend takes and returns.

A backend describes a batch of clips at once (vLLM schedules a whole batch on the GPU; the
HTTP client keeps several requests in flight) and returns one :class:`Description` per clip,
in order. A clip that cannot be described comes back with ``error_type`` set instead of
raising, so that one bad clip never loses the rest of the shard. Backends name failures in
their own words (``Timeout``, ``HTTP503``, an exception's type); :class:`Description` turns
them into the shared vocabulary (``dfer.core.shard_runner.ErrorType``) in one place,
:func:`vocabulary_error`, so no backend needs to know it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dfer.core.frame_sampling import spread_indices
from dfer.core.shard_runner import ErrorType

#: Backend failure codes with a meaning of their own in the vocabulary. Any other code (an
#: HTTP status such as ``HTTP400``, ``BadResponse``, an engine exception's type name) is a
#: ``backend_error`` whose message keeps the code.
BACKEND_CODES: dict[str, ErrorType] = {
    "Timeout": ErrorType.TIMEOUT,
    "ConnectionError": ErrorType.CONNECTION_ERROR,
    "EmptyAnswer": ErrorType.EMPTY_ANSWER,
    "BadFrames": ErrorType.BAD_INPUT,
    "MissingFrames": ErrorType.MISSING_FRAMES,
    "MissingLandmarks": ErrorType.MISSING_LANDMARKS,
    "NoFace": ErrorType.NO_FACE,
}


def vocabulary_error(code: str, message: str) -> tuple[str, str]:
    """``(error_type, message)`` in the shared vocabulary for a backend's failure ``code``.

    A code that is already a vocabulary value stays; a ``backend_error`` names its specific
    cause in the message (appended unless the message already says it, as ``HTTP 503`` does).
    """
    if code in {e.value for e in ErrorType}:
        return code, message
    if code in BACKEND_CODES:
        return BACKEND_CODES[code].value, message
    if code.replace(" ", "") not in message.replace(" ", ""):
        message = f"{message} ({code})"
    return ErrorType.BACKEND_ERROR.value, message


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

    def __post_init__(self) -> None:
        """Put ``error_type`` into the shared vocabulary (see :func:`vocabulary_error`)."""
        if self.error_type is not None:
            error_type, message = vocabulary_error(str(self.error_type), self.message or "")
            object.__setattr__(self, "error_type", error_type)
            object.__setattr__(self, "message", message)

    @property
    def ok(self) -> bool:
        """Whether the backend answered (``error_type`` unset)."""
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
    return frames[spread_indices(len(frames), num_frames)]
