"""Detector escalation in decode: what it costs on large faces, what it gains on small ones.

``decode.escalate`` (default ``[hog-up1, mmod-up0]``) retries a clip with upsampled HOG and
then the CNN detector only when the first HOG pass finds no face on any examined frame. Two
figures, one run each (no repeats: escalation never runs on the first set, so the two
timings there should differ by noise only):

* **large faces**: the demo videos (256 px, faces ~100 px) and generated 640x360 clips with
  100-140 px faces, decoded with ``decode_clip`` at the default settings and with
  ``escalate: []`` (the behaviour before escalation), after one untimed decode of the clip,
  taking turns at going first; reported as seconds per clip and the ratio on / off.
* **small faces**: generated 640x360 clips with one face of 40-80 px (dlib box side), static,
  at two places each; per size, the clips whose face was found (and the crop centred within
  a quarter face of it, so a false detection does not count), escalation off and on, the rung
  that found it, and the seconds per clip.

    python benchmarks/bench_escalation.py     # writes benchmarks/results/escalation.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))  # the generated clips of the tests

OFF = {"escalate": []}


def _decode(path: Path, kind: str, params: dict) -> tuple[object, float]:
    from dfer.video import decode_clip

    start = time.perf_counter()
    clip = decode_clip(path, kind, params)
    return clip, time.perf_counter() - start


def large_faces(tmp: Path, demo_clips: int) -> dict:
    from support.videos import write_video
    from test_faces_in_the_wild import scene

    clips = sorted((REPO / "data" / "demo" / "videos").glob("*.mp4"))[:demo_clips]
    for k, side in enumerate((100, 110, 120, 130, 140, 120)):
        frames = [scene([(220.0 + 30 * k, 180.0, side, k % 2 == 1)], seed=k) for _ in range(24)]
        clips.append(write_video(tmp / f"large_{k}.mp4", frames, options={"crf": "18"}))
    on_s, off_s, identical = 0.0, 0.0, 0
    for k, path in enumerate(clips):
        _decode(path, "video", OFF)  # warm-up: file cache and detector load hit neither timing
        if k % 2:  # take turns at going first
            b, t_off = _decode(path, "video", OFF)
            a, t_on = _decode(path, "video", {})
        else:
            a, t_on = _decode(path, "video", {})
            b, t_off = _decode(path, "video", OFF)
        on_s += t_on
        off_s += t_off
        identical += int(np.array_equal(a.frames, b.frames) and a.detector_used == "hog-up0")
    n = len(clips)
    return {"clips": n, "demo_clips": n - 6, "generated_clips": 6,
            "s_per_clip_escalation_on": on_s / n, "s_per_clip_escalation_off": off_s / n,
            "ratio_on_off": on_s / off_s, "identical_crops_found_by_first_pass": identical}


def small_faces(tmp: Path, sizes: list[int]) -> list[dict]:
    from support.videos import write_video
    from test_faces_in_the_wild import scene

    rows = []
    places = [(200.0, 150.0), (430.0, 220.0)]
    for side in sizes:
        row = {"face_px": side, "clips": len(places), "found_off": 0, "found_on": 0,
               "rungs_on": {}, "s_off": 0.0, "s_on": 0.0}
        for j, (cx, cy) in enumerate(places):
            frames = [scene([(cx, cy, side, j == 1)], seed=i % 4 + 10 * j) for i in range(24)]
            path = write_video(tmp / f"small_{side}_{j}.mp4", frames, options={"crf": "18"})
            for key, params in (("off", OFF), ("on", {})):
                clip, secs = _decode(path, "video", params)
                x0, y0, x1, y1 = clip.crop_box.tolist()
                on_face = abs((x0 + x1) / 2 - cx) < side / 4 and abs((y0 + y1) / 2 - cy) < side / 4
                hit = clip.detector_used is not None and on_face
                row[f"found_{key}"] += int(hit)
                row[f"s_{key}"] += secs / len(places)
                if key == "on" and hit:
                    row["rungs_on"][clip.detector_used] = row["rungs_on"].get(clip.detector_used, 0) + 1
        rows.append(row)
    return rows


def markdown(data: dict) -> str:
    lg = data["large_faces"]
    lines = [
        "# Decode: detector escalation (benchmarks/bench_escalation.py)",
        "",
        f"Machine: {data['machine']}; one run, default decode settings (16 frames, HOG on 8).",
        "",
        "## Large faces (escalation never needed)",
        "",
        f"{lg['clips']} clips ({lg['demo_clips']} demo videos, {lg['generated_clips']} generated "
        "640x360 with 100-140 px faces).",
        "",
        "| escalation | s / clip |",
        "|---|---|",
        f"| off (`escalate: []`) | {lg['s_per_clip_escalation_off']:.3f} |",
        f"| on (default) | {lg['s_per_clip_escalation_on']:.3f} |",
        "",
        f"Ratio on / off: **{lg['ratio_on_off']:.3f}**; crops identical and found by the first "
        f"pass (`hog-up0`) on {lg['identical_crops_found_by_first_pass']} of {lg['clips']} clips.",
        "",
        "## Small faces (640x360 frames)",
        "",
        "| face px | clips | found, escalation off | found, on | rung that found it | "
        "s / clip off | s / clip on |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["small_faces"]:
        rungs = ", ".join(f"{k}: {v}" for k, v in sorted(r["rungs_on"].items())) or "-"
        lines.append(f"| {r['face_px']} | {r['clips']} | {r['found_off']} | {r['found_on']} | "
                     f"{rungs} | {r['s_off']:.2f} | {r['s_on']:.2f} |")
    tot = data["small_faces"]
    off = sum(r["found_off"] for r in tot)
    on = sum(r["found_on"] for r in tot)
    n = sum(r["clips"] for r in tot)
    lines += ["", f"Detection rate on 40-80 px faces: {off}/{n} without escalation, "
              f"{on}/{n} with it (found = a face found and the crop centred on it).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-clips", type=int, default=12)
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 50, 60, 70, 80])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "escalation.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "large_faces": large_faces(Path(tmp), args.demo_clips),
            "small_faces": small_faces(Path(tmp), args.sizes),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(data), encoding="utf-8")
    print(markdown(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
