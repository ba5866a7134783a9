"""Input faults decode and the manifests must survive with a clear error naming the clip.

Every fault video is built here with PyAV (64x64, 8-20 frames, milliseconds each): corrupt,
truncated, zero-length, audio-only, grey, odd-sized, variable-frame-rate, faceless. Damaged
files must become failure rows (``error_type`` + a message naming clip, file and cause) while
the rest of the shard completes; odd but valid files must decode to the right frames.
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from face_geometry import FACE_SIDE, face_frames_centre
from support.videos import (
    face_frames,
    frame_number,
    pattern_frames,
    truncate_file,
    write_audio_only,
    write_frame_folder,
    write_video,
)

from dfer.core.artifacts import read_meta
from dfer.core.sharding import shard_of
from dfer.manifests import ManifestError, build_manifest, sync_dataset
from dfer.video import (
    DecodeConfig,
    DecodeError,
    decode_clip,
    decode_shard,
    read_frame_folder,
    sample_indices,
)

CFG = DecodeConfig(num_frames=8, size=32)
#: A VFR timeline (ms): bursts and gaps, 12 frames over 1.3 s.
VFR_PTS = [0, 33, 66, 200, 233, 500, 533, 566, 900, 1000, 1033, 1300]


def _noisy(frames: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """Frames with noise: big enough packets that a byte cut lands inside the video data."""
    rng = np.random.default_rng(seed)
    return [np.clip(f.astype(np.int16) + rng.integers(-20, 21, f.shape), 0, 255).astype(np.uint8)
            for f in frames]


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per fault kind, plus a good video, written once for the module."""
    d = tmp_path_factory.mktemp("faults")
    out = {
        "good": write_video(d / "good.mp4", pattern_frames(20, 64, 64)),
        "grey": write_video(d / "grey.mkv", [f[..., 0] for f in pattern_frames(12, 64, 64)],
                            codec="ffv1", pix_fmt="gray"),
        "odd": write_video(d / "odd.avi", pattern_frames(12, 317, 241), codec="mpeg4"),
        "vfr": write_video(d / "vfr.mp4", pattern_frames(12, 64, 64), pts_ms=VFR_PTS),
        "audio_only": write_audio_only(d / "audio_only.mp4"),
        "truncated": truncate_file(
            write_video(d / "truncated.mp4", _noisy(pattern_frames(20, 64, 64)), faststart=True),
            0.6),
        "truncated_mkv": truncate_file(
            write_video(d / "truncated.mkv", _noisy(pattern_frames(20, 64, 64))), 0.6),
        "no_moov": truncate_file(write_video(d / "no_moov.mp4", pattern_frames(20, 64, 64)), 0.6),
        "face": write_video(d / "face.mp4", face_frames(12, size=FACE_SIDE)),
    }
    empty = d / "empty.mp4"
    empty.write_bytes(b"")
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes())
    out.update(empty=empty, corrupt=corrupt)
    return out


# --- odd but valid videos decode to the right frames ---------------------------------------


def test_good_video_samples_the_right_frames(faults):
    clip = decode_clip(faults["good"], "video", CFG)
    assert clip.frames.shape == (8, 32, 32, 3) and clip.frames.dtype == np.uint8
    expected = [1, 3, 6, 8, 11, 13, 16, 18]  # floor((k + 0.5) * 20 / 8)
    assert clip.frame_indices.tolist() == expected
    # the pixels are those of the sampled source frames (each frame's grey level is its number)
    assert [frame_number(f) for f in clip.frames] == expected
    assert (clip.num_source_frames, clip.orig_width, clip.orig_height) == (20, 64, 64)
    assert clip.fps == pytest.approx(15.0)
    assert clip.duration_s == pytest.approx(20 / 15, abs=0.02)


