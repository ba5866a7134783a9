"""Synthetic, labelled demo dataset of short facial-expression clips (offline, seconds to make).

Real datasets (DFEW, FERV39k, MAFW) cannot be downloaded here, yet every stage needs real
video files with real faces to run end to end. We animate the one real face photo that ships
offline (``skimage.data.astronaut()``): dlib finds its 68 landmarks, and each class moves
those landmarks over time (happiness: lip corners up and out; sadness: corners down, inner
brows up; anger: brows down and together, lips pressed; surprise: brows up, jaw drop, eyes
wide; neutral: idle motion only). The motion is turned into a smooth displacement field
(a kernel-weighted average of the landmark displacements that fades to zero away from the
face) and applied with ``cv2.remap``, which is fast enough to make 40 clips in seconds.

Every clip differs by random intensity, onset, head drift, scale, rotation, brightness,
mirroring, noise and background, drawn from ``(seed, class, index)``, so a classifier has to
learn the facial motion rather than memorise a clip, and the output is byte-for-byte
reproducible from the seed. One clip in ``frames_every`` is written as a folder of JPEG
frames instead of an mp4 (equally often in every class and fold), so both input kinds of the
real datasets appear.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from dfer.core.artifacts import atomic_path, write_bytes_atomic

#: Class names of the demo dataset, in label-index order.
CLASSES: tuple[str, ...] = ("happiness", "sadness", "neutral", "anger", "surprise")

#: Manifest columns (path relative to the dataset root; fold in 1..num_folds).
MANIFEST_COLUMNS = ("clip_id", "path", "label", "fold")

# --- 68-point landmark groups (iBUG 300-W numbering, image left = subject's right) --------
_JAW = range(0, 17)
_CHIN = range(5, 12)
_BROW_R = range(17, 22)  # image-left brow; 21 is its inner end
_BROW_L = range(22, 27)  # image-right brow; 22 is its inner end
_UPPER_LID = (37, 38, 43, 44)
_LOWER_LID = (40, 41, 46, 47)
_MOUTH_L = (48, 60)  # image-left mouth corner (outer, inner)
_MOUTH_R = (54, 64)
_UPPER_LIP = (49, 50, 51, 52, 53, 61, 62, 63)
_LOWER_LIP = (55, 56, 57, 58, 59, 65, 66, 67)


@dataclass(frozen=True)
class _Face:
    """The source photo, a region of interest around its face, and the face's landmarks."""

    roi: np.ndarray  # RGB uint8 [R, R, 3], the part of the photo we animate
    points: np.ndarray  # [68, 2] landmarks in ROI pixels (x, y)
    width: float  # face width (jaw end to jaw end) in ROI pixels: the unit of every motion


