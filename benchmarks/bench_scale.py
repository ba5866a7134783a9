"""Peak memory (RSS) of the whole-dataset code paths as the number of clips grows.

Most stages work one shard at a time, so their memory is bounded by the shard size. Three
paths see a whole dataset at once and are measured here at 100, 1,000 and 5,000 synthetic
clips, with a fixed number of clips per shard (as configured datasets have: DFEW 64 shards for
16k clips), so what grows is the dataset, not the shard each job handles:

* ``manifest_sync``: ``dfer.pipeline.prepare_datasets`` on a fresh results folder (build the
  manifest, stat every clip file, write every shard manifest). It runs while the Snakefile is
  parsed, i.e. on every ``snakemake`` call and, on a cluster, in every job.
* ``manifest_resync``: the same call when nothing changed (the common case).
* ``train_index``: ``dfer.train.data.load_clip_table`` with landmarks and parsing (the clip
  table: per-clip metadata and row positions; landmark points stay in their shards).
* ``train_table``: what training reads: the same table, then every item of a ``ClipDataset``
  (safetensors shards memory-mapped and landmark points loaded per shard, at most
  ``DataConfig.max_open_shards`` shards of each kind open at once).
* ``raw_read``: the floor for the same data: read each frames index Parquet and every clip
  of each frames/parsing shard through ``safe_open``, holding nothing.

Each (path, size) runs in a fresh interpreter. After the imports its resident size is the
baseline and the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``); the peak mark
after the work is ``peak_mb``, so ``delta_mb = peak_mb - baseline_mb`` is what the work itself
added, not hidden under import-time transients. ``maxrss_mb`` (``getrusage`` ``ru_maxrss``)
is the whole process's peak, imports included. The synthetic data is written by a separate
child process: on Linux a child's ``ru_maxrss`` starts at its parent's RSS at fork time, so
the driver stays small and imports nothing heavy.
Synthetic clips are cheap: fake video files of a few bytes for the manifest, tiny arrays
written straight into shard artifacts through ``dfer.core.artifacts`` for the training read
(landmarks keep their real size, 16 x 68 x 2 float32 per clip: they were once held in RAM).

    python benchmarks/bench_scale.py            # writes benchmarks/results/scale.{json,md}
    python benchmarks/bench_scale.py --sizes 100 500 --parts manifest_sync
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

DEFAULT_SIZES = (100, 1000, 5000)
PARTS = ("manifest_sync", "manifest_resync", "train_index", "train_table", "raw_read")
CLIPS_PER_SHARD = 100
FRAMES = 16  # T: frames per clip, as decoded by default
CROP = 16  # crop side of the synthetic frames / label maps (the real default is 224)
LABELS = ("happiness", "sadness", "neutral", "anger", "surprise")
NUM_FOLDS = 5
#: The verdict projects each part's growth per clip to a FERV39k-sized dataset: "flat" when
#: that adds less than FLAT_LIMIT_MB and the peak ratio stays under FLAT_PEAK_RATIO.
PROJECT_TO_CLIPS = 40_000
FLAT_LIMIT_MB = 256.0
FLAT_PEAK_RATIO = 1.5


def num_shards(n: int) -> int:
    return max(1, -(-n // CLIPS_PER_SHARD))


# --- synthetic data (parent process) -----------------------------------------------------


def clip_ids(n: int) -> list[str]:
    return [f"clip_{i:06d}" for i in range(n)]


def make_manifest_dataset(root: Path, n: int) -> dict:
    """A ``demo``-layout dataset of ``n`` fake mp4 files; returns its pipeline config."""
    videos = root / "videos"
    videos.mkdir(parents=True)
    lines = ["clip_id,path,label,fold"]
    for i, cid in enumerate(clip_ids(n)):
        (videos / f"{cid}.mp4").write_bytes(cid.encode())
        lines.append(f"{cid},videos/{cid}.mp4,{LABELS[i % len(LABELS)]},{i % NUM_FOLDS + 1}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    definition = {"layout": "demo", "root": str(root), "split_files": [str(root / "manifest.csv")],
                  "num_shards": num_shards(n)}
    return {"results": str(root / "results"), "datasets": ["bench"],
            "dataset_defs": {"bench": definition}}


def make_shard_artifacts(results: Path, n: int) -> None:
    """Manifest, frames, landmarks and parsing artifacts of ``n`` tiny clips."""
    import numpy as np
    import pandas as pd

    from dfer.core.artifacts import provenance, write_parquet, write_safetensors
    from dfer.core.paths import manifest_file, shard_file
    from dfer.core.sharding import shard_of

    ids = clip_ids(n)
    frame = pd.DataFrame({
        "clip_id": ids,
        "label": [LABELS[i % len(LABELS)] for i in range(n)],
        "label_idx": np.arange(n, dtype=np.int32) % len(LABELS),
        "test_fold": (np.arange(n, dtype=np.int32) % NUM_FOLDS) + 1,
        "shard": [shard_of(c, num_shards(n)) for c in ids],
    })
    meta = provenance("manifest", 1, dataset="bench", labels=list(LABELS), num_folds=NUM_FOLDS)
    write_parquet(manifest_file(results, "bench"), frame, meta)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (FRAMES, CROP, CROP, 3), dtype=np.uint8)
    maps = rng.integers(0, 19, (FRAMES, CROP, CROP), dtype=np.uint8)
    points = rng.uniform(0, CROP, (FRAMES, 136)).astype(np.float32)
    for s in range(num_shards(n)):
        label = f"{s:03d}"
        part = frame[frame["shard"] == s].reset_index(drop=True)
        sids = list(part["clip_id"])
        write_parquet(shard_file(results, "bench", "manifest", label, ".parquet"), part,
                      provenance("manifest", 1, shard=label))
        index = part.drop(columns=["shard"]).assign(seconds=0.01)
        write_parquet(shard_file(results, "bench", "frames", label, ".parquet"), index,
                      provenance("decode", 1))
        write_safetensors(shard_file(results, "bench", "frames", label, ".safetensors"),
                          {c: frames for c in sids}, provenance("decode", 1))
        write_safetensors(shard_file(results, "bench", "parsing", label, ".safetensors"),
                          {c: maps for c in sids}, provenance("parsing", 1))
        rows = pd.DataFrame({
            "clip_id": np.repeat(sids, FRAMES),
            "frame": np.tile(np.arange(FRAMES, dtype=np.int32), len(sids)),
            "points": [points[j] for _ in sids for j in range(FRAMES)],
        })
        write_parquet(shard_file(results, "bench", "landmarks", label, ".parquet"), rows,
                      provenance("landmarks", 1))


def make_data(data: Path, n: int, parts: list[str]) -> None:
    """Write the synthetic inputs of ``parts`` for ``n`` clips under ``data`` (child process)."""
    if any(p.startswith("manifest") for p in parts):
        config = make_manifest_dataset(data / "manifest", n)
        (data / "manifest" / "config.json").write_text(json.dumps(config))
    if {"train_index", "train_table", "raw_read"} & set(parts):
        make_shard_artifacts(data / "train" / "results", n)


# --- measured work (one fresh interpreter per part and size) -----------------------------


def maxrss_mb() -> float:
    """Peak RSS of this process so far (getrusage; KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _status_mb(field: str) -> float | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return None


def start_measuring() -> float:
    """Baseline RSS now; reset the peak mark so the next peak is the work's alone."""
    import gc

    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: reset VmHWM
        return _status_mb("VmRSS") or maxrss_mb()
    except OSError:  # no procfs: fall back to the process peak (includes import transients)
        return maxrss_mb()


def peak_mb() -> float:
    """Peak RSS since ``start_measuring`` (VmHWM), else the process peak."""
    return _status_mb("VmHWM") or maxrss_mb()


def work_manifest(config_path: Path, resync: bool) -> dict:
    from dfer.pipeline import prepare_datasets

    config = json.loads(config_path.read_text())
    if resync:  # the sync that wrote everything is not measured; the unchanged one is
        prepare_datasets(config)
    base = start_measuring()
    t0 = time.perf_counter()
    shards = prepare_datasets(config)
    return {"baseline_mb": base, "seconds": time.perf_counter() - t0,
            "shards": len(shards["bench"])}


def work_train_index(results: Path) -> dict:
    from dfer.train.data import Needs, load_clip_table

    base = start_measuring()
    t0 = time.perf_counter()
    table = load_clip_table(results, "bench", Needs(parsing=True, landmarks=True))
    return {"baseline_mb": base, "seconds": time.perf_counter() - t0, "clips": len(table.clips),
            "table_mb": float(table.clips.memory_usage(deep=True).sum()) / 2**20}


def work_train_table(results: Path) -> dict:
    from dfer.train.data import ClipDataset, DataConfig, Needs, load_clip_table

    def render(data, size):  # the renderers' cost is per clip, not what is measured here
        import numpy as np

        return np.zeros((size, size, 3), dtype=np.uint8)

    base = start_measuring()
    t0 = time.perf_counter()
    needs = Needs(parsing=True, landmarks=True)
    table = load_clip_table(results, "bench", needs)
    cfg = DataConfig(num_frames=4, mid_frames=2, image_size=CROP, flip=False)
    ds = ClipDataset("bench", table.clips, table, needs, cfg, image_size=CROP,
                     train=False, renderers=(render, render))
    checksum = 0
    file_before = _status_mb("RssFile")
    for i in range(len(ds)):
        checksum += int(ds[i]["frames"][0, 0, 0, 0])
    file_after = _status_mb("RssFile")  # the dataset (and its bounded shard handles) still alive
    mapped = None if file_before is None else file_after - file_before
    return {"baseline_mb": base, "seconds": time.perf_counter() - t0, "clips": len(ds),
            "checksum": checksum, "mapped_file_growth_mb": mapped}


def work_raw_read(results: Path) -> dict:
    import pyarrow.parquet as pq
    from safetensors import safe_open

    base = start_measuring()
    t0 = time.perf_counter()
    clips = 0
    folder = results / "bench"
    for index in sorted((folder / "frames").glob("shard-[0-9][0-9][0-9].parquet")):
        ids = pq.read_table(index, columns=["clip_id"]).column("clip_id").to_pylist()
        name = index.with_suffix(".safetensors").name
        with safe_open(str(folder / "frames" / name), "numpy") as fa, \
             safe_open(str(folder / "parsing" / name), "numpy") as fb:
            for cid in ids:
                fa.get_tensor(cid)
                fb.get_tensor(cid)
                clips += 1
    return {"baseline_mb": base, "seconds": time.perf_counter() - t0, "clips": clips}


def worker(part: str, data: Path) -> dict:
    """Import what the part needs, then measure it; runs in the child interpreter."""
    import pandas  # noqa: F401  (imports are the baseline, not the work)
    import pyarrow.parquet  # noqa: F401

    import dfer.core.artifacts  # noqa: F401
    if part in ("manifest_sync", "manifest_resync"):
        import dfer.manifests  # noqa: F401
        out = work_manifest(data / "config.json", resync=part == "manifest_resync")
    elif part in ("train_index", "train_table"):
        import torch  # noqa: F401

        import dfer.train.data  # noqa: F401
        work = work_train_index if part == "train_index" else work_train_table
        out = work(data / "results")
    elif part == "raw_read":
        import safetensors  # noqa: F401
        out = work_raw_read(data / "results")
    else:
        raise ValueError(f"unknown part {part!r}; known: {', '.join(PARTS)}")
    out["peak_mb"] = peak_mb()
    out["delta_mb"] = out["peak_mb"] - out["baseline_mb"]
    out["maxrss_mb"] = maxrss_mb()
    # Where the resident memory is at the end: heap (anonymous) or mapped files (page cache
    # of memory-mapped safetensors shards: reclaimable, but counted in RSS and cgroup limits).
    out["rss_anon_mb"] = _status_mb("RssAnon")
    out["rss_file_mb"] = _status_mb("RssFile")
    return out


def measure(part: str, data: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", part, "--data", str(data)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else
                f"exit code {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- driver -------------------------------------------------------------------------------


def summarise(runs: dict[str, dict[str, dict]], sizes: list[int]) -> dict[str, dict]:
    """Per part: peak and delta at the smallest and largest size, their ratios, a verdict."""
    out = {}
    lo, hi = str(min(sizes)), str(max(sizes))
    for part, by_size in runs.items():
        if any("error" in r for r in by_size.values()):
            out[part] = {"verdict": "error"}
            continue
        a, b = by_size[lo], by_size[hi]
        delta_ratio = b["delta_mb"] / max(a["delta_mb"], 1.0)
        per_clip_mb = (b["delta_mb"] - a["delta_mb"]) / (int(hi) - int(lo))
        projected = max(0.0, per_clip_mb * PROJECT_TO_CLIPS)
        peak_ratio = b["peak_mb"] / a["peak_mb"]
        flat = projected < FLAT_LIMIT_MB and peak_ratio < FLAT_PEAK_RATIO
        out[part] = {
            "peak_ratio": round(peak_ratio, 3),
            "maxrss_ratio": round(b["maxrss_mb"] / a["maxrss_mb"], 3),
            "delta_ratio": round(delta_ratio, 3),
            "delta_growth_mb": round(b["delta_mb"] - a["delta_mb"], 1),
            "delta_kb_per_clip": round(1024 * per_clip_mb, 2),
            f"projected_extra_mb_at_{PROJECT_TO_CLIPS}": round(projected, 1),
            "verdict": "flat" if flat else "grows",
        }
    return out


def markdown(report: dict) -> str:
    sizes = report["sizes"]
    lines = [
        "# Peak RSS vs dataset size (`benchmarks/bench_scale.py`)", "",
        f"{report['machine']}; {CLIPS_PER_SHARD} clips per shard; each cell is one fresh "
        "interpreter. baseline = RSS after imports; peak = peak RSS during the work (VmHWM reset "
        "after the imports); "
        "delta = peak - baseline (what the work added).", "",
        "| part | " + " | ".join(f"{n} clips: peak / delta MB (s)" for n in sizes) + " | "
        f"peak ratio | delta ratio | KiB/clip | MB at {PROJECT_TO_CLIPS} | verdict |",
        "|---|" + "---|" * (len(sizes) + 5),
    ]
    for part, by_size in report["runs"].items():
        cells = []
        for n in sizes:
            r = by_size[str(n)]
            cells.append(r["error"][:60] if "error" in r else
                         f"{r['peak_mb']:.0f} / {r['delta_mb']:.1f} ({r['seconds']:.2f})")
        s = report["summary"][part]
        tail = (["-"] * 4 if s["verdict"] == "error" else
                [f"{s['peak_ratio']:.2f}", f"{s['delta_ratio']:.2f}", f"{s['delta_kb_per_clip']:.1f}",
                 f"{s[f'projected_extra_mb_at_{PROJECT_TO_CLIPS}']:.0f}"])
        lines.append(f"| {part} | " + " | ".join(cells + tail + [s["verdict"]]) + " |")
    lines += [
        "", "Ratios: largest / smallest size. KiB/clip: delta growth per added clip; "
        f"MB at {PROJECT_TO_CLIPS}: that growth projected to {PROJECT_TO_CLIPS} clips (FERV39k "
        f"size). 'flat': projection < {FLAT_LIMIT_MB:.0f} MB and peak ratio < {FLAT_PEAK_RATIO}.",
        "", "End-of-work resident memory, heap (anon) / mapped files (file), MB:", "",
        "| part | " + " | ".join(f"{n} clips" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for part, by_size in report["runs"].items():
        cells = [("-" if "error" in by_size[str(n)] or by_size[str(n)].get("rss_anon_mb") is None
                  else f"{by_size[str(n)]['rss_anon_mb']:.0f} / {by_size[str(n)]['rss_file_mb']:.0f}")
                 for n in sizes]
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    growth = report["runs"].get("train_table", {})
    if growth and all("mapped_file_growth_mb" in growth[str(n)] for n in sizes):
        lines += ["", "train_table: memory-mapped file pages resident after one pass over the "
                  "dataset, with the dataset still alive (at most max_open_shards handles per kind "
                  "stay open), MB: "
                  + ", ".join(f"{n} clips {growth[str(n)]['mapped_file_growth_mb']:.1f}"
                              for n in sizes) + "."]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--worker", choices=(*PARTS, "make"), help=argparse.SUPPRESS)
    parser.add_argument("--clips", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "make":
        make_data(args.data, args.clips, args.parts)
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker, args.data)))
        return 0

    sizes = sorted(set(args.sizes))
    runs: dict[str, dict[str, dict]] = {p: {} for p in args.parts}
    with tempfile.TemporaryDirectory(prefix="dfer-bench-scale-") as tmp:
        for n in sizes:
            data = Path(tmp) / f"n{n}"
            subprocess.run([sys.executable, __file__, "--worker", "make", "--data", str(data),
                            "--clips", str(n), "--parts", *args.parts], check=True)
            for part in args.parts:
                where = data / ("manifest" if part.startswith("manifest") else "train")
                if part == "manifest_sync":  # a fresh results folder for every measurement
                    shutil.rmtree(where / "results", ignore_errors=True)
                runs[part][str(n)] = r = measure(part, where)
                shown = r.get("error") or f"peak {r['peak_mb']:.1f} MB, delta {r['delta_mb']:.1f} MB"
                print(f"{part:16s} {n:6d} clips: {shown}", file=sys.stderr)
    report = {
        "benchmark": "scale",
        "machine": f"{platform.machine()} {platform.system()}, Python {platform.python_version()}",
        "sizes": sizes, "clips_per_shard": CLIPS_PER_SHARD, "frames_per_clip": FRAMES,
        "crop": CROP,
        "runs": runs, "summary": summarise(runs, sizes),
    }
    from dfer.core.artifacts import write_bytes_atomic  # after measuring: keeps the driver small

    args.out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out / "scale.json", (json.dumps(report, indent=2) + "\n").encode())
    write_bytes_atomic(args.out / "scale.md", markdown(report).encode())
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
