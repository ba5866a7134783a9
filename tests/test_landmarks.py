"""Landmark stage: per-clip API on real face images, fill rules, shard contract, backends."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import skimage.data
from skimage.transform import resize

from dfer.artifacts import read_meta, write_parquet, write_safetensors
from dfer.landmarks import (
    SCHEMA,
    LandmarksConfig,
    NoFaceError,
    detect_landmarks,
    read_landmarks,
    resolve_backend,
    run_shard,
)
from dfer.landmarks.fill import fill_sources

SIZE = 224
# the astronaut's face box found by dlib HOG on skimage.data.astronaut(): x 175-265, y 76-166
FACE = (175, 76, 265, 166)


def astronaut_clip(num_frames: int = 6, size: int = SIZE) -> np.ndarray:
    """A short 'clip' of real face crops: the astronaut's face, crop window drifting slowly."""
    image = skimage.data.astronaut()
    x0, y0, x1, y1 = FACE
    side = (x1 - x0) * 1.5  # decode margin 0.25 on each side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    frames = []
    for t in range(num_frames):
        dx, dy = 2 * t - num_frames, t - num_frames // 2
        a, b = int(cx - side / 2 + dx), int(cy - side / 2 + dy)
        crop = image[b:b + int(side), a:a + int(side)]
        frames.append(resize(crop, (size, size), preserve_range=True, anti_aliasing=True))
    return np.stack(frames).round().astype(np.uint8)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return astronaut_clip()


def test_dlib_finds_the_face_on_every_astronaut_frame(clip: np.ndarray) -> None:
    res = detect_landmarks(clip, {"backend": "dlib"})
    assert res.points.shape == (6, 68, 2) and res.points.dtype == np.float32
    assert res.has_face.all() and (res.filled_from == -1).all() and res.num_filled == 0
    assert np.isfinite(res.score).all() and (res.score > 0).all()
    # the face fills the centre of the crop: points inside it, centred within ~12% of the side
    assert (res.points > 20).all() and (res.points < SIZE).all()
    assert np.abs(res.points.mean(axis=1) - SIZE / 2).max() < 0.12 * SIZE
    for pts, box in zip(res.points, res.bbox, strict=True):
        eyes_y = pts[36:48, 1].mean()
        nose_y, mouth_y, chin_y = pts[30, 1], pts[48:60, 1].mean(), pts[8, 1]
        assert eyes_y < nose_y < mouth_y < chin_y  # anatomical order, top to bottom
        assert pts[36:42, 0].mean() < pts[42:48, 0].mean()  # subject's right eye on image left
        cx = (box[0] + box[2]) / 2
        assert abs(pts[30, 0] - cx) < 0.15 * (box[2] - box[0])  # nose tip near the box centre


def test_blank_frame_is_filled_from_the_nearest_detected_frame(clip: np.ndarray) -> None:
    frames = clip.copy()
    frames[2] = 0
    res = detect_landmarks(frames, {"backend": "dlib", "fill": "nearest"})
    assert res.has_face.tolist() == [True, True, False, True, True, True]
    assert res.filled_from.dtype == np.int16
    assert res.filled_from.tolist() == [-1, -1, 1, -1, -1, -1]  # tie 1 vs 3 -> earlier
    assert res.num_filled == 1 and res.num_detected == 5
    np.testing.assert_array_equal(res.points[2], res.points[1])
    np.testing.assert_array_equal(res.bbox[2], res.bbox[1])
    assert np.isnan(res.score[2])


def test_blank_frame_stays_missing_under_the_missing_rule(clip: np.ndarray) -> None:
    frames = clip.copy()
    frames[0] = 0
    res = detect_landmarks(frames, {"backend": "dlib", "fill": "missing"})
    assert not res.has_face[0] and res.filled_from[0] == -1 and res.num_filled == 0
    assert np.isnan(res.points[0]).all() and np.isfinite(res.points[1:]).all()


def test_fill_sources_picks_nearest_detected_frame() -> None:
    has = np.array([False, True, False, False, True, False])
    assert fill_sources(has, "nearest").tolist() == [1, -1, 1, 4, -1, 4]
    assert fill_sources(has, "missing").tolist() == [-1] * 6
    with pytest.raises(ValueError, match="unknown fill rule"):
        fill_sources(has, "zero")


def test_clip_without_any_face_raises(clip: np.ndarray) -> None:
    with pytest.raises(NoFaceError, match="no face found on any of 4 frames"):
        detect_landmarks(np.zeros((4, SIZE, SIZE, 3), np.uint8), {"backend": "dlib"})


def test_crop_detector_fits_points_without_detection(clip: np.ndarray) -> None:
    blank = np.zeros((2, SIZE, SIZE, 3), np.uint8)
    res = detect_landmarks(blank, {"backend": "dlib", "detector": "crop"})
    assert res.has_face.all() and np.isnan(res.score).all()
    np.testing.assert_allclose(res.bbox[0], [37.333, 37.333, 186.667, 186.667], atol=1e-3)
    good = detect_landmarks(clip[:1], {"backend": "dlib", "detector": "crop"})
    hog = detect_landmarks(clip[:1], {"backend": "dlib"})
    assert np.abs(good.points - hog.points).mean() < 6.0  # same face, close fit


def test_config_rejects_unknown_and_bad_settings() -> None:
    with pytest.raises(ValueError, match="unknown landmarks setting"):
        LandmarksConfig.from_dict({"bakend": "dlib"})
    with pytest.raises(ValueError, match="landmarks.fill"):
        LandmarksConfig.from_dict({"fill": "zero"})
    assert resolve_backend(LandmarksConfig(backend="dlib")) == "dlib"