def test_grey_video_becomes_rgb(faults):
    clip = decode_clip(faults["grey"], "video", CFG)  # ffv1 gray in Matroska: no frame count
    assert clip.frames.shape == (8, 32, 32, 3)
    assert clip.num_source_frames == 12
    # grey in, grey out: the three channels agree
    assert np.array_equal(clip.frames[..., 0], clip.frames[..., 1])
    assert np.array_equal(clip.frames[..., 1], clip.frames[..., 2])
    assert [frame_number(f) for f in clip.frames] == clip.frame_indices.tolist()


def test_odd_resolution_video_is_centre_cropped_square(faults):
    clip = decode_clip(faults["odd"], "video", CFG)
    assert (clip.orig_width, clip.orig_height) == (317, 241)
    assert clip.frames.shape == (8, 32, 32, 3)
    # no face in the pattern: the largest centred square of a 317 x 241 frame
    assert clip.crop_box.tolist() == [38.0, 0.0, 279.0, 241.0]
    assert clip.face_found_frac == 0.0


def test_variable_frame_rate_video_samples_by_frame(faults):
    clip = decode_clip(faults["vfr"], "video", CFG)
    assert clip.num_source_frames == 12
    assert clip.frame_indices.tolist() == [0, 2, 3, 5, 6, 8, 9, 11]
    assert [frame_number(f) for f in clip.frames] == clip.frame_indices.tolist()
    assert 0.9 < clip.duration_s < 1.5  # what the container states, not 12 / nominal fps
    assert clip.fps == pytest.approx(clip.num_source_frames / clip.duration_s, rel=0.05)


def test_face_is_found_and_cropped(faults):
    clip = decode_clip(faults["face"], "video", CFG)
    assert clip.face_found_frac == 1.0  # the fixture's face is unmistakable in every frame
    x0, y0, x1, y1 = clip.crop_box.tolist()
    assert x1 - x0 == y1 - y0  # a square ...
    assert 80 <= x1 - x0 < FACE_SIDE  # ... around the ~80 px face, not the whole frame
    assert min(x0, y0) >= 0 and max(x1, y1) <= FACE_SIDE
    cx, cy = face_frames_centre(FACE_SIDE)  # ... centred on the face (drift: 4 px at most)
    assert abs((x0 + x1) / 2 - cx) < 12 and abs((y0 + y1) / 2 - cy) < 12


def test_video_without_face_centre_crop_or_failure(faults):
    kept = decode_clip(faults["good"], "video", CFG)
    assert kept.face_found_frac == 0.0 and kept.crop_box.tolist() == [0.0, 0.0, 64.0, 64.0]
    with pytest.raises(DecodeError, match="no face found") as info:
        decode_clip(faults["good"], "video", DecodeConfig(num_frames=8, size=32,
                                                          on_no_face="fail"))
    assert info.value.error_type == "no_face"
    assert str(faults["good"]) in str(info.value)


# --- damaged files raise a typed error naming the file and the cause -----------------------


@pytest.mark.parametrize(("kind", "error_type", "words"), [
    ("empty", "empty_file", "empty file (0 bytes)"),
    ("corrupt", "corrupt", "not a readable video container"),
    ("no_moov", "corrupt", "not a readable video container"),
    ("audio_only", "no_video_stream", "no video stream (streams: audio)"),
    ("truncated", "truncated", "truncated: the container announces 20 frames but only"),
    ("truncated_mkv", "truncated", "truncated: the header states a duration of"),
])
def test_damaged_video_raises_typed_error(faults, kind, error_type, words):
    with pytest.raises(DecodeError) as info:
        decode_clip(faults[kind], "video", CFG)
    assert info.value.error_type == error_type
    message = str(info.value)
    assert message.startswith(f"{faults[kind]}: ")
    assert words in message


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DecodeError, match="file not found") as info:
        decode_clip(tmp_path / "gone.mp4", "video", CFG)
    assert info.value.error_type == "missing_file"
    with pytest.raises(DecodeError, match="frame folder not found"):
        decode_clip(tmp_path / "gone", "frames", CFG)
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(DecodeError, match="holds no images") as info:
        decode_clip(tmp_path / "empty_folder", "frames", CFG)
    assert info.value.error_type == "no_frames"