def _expression_displacements(face: _Face) -> dict[str, np.ndarray]:
    """Landmark displacements [68, 2] (pixels, in ROI coordinates) of each class at apex."""
    s = face.width
    out: dict[str, np.ndarray] = {}

    def new() -> np.ndarray:
        return np.zeros((68, 2), dtype=np.float64)

    d = new()  # happiness: wide lip-corner pull up and out, lips part, cheeks squint
    d[list(_MOUTH_L)] += (-0.12 * s, -0.10 * s)
    d[list(_MOUTH_R)] += (0.12 * s, -0.10 * s)
    d[[49, 59]] += (-0.06 * s, -0.05 * s)
    d[[53, 55]] += (0.06 * s, -0.05 * s)
    d[[50, 51, 52, 61, 62, 63]] += (0.0, -0.03 * s)
    d[[56, 57, 58, 65, 66, 67]] += (0.0, 0.03 * s)
    d[list(_LOWER_LID)] += (0.0, -0.03 * s)
    out["happiness"] = d

    d = new()  # sadness: corners drop, inner brows up and together, lower lip pushed up
    d[list(_MOUTH_L)] += (0.03 * s, 0.14 * s)
    d[list(_MOUTH_R)] += (-0.03 * s, 0.14 * s)
    d[[49, 59]] += (0.01 * s, 0.07 * s)
    d[[53, 55]] += (-0.01 * s, 0.07 * s)
    d[[57, 66]] += (0.0, -0.03 * s)
    d[[20, 21]] += (0.03 * s, -0.12 * s)
    d[[22, 23]] += (-0.03 * s, -0.12 * s)
    d[[17, 18, 25, 26]] += (0.0, 0.03 * s)
    d[list(_UPPER_LID)] += (0.0, 0.02 * s)
    out["sadness"] = d

    out["neutral"] = new()  # idle motion only (added to every class)

    d = new()  # anger: brows down hard and together, lids narrowed, lips pressed and narrow
    d[list(_BROW_R)] += (0.05 * s, 0.08 * s)
    d[list(_BROW_L)] += (-0.05 * s, 0.08 * s)
    d[[20, 21, 22, 23]] += (0.0, 0.04 * s)
    d[list(_UPPER_LID)] += (0.0, 0.025 * s)
    d[list(_LOWER_LID)] += (0.0, -0.015 * s)
    d[list(_UPPER_LIP)] += (0.0, 0.03 * s)
    d[list(_LOWER_LIP)] += (0.0, -0.04 * s)
    d[list(_MOUTH_L)] += (0.06 * s, 0.0)
    d[list(_MOUTH_R)] += (-0.06 * s, 0.0)
    out["anger"] = d

    d = new()  # surprise: brows high, eyes wide, jaw drops with the lower lip (mouth open)
    d[list(_BROW_R) + list(_BROW_L)] += (0.0, -0.12 * s)
    d[list(_UPPER_LID)] += (0.0, -0.035 * s)
    d[list(_LOWER_LID)] += (0.0, 0.015 * s)
    d[list(_CHIN)] += (0.0, 0.20 * s)
    d[[3, 13]] += (0.0, 0.05 * s)
    d[[4, 12]] += (0.0, 0.10 * s)
    d[list(_LOWER_LIP)] += (0.0, 0.20 * s)
    d[[50, 51, 52, 61, 62, 63]] += (0.0, -0.02 * s)
    d[list(_MOUTH_L)] += (0.03 * s, 0.06 * s)
    d[list(_MOUTH_R)] += (-0.03 * s, 0.06 * s)
    out["surprise"] = d

    d = new()  # blink (idle): upper lids close onto the lower lids
    d[list(_UPPER_LID)] += (0.0, 0.05 * s)
    d[list(_LOWER_LID)] += (0.0, -0.01 * s)
    out["_blink"] = d

    d = new()  # talk (idle): small jaw / lower-lip opening
    d[list(_CHIN)] += (0.0, 0.03 * s)
    d[list(_LOWER_LIP)] += (0.0, 0.035 * s)
    out["_talk"] = d
    return out


def _displacement_field(face: _Face, disp: np.ndarray) -> np.ndarray:
    """Dense field [R, R, 2] from landmark displacements: a Gaussian-kernel weighted average.

    A constant background weight in the denominator makes the field fade to zero a few
    kernel widths away from the landmarks, so hair, neck and background stay put.
    """
    size = face.roi.shape[0]
    sigma = 0.07 * face.width
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    num = np.zeros((size, size, 2), dtype=np.float32)
    den = np.full((size, size), 0.05, dtype=np.float32)
    for (px, py), d in zip(face.points, disp, strict=True):
        w = np.exp(-((xs - px) ** 2 + (ys - py) ** 2) / np.float32(2 * sigma * sigma))
        den += w
        if d.any():
            num += w[..., None] * d.astype(np.float32)
    return num / den[..., None]


