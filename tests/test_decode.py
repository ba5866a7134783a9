"""The decode stage: both input kinds, the shard artifacts, the CLI, and atomicity under SIGKILL.

The atomicity tests run ``python -m dfer decode`` as a subprocess with a small hook injected
through ``-c`` (the library itself has no test hooks): the hook either stalls after the first
clip or stalls halfway through writing the safetensors temp file, the test SIGKILLs the
process there, and checks that no output file exists (or that the previous one is intact),
that no stray file could be mistaken for an output, and that a re-run gives the same bytes as
an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from face_geometry import FACE_SIDE
from safetensors import safe_open
from safetensors.numpy import load_file
from support.videos import face_frames, pattern_frames, write_frame_folder, write_video

from dfer.core.artifacts import read_meta
from dfer.video import (
    INDEX_SCHEMA,
    DecodeConfig,
    decode_clip,
    decode_shard,
    read_video,
    sample_indices,
)

REPO = Path(__file__).resolve().parents[1]
PARAMS = {"num_frames": 6, "size": 48}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same face clip as an mp4 and as a JPEG frame folder, plus a second video."""
    d = tmp_path_factory.mktemp("clips")
    frames = face_frames(14, size=FACE_SIDE, seed=3)  # a face dlib finds in every frame
    return {
        "video": write_video(d / "face.mp4", frames, options={"crf": "12"}),
        "frames": write_frame_folder(d / "face_frames", frames),
        "other": write_video(d / "other.avi", face_frames(9, size=176, seed=4), codec="mpeg4"),
        "pattern": write_video(d / "pattern.mp4", pattern_frames(20, 64, 64)),
    }


def _manifest(path: Path, rows: list[tuple[str, Path, str]]) -> Path:
    n = len(rows)
    pq.write_table(pa.table({
        "clip_id": [r[0] for r in rows],
        "path": [str(r[1]) for r in rows],
        "source_kind": [r[2] for r in rows],
        "label": ["anger"] * n,
        "label_idx": pa.array([3] * n, pa.int32()),
        "test_fold": pa.array([2] * n, pa.int32()),
        "shard": pa.array([0] * n, pa.int32()),
    }), path)
    return path


def _outs(folder: Path) -> list[Path]:
    return [folder / "shard-000.safetensors", folder / "shard-000.parquet",
            folder / "shard-000.failures.parquet"]


# --- sampling ---------------------------------------------------------------------------------


def test_sample_indices_centre_of_equal_segments():
    assert sample_indices(20, 8).tolist() == [1, 3, 6, 8, 11, 13, 16, 18]
    assert sample_indices(16, 16).tolist() == list(range(16))
    assert sample_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]  # short clips repeat evenly
    assert sample_indices(1, 4).tolist() == [0, 0, 0, 0]
    idx = sample_indices(1001, 16)
    assert idx.dtype == np.int32 and idx.min() >= 0 and idx.max() <= 1000
    with pytest.raises(ValueError, match="0 frames"):
        sample_indices(0, 16)


# --- both input kinds ---------------------------------------------------------------------


def test_video_and_frame_folder_of_the_same_clip_agree(clips):
    import cv2

    cfg = DecodeConfig(**PARAMS)
    source = face_frames(14, size=FACE_SIDE, seed=3)  # what both files were written from
    video = decode_clip(clips["video"], "video", cfg)
    folder = decode_clip(clips["frames"], "frames", cfg)
    for clip in (video, folder):
        assert clip.frames.shape == (6, 48, 48, 3) and clip.frames.dtype == np.uint8
        assert clip.frame_indices.tolist() == [1, 3, 5, 8, 10, 12]
        assert clip.num_source_frames == 14
        assert (clip.orig_width, clip.orig_height) == (FACE_SIDE, FACE_SIDE)
        assert clip.face_found_frac == 1.0
    assert video.fps == pytest.approx(15.0) and np.isnan(folder.fps)
    # same face, same box (to a few pixels of codec noise)
    assert np.abs(video.crop_box - folder.crop_box).max() <= 4
    # each path's pixels are the source frames at its sampled indices, cut at its own box
    # (compared per path: a one-pixel box shift moves a textured face more than codec noise)
    for clip in (video, folder):
        x0, y0, x1, y1 = (int(v) for v in clip.crop_box)
        expected = np.stack([cv2.resize(source[i][y0:y1, x0:x1], (48, 48), interpolation=cv2.INTER_AREA)
                             for i in clip.frame_indices])
        diff = np.abs(clip.frames.astype(int) - expected.astype(int)).mean()
        assert diff < 6, (clip.crop_box.tolist(), diff)


def test_folder_fps_sets_rate_and_duration(clips):
    clip = decode_clip(clips["frames"], "frames", {**PARAMS, "folder_fps": 25})
    assert clip.fps == 25.0 and clip.duration_s == pytest.approx(14 / 25)


def test_unknown_source_kind_and_bad_options_are_rejected(clips):
    with pytest.raises(ValueError, match=r"unknown decode option\(s\) \['num_frame'\]"):
        DecodeConfig.from_params({"num_frame": 4})
    with pytest.raises(ValueError, match="decode.on_no_face"):
        DecodeConfig(on_no_face="skip")
    from dfer.video import DecodeError

    # "image" is a still image now (tests/test_static_datasets.py); any other kind is refused
    with pytest.raises(DecodeError, match="unknown source_kind 'photo'"):
        decode_clip(clips["video"], "photo", PARAMS)


# --- shard artifacts ------------------------------------------------------------------------


def test_decode_shard_writes_the_three_artifacts(clips, tmp_path):
    manifest = _manifest(tmp_path / "shard-000.parquet", [
        ("v1", clips["video"], "video"), ("f1", clips["frames"], "frames"),
        ("v2", clips["other"], "video"), ("gone", tmp_path / "gone.mp4", "video")])
    out = _outs(tmp_path / "frames")
    result = decode_shard(manifest, *out, PARAMS, progress=False)
    assert (result.decoded, result.failed) == (3, 1)

    crops = load_file(str(out[0]))
    assert sorted(crops) == ["f1", "v1", "v2"]
    assert crops["v2"].shape == (6, 48, 48, 3) and crops["v2"].dtype == np.uint8

    index = pq.read_table(out[1])
    assert index.schema.remove_metadata() == INDEX_SCHEMA
    rows = {r["clip_id"]: r for r in index.to_pylist()}
    assert rows["v1"]["label"] == "anger" and rows["v1"]["label_idx"] == 3
    assert rows["v1"]["test_fold"] == 2 and rows["v1"]["source_kind"] == "video"
    assert rows["f1"]["source_kind"] == "frames"
    assert rows["v2"]["orig_width"] == 176 and rows["v2"]["num_source_frames"] == 9
    assert rows["v2"]["frame_indices"] == sample_indices(9, 6).tolist()
    x0, y0, x1, y1 = rows["v1"]["crop_box"]
    assert x1 - x0 == y1 - y0 and 0 <= x0 < x1 <= FACE_SIDE
    assert rows["v1"]["face_found_frac"] == rows["f1"]["face_found_frac"] == 1.0
    assert all(r["seconds"] >= 0 for r in rows.values())  # a duration (its value: test below)

    failures = pq.read_table(out[2]).to_pylist()
    assert failures == [{"clip_id": "gone", "stage": "decode", "source": str(tmp_path / "gone.mp4"),
                         "error_type": "missing_file",
                         "message": f"clip gone: {tmp_path / 'gone.mp4'}: file not found"}]

    for path in out:  # provenance on every artifact, no run-specific fields
        meta = read_meta(path)
        assert meta["stage"] == "decode" and meta["backend"] == "pyav"
        assert meta["params"]["num_frames"] == 6 and meta["params"]["size"] == 48
        assert meta["detector"] == "dlib-hog"
    with safe_open(str(out[0]), framework="numpy") as fh:  # one clip without loading the rest
        assert fh.get_tensor("f1").shape == (6, 48, 48, 3)


def test_empty_shard_gives_valid_empty_artifacts(tmp_path):
    manifest = _manifest(tmp_path / "m.parquet", [])
    out = _outs(tmp_path / "frames")
    assert decode_shard(manifest, *out, PARAMS, progress=False).decoded == 0
    with safe_open(str(out[0]), framework="numpy") as fh:
        assert list(fh.keys()) == []
    assert read_meta(out[0])["stage"] == "decode"
    assert pq.read_table(out[1]).num_rows == 0 and pq.read_table(out[2]).num_rows == 0


