"""Read the sampled frames of a clip: a video file (PyAV) or a folder of images.

Videos are decoded in one forward pass from the start, without seeking: seeking lands on
keyframes and frame-accurate seeking in long-GOP files costs a re-decode per sample anyway,
while a single pass is exact for every container. Every packet up to the last wanted frame
must be decoded (inter frames depend on earlier ones), but only the wanted frames are
converted to RGB, which is the expensive part, and decoding stops after the last one.

The frame count comes from the container header; containers that do not store it
(Matroska/WebM, raw streams) are counted by demuxing packets (no decoding) first.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dfer.video.errors import (
    CorruptFile,
    DecodeError,
    EmptyFile,
    NoFrames,
    NoVideoStream,
    TruncatedFile,
    UnreadableFile,
)
from dfer.video.sampling import sample_indices

#: Image files a frame folder may hold.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


@dataclass
class SampledFrames:
    """The sampled RGB frames of one clip and what we learnt about the source."""

    frames: np.ndarray  # uint8 [T, H, W, 3] RGB
    frame_indices: np.ndarray  # int32 [T], indices into the source frames
    num_source_frames: int
    fps: float  # NaN when unknown (frame folders without a configured rate)
    duration_s: float  # NaN when unknown
    width: int
    height: int


def _check_file(path: Path) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise UnreadableFile(f"{path}: file not found") from exc
    except OSError as exc:
        raise UnreadableFile(f"{path}: cannot stat ({exc.strerror or exc})") from exc
    if not path.is_file():
        raise UnreadableFile(f"{path}: not a regular file")
    if size == 0:
        raise EmptyFile(f"{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise UnreadableFile(f"{path}: permission denied")


def _open(path: Path):  # noqa: ANN202 - av containers have no public type here
    import av

    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except PermissionError as exc:
        raise UnreadableFile(f"{path}: permission denied") from exc
    except FileNotFoundError as exc:
        raise UnreadableFile(f"{path}: file not found") from exc
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise CorruptFile(f"{path}: not a readable video container ({exc})") from exc


def _stream_fps(stream) -> float:  # noqa: ANN001
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and float(rate) > 0:
            return float(rate)
    return math.nan


def count_video_frames(path: str | os.PathLike[str]) -> int:
    """Number of frames of the first video stream, counting demuxed packets (no decoding)."""
    path = Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise NoVideoStream(f"{path}: no video stream")
        return sum(1 for p in container.demux(container.streams.video[0]) if p.size > 0)


def _decode_wanted(path: Path, indices: np.ndarray) -> tuple[dict[int, np.ndarray], int, bool]:
    """One forward pass: RGB arrays of the wanted frame indices.

    Returns (frames by index, number of frames decoded, whether the stream ended early
    or broke before the last wanted index).
    """
    import av

    wanted = set(int(i) for i in indices)
    last = int(indices.max())
    out: dict[int, np.ndarray] = {}
    decoded = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for i, frame in enumerate(container.decode(stream)):
                decoded = i + 1
                if i in wanted:
                    out[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    return out, decoded, False
        except (av.error.FFmpegError, ValueError) as exc:
            if decoded == 0:
                raise CorruptFile(f"{path}: no frame could be decoded ({exc})") from exc
    return out, decoded, True


def read_video(path: str | os.PathLike[str], num_frames: int,
               truncation_tolerance: float = 0.05) -> SampledFrames:
    """Decode the ``num_frames`` uniformly sampled frames of a video file.

    When fewer frames decode than the header promises, a small shortfall (at most
    ``truncation_tolerance`` of the frames, or 2 frames; headers of some muxers are off by a
    frame or two) is handled by sampling again over the frames that do decode; a larger one
    raises ``TruncatedFile``.
    """
    path = Path(path)
    _check_file(path)
    with _open(path) as container:
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
            raise NoVideoStream(f"{path}: no video stream (streams: {kinds})")
        stream = container.streams.video[0]
        header_frames = int(stream.frames or 0)
        fps = _stream_fps(stream)
    total = header_frames if header_frames > 0 else count_video_frames(path)
    if total == 0:
        raise NoFrames(f"{path}: the video stream holds no frames")
    indices = sample_indices(total, num_frames)
    frames, decoded, ended_early = _decode_wanted(path, indices)
    if ended_early:
        if decoded == 0:
            raise CorruptFile(f"{path}: no frame could be decoded")
        shortfall = total - decoded
        if shortfall > max(2, truncation_tolerance * total):
            raise TruncatedFile(
                f"{path}: truncated: the container announces {total} frames but only "
                f"{decoded} could be decoded"
            )
        total = decoded
        indices = sample_indices(total, num_frames)
        frames, decoded, ended_early = _decode_wanted(path, indices)
        if ended_early:  # pragma: no cover - the same file decoded further a moment ago
            raise CorruptFile(f"{path}: decoding stopped at frame {decoded} on the second pass")
    stack = np.stack([frames[int(i)] for i in indices])
    height, width = stack.shape[1:3]  # the decoded size is authoritative
    duration = total / fps if fps == fps else math.nan
    return SampledFrames(stack, indices, total, fps, duration, int(width), int(height))


def _natural_key(name: str) -> list[object]:
    """Sort ``frame2`` before ``frame10``: digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_frame_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of a frame folder in natural order of their names."""
    folder = Path(folder)
    if not folder.is_dir():
        if folder.exists():
            raise UnreadableFile(f"{folder}: not a frame folder")
        raise UnreadableFile(f"{folder}: frame folder not found")
    try:
        names = [e.name for e in os.scandir(folder)
                 if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS]
    except OSError as exc:
        raise UnreadableFile(f"{folder}: cannot list ({exc.strerror or exc})") from exc
    return [folder / n for n in sorted(names, key=_natural_key)]


def read_image(path: Path) -> np.ndarray:
    """An image file as RGB uint8 [H, W, 3] (grey and RGBA images are converted)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise UnreadableFile(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if data.size == 0:
        raise EmptyFile(f"{path}: empty image file (0 bytes)")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise CorruptFile(f"{path}: not a decodable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_frame_folder(folder: str | os.PathLike[str], num_frames: int,
                      fps: float | None = None) -> SampledFrames:
    """Read the ``num_frames`` uniformly sampled images of a frame folder.

    ``fps`` is the rate the frames were extracted at, when known (folders carry none).
    """
    files = list_frame_files(folder)
    if not files:
        raise NoFrames(f"{folder}: frame folder holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    indices = sample_indices(len(files), num_frames)
    cache: dict[int, np.ndarray] = {}
    for i in indices:
        if int(i) not in cache:
            cache[int(i)] = read_image(files[int(i)])
    shapes = {a.shape for a in cache.values()}
    if len(shapes) > 1:
        raise DecodeError(f"{folder}: frames differ in size ({sorted(shapes)})")
    stack = np.stack([cache[int(i)] for i in indices])
    rate = float(fps) if fps else math.nan
    duration = len(files) / rate if fps else math.nan
    return SampledFrames(stack, indices, len(files), rate, duration,
                         int(stack.shape[2]), int(stack.shape[1]))
