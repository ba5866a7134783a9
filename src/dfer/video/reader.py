"""Read the sampled frames of a clip: a video file (PyAV) or a folder of images.

Videos are decoded in one forward pass from the start, without seeking: seeking lands on
keyframes, and in the long-GOP files the datasets ship (x264's default keyframe interval is
250 frames, longer than most clips) a frame-accurate seek re-decodes from the same keyframe
for every sample, while a single pass is exact for every container. Every packet up to the
last wanted frame must be decoded (inter frames depend on earlier ones), but only the wanted
frames are converted to RGB, through one reused swscale context, and decoding stops after the
last one. Non-reference frames nobody wants (most B-frames) are not decoded at all
(:mod:`dfer.video.skipping`). ``benchmarks/bench_decode.py`` measures this against OpenCV's
decode-everything loop.

Frames are returned as a player shows them: the display matrix (rotation metadata of phone
videos, and the mirroring of front-camera clips) is applied, and frame-folder images are read
with their EXIF orientation applied (OpenCV's ``imdecode`` does that for JPEG, PNG and WebP).

The frame count comes from the container header; containers that do not store it
(Matroska/WebM, raw streams) are counted by demuxing packets (no decoding) first, and the
time those packets cover is checked against the duration the header states (truncation).

Memory follows the kept frames, not the source: a sampled frame larger than ``max_pixels``
(``decode.max_frame_pixels``, default 4K UHD) is shrunk as it is converted (swscale for
video, OpenCV for images), so no source resolution costs more than a 4K frame per sampled
frame. Frames of one clip that differ in size (a frame folder of mixed images, a video whose
resolution changes) are resized to the size of its first sampled frame, and counted.

A frame folder's unreadable images do not cost the clip when enough good ones remain
(:func:`read_frame_folder`): every image of such a folder is then checked, so one message
lists them all, and the sample is drawn from the good ones.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dfer.core.frame_sampling import sample_indices
from dfer.video.config import DEFAULT_MAX_FRAME_PIXELS
from dfer.video.errors import (
    CorruptFile,
    DecodeError,
    EmptyFile,
    MissingFile,
    NoFrames,
    NoVideoStream,
    TooSmall,
    TruncatedFile,
    UnreadableFile,
)
from dfer.video.skipping import decode_skipping

#: Skip the non-reference frames no sampled frame needs (:mod:`dfer.video.skipping`). The
#: frames are the same pixels either way; off only to measure what skipping saves
#: (``benchmarks/bench_decode.py``) or to rule it out when looking into a file.
SKIP_UNWANTED_FRAMES = True

#: Image files a frame folder may hold.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

#: Frames smaller than this on a side are refused (``too_small``): no face can be found or cut
#: in them, and dlib's CNN detector raises on images under 10 px (and may crash the process
#: later), where a clear error is what a person needs.
MIN_FRAME_SIDE = 16



@dataclass
class SampledFrames:
    """The sampled RGB frames of one clip and what we learnt about the source.

    ``width`` and ``height`` are the source's (upright) frame size; ``frames`` may be smaller
    when the source exceeded ``max_pixels`` (:func:`kept_size`).
    """

    frames: np.ndarray  # uint8 [T, H, W, 3] RGB
    frame_indices: np.ndarray  # int32 [T], indices into the source frames
    num_source_frames: int
    fps: float  # NaN when unknown (frame folders without a configured rate)
    duration_s: float  # NaN when unknown
    width: int
    height: int
    #: skipped unreadable images of a frame folder, as ``name (cause)``
    bad_frames: tuple[str, ...] = ()
    #: sampled frames resized to the first sampled frame's size (they differed from it)
    resized_frames: int = 0

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of ``frames``: the source's, or smaller when it was shrunk."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])


def kept_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The (width, height) a ``width`` x ``height`` frame is kept at: its own, or shrunk with
    its aspect ratio to at most ``max_pixels`` pixels (0: never shrunk)."""
    if max_pixels <= 0 or width * height <= max_pixels:
        return width, height
    factor = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * factor)), max(1, int(height * factor))