def _damaged_folder(tmp_path: Path) -> Path:
    """17 frames ``00000.jpg`` .. ``00016.jpg``: 00004 corrupt, 00009 truncated, 00012 empty."""
    folder = write_frame_folder(tmp_path / "clip", pattern_frames(17, 64, 64), start=0)
    (folder / "00004.jpg").write_bytes(b"not a jpeg")
    truncate_file(folder / "00009.jpg", 0.5)
    (folder / "00012.jpg").write_bytes(b"")
    return folder


def test_frame_folder_keeps_its_good_images_and_names_every_bad_one(tmp_path, caplog):
    """Unreadable images cost a clip nothing while at least num_frames good ones remain (the
    default), are all named at once, and are counted in the frames index."""
    folder = _damaged_folder(tmp_path)
    clip = decode_clip(folder, "frames", CFG)  # T = 8 of 14 good images
    # sampled over the 14 good files: floor((2k + 1) * 14 / 16) -> 0 2 4 6 7 9 11 13 of
    # [0 1 2 3 5 6 7 8 10 11 13 14 15 16]
    expected = [0, 2, 5, 7, 8, 11, 14, 16]
    assert clip.frame_indices.tolist() == expected
    assert [frame_number(f) for f in clip.frames] == expected
    assert clip.num_source_frames == 17
    assert [b.split(" ")[0] for b in clip.bad_frames] == ["00004.jpg", "00009.jpg", "00012.jpg"]
    assert clip.info()["bad_frames"] == 3 and clip.info()["resized_frames"] == 0

    # more frames wanted than good images: refused, every bad image in ONE message, with the fix
    with pytest.raises(DecodeError) as info:
        decode_clip(folder, "frames", DecodeConfig(num_frames=16, size=32))
    message = str(info.value)
    assert message.startswith(f"{folder}: 3 of 17 image(s) unreadable: 00004.jpg (not a "
                              "decodable image (corrupt or truncated)), 00009.jpg (not a "
                              "decodable image (corrupt or truncated)), 00012.jpg (empty image "
                              "file (0 bytes)); the 14 good one(s) are fewer than "
                              "decode.num_frames (16); set decode.max_bad_frames")
    assert "(e.g. 0.18)" in message and "replace or remove the unreadable file(s)" in message
    assert info.value.error_type == "corrupt"
    # a share allows it: 3 of 17 = 0.176 <= 0.2; floor((2k + 1) * 14 / 32) over the good files
    kept = decode_clip(folder, "frames", DecodeConfig(num_frames=16, size=32, max_bad_frames=0.2))
    assert kept.frame_indices.tolist() == [0, 1, 2, 3, 3, 5, 6, 7, 8, 10, 11, 13, 13, 14, 15, 16]
    # ... a smaller one does not
    with pytest.raises(DecodeError, match=r"more than decode.max_bad_frames \(0.1\) of its"):
        decode_clip(folder, "frames", DecodeConfig(num_frames=8, size=32, max_bad_frames=0.1))


def test_frame_folder_of_one_kind_of_damage_keeps_its_error_type(tmp_path):
    folder = write_frame_folder(tmp_path / "clip", pattern_frames(3, 64, 64), start=0)
    for name in ("00000.jpg", "00002.jpg"):
        (folder / name).write_bytes(b"")
    with pytest.raises(DecodeError, match="2 of 3 image") as info:
        decode_clip(folder, "frames", CFG)
    assert info.value.error_type == "empty_file"
    for image in folder.iterdir():
        image.write_bytes(b"")
    with pytest.raises(DecodeError, match="3 of 3 image.*; no image is readable"):
        decode_clip(folder, "frames", CFG)