def test_auto_backend_is_dlib_without_cuda_or_weights(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert resolve_backend(LandmarksConfig()) == "dlib"


def test_face_alignment_without_weights_names_the_file_and_setting(tmp_path, monkeypatch, clip) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"2DFAN4-11f355bf06\.pth\.tar.*landmarks\.weights"):
        detect_landmarks(clip[:1], {"backend": "face_alignment", "device": "cpu"})
    with pytest.raises(FileNotFoundError, match=r"not found at .*missing.*landmarks\.weights"):
        detect_landmarks(clip[:1], {"backend": "face_alignment", "weights": str(tmp_path / "missing")})


def test_fan_predict_points_batches_frames_and_maps_to_crop_pixels() -> None:
    """A tiny stand-in heat-map network: one hot spot per landmark at a known heat-map cell."""
    import torch

    from dfer.face_detect import FaceBox
    from dfer.landmarks import fan_backend

    class Spots(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            heat = torch.zeros(x.shape[0], 68, 64, 64)
            heat[:, :, 32, 16] = 1.0  # every landmark at heat-map (x=16, y=32)
            return [heat]

    frames = np.zeros((3, SIZE, SIZE, 3), np.uint8)
    box = FaceBox(40, 40, 184, 184, 1.0)
    calls = []
    net = Spots()
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    pts = fan_backend.predict_points(net, frames, [box, None, box], "cpu", batch_size=1,
                                     flip_input=False)
    assert calls == [1, 1]  # frame 1 had no box: not sent through the network
    assert np.isnan(pts[1]).all()
    np.testing.assert_array_equal(pts[0], pts[2])
    # heat-map (16, 32) of 64 -> a quarter across, half way down the FAN crop around the box
    assert pts[0, 0, 0] < 112 and 90 < pts[0, 0, 1] < 140


def _write_shard(tmp_path, clips: dict[str, np.ndarray], extra_ids: tuple[str, ...] = ()):
    frames = tmp_path / "frames" / "shard-000.safetensors"
    index = tmp_path / "frames" / "shard-000.parquet"
    write_safetensors(frames, clips, {"stage": "decode"})
    ids = list(clips) + list(extra_ids)
    import pandas as pd

    write_parquet(index, pd.DataFrame({"clip_id": ids, "label": ["happy"] * len(ids)}), {})
    return frames, index


def test_shard_contract_and_failures(tmp_path, clip) -> None:
    blank = np.zeros_like(clip[:3])
    with_gap = clip.copy()
    with_gap[4] = 0
    frames, index = _write_shard(tmp_path, {"b": with_gap, "a": clip, "empty": blank},
                                 extra_ids=("lost",))
    out, fail = tmp_path / "lm" / "shard-000.parquet", tmp_path / "lm" / "shard-000.failures.parquet"
    from dfer.cli import main

    assert main(["landmarks", "--frames", str(frames), "--index", str(index), "--out", str(out),
                 "--out-failures", str(fail), "--params", json.dumps({"backend": "dlib"})]) == 0
    table = pq.read_table(out)
    assert table.schema.remove_metadata() == SCHEMA
    assert table.num_rows == 12
    assert table.column("clip_id").to_pylist() == ["b"] * 6 + ["a"] * 6  # index order
    assert table.column("frame").to_pylist() == list(range(6)) * 2
    assert table.column("filled_from").to_pylist()[:6] == [-1, -1, -1, -1, 3, -1]  # tie -> earlier
    failures = pq.read_table(fail).to_pylist()
    assert {(f["clip_id"], f["error_type"]) for f in failures} == {("empty", "NoFaceError"),
                                                                   ("lost", "KeyError")}
    assert all(f["stage"] == "landmarks" and f["clip_id"] in f["message"] for f in failures)
    meta = read_meta(out)
    assert meta["backend"] == "dlib" and meta["model"].startswith("dlib:")
    assert meta["detection_rate"] == pytest.approx(11 / 12, abs=1e-6)
    assert meta["filled_frames"] == 1 and meta["failed_clips"] == 2
    back = read_landmarks(out)
    assert sorted(back) == ["a", "b"]
    assert back["b"].points.shape == (6, 68, 2) and back["b"].filled_from[4] >= 0
    direct = detect_landmarks(clip, {"backend": "dlib"})
    np.testing.assert_array_equal(back["a"].points, direct.points)


def test_empty_shard_writes_valid_empty_artifacts(tmp_path) -> None:
    frames, index = _write_shard(tmp_path, {})
    out, fail = tmp_path / "lm.parquet", tmp_path / "lm.failures.parquet"
    summary = run_shard(frames, index, out, fail, {"backend": "dlib"})
    assert summary["clips"] == 0 and summary["detection_rate"] is None
    assert pq.read_table(out).num_rows == 0 and pq.read_table(fail).num_rows == 0
    assert read_landmarks(out) == {}


@pytest.mark.slow
def test_face_alignment_backend_loads_a_local_checkpoint(tmp_path, clip) -> None:
    """The real FAN loading path, with random weights saved under face-alignment's file name."""
    import torch
    from face_alignment.models import FAN

    from dfer.landmarks.fan_backend import weights_filename

    torch.save(FAN(4).state_dict(), tmp_path / weights_filename())
    res = detect_landmarks(clip[:2], {"backend": "face_alignment", "device": "cpu",
                                      "weights": str(tmp_path), "detector": "crop"})
    assert res.points.shape == (2, 68, 2) and np.isfinite(res.points).all()
