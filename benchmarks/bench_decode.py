"""Decode throughput: our sampled PyAV decode, and the whole decode stage, against bare decoding.

What is timed, per clip set (same clips, same run, best of ``--repeats``, methods taking
turns):

* ``ours_sampling``: ``dfer.video.read_video(path, T)``: one forward PyAV pass that stops after
  the last wanted frame and converts only the T wanted frames to RGB.
* ``baseline_cv2_all``: the common recipe: ``cv2.VideoCapture`` read loop over every frame
  (each one converted to BGR by OpenCV), then pick the same T indices and convert them to RGB.
* ``pyav_all_frames``: PyAV decoding and converting every frame: "bare decoding", the speed
  the decode stage is held to (FFmpeg's threads, one per core);
  ``pyav_all_frames_1thread`` the same on one decoder thread, as each pipeline job decodes.
* ``ours_full_decode_clip``: ``decode_clip`` with the default settings (sampling + face box +
  crop + resize to 224), no files.
* ``stage:<step>``: the full decode stage, ``dfer.video.decode_shard`` on a manifest of the
  clip set (sampling, face detection, crop, resize, safetensors + Parquet writes), once per
  step of the detection speed-ups (``STEPS``: ``today`` is the detection before them, each
  later step adds one setting: one decoder thread per job, then skipping the unwanted
  non-reference frames), so every step's gain comes from the same run. Each call writes into a fresh folder, as a Snakemake job does (its
  old outputs are removed first).

Two jobs at once: two processes run the stage over the clip set at the same time, as
``snakemake --cores 2`` does, with FFmpeg's threads and with one decoder thread per job.

Detection quality is measured beside the speed, once per step (not timed): on the demo
clips (face found, and the crop centre's distance from today's crop), on the long clips and
on a set of clips with 60-120 px faces in 640x480 frames (face found, which detector
setting found it, and the crop centre's distance from the known face centre).

Clip sets: the demo clips (256 px, 24-36 frames at 15 fps, the kind the pipeline runs on
here) and synthetic long clips (10 s at 30 fps, 640x480, libx264 defaults: the realistic DFEW
case, where sampling T=16 out of 300 frames should pay off). A correctness check compares
our sampled frames with the baseline's picks (mean absolute difference in grey levels; both
decode the same frames, only their YUV->RGB conversions differ).

    python benchmarks/bench_decode.py            # writes benchmarks/results/decode.{json,md}
    python benchmarks/bench_decode.py --long-clips 2 --demo-clips-per-class 2 --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))  # support.videos: the test fixtures

T = 16


def face_clip(path: Path, seconds: float, fps: int, width: int, height: int, seed: int,
              face_px: float | None = None) -> tuple[Path, np.ndarray]:
    """A moving face on a textured, drifting background: real motion for the encoder.

    ``face_px``: the face's size (dlib box side at full resolution, about); default a tile of
    half the frame's shorter side (~83 px in 640x480). Returns the file and the face centre
    (x, y) of every frame (the tile's known face centre; its own drift adds at most 4 px).
    """
    import cv2
    from face_geometry import face_frames_centre
    from support.videos import face_frames, write_video

    n = int(round(seconds * fps))
    tile = min(height, width) // 2 if face_px is None else int(round(face_px * 260 / 90))
    faces = face_frames(n, size=tile, seed=seed)
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (height * 2, width * 2, 3), np.uint8),
                               (0, 0), 3)
    frames, centres = [], []
    side = faces[0].shape[0]
    fcx, fcy = face_frames_centre(side)
    for i, face in enumerate(faces):
        ox, oy = (3 * i) % width, (2 * i) % height
        frame = texture[oy:oy + height, ox:ox + width].copy()
        x = int((width - side) / 2 + (width / 6) * np.sin(i / 20))
        y = int((height - side) / 2 + (height / 10) * np.cos(i / 25))
        x, y = min(max(x, 0), width - side), min(max(y, 0), height - side)
        frame[y:y + side, x:x + side] = face
        frames.append(frame)
        centres.append((x + fcx, y + fcy))
    path = write_video(path, frames, fps=fps, options={"preset": "veryfast"})
    return path, np.asarray(centres, dtype=np.float64)


def make_long_clip(path: Path, seconds: float, fps: int, width: int, height: int,
                   seed: int) -> Path:
    """``face_clip`` with its default (~83 px) face."""
    return face_clip(path, seconds, fps, width, height, seed)[0]


def baseline_cv2(path: Path, num_frames: int) -> np.ndarray:
    """Decode every frame with OpenCV, then pick the T uniformly sampled ones (RGB)."""
    import cv2

    from dfer.video import sample_indices

    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    idx = sample_indices(len(frames), num_frames)
    return np.stack([cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB) for i in idx])


def pyav_all_frames(path: Path, num_frames: int, threads: int = 0) -> np.ndarray:
    """Decode and convert every frame with PyAV (one reused swscale context), then pick T;
    FFmpeg's threads (one per core), or ``threads`` decoder threads."""
    import av
    from av.video.reformatter import VideoReformatter

    from dfer.video import sample_indices
    from dfer.video.reader import use_decoder_threads

    rgb = VideoReformatter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        use_decoder_threads(stream, threads)
        frames = [rgb.reformat(f, format="rgb24", threads=1).to_ndarray() for f in container.decode(stream)]
    return np.stack([frames[i] for i in sample_indices(len(frames), num_frames)])


def pyav_all_frames_1thread(path: Path, num_frames: int) -> np.ndarray:
    """``pyav_all_frames`` on one decoder thread: bare decoding as each pipeline job runs."""
    return pyav_all_frames(path, num_frames, threads=1)


def ours_sampling(path: Path, num_frames: int) -> np.ndarray:
    from dfer.video import read_video

    return read_video(path, num_frames).frames


def ours_full(path: Path, num_frames: int) -> np.ndarray:
    from dfer.video import DecodeConfig, decode_clip

    return decode_clip(path, "video", DecodeConfig(num_frames=num_frames)).frames


METHODS: dict[str, Callable[[Path, int], np.ndarray]] = {
    "ours_sampling": ours_sampling,
    "baseline_cv2_all": baseline_cv2,
    "pyav_all_frames": pyav_all_frames,
    "pyav_all_frames_1thread": pyav_all_frames_1thread,
    "ours_full_decode_clip": ours_full,
}

#: The steps of the decode speed-up, each adding one setting to the one before; ``today``
#: is the decode stage before them (HOG on 8 of the 16 frames, RGB, no quick pass, FFmpeg's
#: threads, every frame decoded), the last step is the stage as the pipeline runs it.
#: ``threads`` is not a decode setting but the job's decoder threads (``dfer decode`` follows
#: Snakemake's, the rule's ``threads: 1``; 0: FFmpeg's choice, one per core), ``skip`` whether
#: unwanted non-reference frames are skipped (``dfer.video.reader.SKIP_UNWANTED_FRAMES``, on
#: by default; the same pixels). Settings not named keep their defaults.
_BEFORE = {"threads": 0, "skip": False}
STEPS: dict[str, dict[str, object]] = {
    "today": {"quick_frames": 0, "detect_scale": 1.0, "detect_gray": False, **_BEFORE},
    "+detect_gray": {"quick_frames": 0, "detect_scale": 1.0, "detect_gray": True, **_BEFORE},
    "+quick_frames=2": {"quick_frames": 2, "detect_scale": 1.0, "detect_gray": True, **_BEFORE},
    "+detect_scale=0.75": {"quick_frames": 2, "detect_scale": 0.75, "detect_gray": True,
                           **_BEFORE},
    "+quick_frames=1": {"quick_frames": 1, "detect_scale": 0.75, "detect_gray": True, **_BEFORE},
    "+threads=1": {"quick_frames": 1, "detect_scale": 0.75, "detect_gray": True, "threads": 1,
                   "skip": False},
    "+skip_unwanted": {"quick_frames": 1, "detect_scale": 0.75, "detect_gray": True,
                       "threads": 1, "skip": True},
}
_NOT_DECODE_SETTINGS = ("threads", "skip")

#: The decode rule's ``threads`` (workflow/rules/decode.smk), what the pipeline's jobs use.
RULE_THREADS = 1


def step_config(step: str):  # noqa: ANN201 - DecodeConfig, imported late
    from dfer.video import DecodeConfig

    settings = {k: v for k, v in STEPS[step].items() if k not in _NOT_DECODE_SETTINGS}
    return DecodeConfig(num_frames=T, **settings)  # type: ignore[arg-type]


def step_threads(step: str) -> int:
    return int(STEPS[step]["threads"])  # type: ignore[call-overload]


@contextlib.contextmanager
def step_skipping(step: str) -> Iterator[None]:
    """Within: the reader skips unwanted non-reference frames as ``step`` says."""
    import dfer.video.reader as reader

    before = reader.SKIP_UNWANTED_FRAMES
    reader.SKIP_UNWANTED_FRAMES = bool(STEPS[step]["skip"])
    try:
        yield
    finally:
        reader.SKIP_UNWANTED_FRAMES = before


def default_step() -> str:
    """The step whose settings are the defaults, with the rule's threads and skipping on
    (the decode stage as the pipeline runs it)."""
    from dfer.video import DecodeConfig

    for step, settings in STEPS.items():
        if (step_config(step) == DecodeConfig(num_frames=T)
                and step_threads(step) == RULE_THREADS and settings["skip"]):
            return step
    raise AssertionError("no step of STEPS is the default decode configuration")


def write_manifest(clips: list[Path], path: Path) -> Path:
    """A shard manifest of ``clips`` (the columns decode reads)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dfer.manifests.build import MANIFEST_SCHEMA
    from dfer.video.shard import MANIFEST_FIELDS

    n = len(clips)
    table = pa.table({"clip_id": [c.stem for c in clips], "path": [str(c) for c in clips],
                      "source_kind": ["video"] * n, "label": ["x"] * n, "label_idx": [0] * n,
                      "test_fold": [1] * n},
                     schema=pa.schema([MANIFEST_SCHEMA.field(f) for f in MANIFEST_FIELDS]))
    pq.write_table(table, path)
    return path


def stage_runner(manifest: Path, work: Path, step: str) -> Callable[[], float]:
    """Seconds of one ``decode_shard`` run with ``step``'s settings and threads, into a fresh
    folder (removed after the clock stops)."""
    from dfer.video import decode_shard

    cfg = step_config(step)
    threads = step_threads(step)
    runs = iter(range(10**9))

    def run() -> float:
        out = work / f"{step}-{next(runs)}"
        out.mkdir(parents=True)
        files = [out / "f.safetensors", out / "f.parquet", out / "f.failures.parquet"]
        with step_skipping(step):
            t0 = time.perf_counter()
            decode_shard(manifest, *files, cfg, progress=False, threads=threads)
            seconds = time.perf_counter() - t0
        shutil.rmtree(out)
        return seconds

    return run


FLOOR = "stage:no-detection"


def floor_runner(manifest: Path, work: Path) -> Callable[[], float]:
    """The stage with face detection replaced by a fixed face-sized box (the middle 61% of
    the frame, about the demo's crop): what the stage costs without detecting, the floor any
    detection speed-up approaches. Not a configuration; a measurement."""
    import dfer.video.api as api

    run = stage_runner(manifest, work, default_step())

    def fixed(sampled, cfg):  # noqa: ANN001, ANN202 - stands in for api.face_boxes
        side = int(0.61 * min(sampled.width, sampled.height))
        x0, y0 = (sampled.width - side) // 2, (sampled.height - side) // 2
        box = np.array([x0, y0, x0 + side, y0 + side], dtype=np.float32)
        return api.FaceBoxes(box, None, 1.0, 1, "fixed")

    def timed() -> float:
        real, api.face_boxes = api.face_boxes, fixed
        try:
            return run()
        finally:
            api.face_boxes = real

    return timed


def time_methods(clips: list[Path], repeats: int, work: Path) -> dict[str, float]:
    """Best-of-``repeats`` seconds per method to run it over every clip.

    Methods take turns within each repeat (round robin, after one warm-up each), so a
    burst of load from another process on this shared machine hits every method alike
    rather than the one that happened to be running.
    """
    def per_clip(fn: Callable[[Path, int], np.ndarray]) -> Callable[[], float]:
        def run() -> float:
            t0 = time.perf_counter()
            for clip in clips:
                fn(clip, T)
            return time.perf_counter() - t0
        return run

    manifest = write_manifest(clips, work / "manifest.parquet")
    runners = {name: per_clip(fn) for name, fn in METHODS.items()}
    runners |= {f"stage:{step}": stage_runner(manifest, work, step) for step in STEPS}
    runners[FLOOR] = floor_runner(manifest, work / "floor")
    for fn in METHODS.values():
        fn(clips[0], T)
    for step in STEPS:
        runners[f"stage:{step}"]()
    best = dict.fromkeys(runners, float("inf"))
    for _ in range(repeats):
        for name, run in runners.items():
            best[name] = min(best[name], run())
    return best


def _one_stage_run(manifest: Path, work: Path, step: str) -> float:
    """One timed ``decode_shard`` run (a worker process's job in ``two_jobs``)."""
    return stage_runner(manifest, work, step)()


def two_jobs(clips: list[Path], repeats: int, work: Path) -> dict[str, float]:
    """Wall seconds for two decode jobs at once (``snakemake --cores 2`` on this machine),
    each decoding every clip with the default settings and every frame decoded, with FFmpeg's
    threads (``threads`` 0) against one decoder thread per job (the rule's ``threads: 1``);
    best of ``repeats``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    work.mkdir(parents=True, exist_ok=True)
    manifest = write_manifest(clips, work / "manifest.parquet")
    steps = {"ffmpeg_threads": "+quick_frames=1", "one_thread_per_job": "+threads=1"}
    best = dict.fromkeys(steps, float("inf"))
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        for step in steps.values():  # warm both workers (imports, dlib model)
            list(pool.map(_one_stage_run, [manifest] * 2, [work / f"warm{i}" for i in (0, 1)],
                          [step] * 2))
        for r in range(repeats):
            for name, step in steps.items():
                t0 = time.perf_counter()
                list(pool.map(_one_stage_run, [manifest] * 2,
                              [work / f"{name}-{r}-{i}" for i in (0, 1)], [step] * 2))
                best[name] = min(best[name], time.perf_counter() - t0)
    return {name: round(seconds, 4) for name, seconds in best.items()}


def source_frames(clips: list[Path]) -> int:
    import av

    total = 0
    for clip in clips:
        with av.open(str(clip)) as c:
            total += int(c.streams.video[0].frames)
    return total


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float64)


def detection_quality(clips: list[Path], truth: list[np.ndarray] | None) -> dict[str, dict]:
    """Per step: clips with a face found, which setting found it, seconds per clip, and the
    crop centre's distance (px, and in face sizes) from the truth: the known face centre
    (median over the sampled frames) when ``truth`` is given, else today's crop box."""
    from dfer.video import decode_clip

    out: dict[str, dict] = {}
    reference: list[np.ndarray] = []
    for step in STEPS:
        cfg = step_config(step)
        found, used, dist, rel, seconds = 0, {}, [], [], 0.0
        for k, clip in enumerate(clips):
            t0 = time.perf_counter()
            with step_skipping(step):
                res = decode_clip(clip, "video", cfg, threads=step_threads(step))
            seconds += time.perf_counter() - t0
            found += res.detector_used is not None
            used[str(res.detector_used)] = used.get(str(res.detector_used), 0) + 1
            centre = _centre(res.crop_box)
            side = float(res.crop_box[2] - res.crop_box[0]) / (1 + 2 * cfg.margin)
            if truth is not None:
                ref = np.median(truth[k][res.frame_indices], axis=0)
            else:
                if step == "today":
                    reference.append(centre)
                ref = reference[k]
            d = float(np.hypot(*(centre - ref)))
            dist.append(d)
            rel.append(d / side)
        out[step] = {"found": found, "clips": len(clips),
                     "found_rate": round(found / len(clips), 3),
                     "detector_used": dict(sorted(used.items())),
                     "seconds_per_clip": round(seconds / len(clips), 4),
                     "centre_err_px_mean": round(float(np.mean(dist)), 2),
                     "centre_err_px_max": round(float(np.max(dist)), 2),
                     "centre_err_face_frac_max": round(float(np.max(rel)), 3)}
    return out


def bench_set(name: str, clips: list[Path], repeats: int, work: Path,
              truth: list[np.ndarray] | None) -> dict:
    import av

    with av.open(str(clips[0])) as c:
        s = c.streams.video[0]
        shape = f"{s.width}x{s.height} @ {float(s.average_rate):g} fps"
    result: dict = {"clips": len(clips), "source_frames": source_frames(clips),
                    "format": shape, "methods": {}}
    print(f"  timing {name}", file=sys.stderr, flush=True)
    work.mkdir(parents=True)
    for method, seconds in time_methods(clips, repeats, work).items():
        result["methods"][method] = {
            "seconds": round(seconds, 4),
            "clips_per_s": round(len(clips) / seconds, 2),
            "output_frames_per_s": round(len(clips) * T / seconds, 1),
            "source_frames_per_s": round(result["source_frames"] / seconds, 1),
        }
    m = result["methods"]
    result["ratio_ours_vs_cv2"] = round(m["baseline_cv2_all"]["seconds"]
                                        / m["ours_sampling"]["seconds"], 2)
    result["ratio_ours_vs_pyav_all"] = round(m["pyav_all_frames"]["seconds"]
                                             / m["ours_sampling"]["seconds"], 2)
    bare = m["pyav_all_frames"]["seconds"]
    result["stage_vs_bare"] = {step: round(bare / m[f"stage:{step}"]["seconds"], 3)
                               for step in STEPS}
    bare_1 = m["pyav_all_frames_1thread"]["seconds"]
    result["stage_vs_bare_1thread"] = {step: round(bare_1 / m[f"stage:{step}"]["seconds"], 3)
                                       for step in STEPS}
    result["floor_vs_bare"] = round(bare / m[FLOOR]["seconds"], 3)
    diffs = [float(np.abs(ours_sampling(c, T).astype(np.int16)
                          - baseline_cv2(c, T).astype(np.int16)).mean()) for c in clips]
    result["max_mean_abs_diff_vs_cv2"] = round(max(diffs), 3)
    print(f"  two jobs at once {name}", file=sys.stderr, flush=True)
    two = two_jobs(clips, max(2, repeats // 3), work / "two_jobs")
    result["two_jobs_s"] = two
    result["two_jobs_ratio"] = round(two["ffmpeg_threads"] / two["one_thread_per_job"], 2)
    print(f"  detection quality {name}", file=sys.stderr, flush=True)
    result["detection"] = detection_quality(clips, truth)
    return result


def _step_table(data: dict) -> list[str]:
    sets = list(data["sets"])
    head = "| step | settings | " + " | ".join(
        f"{n}: out frames/s | {n}: stage / bare | {n}: gain vs previous step" for n in sets) + " |"
    lines = [head, "|---|---|" + "---:|---:|---:|" * len(sets)]
    prev: dict[str, float] = {}
    for step, settings in STEPS.items():
        cells = []
        for n in sets:
            m = data["sets"][n]["methods"][f"stage:{step}"]
            gain = f"{prev[n] / m['seconds']:.2f}x" if n in prev else "-"
            prev[n] = m["seconds"]
            cells.append(f"{m['output_frames_per_s']} | {data['sets'][n]['stage_vs_bare'][step]} "
                         f"| {gain}")
        text = ", ".join(f"{k}: {str(v).lower()}" for k, v in settings.items())
        mark = " (default)" if step == data["default_step"] else ""
        lines.append(f"| {step}{mark} | {text} | " + " | ".join(cells) + " |")
    cells = [f"{data['sets'][n]['methods'][FLOOR]['output_frames_per_s']} | "
             f"{data['sets'][n]['floor_vs_bare']} | -" for n in sets]
    lines.append("| (floor: no detection) | a fixed box instead of the detector | "
                 + " | ".join(cells) + " |")
    return lines


def _detection_table(name: str, det: dict, against: str) -> list[str]:
    lines = [f"| {name}: step | faces found | found by | s/clip (decode_clip) | "
             f"crop centre vs {against}: mean px | max px | max / face size |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for step, d in det.items():
        used = ", ".join(f"{k} {v}" for k, v in d["detector_used"].items())
        lines.append(f"| {step} | {d['found']}/{d['clips']} ({d['found_rate']:.0%}) | {used} | "
                     f"{d['seconds_per_clip']} | {d['centre_err_px_mean']} | "
                     f"{d['centre_err_px_max']} | {d['centre_err_face_frac_max']} |")
    return lines


def markdown(data: dict) -> str:
    default = data["default_step"]
    lines = [
        "# decode",
        "",
        f"T = {T} frames per clip, best of {data['demo_repeats']} (demo) / {data['repeats']} "
        f"(long clips); {data['machine']}; "
        f"PyAV {data['versions']['av']}, OpenCV {data['versions']['opencv']}, "
        f"dlib {data['versions']['dlib']}. "
        "Generated by `python benchmarks/bench_decode.py` in one run "
        f"({data['wall_s']:.0f} s). The machine was shared with other jobs: load average "
        f"{data['loadavg_start'][0]:.2f} / {data['loadavg_start'][1]:.2f} / "
        f"{data['loadavg_start'][2]:.2f} (1 / 5 / 15 min) at the start; methods take turns "
        "within each repeat so load hits them alike.",
        "",
        "## Decode stage / bare decode",
        "",
        "The full decode stage (`decode_shard`: sampling, face detection, crop, resize, "
        "safetensors + Parquet writes) against PyAV decoding every frame (`pyav_all_frames`, "
        "FFmpeg's threads: one per core), in output frames/s, as the pipeline runs it (step "
        f"`{default}`: the default settings, one decoder thread per job) and as it ran before "
        "this work (step `today`). Target: >= 0.5. The last ratio holds the stage against "
        "bare decoding on one thread too (`pyav_all_frames_1thread`), each job's share of "
        "the machine.",
        "",
        "| clip set | bare decode (out frames/s) | stage today | today / bare | stage now | "
        "now / bare | faces found today | faces found now | now / bare on 1 thread |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in data["sets"].items():
        m, det = res["methods"], res["detection"]
        lines.append(
            f"| {name} | {m['pyav_all_frames']['output_frames_per_s']} | "
            f"{m['stage:today']['output_frames_per_s']} | {res['stage_vs_bare']['today']} | "
            f"{m[f'stage:{default}']['output_frames_per_s']} | {res['stage_vs_bare'][default]} | "
            f"{det['today']['found']}/{det['today']['clips']} | "
            f"{det[default]['found']}/{det[default]['clips']} | "
            f"{res['stage_vs_bare_1thread'][default]} |")
    small = data["small_faces"]
    lines.append(f"| {small['name']} (detection only) | | | | | | "
                 f"{small['detection']['today']['found']}/{small['detection']['today']['clips']} | "
                 f"{small['detection'][default]['found']}/{small['detection'][default]['clips']} | |")
    lines += ["", "## Each step's gain", "",
              "Each step adds one setting to the step above it (all measured in this run); "
              "gain: the previous step's seconds over this step's.", ""]
    lines += _step_table(data)
    lines += ["", "## Two jobs at once", "",
              "`snakemake --cores 2` runs two decode jobs side by side. Wall seconds for two "
              "processes each running the stage over the whole clip set at the same time "
              "(default settings, every frame decoded), with FFmpeg's threads in each (one per "
              "core, step `+quick_frames=1`) and with one decoder thread per job (step "
              "`+threads=1`, the rule's `threads: 1`); best of the repeats. Ratio > 1: one "
              "thread per job is faster.", "",
              "| clip set | FFmpeg's threads: s | one thread per job: s | ratio |",
              "|---|---:|---:|---:|"]
    for name, res in data["sets"].items():
        two = res["two_jobs_s"]
        lines.append(f"| {name} | {two['ffmpeg_threads']} | {two['one_thread_per_job']} | "
                     f"{res['two_jobs_ratio']} |")
    lines += ["", "## Detection beside the speed", "",
              "Faces found: clips where a detector setting found a face (`detector_used` not "
              "null; the others are centre crops). Crop centre: distance of the crop box centre "
              "from the known face centre (median over the sampled frames; long and small-face "
              "clips) or, for the demo clips, whose face position is not recorded, from the "
              "crop of step `today`.", ""]
    for name, res in data["sets"].items():
        against = "today's crop" if res.get("truth") is None else "known face"
        lines += _detection_table(name, res["detection"], against) + [""]
    lines += [f"{small['name']}: {small['clips']} clips of {small['format']}, faces of "
              f"{small['face_px']} px (dlib box side).", ""]
    lines += _detection_table(small["name"], small["detection"], "known face") + [""]
    lines += ["## Sampling against decoding everything", "",
              "| clip set | method | clips/s | output frames/s | source frames/s |",
              "|---|---|---:|---:|---:|"]
    for name, res in data["sets"].items():
        for method, m in res["methods"].items():
            lines.append(f"| {name} ({res['clips']} clips, {res['format']}) | {method} | "
                         f"{m['clips_per_s']} | {m['output_frames_per_s']} | "
                         f"{m['source_frames_per_s']} |")
    lines += ["", "| clip set | ours_sampling / baseline_cv2_all (speed-up) | "
                  "ours / pyav_all_frames | max mean abs diff vs cv2 (grey levels) |",
              "|---|---:|---:|---:|"]
    for name, res in data["sets"].items():
        lines.append(f"| {name} | {res['ratio_ours_vs_cv2']} | {res['ratio_ours_vs_pyav_all']} | "
                     f"{res['max_mean_abs_diff_vs_cv2']} |")
    lines += ["", "Ratios > 1: ours is faster. Our reader decodes every packet up to the last "
                  "wanted frame (inter frames need their references; no seeking) but converts "
                  "only the T wanted frames to RGB and stops early; `ours_full_decode_clip` "
                  "adds the face box with the default settings, crop and resize to 224 px "
                  "(no files)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-clips-per-class", type=int, default=4)
    parser.add_argument("--long-clips", type=int, default=4)
    parser.add_argument("--long-seconds", type=float, default=10.0)
    parser.add_argument("--small-face-clips", type=int, default=8,
                        help="clips with faces from 60 to 120 px (detection only)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--demo-repeats", type=int, default=15,
                        help="repeats of the demo set (a repeat takes a few seconds)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "decode.json")
    args = parser.parse_args(argv)

    loadavg = os.getloadavg()
    start = time.perf_counter()
    import av
    import cv2
    import dlib

    from dfer.core.artifacts import write_bytes_atomic
    from dfer.demo import generate_demo

    with tempfile.TemporaryDirectory(prefix="bench_decode_") as tmp:
        tmp_path = Path(tmp)
        print("writing clips", file=sys.stderr, flush=True)
        generate_demo(tmp_path / "demo", clips_per_class=args.demo_clips_per_class,
                      progress=False)
        demo = sorted((tmp_path / "demo" / "videos").glob("*.mp4"))
        long = [face_clip(tmp_path / f"long_{i}.mp4", args.long_seconds, 30, 640, 480, i)
                for i in range(args.long_clips)]
        face_px = [round(float(v), 1) for v in np.linspace(60, 120, args.small_face_clips)]
        small = [face_clip(tmp_path / f"small_{i}.mp4", 2.0, 15, 640, 480, 100 + i, px)
                 for i, px in enumerate(face_px)]
        long_name = f"long_{args.long_seconds:g}s_640x480"
        sets = {"demo": bench_set("demo", demo, args.demo_repeats, tmp_path / "w_demo", None),
                long_name: bench_set("long", [c for c, _ in long], args.repeats,
                                     tmp_path / "w_long", [t for _, t in long])}
        sets[long_name]["truth"] = "known face centre"
        print("  detection quality small faces", file=sys.stderr, flush=True)
        small_faces = {"name": "small_faces_640x480", "clips": len(small),
                       "format": "640x480 @ 15 fps, 2 s", "face_px": face_px,
                       "detection": detection_quality([c for c, _ in small],
                                                      [t for _, t in small])}
    data = {
        "benchmark": "decode",
        "T": T,
        "repeats": args.repeats,
        "demo_repeats": args.demo_repeats,
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
                   f"Python {platform.python_version()}",
        "loadavg_start": [round(v, 2) for v in loadavg],
        "versions": {"av": av.__version__, "opencv": cv2.__version__, "dlib": dlib.__version__},
        "steps": STEPS,
        "default_step": default_step(),
        "sets": sets,
        "small_faces": small_faces,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out, (json.dumps(data, indent=2) + "\n").encode())
    write_bytes_atomic(args.out.with_suffix(".md"), markdown(data).encode())
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