@functools.lru_cache(maxsize=1)
def _source_face() -> tuple[_Face, dict[str, np.ndarray]]:
    """Landmarks of the bundled astronaut photo and each motion's dense field (cached)."""
    import dlib
    from skimage import data

    from dfer.core.face_detect import SHAPE_PREDICTOR_68, largest_face, model_file

    photo = np.ascontiguousarray(data.astronaut())
    box = largest_face(photo, kind="hog", upsample=1)
    if box is None:  # pragma: no cover - the bundled photo always has a face
        raise RuntimeError("dlib found no face in skimage.data.astronaut()")
    predictor = dlib.shape_predictor(str(model_file(SHAPE_PREDICTOR_68)))
    rect = dlib.rectangle(int(box.x0), int(box.y0), int(box.x1), int(box.y1))
    shape = predictor(photo, rect)
    points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    width = float(np.linalg.norm(points[16] - points[0]))
    # A square region 2.6 face widths wide, centred a little above the landmark centre
    # (hair), cut from the photo with edge padding where it leaves the image.
    cx, cy = points.mean(axis=0)
    side = int(round(2.6 * width))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - 0.1 * width - side / 2))
    pad = side
    padded = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    roi = padded[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side].copy()
    face = _Face(roi=roi, points=points - (x0, y0), width=width)
    fields = {
        name: _displacement_field(face, d) for name, d in _expression_displacements(face).items()
    }
    return face, fields


def _smoothstep(x: np.ndarray | float) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True)
class _ClipStyle:
    """Per-clip random variation (everything but the class)."""

    num_frames: int
    intensity: float
    onset: float  # seconds
    ramp: float  # seconds from onset to apex
    release: float  # fraction of the apex given back by the end of the clip
    blink_at: float | None  # seconds
    talk_amp: float
    talk_freq: float
    scale: float
    zoom: float  # relative scale change over the clip
    angle0: float  # degrees
    angle_drift: float
    shift0: tuple[float, float]  # fraction of the frame size
    drift: tuple[float, float]
    gain: np.ndarray  # per channel
    bias: float
    noise: float
    mirror: bool
    bg_colors: np.ndarray  # [2, 3]
    bg_angle: float
    bg_alpha: float


def _draw_style(rng: np.random.Generator, num_frames_range: tuple[int, int], fps: float) -> _ClipStyle:
    n = int(rng.integers(num_frames_range[0], num_frames_range[1] + 1))
    duration = n / fps
    return _ClipStyle(
        num_frames=n,
        intensity=float(rng.uniform(0.8, 1.2)),
        onset=float(rng.uniform(0.0, 0.2) * duration),
        ramp=float(rng.uniform(0.15, 0.3) * duration),
        release=float(rng.uniform(0.0, 0.15)),
        blink_at=float(rng.uniform(0.1, 0.9) * duration) if rng.random() < 0.5 else None,
        talk_amp=float(rng.uniform(0.0, 0.3)),
        talk_freq=float(rng.uniform(1.5, 4.0)),
        scale=float(rng.uniform(0.95, 1.05)),
        zoom=float(rng.uniform(-0.02, 0.02)),
        angle0=float(rng.uniform(-3.0, 3.0)),
        angle_drift=float(rng.uniform(-1.5, 1.5)),
        shift0=(float(rng.uniform(-0.02, 0.02)), float(rng.uniform(-0.02, 0.02))),
        drift=(float(rng.uniform(-0.02, 0.02)), float(rng.uniform(-0.02, 0.02))),
        gain=rng.uniform(0.9, 1.1) * rng.uniform(0.97, 1.03, size=3),
        bias=float(rng.uniform(-8.0, 8.0)),
        noise=float(rng.uniform(0.0, 3.0)),
        mirror=bool(rng.random() < 0.25),
        bg_colors=rng.uniform(0, 255, size=(2, 3)),
        bg_angle=float(rng.uniform(0, 2 * np.pi)),
        bg_alpha=float(rng.uniform(0.5, 1.0)),
    )