def take_stack(frames: dict[int, np.ndarray], indices: np.ndarray) -> np.ndarray:
    """``frames[i]`` for ``i`` in ``indices`` as one array, moved out of ``frames`` (each entry
    dropped after its last use): ``np.stack`` would hold every frame twice at its peak."""
    last = {int(i): k for k, i in enumerate(indices)}
    first = frames[int(indices[0])]
    stack = np.empty((len(indices), *first.shape), dtype=first.dtype)
    for k, i in enumerate(indices):
        stack[k] = frames[int(i)]
        if last[int(i)] == k:
            del frames[int(i)]
    return stack


def check_frame_size(where: str | os.PathLike[str], width: int, height: int) -> None:
    """``TooSmall`` for frames under :data:`MIN_FRAME_SIDE` on a side."""
    if min(width, height) < MIN_FRAME_SIDE:
        raise TooSmall(f"{where}: frames of {width}x{height} px are too small to find a face "
                       f"in (at least {MIN_FRAME_SIDE} px a side)")


def fit_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` resized to ``width`` x ``height`` (area averaging when shrinking), or itself."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    interp = cv2.INTER_AREA if w * h > width * height else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def _check_file(path: Path) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise MissingFile(f"{path}: file not found") from exc
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
        raise MissingFile(f"{path}: file not found") from exc
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
        return _count_packets(path, container)[0]


def _count_packets(path: Path, container) -> tuple[int, float]:  # noqa: ANN001
    """(video packets, seconds they cover from the stream start) by demuxing, no decoding."""
    import av

    stream = container.streams.video[0]
    count, end = 0, None
    try:
        for packet in container.demux(stream):
            if packet.size <= 0:
                continue
            count += 1
            if packet.pts is not None:
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
    except (av.error.FFmpegError, ValueError) as exc:
        if count == 0:
            raise CorruptFile(f"{path}: no video packet could be read ({exc})") from exc
    if end is None or not stream.time_base:
        return count, math.nan
    return count, float((end - (stream.start_time or 0)) * stream.time_base)


def _declared_duration(container, stream) -> float:  # noqa: ANN001
    """Duration in seconds the container header states (NaN when it states none)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return math.nan


def _check_shortfall(path: Path, expected: int, got: int, tolerance: float, what: str) -> None:
    """Raise ``TruncatedFile`` when ``got`` falls short of ``expected`` beyond tolerance.

    Headers of some muxers are off by a frame or two, so a shortfall of at most
    ``max(2, tolerance * expected)`` frames passes.
    """
    if expected - got > max(2, tolerance * expected):
        raise TruncatedFile(f"{path}: truncated: {what} {expected} frames but only {got} "
                            "could be read")


def upright(image: np.ndarray, rotation: float, mirrored: bool = False) -> np.ndarray:
    """``image`` as its display matrix shows it: ``rotation`` is PyAV's ``frame.rotation``,
    the counter-clockwise angle in degrees the player turns the stored picture by (a phone
    held upright stores a landscape picture and a +-90 matrix), rounded to quarter turns;
    ``mirrored``: the matrix also flips (``is_mirrored``), and FFmpeg's angle is then the turn
    that follows an upside-down flip (a plain left-right mirror reads as -180). The picture
    itself when there is no matrix.
    """
    if mirrored:
        image = image[::-1]
    quarter = int(round(float(rotation or 0) / 90.0)) % 4
    if quarter == 0:
        return np.ascontiguousarray(image) if mirrored else image
    return np.ascontiguousarray(np.rot90(image, k=quarter))


def is_mirrored(frame) -> bool:  # noqa: ANN001 - an av VideoFrame
    """Whether the frame's display matrix mirrors the picture (negative determinant), as
    front-camera clips and mirrored exports record it."""
    for data in frame.side_data:
        if data.type.name == "DISPLAYMATRIX":
            m = np.frombuffer(bytes(data), dtype="<i4", count=9)
            return int(m[0]) * int(m[4]) - int(m[1]) * int(m[3]) < 0
    return False


def use_decoder_threads(stream, threads: int) -> None:  # noqa: ANN001 - an av VideoStream
    """Decode ``stream`` on ``threads`` threads; 0: FFmpeg's choice (frame and slice threads,
    one per core).

    One pipeline job per core is how Snakemake fills a machine (each decode job declares
    ``threads: 1``), and there FFmpeg's threads only compete with the other jobs: two decode
    stage jobs at once on 2 cores take longer with a thread per core each than with one
    thread each (``benchmarks/results/decode.md``, "Two jobs at once"). A single process
    (``dfer predict``) gains from them on large frames. Decoding is bit-exact either way.
    """
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0: one per core), got {threads}")
    if threads == 0:
        stream.thread_type = "AUTO"
        return
    stream.codec_context.thread_count = threads
    if threads > 1:
        stream.thread_type = "AUTO"


class _Converter:
    """Decoded frames to upright RGB arrays, all at the size of the first one converted: the
    source size, or smaller when that exceeds ``max_pixels`` (module doc). Remembers the
    source's upright size and how many frames had to be resized to match the first."""

    def __init__(self, max_pixels: int) -> None:
        from av.video.reformatter import VideoReformatter

        self.max_pixels = max_pixels
        self.rgb = VideoReformatter()
        self.first: tuple[int, int] | None = None  # the first frame's (width, height) as stored
        self.size: tuple[int, int] | None = None  # ... and as kept
        self.source: tuple[int, int] | None = None  # upright (width, height) of the source
        self.resized = 0
        # the display matrix, read from the first frame only: PyAV's ``frame.side_data`` makes
        # a reference cycle that keeps each frame it is read from (96 MB for an 8000x8000
        # frame) alive until the garbage collector runs, and the stream's matrix is one
        self.display: tuple[float, bool] = (0.0, False)

    def __call__(self, frame) -> np.ndarray:  # noqa: ANN001 - an av VideoFrame
        if self.first is None:
            self.first = (frame.width, frame.height)
            self.size = kept_size(frame.width, frame.height, self.max_pixels)
            self.display = (float(frame.rotation or 0), is_mirrored(frame))
            turned = int(round(self.display[0] / 90.0)) % 2 == 1
            self.source = (frame.height, frame.width) if turned else self.first
        elif (frame.width, frame.height) != self.first:  # the resolution changed mid-stream
            self.resized += 1
        assert self.size is not None
        width, height = self.size
        if (width, height) == (frame.width, frame.height):
            image = self.rgb.reformat(frame, format="rgb24", threads=1).to_ndarray()
        else:  # shrink (or match the first frame) while converting: no full-size RGB copy
            image = self.rgb.reformat(frame, width=width, height=height, format="rgb24",
                                      interpolation="AREA", threads=1).to_ndarray()
        return upright(image, *self.display)


def _decode_wanted(path: Path, indices: np.ndarray, container=None,  # noqa: ANN001
                   threads: int = 0, expected: int = 0,
                   convert: _Converter | None = None) -> tuple[dict[int, np.ndarray], int, bool]:
    """One forward pass: RGB arrays of the wanted frame indices.

    Uses ``container`` when given (freshly opened, nothing read yet), else opens ``path``.
    Returns (frames by index, number of frames decoded, whether the stream ended early
    or broke before the last wanted index). ``threads``: see ``read_video``. ``expected``: the
    frame count ``indices`` were sampled over; when given, the unwanted non-reference frames
    are skipped (:mod:`dfer.video.skipping`), and where that cannot be done exactly every
    frame is decoded from a fresh start.

    One ``VideoReformatter`` (in ``convert``, a :class:`_Converter`) serves the whole pass:
    ``frame.to_ndarray(format="rgb24")`` builds a new swscale context for every frame, which
    costs more than decoding the frame; one thread, because a 16-frame conversion does not
    amortise a thread pool.
    """
    convert = convert if convert is not None else _Converter(0)
    if container is None:
        with _open(path) as fresh:
            return _decode_wanted(path, indices, fresh, threads, expected, convert)
    import av

    wanted = set(int(i) for i in indices)
    last = int(indices.max())
    stream = container.streams.video[0]
    use_decoder_threads(stream, threads)

    if expected:
        skipped = decode_skipping(container, indices, expected, convert)
        if skipped is not None:
            return skipped[0], last + 1, False
        convert.resized = 0  # read through: start afresh
        return _decode_wanted(path, indices, None, threads, convert=convert)
    out: dict[int, np.ndarray] = {}
    decoded = 0
    try:
        for i, frame in enumerate(container.decode(stream)):
            decoded = i + 1
            if i in wanted:
                out[i] = convert(frame)
            if i >= last:
                return out, decoded, False
    except (av.error.FFmpegError, ValueError) as exc:
        if decoded == 0:
            raise CorruptFile(f"{path}: no frame could be decoded ({exc})") from exc
    return out, decoded, True


def read_video(path: str | os.PathLike[str], num_frames: int,
               truncation_tolerance: float = 0.05, threads: int = 0,
               max_pixels: int = DEFAULT_MAX_FRAME_PIXELS) -> SampledFrames:
    """Decode the ``num_frames`` uniformly sampled frames of a video file.

    Frames are sampled by index (``sample_indices``), also in variable-frame-rate files: the
    model sees T frames spread over the clip's frames, as in the datasets' own frame folders.
    When fewer frames decode than the header promises, a small shortfall (at most
    ``truncation_tolerance`` of the frames, or 2 frames; headers of some muxers are off by a
    frame or two) is handled by sampling again over the frames that do decode; a larger one
    raises ``TruncatedFile``. Containers without a frame count (Matroska/WebM) are counted by
    demuxing, and that count is checked against the duration their header states.
    ``threads``: decoder threads (``use_decoder_threads``; 0: one per core). ``max_pixels``:
    larger frames are kept shrunk to this many pixels (:func:`kept_size`; 0: never).
    """
    path = Path(path)
    _check_file(path)
    convert = _Converter(max_pixels)
    with _open(path) as container:
        if not container.streams:
            raise CorruptFile(f"{path}: not a readable video container: it holds no streams "
                              "(its index is missing or damaged, e.g. an mp4 cut off before "
                              "its moov atom)")
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams}))
            raise NoVideoStream(f"{path}: no video stream (streams: {kinds})")
        stream = container.streams.video[0]
        header_frames = int(stream.frames or 0)
        fps = _stream_fps(stream)
        declared_s = _declared_duration(container, stream)
        total, covered_s = header_frames, math.nan
        if header_frames == 0:
            total, covered_s = _count_packets(path, container)
        else:  # the usual case: decode in this same pass over the file
            indices = sample_indices(total, num_frames)
            first_pass = _decode_wanted(path, indices, container, threads,
                                        expected=total if SKIP_UNWANTED_FRAMES else 0,
                                        convert=convert)
    if total == 0:
        raise NoFrames(f"{path}: the video stream holds no frames")
    # No frame count in the header: compare the time the packets cover with the stated
    # duration (time, not frames, so variable frame rates do not look truncated).
    missing_s = declared_s - covered_s
    if missing_s > max(2 / (fps if fps == fps else 25.0), truncation_tolerance * declared_s):
        raise TruncatedFile(f"{path}: truncated: the header states a duration of "
                            f"{declared_s:.3f} s but the video packets end at {covered_s:.3f} s "
                            f"({total} frames)")
    if header_frames == 0:
        indices = sample_indices(total, num_frames)
        first_pass = _decode_wanted(path, indices, threads=threads,
                                    expected=total if SKIP_UNWANTED_FRAMES else 0,
                                    convert=convert)
    frames, decoded, ended_early = first_pass
    if ended_early:
        if decoded == 0:
            raise CorruptFile(f"{path}: no frame could be decoded")
        _check_shortfall(path, total, decoded, truncation_tolerance,
                         "the container announces")
        total = decoded
        indices = sample_indices(total, num_frames)
        convert.resized = 0
        frames, decoded, ended_early = _decode_wanted(path, indices, threads=threads,
                                                      convert=convert)
        if ended_early:  # pragma: no cover - the same file decoded further a moment ago
            raise CorruptFile(f"{path}: decoding stopped at frame {decoded} on the second pass")
    assert convert.source is not None  # a frame was converted
    width, height = convert.source  # the decoded size is authoritative
    check_frame_size(path, width, height)
    stack = take_stack(frames, indices)
    duration = declared_s if declared_s == declared_s and declared_s > 0 else total / fps
    return SampledFrames(stack, indices, total, fps, duration, int(width), int(height),
                         resized_frames=convert.resized)


def natural_key(name: str) -> list[object]:
    """Sort ``frame2`` before ``frame10``: digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_frame_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of a frame folder in natural order of their names."""
    folder = Path(folder)
    if not folder.is_dir():
        if folder.exists():
            raise UnreadableFile(f"{folder}: not a frame folder")
        raise MissingFile(f"{folder}: frame folder not found")
    try:
        names = [e.name for e in os.scandir(folder)
                 if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS]
    except OSError as exc:
        raise UnreadableFile(f"{folder}: cannot list ({exc.strerror or exc})") from exc
    return [folder / n for n in sorted(names, key=natural_key)]


def read_image(path: Path, max_pixels: int = 0) -> np.ndarray:
    """An image file as RGB uint8 [H, W, 3] (grey and RGBA images are converted), upright:
    ``cv2.imdecode`` with ``IMREAD_COLOR`` applies the EXIF orientation tag. Shrunk to at most
    ``max_pixels`` pixels (:func:`kept_size`; 0: never) before the colour conversion."""
    return _read_image(path, max_pixels)[0]


def _read_image(path: Path, max_pixels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`read_image` and the image's upright (width, height) before any shrinking."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise UnreadableFile(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if data.size == 0:
        raise EmptyFile(f"{path}: empty image file (0 bytes)")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    del data
    if img is None:
        raise CorruptFile(f"{path}: not a decodable image (corrupt or truncated)")
    height, width = img.shape[:2]
    img = fit_to(img, *kept_size(width, height, max_pixels))
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), (width, height)


@dataclass
class _Folder:
    """The images of one frame folder read so far: good ones (RGB, by file index, all at the
    kept size of the first good one read) and the unreadable ones with their cause."""

    files: list[Path]
    max_pixels: int
    good: dict[int, np.ndarray] = field(default_factory=dict)
    bad: dict[int, str] = field(default_factory=dict)
    kinds: set[type[DecodeError]] = field(default_factory=set)  # the bad images' error kinds
    source: tuple[int, int] | None = None  # (width, height) of the first good image
    kept: tuple[int, int] | None = None  # the size every image is kept at
    resized: set[int] = field(default_factory=set)

    def read(self, index: int, keep: bool = True) -> None:
        """Read image ``index`` into ``good`` (only checked when not ``keep``) or ``bad``."""
        if index in self.good or index in self.bad:
            return
        try:
            image, source = _read_image(self.files[index], self.max_pixels)
        except DecodeError as exc:
            self.bad[index] = str(exc).removeprefix(f"{self.files[index]}: ")
            self.kinds.add(type(exc))
            return
        if self.kept is None:  # the first good image sets the size of every other
            self.source, self.kept = source, (image.shape[1], image.shape[0])
        elif (image.shape[1], image.shape[0]) != self.kept:
            self.resized.add(index)
            image = fit_to(image, *self.kept)
        if keep:
            self.good[index] = image

    def listing(self, limit: int = 20) -> str:
        """``00004.jpg (not a decodable image ...), ...``: the unreadable images, in order."""
        names = [f"{self.files[i].name} ({self.bad[i]})" for i in sorted(self.bad)]
        more = f", ... and {len(names) - limit} more" if len(names) > limit else ""
        return ", ".join(names[:limit]) + more


def read_frame_folder(folder: str | os.PathLike[str], num_frames: int,
                      fps: float | None = None, max_bad: float | None = None,
                      max_pixels: int = DEFAULT_MAX_FRAME_PIXELS) -> SampledFrames:
    """Read the ``num_frames`` uniformly sampled images of a frame folder.

    ``fps`` is the rate the frames were extracted at, when known (folders carry none).

    Unreadable images (corrupt, truncated, empty, unreadable files): when a sampled image
    cannot be read, every image of the folder is checked, so that one message names them all,
    and the clip is sampled again over the good ones when enough remain: with ``max_bad``
    None (``decode.max_bad_frames``' default), at least ``num_frames`` good images, so every
    sampled frame is a distinct good one; with a share, at most that share of the folder's
    images unreadable. Otherwise ``CorruptFile`` lists them with the fix. Images of another
    size than the first sampled one are resized to its size (counted in ``resized_frames``).
    ``max_pixels``: larger images are kept shrunk to this many pixels (0: never).
    """
    files = list_frame_files(folder)
    if not files:
        raise NoFrames(f"{folder}: frame folder holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    indices = sample_indices(len(files), num_frames)
    seen = _Folder(files, max_pixels)
    for i in indices:
        seen.read(int(i))
    if seen.bad:
        indices = _resample_good(folder, seen, num_frames, max_bad)
    assert seen.source is not None  # some image was read
    check_frame_size(folder, *seen.source)
    stack = take_stack(seen.good, indices)
    rate = float(fps) if fps else math.nan
    duration = len(files) / rate if fps else math.nan
    resized = sum(1 for i in indices if int(i) in seen.resized)
    bad = tuple(f"{files[i].name} ({seen.bad[i]})" for i in sorted(seen.bad))
    return SampledFrames(stack, indices, len(files), rate, duration, *seen.source,
                         bad_frames=bad, resized_frames=resized)


def _resample_good(folder: str | os.PathLike[str], seen: _Folder, num_frames: int,
                   max_bad: float | None) -> np.ndarray:
    """Indices of the folder's files sampled over its good images only, after every image was
    checked; ``CorruptFile`` naming every unreadable image when too few good ones remain."""
    total = len(seen.files)
    for i in range(total):  # every image, so that one message names all the bad ones
        seen.read(i, keep=False)  # checked only: the sample below reads what it needs
    good = [i for i in range(total) if i not in seen.bad]
    bad = len(seen.bad)
    share = bad / total
    if not good:
        keep, rule = False, "no image is readable"
    elif max_bad is None:
        keep = len(good) >= num_frames
        rule = (f"the {len(good)} good one(s) are fewer than decode.num_frames ({num_frames}); "
                "set decode.max_bad_frames to the share of a folder's images that may be "
                f"unreadable (e.g. {math.ceil(share * 100) / 100:g}) to keep such clips")
    else:
        keep = share <= max_bad
        rule = f"that is more than decode.max_bad_frames ({max_bad:g}) of its images"
    if not keep:  # one kind of damage keeps its error_type (empty_file, unreadable, ...)
        kind = next(iter(seen.kinds)) if len(seen.kinds) == 1 else CorruptFile
        raise kind(f"{folder}: {bad} of {total} image(s) unreadable: {seen.listing()}; "
                   f"{rule}; or replace or remove the unreadable file(s)")
    picked = np.asarray(good, dtype=np.int64)[sample_indices(len(good), num_frames)]
    for i in picked:
        seen.read(int(i))
    return picked.astype(np.int32)
