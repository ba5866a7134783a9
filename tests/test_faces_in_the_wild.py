"""Decode on footage from the wild: small, moving, rotated and crowded faces (issue 13).

Every clip is generated here: the astronaut photo's face (the one real face that ships
offline) pasted at a known place and size on a textured 640x360 background, so each test can
say where the crop must be, not only that a crop came out. ``FACE`` sizes are dlib HOG box
sides in output pixels; dlib's HOG detector without upsampling finds faces from about 60 px
and misses them at 50 px, which the escalation test relies on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.videos import write_frame_folder, write_video

from dfer.core.artifacts import read_meta
from dfer.video import DecodeConfig, decode_clip, decode_shard
from dfer.video.track import fill_and_smooth, link_tracks, main_track

W, H = 640, 360
#: The astronaut's face in ``skimage.data.astronaut()``: dlib HOG box centre and side (512 px).
_PHOTO_CENTRE, _PHOTO_SIDE = (220.0, 121.0), 90.0
TRACK = {"num_frames": 16, "size": 64, "crop": "track"}


def _background(seed: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(60, 190, (H // 8, W // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)


def scene(faces: list[tuple[float, float, float, bool]], seed: int = 0,
          width: int = W, height: int = H) -> np.ndarray:
    """One RGB frame with a face per ``(cx, cy, side, mirrored)``: the face's detector box is
    centred at (cx, cy) with the given side (pasted in order: later faces on top)."""
    import cv2
    from skimage import data

    photo = data.astronaut()
    frame = _background(seed)[:height, :width].copy()
    if frame.shape[:2] != (height, width):
        frame = cv2.resize(_background(seed), (width, height))
    yy, xx = np.mgrid[:height, :width]
    for cx, cy, side, mirrored in faces:
        src = photo[:, ::-1] if mirrored else photo
        px = 512 - _PHOTO_CENTRE[0] if mirrored else _PHOTO_CENTRE[0]
        s = side / _PHOTO_SIDE
        m = np.array([[s, 0, cx - px * s], [0, s, cy - _PHOTO_CENTRE[1] * s]], np.float32)
        warped = cv2.warpAffine(np.ascontiguousarray(src), m, (width, height))
        r = ((xx - cx) / (1.3 * side)) ** 2 + ((yy - cy) / (1.7 * side)) ** 2
        alpha = np.clip(1.5 - r, 0, 1)[..., None]
        frame = (warped * alpha + frame * (1 - alpha)).astype(np.uint8)
    return frame


def _video(path: Path, frames: list[np.ndarray]) -> Path:
    return write_video(path, frames, options={"crf": "16"})


def _centres(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


# --- escalation ---------------------------------------------------------------------------


def test_small_face_found_by_escalation_and_recorded(tmp_path: Path) -> None:
    """A 50 px face in a 640x360 frame: HOG misses it, the upsampled rung finds it, the crop
    sits on it and ``detector_used`` says which rung; with escalation off it is a centre crop."""
    centre = (430.0, 150.0)
    clip = _video(tmp_path / "small.mp4", [scene([(*centre, 50, False)], seed=i % 3)
                                           for i in range(12)])
    cfg = {"num_frames": 6, "size": 48}

    found = decode_clip(clip, "video", cfg)
    assert found.detector_used == "hog-up1"
    assert found.face_frames >= 4 and found.face_found_frac == found.face_frames / 6
    (cx, cy), = _centres(found.crop_box[None])
    assert abs(cx - centre[0]) < 12 and abs(cy - centre[1]) < 12
    assert found.crop_box[2] - found.crop_box[0] < 110  # a face crop, not the frame

    off = decode_clip(clip, "video", {**cfg, "escalate": []})
    assert off.detector_used is None and off.face_frames == 0 and off.face_found_frac == 0
    assert off.crop_box.tolist() == [140, 0, 500, 360]  # the centred square


def test_escalation_ladder_and_provenance_of_defaults() -> None:
    """The ladder runs the configured detector first and skips repeats; settings at their
    defaults stay out of provenance, so default artifacts keep their bytes."""
    assert DecodeConfig().ladder() == [("hog", 0), ("hog", 1), ("mmod", 0)]
    assert DecodeConfig(upsample=1).ladder() == [("hog", 1), ("mmod", 0)]
    assert DecodeConfig(escalate=[]).ladder() == [("hog", 0)]
    with pytest.raises(ValueError, match="decode.escalate"):
        DecodeConfig(escalate=["cnn"])
    params = DecodeConfig().provenance_params()
    assert not {"escalate", "crop", "track_smooth"} & set(params)
    assert DecodeConfig(crop="track", escalate=[]).provenance_params()["escalate"] == []
    # the quick-pass settings change the crops of artifacts made before them: always recorded
    assert {"quick_frames": 1, "detect_scale": 0.75, "detect_gray": True}.items() <= params.items()


# --- quick pass (decode.quick_frames, detect_scale, detect_gray) -----------------------------


def test_quick_pass_settings_are_validated() -> None:
    for bad, word in (({"quick_frames": -1}, "decode.quick_frames"),
                      ({"detect_scale": 0.0}, "decode.detect_scale"),
                      ({"detect_scale": 1.5}, "decode.detect_scale")):
        with pytest.raises(ValueError, match=word):
            DecodeConfig(**bad)
    with pytest.raises(ValueError, match="detect_gray"):
        DecodeConfig.from_params({"detect_gray": "yes"})
    assert DecodeConfig.from_params({"quick_frames": 0, "detect_scale": 1,
                                     "detect_gray": False}).detect_scale == 1


def test_quick_pass_settles_a_steady_face_from_one_downscaled_frame(tmp_path: Path) -> None:
    """A steady 120 px face: one detection on a 3/4-size frame places the crop (face_frames 1)
    within a few px of the known centre, as the full pass over 8 frames does."""
    centre = (300.0, 170.0)
    clip = _video(tmp_path / "steady.mp4", [scene([(*centre, 120, False)], seed=i % 3)
                                            for i in range(16)])
    quick = decode_clip(clip, "video", {"num_frames": 16, "size": 48})
    assert quick.detector_used == "hog-up0"
    assert quick.face_frames == 1 and quick.face_found_frac == 1.0  # the quick pass decided
    (qx, qy), = _centres(quick.crop_box[None])
    assert abs(qx - centre[0]) < 12 and abs(qy - centre[1]) < 12  # a tenth of the face

    full = decode_clip(clip, "video", {"num_frames": 16, "size": 48, "quick_frames": 0,
                                       "detect_gray": False})  # the detection before it
    assert full.face_frames == 8
    (fx, fy), = _centres(full.crop_box[None])
    assert abs(qx - fx) < 12 and abs(qy - fy) < 12
    side = lambda c: float(c.crop_box[2] - c.crop_box[0])  # noqa: E731
    assert abs(side(quick) - side(full)) < 0.15 * side(full)


def test_face_the_downscaled_quick_pass_misses_is_found_at_full_resolution(
        tmp_path: Path) -> None:
    """A 70 px face is about 52 px in a 3/4-size frame, under HOG's limit: the quick pass and
    the downscaled full pass find nothing, and the full pass at full size (8 frames) finds it,
    without escalation: the box ``detect_scale: 1`` gives."""
    from dfer.video import read_video
    from dfer.video.crop import detect_boxes

    centre = (420.0, 160.0)
    clip = _video(tmp_path / "small.mp4", [scene([(*centre, 70, False)], seed=i % 3)
                                           for i in range(16)])
    frames = read_video(clip, 16).frames
    assert detect_boxes(frames[[8]], scale=0.75, gray=True) == [None]  # the quick pass misses
    out = decode_clip(clip, "video", {"num_frames": 16, "size": 48})
    assert out.detector_used == "hog-up0"  # found by the full pass, no escalation
    assert out.face_frames >= 4 and out.face_found_frac == out.face_frames / 8
    (cx, cy), = _centres(out.crop_box[None])
    assert abs(cx - centre[0]) < 10 and abs(cy - centre[1]) < 10
    assert detect_boxes(frames[1::2], scale=0.75, gray=True) == [None] * 8
    full_size = decode_clip(clip, "video", {"num_frames": 16, "size": 48, "detect_scale": 1.0})
    assert full_size.crop_box.tolist() == out.crop_box.tolist()


def test_moving_face_falls_through_to_the_full_pass(tmp_path: Path) -> None:
    """A face crossing the frame does not stay put: the quick box (one frame's) is dropped and
    the crop is the full pass's median box (on 3/4-size frames), within a tenth of the face of
    the full-size pass's."""
    from dfer.video import read_video
    from dfer.video.api import stays_put
    from dfer.video.crop import detect_boxes

    n, y = 32, 190.0
    xs = np.linspace(110, 530, n)
    clip = _video(tmp_path / "moving.mp4", [scene([(x, y, 110, False)], seed=1) for x in xs])
    frames = read_video(clip, 16).frames
    box = detect_boxes(frames[[8]], scale=0.75, gray=True)[0]
    assert box is not None  # the quick pass finds the face ...
    assert not stays_put(frames, box, 8, np.arange(16)[1::2])  # ... but it moves away
    assert stays_put(frames, box, 8, np.array([8]))
    cfg = {"num_frames": 16, "size": 48}
    out = decode_clip(clip, "video", cfg)
    before = decode_clip(clip, "video", {**cfg, "quick_frames": 0})
    assert out.face_frames == before.face_frames > 1
    assert out.crop_box.tolist() == before.crop_box.tolist()
    full_size = decode_clip(clip, "video", {**cfg, "quick_frames": 0, "detect_scale": 1.0})
    assert np.abs(_centres(out.crop_box[None]) - _centres(full_size.crop_box[None])).max() < 11


def test_grey_detection_finds_the_same_boxes(tmp_path: Path) -> None:
    """``detect_gray``: HOG on the luma finds the faces RGB finds, boxes within a few px."""
    from dfer.video.crop import detect_all

    frames = np.stack([scene([(200.0, 150.0, 100, False), (470.0, 200.0, 80, True)], seed=s)
                       for s in range(3)])
    rgb = detect_all(frames, gray=False)
    grey = detect_all(frames, gray=True)
    for a, b in zip(rgb, grey, strict=True):
        assert len(a) == len(b) == 2
        assert np.abs(np.stack(a) - np.stack(b)).max() <= 12


# --- tracking -------------------------------------------------------------------------------


def test_moving_face_is_followed_frame_by_frame(tmp_path: Path) -> None:
    """A face crossing the frame: each crop is centred on the face in its own frame, where one
    box per clip would lose it at both ends."""
    n, y = 32, 190.0
    xs = np.linspace(110, 530, n)
    clip = _video(tmp_path / "moving.mp4", [scene([(x, y, 90, False)], seed=1) for x in xs])

    out = decode_clip(clip, "video", TRACK)
    assert out.detector_used == "hog-up0" and out.crop_boxes is not None
    centres = _centres(out.crop_boxes)
    truth = xs[out.frame_indices]
    assert np.all(np.abs(centres[:, 0] - truth) < 18), np.c_[centres[:, 0], truth]
    assert np.all(np.abs(centres[:, 1] - y) < 18)
    assert out.frames.shape == (16, 64, 64, 3)

    still = decode_clip(clip, "video", {**TRACK, "crop": "median"})
    assert still.crop_boxes is None
    assert abs(_centres(still.crop_box[None])[0, 0] - truth[0]) > 100  # the median box misses


def test_cut_between_two_people_follows_one(tmp_path: Path) -> None:
    """A cut from person A (left, 20 frames) to person B (right, 12 frames): A, on screen
    longer, is followed on every frame, B's frames hold A's last box, never B."""
    a, b = (180.0, 180.0), (470.0, 170.0)
    frames = [scene([(*a, 90, False)], seed=2) if i < 20 else scene([(*b, 90, True)], seed=3)
              for i in range(32)]
    out = decode_clip(_video(tmp_path / "cut.mp4", frames), "video", TRACK)
    centres = _centres(out.crop_boxes)
    assert np.all(np.hypot(centres[:, 0] - a[0], centres[:, 1] - a[1]) < 18), centres
    assert out.face_frames == int((out.frame_indices < 20).sum())  # B's detections not taken


def test_larger_bystander_does_not_take_the_crop(tmp_path: Path) -> None:
    """A larger second face for a few frames: the crop stays on the person there all along."""
    main, other = (200.0, 190.0), (480.0, 160.0)
    frames = [scene([(*main, 80, False)] + ([(*other, 130, True)] if 12 <= i < 20 else []),
                    seed=4) for i in range(32)]
    out = decode_clip(_video(tmp_path / "bystander.mp4", frames), "video", TRACK)
    assert ((out.frame_indices >= 12) & (out.frame_indices < 20)).sum() >= 3
    centres = _centres(out.crop_boxes)
    assert np.all(np.hypot(centres[:, 0] - main[0], centres[:, 1] - main[1]) < 16), centres
    side = out.crop_boxes[:, 2] - out.crop_boxes[:, 0]
    assert np.all(side < 160)  # the main face's size (80 px and margins), not the bystander's


def test_tracker_interpolates_gaps_and_keeps_one_identity() -> None:
    """Unit view: a missed frame is interpolated; a distant face never joins the track."""
    box = lambda x: np.array([x - 40, 100, x + 40, 180], np.float32)  # noqa: E731
    dets = [[box(100)], [], [box(140)], [box(160), box(500)], [box(180)]]
    tracks = link_tracks(dets)
    assert len(tracks) == 2 and sorted(main_track(tracks)) == [0, 2, 3, 4]
    filled = fill_and_smooth(main_track(tracks), 5, smooth=1)
    assert _centres(filled)[:, 0].tolist() == [100, 120, 140, 160, 180]


# --- orientation ----------------------------------------------------------------------------


def _rotated_video(path: Path, frames: list[np.ndarray], degrees: int, hflip: bool = False,
                   vflip: bool = False, stored: list[np.ndarray] | None = None) -> Path:
    """Store ``frames`` turned so that a player applying a ``degrees`` display matrix shows
    them as given (how a phone held upright records); or store ``stored`` as they are, with a
    matrix that turns by ``degrees`` and then mirrors (PyAV's ``set_display_rotation``)."""
    if stored is None:
        stored = [np.ascontiguousarray(np.rot90(f, k=-(degrees // 90))) for f in frames]
    return write_video(path, stored, options={"crf": "16"}, display=(degrees, hflip, vflip))


@pytest.mark.parametrize("degrees", [90, -90])
def test_rotation_matrix_decodes_upright(tmp_path: Path, degrees: int) -> None:
    """A portrait phone clip stored sideways with a display matrix: decoded upright (portrait
    size), the face found by the first pass, the crop on it."""
    centre = (180.0, 260.0)
    upright = [scene([(*centre, 100, False)], seed=5, width=360, height=640) for _ in range(8)]
    clip = _rotated_video(tmp_path / "phone.mp4", upright, degrees)
    out = decode_clip(clip, "video", {"num_frames": 4, "size": 48, "escalate": []})
    assert (out.orig_width, out.orig_height) == (360, 640)
    assert out.detector_used == "hog-up0" and out.face_found_frac == 1.0
    (cx, cy), = _centres(out.crop_box[None])
    assert abs(cx - centre[0]) < 12 and abs(cy - centre[1]) < 12


@pytest.mark.parametrize("degrees", [0, 90, 180, -90])
@pytest.mark.parametrize(("hflip", "vflip"), [(True, False), (False, True)])
def test_mirroring_display_matrix_is_applied(tmp_path: Path, degrees: int, hflip: bool,
                                            vflip: bool) -> None:
    """A display matrix that turns and mirrors (a front camera's): frames come out as a player
    shows them, the stored picture turned by ``degrees`` and then mirrored. FFmpeg reads a
    plain left-right mirror as a -180 turn, which alone would show the picture upside down."""
    from dfer.video import read_video

    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:16, :16] = 255  # a white block top left, a red bar bottom middle: no symmetry
    stored[-16:, 24:40, 0] = 255
    clip = _rotated_video(tmp_path / "m.mp4", [], degrees, hflip, vflip, stored=[stored] * 3)
    shown = np.rot90(stored, k=degrees // 90)
    shown = shown[:, ::-1] if hflip else shown[::-1]
    frames = read_video(clip, 2).frames
    assert frames.shape[1:] == shown.shape
    assert np.abs(frames.astype(int) - shown).mean(axis=(1, 2, 3)).max() < 6


def test_front_camera_mirror_keeps_the_face_upright(tmp_path: Path) -> None:
    """A clip stored mirrored with a left-right mirror matrix (what FFmpeg reads as a -180
    turn) is decoded the right way up, so the detector's first pass finds the face."""
    centre = (180.0, 200.0)
    shown = [scene([(*centre, 100, False)], seed=5, width=360, height=400) for _ in range(8)]
    stored = [np.ascontiguousarray(f[:, ::-1]) for f in shown]
    clip = _rotated_video(tmp_path / "front.mp4", [], 0, hflip=True, stored=stored)
    out = decode_clip(clip, "video", {"num_frames": 4, "size": 48, "escalate": []})
    assert out.detector_used == "hog-up0" and out.face_found_frac == 1.0
    (cx, cy), = _centres(out.crop_box[None])
    assert abs(cx - centre[0]) < 12 and abs(cy - centre[1]) < 12


def test_exif_orientation_of_frame_folder_images(tmp_path: Path) -> None:
    """JPEGs stored sideways with EXIF orientation 6 (rotate 90 clockwise to view) are read
    upright: portrait size, face found where it is in the upright picture."""
    from PIL import Image

    centre = (180.0, 260.0)
    folder = tmp_path / "exif"
    folder.mkdir()
    for i in range(4):
        stored = np.rot90(scene([(*centre, 100, False)], seed=6, width=360, height=640), k=1)
        img = Image.fromarray(np.ascontiguousarray(stored))
        exif = img.getexif()
        exif[0x0112] = 6
        img.save(folder / f"{i + 1:05d}.jpg", quality=95, exif=exif.tobytes())
    out = decode_clip(folder, "frames", {"num_frames": 4, "size": 48, "escalate": []})
    assert (out.orig_width, out.orig_height) == (360, 640)
    (cx, cy), = _centres(out.crop_box[None])
    assert out.face_found_frac == 1.0 and abs(cx - centre[0]) < 12 and abs(cy - centre[1]) < 12


# --- the frames index -----------------------------------------------------------------------


def test_index_records_detector_and_per_frame_boxes(tmp_path: Path) -> None:
    """The shard index: ``detector_used``, ``face_frames`` and (track mode) ``crop_boxes``
    per clip; a faceless clip has a null detector; params at defaults stay out of provenance."""
    face = write_frame_folder(tmp_path / "face", [scene([(300.0, 180.0, 90, False)], seed=7)] * 4)
    empty = write_frame_folder(tmp_path / "empty", [_background(8)] * 4)
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.table({
        "clip_id": ["face", "empty"], "path": [str(face), str(empty)],
        "source_kind": ["frames", "frames"], "label": ["anger", "anger"],
        "label_idx": pa.array([3, 3], pa.int32()), "test_fold": pa.array([1, 1], pa.int32()),
    }), manifest)
    outs = [tmp_path / f"o{k}" for k in ("a.safetensors", "b.parquet", "c.parquet")]
    decode_shard(manifest, *outs, {"num_frames": 4, "size": 32, "crop": "track",
                                   "escalate": ["hog-up1"]}, progress=False)
    rows = {r["clip_id"]: r for r in pq.read_table(outs[1]).to_pylist()}
    assert rows["face"]["detector_used"] == "hog-up0" and rows["face"]["face_frames"] == 4
    boxes = np.asarray(rows["face"]["crop_boxes"])
    assert boxes.shape == (4, 4) and np.all(np.abs(_centres(boxes) - (300, 180)) < 12)
    assert rows["empty"]["detector_used"] is None and rows["empty"]["face_frames"] == 0
    params = read_meta(outs[1])["params"]
    assert params["crop"] == "track" and params["escalate"] == ["hog-up1"]
    assert "track_smooth" not in params