def _background(style: _ClipStyle, size: int) -> np.ndarray:
    """A two-colour linear gradient [size, size, 3] float32 at a random angle."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    t = np.cos(style.bg_angle) * xs + np.sin(style.bg_angle) * ys
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1 = style.bg_colors.astype(np.float32)
    return c0 * (1 - t[..., None]) + c1 * t[..., None]


def _head_mask(face: _Face) -> np.ndarray:
    """Soft elliptical mask [R, R] (1 on the head, 0 on the background) in ROI pixels."""
    size = face.roi.shape[0]
    cx, cy = face.points.mean(axis=0)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.sqrt(((xs - cx) / (0.72 * face.width)) ** 2 + ((ys - cy + 0.1 * face.width) / (0.95 * face.width)) ** 2)
    return np.clip((1.25 - r) / 0.25, 0.0, 1.0).astype(np.float32)


def _render_clip(label: str, style: _ClipStyle, rng: np.random.Generator, size: int,
                 fps: float) -> Iterator[np.ndarray]:
    """Yield the RGB uint8 [size, size, 3] frames of one clip."""
    face, fields = _source_face()
    roi_size = face.roi.shape[0]
    base_xs, base_ys = np.meshgrid(np.arange(roi_size, dtype=np.float32),
                                   np.arange(roi_size, dtype=np.float32))
    mask = _head_mask(face)
    gain = style.gain.astype(np.float32)
    # Background already coloured by the clip's gain and bias; the head gets them per frame.
    background = (_background(style, size) * gain + np.float32(style.bias)).astype(np.float32)
    # Sensor noise: one bank per clip, a different random window of it in every frame.
    noise_bank = np.float32(style.noise) * rng.standard_normal((2 * size, 2 * size, 3),
                                                                dtype=np.float32)
    n = style.num_frames
    for i in range(n):
        t = i / fps
        tt = i / max(n - 1, 1)
        alpha = style.intensity * float(_smoothstep((t - style.onset) / style.ramp))
        alpha *= 1.0 - style.release * float(_smoothstep((tt - 0.75) / 0.25))
        talk = style.talk_amp * 0.5 * (1 - np.cos(2 * np.pi * style.talk_freq * t))
        field = np.float32(alpha) * fields[label] + np.float32(talk) * fields["_talk"]
        if style.blink_at is not None:
            blink = float(np.exp(-(((t - style.blink_at) / 0.07) ** 2)))
            if blink > 0.01:
                field = field + np.float32(blink) * fields["_blink"]
        # Backward warp: output(x) = input(x - d(x)) moves content by d.
        warped = cv2.remap(face.roi, base_xs - field[..., 0], base_ys - field[..., 1],
                           interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        # Head pose: similarity transform of the ROI into the output frame.
        scale = style.scale * (1 + style.zoom * tt) * size / roi_size
        angle = style.angle0 + style.angle_drift * tt + 0.5 * np.sin(2 * np.pi * 0.7 * t)
        centre = (roi_size / 2, roi_size / 2)
        m = cv2.getRotationMatrix2D(centre, angle, scale)
        shift_x = (style.shift0[0] + style.drift[0] * tt) * size
        shift_y = (style.shift0[1] + style.drift[1] * tt) * size
        m[:, 2] += (size / 2 - centre[0] + shift_x, size / 2 - centre[1] + shift_y)
        head = cv2.warpAffine(warped.astype(np.float32), m, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)
        head_mask = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
        # Head weight: 1 on the head, 1 - bg_alpha on the rest of the photo.
        w = 1.0 - np.float32(style.bg_alpha) * (1.0 - head_mask)
        frame = head * gain
        frame += np.float32(style.bias)
        frame *= w
        frame += (1.0 - w) * background
        ox, oy = rng.integers(0, size, size=2)
        frame += noise_bank[oy : oy + size, ox : ox + size]
        if style.mirror:
            frame = frame[:, ::-1]
        yield np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def _encode_mp4(frames: list[np.ndarray], path: Path, fps: int) -> None:
    """Encode RGB frames to an H.264 (or MPEG-4 Part 2) mp4 at ``path`` with PyAV."""
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    options = {"crf": "20", "preset": "veryfast"} if codec == "libx264" else {"qscale": "3"}
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(fps), options=options)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1  # one thread: identical bytes on every machine
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    write_bytes_atomic(path, buf.getvalue())


def _write_frame_folder(frames: list[np.ndarray], folder: Path, quality: int = 92) -> None:
    """Write ``00001.jpg ...`` into ``folder``, replacing it as a whole (temp dir + rename)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        for i, arr in enumerate(frames, start=1):
            ok, buf = cv2.imencode(".jpg", arr[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
                raise RuntimeError(f"OpenCV could not encode frame {i} of {folder}")
            (tmp / f"{i:05d}.jpg").write_bytes(buf.tobytes())
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
        raise


def clip_rng(seed: int, class_idx: int, index: int) -> np.random.Generator:
    """The random generator of one clip: independent of how many clips are generated."""
    return np.random.default_rng([seed, class_idx, index])


def _is_frame_folder(k: int, class_idx: int, frames_every: int, num_folds: int) -> bool:
    """Whether clip ``k`` of class ``class_idx`` is written as a JPEG folder instead of an mp4.

    Why not every ``frames_every``-th clip in generation order: with 5 classes and 2 folds that
    put the folders in different classes per fold (a nuisance that tracks the label, which a
    model can learn with the wrong sign on the held-out fold). Here the clips are laid out in
    rows of one clip per class, row ``k // num_folds`` being the same in every fold, and every
    ``frames_every``-th slot of that layout is a folder: the folds get identical per-class
    counts, and with ``clips_per_class / num_folds`` rows a multiple of ``frames_every`` (6 with
    the 5 classes, 12 clips per class and 2 folds) every class gets the same number per fold
    (16 per class: two classes get 2 folders per fold, the others 1, alike in both folds).
    Slot 3 of the first row is a folder, so even a one-clip-per-class demo has one.
    """
    if frames_every <= 0:
        return False
    slot = (k // num_folds) * len(CLASSES) + class_idx
    return slot % frames_every == 3 % frames_every


def generate_demo(
    root: Path,
    seed: int = 0,
    clips_per_class: int = 8,
    *,
    fps: int = 15,
    size: int = 256,
    num_frames: tuple[int, int] = (24, 36),
    frames_every: int = 6,
    num_folds: int = 2,
    progress: bool = True,
) -> Path:
    """Write the demo dataset under ``root``; return the path of ``root/manifest.csv``.

    Layout: ``videos/{clip_id}.mp4`` and, for one clip in ``frames_every`` (0 disables),
    ``frames/{clip_id}/00001.jpg ...``, chosen by :func:`_is_frame_folder` so that the source
    kind is not correlated with the label or the fold. The manifest (``clip_id,path,label,fold``; path
    relative to ``root``; fold in ``1..num_folds``, balanced per class) is written last and
    atomically, so its presence means the dataset is complete. ``num_frames`` is the
    inclusive range of clip lengths in frames at ``fps``.
    """
    from tqdm import tqdm

    if clips_per_class < 1:
        raise ValueError(f"clips_per_class must be >= 1, got {clips_per_class}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str, int]] = []
    jobs = [(k, c) for k in range(clips_per_class) for c in range(len(CLASSES))]
    for k, c in tqdm(jobs, desc="demo clips", unit="clip", disable=not progress):
        label = CLASSES[c]
        clip_id = f"{label}_{k:03d}"
        rng = clip_rng(seed, c, k)
        style = _draw_style(rng, num_frames, fps)
        frames = list(_render_clip(label, style, rng, size, fps))
        if _is_frame_folder(k, c, frames_every, num_folds):
            rel = f"frames/{clip_id}"
            _write_frame_folder(frames, root / rel)
        else:
            rel = f"videos/{clip_id}.mp4"
            _encode_mp4(frames, root / rel, fps)
        rows.append((clip_id, rel, label, 1 + k % num_folds))
    lines = [",".join(MANIFEST_COLUMNS)] + [f"{a},{b},{c},{d}" for a, b, c, d in rows]
    manifest = root / "manifest.csv"
    with atomic_path(manifest) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest
