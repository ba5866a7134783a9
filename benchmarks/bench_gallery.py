"""Peak memory (RSS) of the report's gallery as the number of cards grows, before and after.

The gallery (``dfer.report.gallery.build_gallery``) once turned the per-shard generator of clip
artifacts into one dict, so every card's frames and label maps were in memory at once: 3.5 MB
a card at 224 px (557 MB at 100 cards, 1,592 MB at 400; FERV39k's 7,847 test cards ~28 GB).
It now draws clips one at a time, shard by shard, and writes ``gallery.html`` fold by fold.

One evaluation of N test clips (N = 100, 400, 1,000, 4,000 by default, all shown as cards:
``max_cards=None``, ``embed_max=100``) over a synthetic dataset with real-sized artifacts
(T = 16 frames, label maps, 68 landmarks per frame, captions; 100 clips a shard, as configured
datasets have). Each (code, N) runs in a fresh interpreter: after the imports its resident
size is the baseline and the kernel's peak mark is reset (``/proc/self/clear_refs``); the
peak after the build is ``peak_mb`` and ``delta_mb = peak_mb - baseline_mb`` is what the
build itself added. "before" is ``src/dfer/report/gallery.py`` of ``--baseline-rev`` (read with
``git show``, loaded as a module of its own), "after" the working tree's. The "after" worker
then builds again with nothing changed (``rebuild_s``: every fold kept).

    python benchmarks/bench_gallery.py                   # writes benchmarks/results/gallery.{json,md}
    python benchmarks/bench_gallery.py --sizes 100 400 --side 224 --no-write
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

DEFAULT_SIZES = (100, 400, 1000, 4000)
#: the commit before this change (the gallery that held every card's arrays in one dict)
BASELINE_REV = "948f741"
CLIPS_PER_SHARD = 100
FRAMES = 16
LABELS = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")
DATASET = "bench"
#: "flat": the after-build's delta grows by less than this from the smallest to the largest N
FLAT_LIMIT_MB = 100.0


# --------------------------------------------------------------------------- data


def make_data(results: Path, n: int, side: int) -> None:
    """A dataset of ``n`` clips with every artifact the gallery reads, in the real layout."""
    import numpy as np
    import pandas as pd

    from dfer.core.artifacts import provenance, write_parquet, write_safetensors
    from dfer.core.paths import manifest_file, shard_file
    from dfer.core.sharding import shard_name

    rng = np.random.default_rng(0)
    # face-like content for the encoders: smooth colour blocks (not noise, which JPEG and PNG
    # cannot compress: 4x the bytes and 20x the PNG time of a real face) and label maps of
    # nested regions, as a parsing map is
    block = max(1, side // 14)
    small = rng.integers(40, 220, size=(FRAMES, -(-side // block), -(-side // block), 3), dtype=np.uint8)
    base = np.repeat(np.repeat(small, block, axis=1), block, axis=2)[:, :side, :side]
    yy, xx = np.mgrid[0:side, 0:side]
    radius = np.hypot((yy - side / 2) / side, (xx - side / 2) / (0.8 * side))
    maps_base = np.repeat(np.clip(10 - (radius * 22).astype(np.int64), 0, 10).astype(np.uint8)[None],
                          FRAMES, axis=0)
    theta = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    ring = np.stack([np.cos(theta), np.sin(theta)], axis=1) * side * 0.3 + side / 2
    num_shards = max(1, -(-n // CLIPS_PER_SHARD))
    ids = [f"{DATASET}_{k:06d}" for k in range(n)]
    meta = provenance("manifest", 1, layout="synthetic", labels=list(LABELS), num_folds=1)
    rows = [{"clip_id": cid, "path": f"{cid}.mp4", "source_kind": "video", "label": LABELS[k % 7],
             "label_idx": k % 7, "test_fold": 1, "shard": shard_name(k // CLIPS_PER_SHARD, num_shards)}
            for k, cid in enumerate(ids)]
    manifest = pd.DataFrame(rows)
    write_parquet(manifest_file(results, DATASET), manifest, meta)
    for s in range(num_shards):
        sname = shard_name(s, num_shards)
        part = manifest[manifest["shard"] == sname]
        write_parquet(shard_file(results, DATASET, "manifest", sname, ".parquet"), part, meta)
        frames, maps, lm, caps = {}, {}, [], []
        for k, cid in zip(part.index, part["clip_id"], strict=True):
            frames[cid] = np.roll(base, k, axis=2)
            maps[cid] = np.roll(maps_base, k, axis=1)
            for t in range(FRAMES):
                lm.append({"clip_id": cid, "frame": t, "has_face": True, "filled_from": t,
                           "bbox": [0.0, 0.0, float(side), float(side)], "score": 1.0,
                           "points": (ring + t).astype(np.float32).reshape(-1).tolist()})
            caps.append({"clip_id": cid, "caption": f"The mouth opens {k} times.",
                         "raw_text": f"The mouth opens {k} times, suggesting joy."})
        smeta = provenance("bench", 1)
        write_safetensors(shard_file(results, DATASET, "frames", sname, ".safetensors"), frames, smeta)
        write_safetensors(shard_file(results, DATASET, "parsing", sname, ".safetensors"), maps, smeta)
        write_parquet(shard_file(results, DATASET, "landmarks", sname, ".parquet"), pd.DataFrame(lm), smeta)
        write_parquet(shard_file(results, DATASET, "captions", sname, ".parquet"), pd.DataFrame(caps), smeta)


def make_evaluation(results: Path, n: int) -> Path:
    """Predictions + metrics of one evaluation over the first ``n`` clips; its metrics.json."""
    import numpy as np
    import pandas as pd

    from dfer.core.artifacts import provenance, write_parquet
    from dfer.train.evaluate import PREDICTIONS_SCHEMA

    rng = np.random.default_rng(n)
    rows = []
    cm = np.zeros((7, 7), int)
    for k in range(n):
        probs = rng.dirichlet(np.ones(7)).astype(np.float32)
        pred, true = int(np.argmax(probs)), k % 7
        cm[true, pred] += 1
        rows.append({"clip_id": f"{DATASET}_{k:06d}", "label": LABELS[true], "label_idx": true,
                     "pred_idx": pred, "pred_label": LABELS[pred], "prob": float(probs[pred]),
                     "correct": pred == true, "probs": probs})
    out = results / DATASET / "train" / f"n{n}" / "fold-1"
    write_parquet(out / "predictions.parquet", pd.DataFrame(rows), provenance("evaluate", 1),
                  schema=PREDICTIONS_SCHEMA)
    recall = np.diag(cm) / np.maximum(cm.sum(1), 1)
    metrics = {"dataset": DATASET, "run": f"n{n}", "fold": 1, "labels": list(LABELS),
               "confusion_matrix": cm.tolist(), "uar": float(recall.mean()),
               "war": float(np.trace(cm) / max(1, n)), "zero_shot": False}
    (out / "metrics.json").write_text(json.dumps(metrics))
    return out / "metrics.json"


# --------------------------------------------------------------------------- measuring


def _status_mb(field: str) -> float | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return None


def worker(code: str, results: Path, metrics: Path, out: Path, rev: str) -> dict:
    """Build the gallery of one evaluation with the ``before`` or ``after`` code; figures."""
    if code == "before":
        source = subprocess.run(["git", "show", f"{rev}:src/dfer/report/gallery.py"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout
        path = out.parent / "gallery_before.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("gallery_before", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["gallery_before"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    else:
        import dfer.report.gallery as module
    import numpy  # noqa: F401 - imported by the build; keep it out of the measured delta
    import pandas  # noqa: F401

    baseline = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (Linux >= 4.0)
    t0 = time.perf_counter()
    summary = module.build_gallery(results, [metrics], out, max_cards=None, embed_max=100)
    seconds = time.perf_counter() - t0
    peak = _status_mb("VmHWM")
    fig = {"code": code, "cards": int(summary["cards"]), "seconds": round(seconds, 2),
           "baseline_mb": round(baseline, 1), "peak_mb": round(peak, 1),
           "delta_mb": round(peak - baseline, 1), "gallery_bytes": int(summary["bytes"]),
           "embed_bytes": (out / "gallery.html").stat().st_size}
    if code == "after":
        t0 = time.perf_counter()
        again = module.build_gallery(results, [metrics], out, max_cards=None, embed_max=100)
        fig["rebuild_s"] = round(time.perf_counter() - t0, 3)
        fig["rebuild_kept"] = int(again["kept"])
    return fig


def measure(code: str, results: Path, metrics: Path, rev: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="dfer-gallery-out-") as tmp:
        out = Path(tmp) / "report"
        proc = subprocess.run([sys.executable, __file__, "--worker", code, "--results", str(results),
                               "--metrics", str(metrics), "--out", str(out), "--baseline-rev", rev],
                              capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            raise RuntimeError(f"{code} worker failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares MB per card."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def summarise(runs: list[dict], codes: list[str]) -> dict:
    """Per-card growth (least squares) of each code's delta, and the after-code's verdict."""
    slopes = {code: slope([(r["cards"], r["delta_mb"]) for r in runs if r["code"] == code])
              for code in codes if len([r for r in runs if r["code"] == code]) > 1}
    after = sorted((r for r in runs if r["code"] == "after"), key=lambda r: r["cards"])
    growth = after[-1]["delta_mb"] - after[0]["delta_mb"] if after else float("nan")
    return {"slope_mb_per_card": slopes, "after_growth_mb": growth,
            "verdict": "flat" if after and growth < FLAT_LIMIT_MB else "grows"}


def table(config: dict) -> list[str]:
    rows = config["runs"]
    sizes = sorted({r["cards"] for r in rows})
    by = {(r["code"], r["cards"]): r for r in rows}
    side = config["side"]
    lines = [
        f"### {side} px frames ({FRAMES} x {side} x {side} x 3 uint8 + label maps: "
        f"{FRAMES * side * side * 4 / 2**20:.2f} MB a clip)", "",
        "| cards | before peak MB | before delta MB | after peak MB | after delta MB | before/after delta | "
        "before s | after s | after rebuild, nothing changed (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        b, a = by.get(("before", n)), by.get(("after", n))
        ratio = f"{b['delta_mb'] / max(a['delta_mb'], 1.0):.1f}x" if a and b else ""
        lines.append(
            f"| {n} | {b['peak_mb'] if b else ''} | {b['delta_mb'] if b else ''} | "
            f"{a['peak_mb'] if a else ''} | {a['delta_mb'] if a else ''} | {ratio} | "
            f"{b['seconds'] if b else ''} | {a['seconds'] if a else ''} | {a.get('rebuild_s', '') if a else ''} |")
    slopes = config["slope_mb_per_card"]
    lines += ["", "Growth per card (least squares over the sizes): " + ", ".join(
        f"{code} {value:.4f} MB" for code, value in slopes.items()) +
        f". Verdict: **{config['verdict']}** (after: the delta grows {config['after_growth_mb']:.1f} MB "
        f"from {sizes[0]} to {sizes[-1]} cards; flat means < {FLAT_LIMIT_MB:.0f} MB).", ""]
    return lines


def markdown(report: dict) -> str:
    lines = [
        "# gallery", "",
        "Peak RSS of `build_gallery` on one evaluation of N clips, every clip a card (frames, "
        f"label maps, landmarks, captions; {CLIPS_PER_SHARD} clips a shard), each run in a fresh "
        "interpreter: baseline = RSS after the imports, peak = VmHWM after the build (reset after "
        "the imports), delta = peak - baseline. before = `gallery.py` of "
        f"{report['baseline_rev']} (every card's arrays in one dict), after = this tree (clips "
        "drawn one at a time, shard by shard). Seconds are wall time on a machine shared with "
        f"other jobs (load {report['load']}); compare memory, not time. Generated by "
        f"`python benchmarks/bench_gallery.py` on {report['machine']} in {report['seconds']:.0f} s.", "",
    ]
    for config in report["configs"]:
        lines += table(config)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--side", type=int, default=112,
                        help="frame side in px (default 112, so that 4,000 clips fit on disk and the "
                             "old code's 4,000-card run in memory; the pipeline's default is 224)")
    parser.add_argument("--check-side", type=int, default=224,
                        help="a second, smaller run at this side (the pipeline's default 224 px) ...")
    parser.add_argument("--check-sizes", type=int, nargs="*", default=[100, 400],
                        help="... at these sizes (none: skip it)")
    parser.add_argument("--codes", nargs="+", default=["before", "after"], choices=["before", "after"])
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--no-write", action="store_true", help="print, do not write results/")
    parser.add_argument("--worker", choices=["before", "after"], help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--metrics", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.results, args.metrics, args.out, args.baseline_rev)))
        return 0

    plan = [(args.side, sorted(args.sizes))]
    if args.check_sizes:
        plan.append((args.check_side, sorted(args.check_sizes)))
    t0 = time.perf_counter()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    configs = []
    for side, sizes in plan:
        runs: list[dict] = []
        with tempfile.TemporaryDirectory(prefix="dfer-gallery-data-") as tmp:
            results = Path(tmp) / "results"
            print(f"writing {sizes[-1]} clips of {FRAMES}x{side}px ...", file=sys.stderr, flush=True)
            make_data(results, sizes[-1], side)
            for n in sizes:
                metrics = make_evaluation(results, n)
                for code in args.codes:
                    fig = measure(code, results, metrics, args.baseline_rev)
                    print(json.dumps({"side": side, **fig}), file=sys.stderr, flush=True)
                    runs.append(fig)
        configs.append({"side": side, "sizes": sizes, "runs": runs, **summarise(runs, args.codes)})
    report = {
        "baseline_rev": args.baseline_rev, "frames": FRAMES, "clips_per_shard": CLIPS_PER_SHARD,
        "configs": configs, "load": load,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "seconds": round(time.perf_counter() - t0, 1),
    }
    text = markdown(report)
    if args.no_write:
        print(text)
        return 0
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "gallery.json").write_text(json.dumps(report, indent=1) + "\n")
    (HERE / "results" / "gallery.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