def test_frame_folder_of_mixed_sizes_is_resized_to_its_first_frame(tmp_path):
    """Images of another size than the first sampled one are resized to it, and counted."""
    import cv2

    frames = pattern_frames(10, 64, 64)
    folder = write_frame_folder(tmp_path / "clip", frames, start=0)
    for i in (3, 8):  # sampled (T = 8 of 10: 0 1 3 4 5 6 8 9), 48 px wide
        write_frame_folder(folder, [frames[i][:, 8:56]], start=i)
    sampled = read_frame_folder(folder, 8)
    assert sampled.frame_indices.tolist() == [0, 1, 3, 4, 5, 6, 8, 9]
    assert sampled.frames.shape == (8, 64, 64, 3) and sampled.resized_frames == 2
    assert (sampled.width, sampled.height) == (64, 64)
    narrow = cv2.cvtColor(cv2.imread(str(folder / "00003.jpg")), cv2.COLOR_BGR2RGB)
    assert narrow.shape == (64, 48, 3)
    assert np.array_equal(sampled.frames[2], cv2.resize(narrow, (64, 64),
                                                        interpolation=cv2.INTER_LINEAR))
    clip = decode_clip(folder, "frames", CFG)
    assert clip.info()["resized_frames"] == 2 and clip.frames.shape == (8, 32, 32, 3)


def test_tiny_frames_fail_as_too_small(tmp_path):
    """A 1x1 image failed as `unexpected` with dlib's internal message (and dlib's CNN can
    crash the process after such an error): it is `too_small`, before any detector runs."""
    folder = write_frame_folder(tmp_path / "tiny", [np.zeros((1, 1, 3), np.uint8)] * 3)
    with pytest.raises(DecodeError) as info:
        decode_clip(folder, "frames", CFG)
    assert info.value.error_type == "too_small"
    assert str(info.value) == (f"{folder}: frames of 1x1 px are too small to find a face in "
                               "(at least 16 px a side)")
    video = write_video(tmp_path / "sliver.mkv", pattern_frames(4, 200, 8), codec="ffv1")
    with pytest.raises(DecodeError, match="frames of 200x8 px are too small") as info:
        decode_clip(video, "video", CFG)
    assert info.value.error_type == "too_small"
    from dfer.video import decode_array

    with pytest.raises(DecodeError, match="frames of 12x12 px are too small"):
        decode_array(np.zeros((2, 12, 12, 3), np.uint8), CFG)
    # the smallest accepted size decodes (a centre crop: no face fits in 16 px)
    assert decode_array(np.zeros((2, 16, 16, 3), np.uint8), CFG).frames.shape == (8, 32, 32, 3)


def test_large_frames_are_kept_shrunk_and_the_box_is_in_source_pixels(tmp_path):
    """A frame above decode.max_frame_pixels is shrunk as it is read; the crop box stays in
    source pixels, and a frame at most that size decodes exactly as before."""
    frames = pattern_frames(4, 200, 100)
    folder = write_frame_folder(tmp_path / "big", frames, ext=".png")
    video = write_video(tmp_path / "big.mkv", frames, codec="ffv1")
    base = {"num_frames": 4, "size": 32, "escalate": []}  # no face here: no CNN escalation
    small = DecodeConfig(**base, max_frame_pixels=100 * 50)  # kept at 100 x 50
    for source, kind in ((folder, "frames"), (video, "video")):
        clip = decode_clip(source, kind, small)
        assert (clip.orig_width, clip.orig_height) == (200, 100)
        assert clip.crop_box.tolist() == [50.0, 0.0, 150.0, 100.0]  # the centre square
        assert [frame_number(f) for f in clip.frames] == [0, 1, 2, 3]
        full = decode_clip(source, kind, DecodeConfig(**base))
        assert full.crop_box.tolist() == [50.0, 0.0, 150.0, 100.0]
        unlimited = decode_clip(source, kind, DecodeConfig(**base, max_frame_pixels=0))
        assert np.array_equal(full.frames, unlimited.frames)  # under the limit: as before
    # the kept frames themselves are shrunk (memory follows the bound, not the source)
    assert read_frame_folder(folder, 4, max_pixels=100 * 50).frames.shape == (4, 50, 100, 3)
    from dfer.video.reader import kept_size, read_video

    assert read_video(video, 4, max_pixels=100 * 50).frames.shape == (4, 50, 100, 3)
    assert kept_size(200, 100, 50 * 25) == (50, 25)
    assert kept_size(8000, 8000, 3840 * 2160) == (2880, 2880)  # 0.36 = sqrt(8294400 / 8000²)
    assert kept_size(1920, 1080, 3840 * 2160) == (1920, 1080)


