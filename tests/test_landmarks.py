"""Landmark stage: per-clip API on real face images, fill rules, shard contract, backends."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import skimage.data
from skimage.transform import resize

from dfer.core.artifacts import read_meta, write_parquet, write_safetensors
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
    with pytest.raises(ValueError, match="'fill' must be one of 'nearest', 'missing'"):
        LandmarksConfig.from_dict({"fill": "zero"})
    assert resolve_backend(LandmarksConfig(backend="dlib")) == "dlib"


def test_auto_backend_is_dlib_without_cuda_or_weights(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert resolve_backend(LandmarksConfig()) == "dlib"


def test_mmod_detector_finds_the_face_and_agrees_with_hog(clip: np.ndarray) -> None:
    mmod = detect_landmarks(clip[:2], {"backend": "dlib", "detector": "mmod"})
    hog = detect_landmarks(clip[:2], {"backend": "dlib"})
    assert mmod.has_face.all() and (mmod.score > 0).all()
    assert np.abs(mmod.points - hog.points).mean() < 3.0  # same face, same predictor


def test_auto_backend_needs_both_cuda_and_fan_weights(tmp_path, monkeypatch) -> None:
    import torch

    from dfer.landmarks.api import model_name

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    ckpt = _save_random_fan(tmp_path / "hub" / "checkpoints")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_backend(LandmarksConfig()) == "dlib"  # weights, no CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_backend(LandmarksConfig()) == "face_alignment"
    assert model_name(LandmarksConfig()) == "face_alignment:2DFAN-4"
    ckpt.unlink()
    assert resolve_backend(LandmarksConfig()) == "dlib"  # CUDA, no weights
    assert model_name(LandmarksConfig()).startswith("dlib:")


def test_face_alignment_without_weights_names_the_file_and_setting(tmp_path, monkeypatch, clip) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"2DFAN4-11f355bf06\.pth\.tar.*landmarks\.weights"):
        detect_landmarks(clip[:1], {"backend": "face_alignment", "device": "cpu"})
    with pytest.raises(FileNotFoundError, match=r"not found at .*missing.*landmarks\.weights"):
        detect_landmarks(clip[:1], {"backend": "face_alignment", "weights": str(tmp_path / "missing")})


def test_fan_predict_points_batches_frames_and_maps_to_crop_pixels() -> None:
    """A tiny stand-in heat-map network: one hot spot per landmark at a known heat-map cell."""
    import torch

    from dfer.core.face_detect import FaceBox
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


def test_decode_heatmaps_peaks_quarter_shift_and_crop_transform() -> None:
    from dfer.landmarks.fan_backend import decode_heatmaps

    heat = np.zeros((2, 68, 64, 64), np.float32)
    heat[0, :, 10, 20] = 1.0               # isolated peak: no shift
    heat[1, :, 40, 30] = 1.0
    heat[1, :, 40, 31] = 0.5               # right neighbour larger: +0.25 in x
    heat[1, :, 39, 30] = 0.5               # upper neighbour larger: -0.25 in y
    heat[1, 7, :, :] = 0.0
    heat[1, 7, 0, 63] = 1.0                # border cell: never shifted
    centers = np.array([[100.0, 120.0], [50.0, 60.0]])
    scales = np.array([0.64, 1.28])        # crops of 128 and 256 px: 2 and 4 px per cell
    pts = decode_heatmaps(heat, centers, scales)
    assert pts.shape == (2, 68, 2) and pts.dtype == np.float32
    # cell (x, y) centre = (x + 0.5, y + 0.5); image = (cell - 32) * px_per_cell + centre
    np.testing.assert_allclose(pts[0, 0], [(20.5 - 32) * 2 + 100, (10.5 - 32) * 2 + 120])
    np.testing.assert_allclose(pts[1, 0], [(30.75 - 32) * 4 + 50, (40.25 - 32) * 4 + 60])
    np.testing.assert_allclose(pts[1, 7], [(63.5 - 32) * 4 + 50, (0.5 - 32) * 4 + 60])


def _save_random_fan(path, modules: int = 1):
    """A random-init FAN checkpoint under face-alignment's file name (no download needed)."""
    import torch
    from face_alignment.models import FAN

    from dfer.landmarks.fan_backend import weights_filename

    torch.manual_seed(0)
    torch.save(FAN(modules).state_dict(), path / weights_filename())
    return path / weights_filename()


