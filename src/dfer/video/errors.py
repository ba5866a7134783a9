"""Why a clip could not be decoded: one exception type per failure kind.

The shard runner turns each into a row of the failures table; ``error_type`` is the stable,
machine-readable kind (for counting and filtering; one of ``dfer.core.shard_runner.ErrorType``),
the message says what happened to which file in words a person can act on.
"""

from __future__ import annotations

from dfer.core.shard_runner import ErrorType


class DecodeError(Exception):
    """A clip that cannot be decoded; ``error_type`` names the kind of failure."""

    error_type: str = ErrorType.DECODE_ERROR


class UnreadableFile(DecodeError):
    """The file or folder is missing or cannot be opened (permissions, not a file)."""

    error_type: str = ErrorType.UNREADABLE


class MissingFile(UnreadableFile):
    """The file or frame folder does not exist (moved or deleted after the manifest was made)."""

    error_type: str = ErrorType.MISSING_FILE


class EmptyFile(DecodeError):
    """A zero-length file."""

    error_type: str = ErrorType.EMPTY_FILE


class CorruptFile(DecodeError):
    """The container or an image cannot be parsed, or no frame decodes."""

    error_type: str = ErrorType.CORRUPT


class TruncatedFile(DecodeError):
    """The container promises more frames than can be decoded."""

    error_type: str = ErrorType.TRUNCATED


class NoVideoStream(DecodeError):
    """The file opens but holds no video stream (e.g. audio only)."""

    error_type: str = ErrorType.NO_VIDEO_STREAM


class NoFrames(DecodeError):
    """A frame folder without images, or a video stream without frames."""

    error_type: str = ErrorType.NO_FRAMES


class TooSmall(DecodeError):
    """The frames are too small to find or cut a face in (e.g. a 1x1 image)."""

    error_type: str = ErrorType.TOO_SMALL


class NoFace(DecodeError):
    """No face was detected in any examined frame and ``on_no_face`` is ``fail``."""

    error_type: str = ErrorType.NO_FACE
