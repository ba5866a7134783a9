"""Peak memory and time of decoding one clip of very large frames: shrunk as read, or not.

Issue 24: one 8000x8000 frame took 4.9 GB and 44 s to decode (a full-resolution copy per
sampled frame, and copies of those for detection). Sampled frames are now kept shrunk to
``decode.max_frame_pixels`` (default 4K UHD) as they are converted, so memory follows that
bound, not the source size. Each case runs in a fresh process (``ru_maxrss`` is a process's
peak) and is compared, in the same run, with

* ``baseline``: the same process decoding a 256x256 clip (what imports and the detectors cost);
* ``unlimited``: ``max_frame_pixels: 0``, full-resolution frames as before the bound (the
  detection copies are gone in both, so this is below the issue's 4.9 GB).

No face is in these pictures, so ``decode.escalate`` is off (the CNN rungs would dominate the
time, the same in every case). Cases: a frame folder holding one 8000x8000 JPEG (the issue's case: T = 16 sampled frames of
one image), a frame folder of 16 such JPEGs, and a 16-frame 8000x8000 video (FFV1: x264 does
not encode frames this large).

    python benchmarks/bench_large_frames.py      # writes benchmarks/results/large_frames.{json,md}
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))  # support.videos: the test fixtures


def _image(side: int, seed: int) -> np.ndarray:
    """A smooth picture (JPEG-compressible like a photo) of ``side`` x ``side`` px."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    import cv2

    return cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC)


def make_inputs(folder: Path, side: int) -> dict[str, tuple[Path, str]]:
    """The clips of every case, written once."""
    from support.videos import write_frame_folder, write_video

    one = write_frame_folder(folder / "one_image", [_image(side, 0)])
    many = write_frame_folder(folder / "sixteen_images", [_image(side, i) for i in range(16)])
    video = write_video(folder / "video.mkv", [_image(side, i) for i in range(16)], codec="ffv1")
    small = write_frame_folder(folder / "small", [_image(256, i) for i in range(16)])
    return {"one_image": (one, "frames"), "sixteen_images": (many, "frames"),
            "video": (video, "video"), "small": (small, "frames")}


def peak_rss_kib() -> int:
    """This process's peak resident memory: ``VmHWM`` (the address space's high-water mark,
    reset by exec), not ``ru_maxrss``, which Linux carries over from the forking parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: KiB or bytes


def child(path: str, kind: str, max_pixels: int) -> None:
    """Decode one clip with the default settings (but ``max_frame_pixels``) and print the
    process's peak memory and the decode time as JSON."""
    from dfer.video import DecodeConfig, decode_clip

    cfg = DecodeConfig(max_frame_pixels=max_pixels, escalate=())  # no face: skip the CNN rungs
    start = time.perf_counter()
    clip = decode_clip(path, kind, cfg)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mb": peak_rss_kib() / 1024,
                      "shape": list(clip.frames.shape), "orig": [clip.orig_width, clip.orig_height]}))


def run_case(path: Path, kind: str, max_pixels: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(path), kind, str(max_pixels)],
                         capture_output=True, text=True)
    if out.returncode != 0:  # e.g. killed for memory: recorded, not fatal
        return {"error": f"exit {out.returncode}: {out.stderr.strip().splitlines()[-1:]}",
                "seconds": float("nan"), "peak_mb": float("nan")}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=8000, help="frame side in px")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--skip-unlimited", action="store_true",
                        help="only the bounded decode (the unlimited one needs ~3-5 GB)")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    from dfer.video.config import DEFAULT_MAX_FRAME_PIXELS

    results: dict = {"side": args.side, "max_frame_pixels": DEFAULT_MAX_FRAME_PIXELS,
                     "machine": platform.platform(), "python": platform.python_version(),
                     "cases": {}}
    with tempfile.TemporaryDirectory(prefix="dfer-large-") as tmp:
        inputs = make_inputs(Path(tmp), args.side)
        base = run_case(*inputs["small"], DEFAULT_MAX_FRAME_PIXELS)
        results["baseline"] = base
        for name in ("one_image", "sixteen_images", "video"):
            path, kind = inputs[name]
            row = {"bounded": run_case(path, kind, DEFAULT_MAX_FRAME_PIXELS)}
            if not args.skip_unlimited:
                row["unlimited"] = run_case(path, kind, 0)
            results["cases"][name] = row
            print(name, json.dumps(row), flush=True)
    out = HERE / "results"
    (out / "large_frames.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Decoding very large frames (`benchmarks/bench_large_frames.py`)", "",
        f"One clip of {args.side}x{args.side} frames, default decode settings (T = 16, 224 px), "
        f"each case in a fresh process; peak = the process's `VmHWM`. Baseline: the same "
        f"process on a 256x256 frame folder: {base['peak_mb']:.0f} MB, {base['seconds']:.2f} s. "
        f"Bounded: `decode.max_frame_pixels` {DEFAULT_MAX_FRAME_PIXELS} (4K UHD, the default); "
        "unlimited: `max_frame_pixels: 0` (full-resolution frames, as before the bound). "
        "`decode.escalate: []` (no face in these pictures).", "",
        "| case | bounded peak MB | over baseline MB | s | unlimited peak MB | s |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results["cases"].items():
        b, u = row["bounded"], row.get("unlimited")
        lines.append(f"| {name} | {b['peak_mb']:.0f} | {b['peak_mb'] - base['peak_mb']:.0f} | "
                     f"{b['seconds']:.1f} | {u['peak_mb'] if u else float('nan'):.0f} | "
                     f"{u['seconds'] if u else float('nan'):.1f} |")
    lines += ["", f"Machine: {results['machine']}, Python {results['python']}.", ""]
    (out / "large_frames.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