# --- a shard of faults: failure rows, the rest completes -----------------------------------


def _manifest(path: Path, rows: list[tuple[str, Path, str]]) -> Path:
    table = pa.table({
        "clip_id": [r[0] for r in rows],
        "path": [str(r[1]) for r in rows],
        "source_kind": [r[2] for r in rows],
        "label": ["happiness"] * len(rows),
        "label_idx": pa.array([0] * len(rows), pa.int32()),
        "test_fold": pa.array([1] * len(rows), pa.int32()),
    })
    pq.write_table(table, path)
    return path


def test_shard_with_every_fault_records_failures_and_completes(faults, tmp_path):
    folder = write_frame_folder(tmp_path / "frames_clip", pattern_frames(9, 64, 64))
    kinds = ["good", "grey", "odd", "vfr", "empty", "corrupt", "no_moov", "audio_only",
             "truncated", "truncated_mkv"]
    rows = [(f"clip_{k}", faults[k], "video") for k in kinds]
    rows += [("clip_folder", folder, "frames"), ("clip_missing", tmp_path / "nope.mp4", "video")]
    manifest = _manifest(tmp_path / "shard-000.parquet", rows)
    out = tmp_path / "out"
    result = decode_shard(manifest, out / "s.safetensors", out / "s.parquet",
                          out / "s.failures.parquet", CFG, progress=False)
    ok = {"clip_good", "clip_grey", "clip_odd", "clip_vfr", "clip_folder"}
    assert (result.decoded, result.failed) == (len(ok), len(rows) - len(ok))

    index = pq.read_table(out / "s.parquet").to_pandas()
    assert set(index["clip_id"]) == ok
    folder_row = index.set_index("clip_id").loc["clip_folder"]
    assert list(folder_row["frame_indices"]) == [0, 1, 2, 3, 5, 6, 7, 8]
    assert np.isnan(folder_row["fps"])  # frame folders carry no rate unless configured

    failures = pq.read_table(out / "s.failures.parquet").to_pandas().set_index("clip_id")
    expected = {"clip_empty": "empty_file", "clip_corrupt": "corrupt", "clip_no_moov": "corrupt",
                "clip_audio_only": "no_video_stream", "clip_truncated": "truncated",
                "clip_truncated_mkv": "truncated", "clip_missing": "missing_file"}
    assert failures["error_type"].to_dict() == expected
    for clip_id, row in failures.iterrows():
        assert row["stage"] == "decode"
        assert row["message"].startswith(f"clip {clip_id}: {row['source']}: ")
    from safetensors.numpy import load_file

    crops = load_file(str(out / "s.safetensors"))
    assert set(crops) == ok
    assert all(a.shape == (8, 32, 32, 3) and a.dtype == np.uint8 for a in crops.values())
    assert read_meta(out / "s.failures.parquet")["params"]["num_frames"] == 8


