"""Training throughput / peak memory (tiny config, CPU) and the model's step cost per clip.

    python benchmarks/bench_train.py [--clips-per-class 24] [--frames 16] [--size 112]
                                     [--epochs 4] [--threads 2] [--repeats 2]
                                     [--vit-reps 2] [--frames-vit 16] [--parts training steps]

Writes benchmarks/results/train.json and train.md. Every figure is measured in the same run
as its baseline and reported as a ratio too.

1. ``training``: tiny random-init CLIP (all three visual levels + captions) trained on a
   synthetic dataset written in the artifact layout (tests/support/dataset.py): the dataloader
   we ship, which memory-maps the frames / parsing shards and reads one clip at a time
   (``safe_open``), against the baseline that loads every shard fully into RAM first and
   serves clips from dicts. Each mode runs in its own interpreter so its peak RSS
   (``ru_maxrss``) is its own.
2. ``steps``: the model alone, per clip, ``model.batch_levels: false`` (the first
   implementation: one visual level after the other through open_clip's attention) against
   ``true`` (all levels in one batched forward, SDPA attention, CLS-only last block), same
   weights, same process, alternating A B B A: forward (eval, ``inference_mode``) and training
   step (forward + loss + backward + AdamW step), 1 visual level (video) and 3 (video,
   parsing, landmarks), on the real ViT-B-16-quickgelu architecture (random init: no
   download, T frames at 224 px, batch 1) and on the tiny model; plus the frozen CLIP image
   encoder alone as the floor. Memory: the peak RSS above the resident model during the call
   (RSS sampled every 5 ms; freed heap returned to the OS with ``malloc_trim`` between calls).
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


class _RssPeak:
    """Peak resident set size (MB) while the ``with`` body runs, sampled by a thread."""

    def __init__(self, every_s: float = 0.005) -> None:
        self.every_s = every_s

    @staticmethod
    def rss_mb() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2**20

    def __enter__(self) -> _RssPeak:
        import contextlib
        import ctypes
        import threading

        with contextlib.suppress(OSError):  # hand freed heap back: the baseline is what is held
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        self.before = self.peak = self.rss_mb()
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, self.rss_mb())
                self._stop.wait(self.every_s)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss_mb())


def step_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Forward or training step per clip, batch_levels false vs true, in this process."""
    import torch

    from dfer.methods.fineclipper import FineCLIPER, ModelConfig, count_parameters

    torch.set_num_threads(spec["threads"])
    labels = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
    levels, train, batch, t = spec["levels"], spec["mode"] == "train", spec["batch"], spec["frames"]
    keys: dict[str, Any] = {"pretrained": None, "use_parsing": levels == 3, "use_landmarks": levels == 3}
    if spec["backbone"] == "tiny":
        keys.update(backbone="custom", model_cfg=TINY_112)
    else:
        keys.update(backbone=spec["backbone"])
    torch.manual_seed(0)
    model = FineCLIPER(ModelConfig.from_dict(keys), labels)
    size = model.image_size
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, t, size, size, 3), dtype=torch.uint8, generator=g)
    inputs: dict[str, Any] = {"frames": x}
    if levels == 3:
        inputs.update(parsing=x.flip(2), landmarks=x.flip(3))
    inputs["captions"] = [f"the brows rise, clip {i}" for i in range(batch)]
    targets = torch.arange(batch) % len(labels)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def call(batched: bool) -> None:
        model.cfg.batch_levels = batched
        if train:
            model.train()
            out = model(**inputs)
            model.losses(out, targets)["loss"].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            model.eval()
            with torch.inference_mode():
                model(**inputs)

    def frozen() -> None:
        with torch.inference_mode():
            model.clip.encode_image(model.to_pixels(x))

    paths: dict[str, Any] = {"old": lambda: call(False), "new": lambda: call(True)}
    if not train and levels == 1:
        paths["frozen_clip_image_encoder"] = frozen
    times: dict[str, list[float]] = {k: [] for k in paths}
    cpu: dict[str, list[float]] = {k: [] for k in paths}
    mem: dict[str, list[float]] = {k: [] for k in paths}
    for name in paths:  # warm-up: allocator, kernels, AdamW state
        paths[name]()
    order = list(paths)
    for rep in range(spec["reps"]):
        for name in order if rep % 2 == 0 else order[::-1]:  # A B B A
            with _RssPeak() as rss:
                start, start_cpu = time.perf_counter(), time.process_time()
                paths[name]()
                seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            times[name].append(seconds / batch)
            cpu[name].append(cpu_seconds / batch)
            mem[name].append(rss.peak - rss.before)
    return {
        **spec, "image_size": size,
        "seconds_per_clip": {k: min(v) for k, v in times.items()},
        "all_seconds_per_clip": times,
        "cpu_seconds_per_clip": {k: min(v) for k, v in cpu.items()},
        "peak_rss_above_model_mb": {k: max(v) for k, v in mem.items()},
        "rss_model_mb": _RssPeak.rss_mb(),
        "peak_rss_process_mb": _peak_rss_mb(),
        "tunable_parameters": count_parameters(model)["tunable_total"],
    }


