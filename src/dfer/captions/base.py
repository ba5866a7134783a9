"""What every caption backend takes and returns.

A backend describes a batch of clips at once (vLLM schedules a whole batch on the GPU; the
HTTP client keeps several requests in flight) and returns one :class:`Description` per clip,
in order. A clip that cannot be described comes back with ``error_type`` set instead of
raising, so that one bad clip never loses the rest of the shard. Backends name failures in
their own words (``Timeout``, ``HTTP503``, an exception's type); :class:`Description` turns
them into the shared vocabulary (``dfer.core.shard_runner.ErrorType``) in one place,
:func:`vocabulary_error`, so no backend needs to know it. :data:`FAILURES` is that mapping
and the failures table of docs/captions.md (:func:`failure_table` renders it; a test checks
the page holds exactly that text), so code and docs cannot drift apart again.

Every failure message also passes through :func:`redact` here: a server that echoes the
request in its error body must not put an API key into ``failures.parquet`` or the logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dfer.core.frame_sampling import spread_indices
from dfer.core.shard_runner import ErrorType


@dataclass(frozen=True)
class BackendFailure:
    """One kind of caption failure: the backend's code (kept in the message), the
    ``error_type`` it becomes, and when it happens (the docs' wording)."""

    code: str          # "" when the backend raises the vocabulary value itself
    error_type: ErrorType
    when: str


#: Every caption failure, in the order docs/captions.md lists them. A code not listed here
#: (an HTTP status, an engine exception's type name) is a ``backend_error`` that keeps it in
#: its message; the ``HTTP...`` and exception rows document those.
FAILURES: tuple[BackendFailure, ...] = (
    BackendFailure("ConnectionError", ErrorType.CONNECTION_ERROR,
                   "openai: no server could be reached (refused, reset), after all retries on "
                   "every live server"),
    BackendFailure("Timeout", ErrorType.TIMEOUT,
                   "openai: no complete reply within `timeout_s` (a deadline on the whole "
                   "request), after all retries on every live server"),
    BackendFailure("HTTP503, HTTP429, ...", ErrorType.BACKEND_ERROR,
                   "openai: a retryable status (408, 429, 500, 502, 503, 504) after all retries"),
    BackendFailure("HTTP400, ...", ErrorType.BACKEND_ERROR,
                   "openai: any other 4xx/5xx status (not retried)"),
    BackendFailure("BadResponse", ErrorType.BACKEND_ERROR,
                   "openai: a reply that is not JSON or has no `choices[0].message.content`"),
    BackendFailure("AnswerTooLarge", ErrorType.BACKEND_ERROR,
                   "openai: a reply over the size cap (`max_answer_chars`); reading stops "
                   "there and nothing of it is stored"),
    BackendFailure("<exception type>", ErrorType.BACKEND_ERROR,
                   "vllm: the engine raised on this clip alone"),
    BackendFailure("EmptyAnswer", ErrorType.EMPTY_ANSWER, "the model answered nothing (blank content)"),
    BackendFailure("", ErrorType.EMPTY_AFTER_REFINEMENT,
                   "the answer was nothing but an emotion judgement"),
    BackendFailure("MissingFrames", ErrorType.MISSING_FRAMES,
                   "the clip is in the index but not in the frames shard"),
    BackendFailure("BadFrames", ErrorType.BAD_INPUT, "the clip's frames have an unusable shape"),
    BackendFailure("MissingLandmarks", ErrorType.MISSING_LANDMARKS, "offline: no landmark rows"),
    BackendFailure("NoFace", ErrorType.NO_FACE, "offline: fewer than 2 frames with a face"),
)

#: Backend failure codes with a meaning of their own in the vocabulary (from :data:`FAILURES`).
BACKEND_CODES: dict[str, ErrorType] = {
    f.code: f.error_type for f in FAILURES
    if f.code and f.error_type is not ErrorType.BACKEND_ERROR and f.code.isidentifier()
}


def failure_table() -> str:
    """The failures table of docs/captions.md, rendered from :data:`FAILURES`."""
    lines = ["| error_type | backend code in the message | when |", "|---|---|---|"]
    for f in FAILURES:
        codes = ", ".join(f"`{c.strip()}`" if c.strip() != "..." else "..."
                          for c in f.code.split(",")) if f.code else "-"
        lines.append(f"| `{f.error_type.value}` | {codes} | {f.when} |")
    return "\n".join(lines) + "\n"


#: What a credential looks like in an error body, a header dump or a URL. Each pattern keeps
#: its first group (the name) and masks the value.
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # a Bearer token anywhere (other schemes only after a header name: below, where
    # "Basic ..." or "Token ..." cannot be an ordinary phrase of an error message)
    (re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=:-]{3,}"), r"\1\2***"),
    # authorization=..., api_key: ..., "x-api-key": "...", access_token=..., password=...
    (re.compile(r"(?i)((?:proxy-)?authorization|x-api-key|api[_-]?key|apikey|access[_-]?token|"
                r"refresh[_-]?token|client[_-]?secret|secret|password|passwd)"
                r"(\\?[\"']?\s*[:=]\s*\\?[\"']?)(?!\*\*\*)(?:(?:bearer|basic|token|digest)\s+)?[^\s\"',;&}\\]+"),
     r"\1\2***"),
    # user:password@ in a URL
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1***@"),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every credential masked as ``***``: the given ``secrets`` (an API key's
    value) wherever they appear, and anything shaped like an ``Authorization`` value, a
    ``Bearer`` token, ``api_key=...`` or a URL's ``user:password@``.

    Why here: failure messages quote the server's error body, and a server (or a proxy) that
    echoes the request back would otherwise write the key into ``failures.parquet``, the
    provenance and the logs.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


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
        """Put ``error_type`` into the shared vocabulary (see :func:`vocabulary_error`) and
        mask anything shaped like a credential in the message (:func:`redact`)."""
        if self.error_type is not None:
            error_type, message = vocabulary_error(str(self.error_type), self.message or "")
            object.__setattr__(self, "error_type", error_type)
            object.__setattr__(self, "message", redact(message))

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