def test_shard_manifest_checks(tmp_path):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"clip_id": ["a"], "path": ["a.mp4"]}), bad)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['source_kind'"):
        decode_shard(bad, *_outs(tmp_path), PARAMS, progress=False)
    dup = _manifest(tmp_path / "dup.parquet", [("a", tmp_path / "a.mp4", "video")] * 2)
    with pytest.raises(ValueError, match=r"lists clip id\(s\) more than once: \['a'\]"):
        decode_shard(dup, *_outs(tmp_path), PARAMS, progress=False)
    assert not _outs(tmp_path)[0].exists()


class _TickingClock:
    """Stands in for the ``time`` module of ``dfer.video.api``: ``perf_counter`` advances by
    ``tick`` seconds per call, so a clip's measured duration is known exactly."""

    def __init__(self, tick: float) -> None:
        self.tick, self.now = tick, 1000.0

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


def test_rerun_is_byte_identical_and_seconds_is_the_clock(clips, tmp_path, monkeypatch):
    import dfer.video.api as clip_mod

    manifest = _manifest(tmp_path / "m.parquet", [("v1", clips["video"], "video"),
                                                  ("f1", clips["frames"], "frames")])
    a, b = _outs(tmp_path / "a"), _outs(tmp_path / "b")
    monkeypatch.setattr(clip_mod, "time", _TickingClock(0.25))
    decode_shard(manifest, *a, PARAMS, progress=False)
    monkeypatch.setattr(clip_mod, "time", _TickingClock(0.25))
    decode_shard(manifest, *b, PARAMS, progress=False)
    # each clip's ``seconds`` is the clock's reading after its decode minus the one before
    assert pq.read_table(a[1]).column("seconds").to_pylist() == [0.25, 0.25]
    # with the clock fixed, every byte of every artifact is the same
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_decoder_threads_change_no_byte(clips, tmp_path, monkeypatch):
    """One decoder thread per job (the rule's default) or FFmpeg's one per core: the same
    frames and the same artifacts, byte for byte; a negative count is refused."""
    import dfer.video.api as clip_mod

    frames = [read_video(clips["pattern"], 8, threads=t).frames for t in (0, 1, 2)]
    assert all(np.array_equal(frames[0], f) for f in frames[1:])
    with pytest.raises(ValueError, match="threads must be >= 0"):
        read_video(clips["pattern"], 8, threads=-1)
    manifest = _manifest(tmp_path / "m.parquet", [("v1", clips["video"], "video"),
                                                  ("p1", clips["pattern"], "video")])
    outs = {}
    for threads in (0, 1):
        outs[threads] = _outs(tmp_path / f"t{threads}")
        monkeypatch.setattr(clip_mod, "time", _TickingClock(0.25))
        decode_shard(manifest, *outs[threads], PARAMS, progress=False, threads=threads)
    assert [p.read_bytes() for p in outs[0]] == [p.read_bytes() for p in outs[1]]


# --- skipping unwanted non-reference frames (dfer.video.skipping) ---------------------------


def _plain_read(monkeypatch: pytest.MonkeyPatch, path: Path, num: int) -> np.ndarray:
    """``read_video`` decoding every frame, as before the skipping existed."""
    import dfer.video.reader as reader

    with monkeypatch.context() as m:
        m.setattr(reader, "SKIP_UNWANTED_FRAMES", False)
        return read_video(path, num).frames


def test_skipping_reads_the_same_frames_as_decoding_every_frame(clips, tmp_path, monkeypatch):
    """Skipping unwanted non-reference frames gives the very pixels the plain pass gives: x264
    with B-frames (mp4, a variable frame rate, an MPEG-4 avi, a Matroska file without a frame
    count) and for every number of sampled frames."""
    frames = pattern_frames(40, 64, 48)
    cases = {
        "bframes.mp4": write_video(tmp_path / "bframes.mp4", frames),
        "vfr.mp4": write_video(tmp_path / "vfr.mp4", frames[:12],
                               pts_ms=[0, 40, 80, 200, 240, 400, 440, 480, 700, 740, 780, 990]),
        "bframes.mkv": write_video(tmp_path / "bframes.mkv", frames),
        "other.avi": clips["other"],
        "face.mp4": clips["video"],
    }
    for name, path in cases.items():
        for num in (1, 4, 16, 50):
            assert np.array_equal(read_video(path, num).frames, _plain_read(monkeypatch, path, num)), \
                (name, num)
    # where skipping steps aside, the file is decoded afresh, every frame
    import dfer.video.reader as reader

    monkeypatch.setattr(reader, "decode_skipping", lambda *a, **k: None)
    assert np.array_equal(read_video(cases["bframes.mp4"], 16).frames,
                          _plain_read(monkeypatch, cases["bframes.mp4"], 16))


def test_skipping_decodes_fewer_frames_and_refuses_what_it_cannot_map(tmp_path):
    """On an x264 clip with B-frames, 8 of 60 frames wanted: the decoder produces far fewer
    frames than the 60 a plain pass decodes, and the wanted ones all; a frame count other
    than the header's, or timestamps that repeat, make it step aside (None)."""
    import av

    from dfer.video.skipping import decode_skipping, presentation_ranks

    path = write_video(tmp_path / "b.mp4", pattern_frames(60, 64, 48))
    indices = sample_indices(60, 8)
    with av.open(str(path)) as container:
        got = decode_skipping(container, indices, 60, lambda f: f.to_ndarray(format="rgb24"))
    assert got is not None
    frames, produced = got
    assert sorted(frames) == [int(i) for i in indices]
    assert produced <= 0.8 * (int(indices.max()) + 1), produced
    with av.open(str(path)) as container:
        assert decode_skipping(container, indices, 61, lambda f: f) is None

    class Packet:
        def __init__(self, pts: int | None, size: int = 10, is_discard: bool = False) -> None:
            self.pts, self.size, self.is_discard = pts, size, is_discard

    class Container:
        def __init__(self, packets: list[Packet]) -> None:
            self.packets = packets

        def demux(self, stream: object) -> list[Packet]:
            return self.packets

    ranks = presentation_ranks(Container([Packet(0), Packet(2), Packet(1), Packet(9, size=0),
                                          Packet(5, is_discard=True)]), None)
    assert ranks == {0: 0, 1: 1, 2: 2}  # presentation order; flush and discarded packets out
    assert presentation_ranks(Container([Packet(0), Packet(0)]), None) is None
    assert presentation_ranks(Container([Packet(0), Packet(None)]), None) is None


def _assert_same_index(a: Path, b: Path) -> None:
    """Same index but for ``seconds``, the one column the contract lets differ between runs
    (it is measured with the real clock; a run in another process cannot share an injected one)."""
    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.schema.metadata == tb.schema.metadata
    pd.testing.assert_frame_equal(ta.drop(["seconds"]).to_pandas(),
                                  tb.drop(["seconds"]).to_pandas())


# --- CLI -------------------------------------------------------------------------------------


def _cli_args(manifest: Path, out: list[Path], params: dict) -> list[str]:
    return ["decode", "--manifest", str(manifest), "--out-frames", str(out[0]),
            "--out-index", str(out[1]), "--out-failures", str(out[2]),
            "--params", json.dumps(params), "--no-progress"]


def test_cli_decodes_and_reports(clips, tmp_path, capsys):
    from dfer.cli import main

    manifest = _manifest(tmp_path / "m.parquet", [("v1", clips["pattern"], "video"),
                                                  ("x", tmp_path / "x.mp4", "video")])
    out = _outs(tmp_path / "o")
    assert main(_cli_args(manifest, out, PARAMS)) == 0
    assert "1 clip(s) decoded, 1 failed" in capsys.readouterr().err
    assert all(p.exists() for p in out)
    assert main(_cli_args(manifest, out, {"sise": 3})) == 2
    assert "bad --params: unknown decode option(s) ['sise']" in capsys.readouterr().err
    assert main(_cli_args(tmp_path / "none.parquet", _outs(tmp_path / "p"), PARAMS)) == 1
    assert "none.parquet" in capsys.readouterr().err
    assert main(_cli_args(manifest, out, PARAMS) + ["--threads", "-1"]) == 2
    assert "--threads must be >= 0" in capsys.readouterr().err


def test_cli_threads_follow_the_snakemake_job(clips, tmp_path, capsys, monkeypatch):
    """Without ``--threads``, ``dfer decode`` takes the job's threads from OMP_NUM_THREADS (what
    Snakemake sets for every job; the rule declares ``threads: 1``), caps OpenCV's pool at
    them too, and ``--threads`` wins over the variable."""
    import cv2

    from dfer.cli import main
    from dfer.stages.decode import job_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert job_threads(None) == 0  # outside Snakemake: FFmpeg's choice, one per core
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert (job_threads(None), job_threads(2), job_threads(0)) == (3, 2, 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert job_threads(None) == 0
    seen: list[int] = []
    real = decode_shard

    def spy(*args, threads=0, **kwargs):
        seen.append(threads)
        return real(*args, threads=threads, **kwargs)

    monkeypatch.setattr("dfer.video.decode_shard", spy)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    manifest = _manifest(tmp_path / "m.parquet", [("v1", clips["video"], "video")])
    before = cv2.getNumThreads()
    try:
        assert main(_cli_args(manifest, _outs(tmp_path / "o"), PARAMS)) == 0
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
    assert seen == [1]
    assert "1 clip(s) decoded, 0 failed" in capsys.readouterr().err


# --- atomicity under SIGKILL --------------------------------------------------------------

#: Runs `dfer decode` with a hook that writes MARK and stalls at the chosen point.
HOOK = """
import os, sys, time
mark, where = sys.argv[1], sys.argv[2]
def stall():
    with open(mark, "w") as fh:
        fh.write("stalled")
    time.sleep(120)
if where == "decode":  # stall after the first clip has been decoded
    import dfer.video.shard as shard
    real_decode, calls = shard.decode_clip, []
    def slow_decode(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            stall()
        return real_decode(*args, **kwargs)
    shard.decode_clip = slow_decode
else:  # stall with the safetensors temp file half written
    import safetensors.numpy as stn
    real_save = stn.save_file
    def slow_save(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        data = open(filename, "rb").read()
        with open(filename, "wb") as fh:
            fh.write(data[: len(data) // 2])
        stall()
    stn.save_file = slow_save
from dfer.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _run_and_kill(tmp_path: Path, where: str, args: list[str]) -> None:
    mark = tmp_path / f"mark-{where}"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", HOOK, str(mark), where, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not mark.exists():
            if proc.poll() is not None:
                raise AssertionError(f"decode exited ({proc.returncode}) before the hook: "
                                     f"{proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("the hook was never reached")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


def _visible(folder: Path) -> list[str]:
    """Files a reader or Snakemake could take for outputs (temp files are hidden dotfiles)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) \
        if folder.exists() else []


def test_sigkill_leaves_no_partial_shard_and_rerun_matches(clips, tmp_path):
    manifest = _manifest(tmp_path / "m.parquet", [
        ("v1", clips["video"], "video"), ("f1", clips["frames"], "frames"),
        ("v2", clips["other"], "video"), ("gone", tmp_path / "gone.mp4", "video")])
    reference = _outs(tmp_path / "ref")
    decode_shard(manifest, *reference, PARAMS, progress=False)

    out = _outs(tmp_path / "out")
    args = _cli_args(manifest, out, PARAMS)
    _run_and_kill(tmp_path, "decode", args)  # killed between clips: nothing written yet
    assert _visible(out[0].parent) == []

    _run_and_kill(tmp_path, "write", args)  # killed with the frames temp file half written
    assert _visible(out[0].parent) == []
    leftovers = [p.name for p in out[0].parent.iterdir()]
    assert leftovers and all(n.startswith(".shard-000.safetensors.") and n.endswith(".tmp")
                             for n in leftovers)

    from dfer.cli import main

    assert main(args) == 0  # re-run after the kills: outputs written, orphaned temps removed
    assert sorted(p.name for p in out[0].parent.iterdir()) == sorted(p.name for p in out)
    assert out[0].read_bytes() == reference[0].read_bytes()
    assert out[2].read_bytes() == reference[2].read_bytes()
    _assert_same_index(out[1], reference[1])

    # killed while replacing a complete shard: the previous version stays, byte for byte
    before = [p.read_bytes() for p in out]
    _run_and_kill(tmp_path, "write", _cli_args(manifest, out, {**PARAMS, "size": 32}))
    assert [p.read_bytes() for p in out] == before


def test_decode_array_matches_decode_clip_on_the_same_frames(clips):
    from dfer.video import decode_array, read_video

    cfg = DecodeConfig(**PARAMS)
    source = read_video(clips["video"], 14).frames  # all 14 frames, as decoded from the file
    from_array = decode_array(source, cfg, fps=15)
    from_file = decode_clip(clips["video"], "video", cfg)
    assert np.array_equal(from_array.frames, from_file.frames)
    assert np.array_equal(from_array.crop_box, from_file.crop_box)
    assert from_array.frame_indices.tolist() == from_file.frame_indices.tolist()
    assert from_array.duration_s == pytest.approx(14 / 15)
    grey = decode_array(source[..., 0], cfg)  # [N, H, W] grey frames become RGB
    assert grey.frames.shape == (6, 48, 48, 3) and np.isnan(grey.fps)
    with pytest.raises(ValueError, match=r"expected uint8 frames \[N, H, W, 3\]"):
        decode_array(source.astype(np.float32), cfg)