def run_steps(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (backbone, levels, mode) in its own interpreter (clean peak RSS per setting)."""
    rows = []
    settings = [("tiny", lv, mode, args.tiny_batch, args.frames, args.tiny_reps)
                for lv in (1, 3) for mode in ("forward", "train")]
    settings += [("ViT-B-16-quickgelu", lv, mode, args.vit_batch, args.frames_vit, args.vit_reps)
                 for lv in (1, 3) for mode in ("forward", "train")]
    for backbone, levels, mode, batch, frames, reps in settings:
        spec = {"backbone": backbone, "levels": levels, "mode": mode, "batch": batch, "frames": frames,
                "reps": reps, "threads": args.step_threads}
        cmd = [sys.executable, __file__, "--step-worker", json.dumps(spec)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"step worker {spec} failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        s = row["seconds_per_clip"]
        row["speedup_new_over_old"] = s["old"] / s["new"]
        c = row["cpu_seconds_per_clip"]
        row["cpu_speedup_new_over_old"] = c["old"] / c["new"]
        row["wall_seconds"] = time.perf_counter() - start
        print(f"steps {backbone} {levels} {mode}: old {s['old']:.3f} new {s['new']:.3f} s/clip "
              f"({row['speedup_new_over_old']:.2f}x)", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def write_markdown(res: dict[str, Any], path: Path) -> None:
    lines = [
        f"Generated by `python benchmarks/bench_train.py` on {res['date']}; {res['machine']}, CPU "
        f"{res['args']['threads']} threads, no GPU. The machine was shared with other jobs (load "
        f"average {res['loadavg'][0]:.1f} / {res['loadavg'][1]:.1f} / {res['loadavg'][2]:.1f} at the "
        f"start, {res['cpu_count']} cores): absolute times are noisy, ratios measured in the same "
        f"process and interleaved are the figures to compare. Code: {res['git']}.",
        "",
    ]
    tr = res.get("training")
    if tr:
        lines += [
            "## Training loop: memory-mapped shards vs all shards in RAM",
            "",
            f"Tiny random-init CLIP (112 px, width 64, 2 layers), all levels + captions, "
            f"{tr['mmap']['train_clips']} training clips x {tr['mmap']['epochs']} epochs, "
            f"T = {res['args']['frames']}, batch 8"
            + (f" (figures of {tr['from_earlier_run']}: this run measured only the model steps)."
               if tr.get("from_earlier_run") else "."),
            "",
            "| dataloader | clips/s | peak RSS (MB) |",
            "|---|---:|---:|",
        ]
        for mode, name in (("mmap", "memory-mapped shards (ours)"),
                           ("in_ram", "all shards loaded into RAM (baseline)")):
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
        ]
    steps = res.get("steps")
    if steps:
        lines += [
            "## Model step per clip: `batch_levels: false` (old) vs `true` (new)",
            "",
            "Old: one visual level after the other through open_clip's `nn.MultiheadAttention`. "
            "New (default): all enabled levels concatenated along the batch in one forward through "
            "the frozen ViT (each level's adapters on its slice), attention as one in-projection + "
            "`scaled_dot_product_attention`, and the last block on the CLS token only. Same "
            "weights, same process, alternating old / new (A B B A), best time of "
            "the repeats; forward = eval under `inference_mode`; train = forward + loss + "
            "backward + AdamW step. Captions on (one per clip). Memory: peak RSS above the "
            "resident model during the call (max over repeats).",
            "",
            f"Torch threads: {res['args']['step_threads']} (a single thread is what a shared machine "
            "measures most steadily: no thread waits for a descheduled partner); CPU s = process "
            "CPU time, the figure least moved by other jobs.",
            "",
            "| backbone | T x px | batch | levels | step | old s/clip | new s/clip | speed-up | "
            "old CPU s | new CPU s | CPU speed-up | old peak MB | new peak MB |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in steps:
            sec, mem, cpu = row["seconds_per_clip"], row["peak_rss_above_model_mb"], row["cpu_seconds_per_clip"]
            name = "tiny (w64, 2 layers)" if row["backbone"] == "tiny" else row["backbone"]
            lines.append(
                f"| {name} | {row['frames']} x {row['image_size']} | {row['batch']} | {row['levels']} | "
                f"{row['mode']} | {sec['old']:.3f} | {sec['new']:.3f} | {row['speedup_new_over_old']:.2f}x | "
                f"{cpu['old']:.3f} | {cpu['new']:.3f} | {row['cpu_speedup_new_over_old']:.2f}x | "
                f"{mem['old']:.0f} | {mem['new']:.0f} |")
        floors = [r for r in steps if "frozen_clip_image_encoder" in r["seconds_per_clip"]]
        lines.append("")
        for row in floors:
            f = row["seconds_per_clip"]["frozen_clip_image_encoder"]
            name = "tiny" if row["backbone"] == "tiny" else row["backbone"]
            lines.append(
                f"Floor, {name}: the frozen CLIP image encoder alone (open_clip `encode_image`, "
                f"same frames) takes {f:.3f} s/clip; the adapted video level {row['seconds_per_clip']['new']:.3f} "
                f"(new) / {row['seconds_per_clip']['old']:.3f} (old), i.e. "
                f"{row['seconds_per_clip']['new'] / f:.2f}x / {row['seconds_per_clip']['old'] / f:.2f}x the "
                "floor (AIM's temporal branch re-runs the frozen attention over frames).")
        lines.append("")
        for row in steps:
            if row["backbone"] != "tiny" and row["levels"] == 3:
                lines.append(f"Tunable parameters (ViT-B/16, 3 levels + captions): {row['tunable_parameters']:,}.")
                break
        lines.append("")
        lines.append("All repeats (s/clip): " + "; ".join(
            f"{'tiny' if r['backbone'] == 'tiny' else 'B/16'} {r['levels']}L {r['mode']} "
            f"old {', '.join(f'{x:.3f}' for x in r['all_seconds_per_clip']['old'])} / "
            f"new {', '.join(f'{x:.3f}' for x in r['all_seconds_per_clip']['new'])}" for r in steps) + ".")
    path.write_text("\n".join(lines) + "\n")


def _git_state() -> str:
    def git(*a: str) -> str:
        proc = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    dirty = git("status", "--porcelain", "--", "src/dfer/model")
    return f"`{git('log', '-1', '--oneline')}`" + (" + uncommitted changes in src/dfer/model" if dirty else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips-per-class", type=int, default=24)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=112, help="stored crop size of the synthetic clips")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--frames-vit", type=int, default=8, help="frames per clip, ViT-B/16 steps")
    ap.add_argument("--vit-batch", type=int, default=1)
    ap.add_argument("--step-threads", type=int, default=1,
                    help="torch threads of the model-step workers (1: robust on a shared machine)")
    ap.add_argument("--vit-reps", type=int, default=2, help="timed repeats per path, ViT-B/16")
    ap.add_argument("--tiny-reps", type=int, default=8, help="timed repeats per path, tiny model")
    ap.add_argument("--tiny-batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="runs per training mode (1 or 2)")
    ap.add_argument("--parts", nargs="+", default=["training", "steps"], choices=["training", "steps"])
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--worker", choices=["mmap", "in_ram"], help=argparse.SUPPRESS)
    ap.add_argument("--step-worker", help=argparse.SUPPRESS)
    ap.add_argument("--results", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.mode = args.worker
        print(json.dumps(train_worker(args)))
        return 0
    if args.step_worker:
        print(json.dumps(step_worker(json.loads(args.step_worker))))
        return 0
    import os
    from datetime import UTC, datetime

    res: dict[str, Any] = {
        "args": {k: v for k, v in vars(args).items()
                 if k not in ("out", "worker", "results", "mode", "step_worker")},
        "machine": f"{platform.machine()} {platform.system()}, Python {platform.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg": list(os.getloadavg()), "cpu_count": os.cpu_count(), "git": _git_state(),
    }
    if "training" in args.parts:
        res["training"] = run_training(args)
    elif (args.out / "train.json").exists():  # keep the loader figures of the last full run
        previous = json.loads((args.out / "train.json").read_text())
        if "training" in previous:
            res["training"] = {**previous["training"],
                               "from_earlier_run": previous.get("date", "an earlier run")}
    if "steps" in args.parts:
        res["steps"] = run_steps(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    write_markdown(res, args.out / "train.md")
    print((args.out / "train.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
