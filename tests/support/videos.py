"""Write small synthetic videos with PyAV: the inputs of the decode tests and benchmark.

Real datasets cannot be downloaded here, and the faults decode must survive (odd sizes,
grey pixel formats, variable frame rates, audio-only files, truncation) are properties of the
container and codec, not of the picture. These helpers make each of them in milliseconds,
deterministically, so tests build their inputs instead of shipping binary fixtures.

Frame content encodes the frame number (``frame_pattern``), so a test can tell from a decoded
frame which source frame it is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np


def frame_pattern(index: int, width: int, height: int) -> np.ndarray:
    """RGB uint8 [H, W, 3] frame whose flat grey level identifies ``index`` (step 8, mod 256).

    A flat frame survives lossy coding within a few grey levels, so
    ``frame_number(decoded) == index`` for up to 32 frames; a moving bar is added so the
    encoder has real motion to code (and the frame is not trivially skippable).
    """
    frame = np.full((height, width, 3), (8 * index + 4) % 256, dtype=np.uint8)
    bar = max(1, width // 16)
    x0 = (index * bar) % max(1, width - bar)
    frame[: max(1, height // 8), x0 : x0 + bar] = 255 - frame[0, 0]
    return frame


def frame_number(frame: np.ndarray) -> int:
    """Inverse of ``frame_pattern`` (mod 32), read from the frame's lower-right quarter."""
    h, w = frame.shape[:2]
    level = float(np.median(frame[h // 2 :, w // 2 :]))
    return int(round((level - 4) / 8)) % 32


def pattern_frames(num: int, width: int, height: int) -> list[np.ndarray]:
    """``num`` frames of ``frame_pattern``."""
    return [frame_pattern(i, width, height) for i in range(num)]


def write_video(
    path: str | os.PathLike[str],
    frames: Sequence[np.ndarray],
    *,
    fps: int = 15,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    pts_ms: Sequence[int] | None = None,
    options: dict[str, str] | None = None,
    faststart: bool = False,
    display: tuple[int, bool, bool] | None = None,
) -> Path:
    """Encode RGB (or, with a ``gray`` ``pix_fmt``, grey [H, W] or RGB) frames to ``path``.

    The container follows the file extension. ``pts_ms`` gives each frame's presentation time
    in milliseconds: a variable frame rate. ``faststart`` puts the mp4 header (``moov``) first,
    as streaming files have it, so a truncated file still opens and announces its frame count.
    One encoder thread keeps the bytes identical on every machine. ``display`` records a display
    matrix, ``(degrees, hflip, vflip)`` as PyAV's ``set_display_rotation`` takes them (a turn
    counter-clockwise, then mirrors), as phones and front cameras do.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    container_options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=container_options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps), options=dict(options or {}))
        stream.width, stream.height = int(frames[0].shape[1]), int(frames[0].shape[0])
        stream.pix_fmt = pix_fmt
        stream.codec_context.thread_count = 1
        if display is not None:
            degrees, hflip, vflip = display
            stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        time_base = Fraction(1, 1000)
        if pts_ms is not None:
            if len(pts_ms) != len(frames):
                raise ValueError(f"pts_ms has {len(pts_ms)} entries for {len(frames)} frames")
            # the encoder's clock must be as fine as the timestamps, or close frames collide
            stream.codec_context.time_base = time_base
            stream.time_base = time_base
        for i, arr in enumerate(frames):
            fmt = "gray" if arr.ndim == 2 else "rgb24"
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt)
            if pts_ms is not None:
                frame.pts = int(pts_ms[i])
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: str | os.PathLike[str], seconds: float = 0.5,
                     sample_rate: int = 16000) -> Path:
    """An AAC file (container from the extension, e.g. ``.mp4``) with no video stream."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = 1024
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        stream.layout = "mono"
        t = np.arange(int(seconds * sample_rate), dtype=np.float32) / sample_rate
        tone = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for k, start in enumerate(range(0, len(tone), samples)):
            chunk = np.zeros((1, samples), dtype=np.float32)
            part = tone[start : start + samples]
            chunk[0, : len(part)] = part
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = k * samples
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def truncate_file(path: str | os.PathLike[str], keep: float) -> Path:
    """Cut ``path`` to the first ``keep`` fraction of its bytes (an interrupted download)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def face_frames(num: int, size: int = 160, seed: int = 0) -> list[np.ndarray]:
    """``num`` RGB frames [size, size, 3] of a real face (the astronaut photo) drifting slowly.

    dlib's HOG detector finds faces from about 80 px, so ``size`` >= 140 keeps the face
    detectable; the drift and a little noise make consecutive frames differ.
    """
    import cv2
    from skimage import data

    photo = data.astronaut()  # 512 x 512, face around (x 150-260, y 60-200)
    roi = photo[20:280, 80:340]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(num):
        dx, dy = 4 * np.sin(i / 3.0), 3 * np.cos(i / 4.0)
        m = np.array([[size / roi.shape[1], 0, dx], [0, size / roi.shape[0], dy]], np.float32)
        frame = cv2.warpAffine(roi, m, (size, size), borderMode=cv2.BORDER_REFLECT_101)
        noise = rng.integers(-3, 4, size=frame.shape)
        out.append(np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return out


def write_frame_folder(folder: str | os.PathLike[str], frames: Sequence[np.ndarray],
                       ext: str = ".jpg", start: int = 1) -> Path:
    """Write frames as ``{start:05d}{ext}, ...`` images (FERV39k / MAFW style)."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, arr in enumerate(frames, start=start):
        img = arr if arr.ndim == 2 else arr[..., ::-1]
        if not cv2.imwrite(str(folder / f"{i:05d}{ext}"), img):
            raise OSError(f"OpenCV could not write {folder / f'{i:05d}{ext}'}")
    return folder


__all__ = [
    "face_frames",
    "frame_number",
    "frame_pattern",
    "pattern_frames",
    "truncate_file",
    "write_audio_only",
    "write_frame_folder",
    "write_video",
]
