"""Training throughput / peak memory (tiny config, CPU) and ViT-B/16 forward cost per clip.

    python benchmarks/bench_train.py [--clips-per-class 24] [--frames 16] [--size 112]
                                     [--epochs 4] [--vit-clips 2] [--threads 2] [--repeats 2]

Writes benchmarks/results/train.json and train.md. Every figure is measured in the same run
as its baseline and reported as a ratio too.

1. Training, tiny random-init CLIP (all three visual levels + captions), on a synthetic dataset
   written in the artifact layout (tests/support/dataset.py): the dataloader we ship, which
   memory-maps the frames / parsing shards and reads one clip at a time (``safe_open``),
   against the baseline that loads every shard fully into RAM first and serves clips from
   dicts. Each mode runs in its own interpreter so its peak RSS (``ru_maxrss``) is its own.
2. Forward cost per clip of the real ViT-B-16-quickgelu architecture (random init: no
   download) on CPU, T frames at 224 px: the frozen CLIP image encoder alone (baseline) vs the
   FineCLIPER video level (adapters in every block) vs all three visual levels.
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
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))  # support.dataset: the test fixtures

TINY_112 = {
    "embed_dim": 64, "quick_gelu": True,
    "vision_cfg": {"image_size": 112, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def train_worker(args: argparse.Namespace) -> dict[str, Any]:
    """One training run in this process; returns throughput and peak memory."""
    import torch

    torch.set_num_threads(args.threads)
    from support.dataset import simple_renderers

    from dfer.train import data as data_mod
    from dfer.train.fit import train_fold

    results = Path(args.results)
    rss_before = _peak_rss_mb()
    if args.mode == "in_ram":
        # baseline: read every shard fully into dicts up front, serve clips from RAM
        from safetensors.numpy import load_file

        cache: dict[Path, dict[str, Any]] = {}

        def from_ram(self, stage: str, shard: str, clip_id: str):  # noqa: ANN001, ANN202
            path = data_mod.shard_file(self.results, self.dataset, stage, shard, ".safetensors")
            return cache[path][clip_id]

        for path in sorted((results / "bench").glob("*/shard-*.safetensors")):
            cache[path] = load_file(str(path))
        data_mod.ClipDataset._tensor = from_ram
    params = {
        "model": {"backbone": "tiny", "pretrained": None, "model_cfg": TINY_112},
        "data": {"batch_size": 8, "num_workers": 0, "num_frames": args.frames},
        "optim": {"lr": 1e-3},
        "trainer": {"max_epochs": args.epochs, "seed": 0, "check_val_every_n_epoch": 0,
                    "log_every_n_steps": 50},
        "dataset": "bench",
    }
    out = results / "bench" / "train" / args.mode
    start = time.perf_counter()
    train_fold(results, "bench", 1, args.mode, params, out, renderers=simple_renderers())
    seconds = time.perf_counter() - start
    summary = json.loads((out / "train.json").read_text())
    clips = summary["num_train_clips"] * summary["epochs"]
    return {
        "mode": args.mode, "train_clips": summary["num_train_clips"], "epochs": summary["epochs"],
        "seconds": seconds, "fit_seconds": summary["seconds"], "clips_per_s": clips / summary["seconds"],
        "peak_rss_mb": _peak_rss_mb(), "rss_before_train_mb": rss_before,
    }


def run_training(args: argparse.Namespace) -> dict[str, Any]:
    from support.dataset import write_synthetic_dataset

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_dataset(tmp, "bench", num_classes=5, clips_per_class=args.clips_per_class,
                                num_folds=2, frames=args.frames, size=args.size, num_shards=4)
        shard_bytes = sum(p.stat().st_size for p in Path(tmp, "bench").glob("*/shard-*.safetensors"))
        # interleaved (A B B A) so that warm file caches or a busy neighbour favour neither mode;
        # best throughput of each mode, peak RSS of its runs
        for mode in ("mmap", "in_ram", "in_ram", "mmap")[: 4 if args.repeats > 1 else 2]:
            cmd = [sys.executable, __file__, "--worker", mode, "--results", tmp, "--frames", str(args.frames),
                   "--epochs", str(args.epochs), "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                raise RuntimeError(f"{mode} worker failed:\n{proc.stderr[-3000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            prev = out.get(mode)
            res["runs_clips_per_s"] = [*(prev["runs_clips_per_s"] if prev else []), res["clips_per_s"]]
            if prev is not None and prev["clips_per_s"] > res["clips_per_s"]:
                prev["runs_clips_per_s"] = res["runs_clips_per_s"]
                res = prev
            out[mode] = res
    out["safetensors_bytes"] = shard_bytes
    out["ratios"] = {
        "throughput_mmap_over_in_ram": out["mmap"]["clips_per_s"] / out["in_ram"]["clips_per_s"],
        "peak_rss_mmap_over_in_ram": out["mmap"]["peak_rss_mb"] / out["in_ram"]["peak_rss_mb"],
        "peak_rss_saved_mb": out["in_ram"]["peak_rss_mb"] - out["mmap"]["peak_rss_mb"],
    }
    return out


def run_vit(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from dfer.model import FineCLIPER, ModelConfig, count_parameters

    torch.set_num_threads(args.threads)
    labels = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
    model = FineCLIPER(ModelConfig(backbone="ViT-B-16-quickgelu", pretrained=None), labels).eval()
    t = args.frames_vit
    clips = torch.randint(0, 256, (args.vit_clips, t, 224, 224, 3), dtype=torch.uint8)
    timings: dict[str, float] = {}
    frozen = timings.setdefault("frozen_clip_image_encoder", float("inf"))
    video = timings.setdefault("fineclip_video_level", float("inf"))
    with torch.inference_mode():
        model.encode_level(clips[:1], "video")  # warm-up (allocator, kernels)
        for i in range(args.vit_clips):  # interleaved, best of the clips for each
            x = clips[i:i + 1]
            start = time.perf_counter()
            model.clip.encode_image(model.to_pixels(x))
            frozen = min(frozen, time.perf_counter() - start)
            start = time.perf_counter()
            model.encode_level(x, "video")
            video = min(video, time.perf_counter() - start)
        timings["frozen_clip_image_encoder"], timings["fineclip_video_level"] = frozen, video
        start = time.perf_counter()
        x = clips[:1]
        model(frames=x, parsing=x, landmarks=x)
        timings["fineclip_three_levels"] = time.perf_counter() - start
    base = timings["frozen_clip_image_encoder"]
    return {
        "frames_per_clip": t, "clips_timed": args.vit_clips, "image_size": 224, "threads": args.threads,
        "seconds_per_clip": timings,
        "frames_per_s_frozen": t / base,
        "ratios_vs_frozen": {k: v / base for k, v in timings.items()},
        "parameters": count_parameters(model),
    }


def write_markdown(res: dict[str, Any], path: Path) -> None:
    tr, vit = res["training"], res["vit_b16"]
    lines = [
        f"Tiny random-init CLIP (112 px, width 64, 2 layers), all levels + captions, "
        f"{tr['mmap']['train_clips']} training clips x {tr['mmap']['epochs']} epochs, T = {res['args']['frames']}, "
        f"batch 8, CPU {res['args']['threads']} threads; {res['machine']}. "
        "Generated by `python benchmarks/bench_train.py`.",
        "",
        "| dataloader | clips/s | peak RSS (MB) |",
        "|---|---:|---:|",
    ]
    for mode, name in (("mmap", "memory-mapped shards (ours)"), ("in_ram", "all shards loaded into RAM (baseline)")):
        lines.append(f"| {name} | {tr[mode]['clips_per_s']:.2f} | {tr[mode]['peak_rss_mb']:.0f} |")
    r = tr["ratios"]
    lines += [
        "",
        f"mmap / in-RAM throughput: {r['throughput_mmap_over_in_ram']:.2f}; peak RSS ratio "
        f"{r['peak_rss_mmap_over_in_ram']:.2f} ({r['peak_rss_saved_mb']:.0f} MB saved; shards on disk: "
        f"{tr['safetensors_bytes'] / 2**20:.0f} MB). Best of "
        f"{len(tr['mmap']['runs_clips_per_s'])} interleaved runs per mode (all runs: mmap "
        f"{', '.join(f'{x:.2f}' for x in tr['mmap']['runs_clips_per_s'])}; in-RAM "
        f"{', '.join(f'{x:.2f}' for x in tr['in_ram']['runs_clips_per_s'])} clips/s). The in-RAM "
        "baseline's memory grows with the dataset; the memory-mapped loader's does not.",
        "",
        f"ViT-B-16-quickgelu (random init), {vit['frames_per_clip']} frames x 224 px per clip, CPU, "
        f"{vit['threads']} threads (best of {vit['clips_timed']} clips; three levels: one clip):",
        "",
        "| forward | s / clip | x frozen |",
        "|---|---:|---:|",
    ]
    for k, v in vit["seconds_per_clip"].items():
        lines.append(f"| {k} | {v:.2f} | {vit['ratios_vs_frozen'][k]:.2f} |")
    p = vit["parameters"]
    lines += ["", f"Tunable parameters (ViT-B/16, default config): {p['tunable_total']:,} "
              f"(frozen backbone {p['frozen_backbone']:,})."]
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips-per-class", type=int, default=24)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=112, help="stored crop size of the synthetic clips")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--vit-clips", type=int, default=2)
    ap.add_argument("--frames-vit", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="runs per training mode (1 or 2)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--worker", choices=["mmap", "in_ram"], help=argparse.SUPPRESS)
    ap.add_argument("--results", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.mode = args.worker
        print(json.dumps(train_worker(args)))
        return 0
    res = {
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "worker", "results", "mode")},
        "machine": f"{platform.machine()} {platform.system()}, Python {platform.python_version()}",
        "training": run_training(args),
        "vit_b16": run_vit(args),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    write_markdown(res, args.out / "train.md")
    print((args.out / "train.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