def test_no_face_fail_mode_is_a_failure_row(faults, tmp_path):
    manifest = _manifest(tmp_path / "m.parquet", [("faceless", faults["good"], "video"),
                                                  ("face", faults["face"], "video")])
    cfg = DecodeConfig(num_frames=8, size=32, on_no_face="fail")
    result = decode_shard(manifest, tmp_path / "f.safetensors", tmp_path / "f.parquet",
                          tmp_path / "f.failures.parquet", cfg, progress=False)
    assert (result.decoded, result.failed) == (1, 1)
    failure = pq.read_table(tmp_path / "f.failures.parquet").to_pylist()[0]
    assert failure["clip_id"] == "faceless" and failure["error_type"] == "no_face"
    assert "clip faceless:" in failure["message"] and "no face found" in failure["message"]


# --- full disk -------------------------------------------------------------------------------


def test_full_disk_keeps_previous_artifacts_and_names_the_file(faults, tmp_path, monkeypatch):
    manifest = _manifest(tmp_path / "m.parquet", [("a", faults["good"], "video")])
    out = [tmp_path / "o" / n for n in ("s.safetensors", "s.parquet", "s.failures.parquet")]
    decode_shard(manifest, *out, CFG, progress=False)
    before = [p.read_bytes() for p in out]

    import safetensors.numpy

    def full_disk(tensors, filename, metadata=None):  # writes half, then the disk is full
        Path(filename).write_bytes(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
    with pytest.raises(OSError) as info:
        decode_shard(manifest, *out, DecodeConfig(num_frames=4, size=32), progress=False)
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(out[0])
    assert str(out[0]) in str(info.value) and "No space left on device" in str(info.value)
    assert [p.read_bytes() for p in out] == before  # previous complete artifacts intact
    assert sorted(p.name for p in out[0].parent.iterdir()) == sorted(p.name for p in out)


def test_cli_reports_full_disk_without_traceback(faults, tmp_path, monkeypatch, capsys):
    from dfer.cli import main

    manifest = _manifest(tmp_path / "m.parquet", [("a", faults["good"], "video")])
    import dfer.core.artifacts

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dfer.core.artifacts.pq, "write_table", full_disk)
    out = tmp_path / "o"
    code = main(["decode", "--manifest", str(manifest), "--out-frames", str(out / "s.safetensors"),
                 "--out-index", str(out / "s.parquet"), "--out-failures",
                 str(out / "s.failures.parquet"), "--params", '{"num_frames": 4, "size": 32}',
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot read or write {out / 's.failures.parquet'}: No space left on device" in err
    assert "Traceback" not in err


def test_full_disk_during_manifest_sync_keeps_old_shard(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_video(root / "a.mp4", pattern_frames(8, 64, 64))
    write_video(root / "b.mp4", pattern_frames(8, 64, 64))
    csv = root / "manifest.csv"
    csv.write_text("clip_id,path,label,test_fold\na,a.mp4,happiness,1\n", encoding="utf-8")
    definition = {"layout": "generic", "root": str(root), "split_files": [str(csv)],
                  "num_shards": 1, "labels": ["happiness", "sadness"]}
    results = tmp_path / "results"
    sync_dataset("ds", definition, results)
    shard = results / "ds" / "manifest" / "shard-000.parquet"
    before = shard.read_bytes()
    csv.write_text("clip_id,path,label,test_fold\na,a.mp4,happiness,1\nb,b.mp4,sadness,1\n",
                   encoding="utf-8")
    real = Path.write_bytes

    def full_disk(self: Path, data: bytes) -> int:
        if self.name.endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError, match="No space left on device") as info:
        sync_dataset("ds", definition, results)
    assert info.value.filename == str(shard)
    assert shard.read_bytes() == before
    assert not [p for p in shard.parent.iterdir() if p.name.endswith(".tmp")]


# --- manifest faults -------------------------------------------------------------------------


def test_manifest_duplicates_unknown_labels_missing_files_all_reported(tmp_path):
    root = tmp_path / "data"
    write_video(root / "a.mp4", pattern_frames(8, 64, 64))
    csv = root / "clips.csv"
    csv.write_text("clip_id,path,label,test_fold\n"
                   "a,a.mp4,happiness,1\n"
                   "a,a.mp4,happiness,1\n"        # line 3: duplicate id
                   "b,a.mp4,bored,1\n"            # line 4: unknown label
                   "c,missing.mp4,sadness,1\n",   # line 5: missing file
                   encoding="utf-8")
    definition = {"layout": "generic", "root": str(root), "split_files": [str(csv)],
                  "num_shards": 2, "labels": ["happiness", "sadness"]}
    with pytest.raises(ManifestError) as info:
        build_manifest("ds", definition)
    text = str(info.value)
    assert f"{csv}:3: duplicate clip id a (also at {csv}:2)" in text
    assert f"{csv}:4:" in text and "bored" in text
    # media are looked up only once the split files are clean: fix them, the missing file shows
    csv.write_text("clip_id,path,label,test_fold\na,a.mp4,happiness,1\n"
                   "c,missing.mp4,sadness,1\n", encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        build_manifest("ds", definition)
    assert f"{csv}:3: missing video/frame folder {root / 'missing.mp4'}" in str(info.value)


def test_non_ascii_paths_flow_from_manifest_to_frames_index(tmp_path):
    root = tmp_path / "données"
    write_video(root / "vidéos" / "sourire_😀.mp4", pattern_frames(10, 64, 64))
    write_frame_folder(root / "images" / "表情_01", pattern_frames(10, 64, 64))
    csv = root / "clips.csv"
    csv.write_text("clip_id,path,label,test_fold\n"
                   "sourire_é,vidéos/sourire_😀.mp4,happiness,1\n"
                   "表情_01,images/表情_01,sadness,1\n", encoding="utf-8")
    definition = {"layout": "generic", "root": str(root), "split_files": [str(csv)],
                  "num_shards": 1, "labels": ["happiness", "sadness"]}
    results = tmp_path / "results"
    sync_dataset("ds", definition, results)
    manifest = results / "ds" / "manifest" / "shard-000.parquet"
    assert shard_of("sourire_é", 1) == 0
    out = tmp_path / "out"
    result = decode_shard(manifest, out / "s.safetensors", out / "s.parquet",
                          out / "s.failures.parquet", CFG, progress=False)
    assert (result.decoded, result.failed) == (2, 0)
    index = pq.read_table(out / "s.parquet").to_pandas().set_index("clip_id")
    assert index.loc["sourire_é", "path"] == str(root / "vidéos" / "sourire_😀.mp4")
    assert index.loc["表情_01", "source_kind"] == "frames"
    from safetensors import safe_open

    with safe_open(str(out / "s.safetensors"), framework="numpy") as fh:
        assert sorted(fh.keys()) == sorted(["sourire_é", "表情_01"])


def test_last_frame_missing_is_tolerated_and_resampled(tmp_path):
    """A header off by a frame or two (common in the wild) resamples over the frames that decode.

    Frames past the last sampled index are never decoded, so only a shortfall that reaches a
    sampled frame is noticed: with 20 frames and T = 8 the last sampled frame is 18, so two
    frames are cut.
    """
    import av

    path = write_video(tmp_path / "short.mp4", _noisy(pattern_frames(20, 64, 64)),
                       options={"bf": "0"}, faststart=True)  # no B-frames: decode order = display
    with av.open(str(path)) as container:
        cut = [p for p in container.demux(video=0) if p.size > 0][-2]
    data = path.read_bytes()
    path.write_bytes(data[: cut.pos])  # drop exactly the last two frames' bytes
    clip = decode_clip(path, "video", CFG)
    assert clip.num_source_frames == 18
    assert clip.frame_indices.tolist() == sample_indices(18, 8).tolist()
    assert [frame_number(f) for f in clip.frames] == clip.frame_indices.tolist()