def test_fan_loads_a_local_checkpoint_and_runs_in_batches(tmp_path, clip) -> None:
    """The real loading path (file name, module count from the checkpoint) + batched forward."""
    from dfer.core.face_detect import FaceBox
    from dfer.landmarks import fan_backend

    ckpt = _save_random_fan(tmp_path, modules=1)
    assert fan_backend.resolve_weights(tmp_path) == ckpt  # a folder holding the file
    assert fan_backend.resolve_weights(ckpt) == ckpt      # or the file itself
    net = fan_backend.load_fan(str(ckpt), "cpu")
    assert net.num_modules == 1 and not net.training
    sizes: list[int] = []
    net.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    box = FaceBox(37, 37, 187, 187, float("nan"))
    pts = fan_backend.predict_points(net, clip[:3], [box, None, box], "cpu", batch_size=1,
                                     flip_input=True)
    assert sizes == [1, 1, 1, 1]  # 2 frames with a box, each forward + flipped forward
    assert pts.shape == (3, 68, 2) and np.isnan(pts[1]).all() and np.isfinite(pts[[0, 2]]).all()
    # random weights put the peaks anywhere, but always inside the FAN crop around the box
    center, scale = fan_backend.center_scale(box)
    assert (np.abs(pts[[0, 2]] - center) <= 100 * scale + 1e-3).all()
    res = detect_landmarks(clip[:2], {"backend": "face_alignment", "device": "cpu",
                                      "weights": str(tmp_path), "detector": "crop",
                                      "flip_input": False})
    assert res.points.shape == (2, 68, 2) and res.has_face.all()


def test_fan_checkpoint_that_is_not_a_fan_is_rejected(tmp_path) -> None:
    import torch

    from dfer.landmarks import fan_backend

    bad = tmp_path / fan_backend.weights_filename()
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a FAN checkpoint"):
        fan_backend.load_fan(str(bad), "cpu")
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot read the FAN checkpoint .*2DFAN4"):
        fan_backend.load_fan.__wrapped__(str(bad), "cpu")


def test_shard_with_missing_fan_weights_fails_before_any_clip(tmp_path, clip) -> None:
    frames, index = _write_shard(tmp_path, {"a": clip[:1]})
    out, fail = tmp_path / "lm.parquet", tmp_path / "lm.failures.parquet"
    params = {"backend": "face_alignment", "weights": str(tmp_path / "no-such-dir")}
    with pytest.raises(FileNotFoundError, match=r"no-such-dir.*landmarks\.weights"):
        run_shard(frames, index, out, fail, params)
    assert not out.exists() and not fail.exists()


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
    assert {(f["clip_id"], f["error_type"]) for f in failures} == {("empty", "no_face"),
                                                                   ("lost", "missing_frames")}
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


@pytest.mark.slow  # ~100 MB checkpoint written and read, ~5-15 s on a shared 2-core CPU
def test_face_alignment_backend_loads_a_full_size_checkpoint(tmp_path, clip) -> None:
    """2DFAN-4's architecture (4 hourglasses), random weights under face-alignment's name."""
    from dfer.landmarks import fan_backend

    ckpt = _save_random_fan(tmp_path, modules=4)
    assert fan_backend.load_fan(str(ckpt), "cpu").num_modules == 4
    res = detect_landmarks(clip[:1], {"backend": "face_alignment", "device": "cpu",
                                      "weights": str(tmp_path), "detector": "crop",
                                      "flip_input": False})
    assert res.points.shape == (1, 68, 2) and np.isfinite(res.points).all()


@pytest.mark.slow
def test_decode_heatmaps_agrees_with_face_alignment(tmp_path) -> None:
    """Our vectorised decoding vs face-alignment's numba one (which truncates to whole pixels)."""
    from face_alignment.utils import get_preds_fromhm

    from dfer.landmarks.fan_backend import decode_heatmaps

    rng = np.random.default_rng(0)
    heat = rng.random((3, 68, 64, 64)).astype(np.float32)
    centers = rng.uniform(80, 140, (3, 2))
    scales = rng.uniform(0.6, 1.4, 3)
    ours = decode_heatmaps(heat, centers, scales)
    for i in range(3):
        _, theirs, _ = get_preds_fromhm(heat[i:i + 1], centers[i], scales[i])
        assert np.abs(ours[i] - theirs[0]).max() <= 1.0
