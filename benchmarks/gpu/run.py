"""GPU check, random weights: FineCLIPER training step, FAN, FaRL parser, DataLoader throughput.

Users train FineCLIPER on GPUs, where nothing else in ``benchmarks/`` runs. This one script
measures, in under 8 minutes on one GPU with no internet and random weights:

* ``train_step``: one optimiser step of FineCLIPER (``dfer.model``, ViT-B/16, 16 frames, bf16
  autocast; the default ``model.batch_levels: true`` path, all visual levels in one batched
  forward) with 1 visual level (video) and 3 (video, parsing, landmarks), batch 8 and 32:
  clips/s, peak GPU memory, and achieved TFLOP/s (FLOPs of one step counted by
  ``torch.utils.flop_counter.FlopCounterMode``) as a fraction of the chip's dense bf16 peak
  (``PEAK_TFLOPS`` by device name, or ``--peak-tflops``);
* ``fan``: face-alignment's 2D FAN (4 hourglass modules) at batch 64, 256 px: frames/s;
* ``farl_parser``: facer's FaRL ViT-B/16 image encoder at 448 px (the bulk of the FaRL face
  parser; the parser's decoder head ships only inside facer's TorchScript file): frames/s;
* ``dataloader``: the training ``ClipDataset`` + ``DataLoader`` on a synthetic results tree
  (``tests/support/dataset.py``), 4 and 8 workers: clips/s on the CPU, beside the training
  step's clips/s, so ``data_keeps_up`` says whether the GPU would wait for data.

FAN and FaRL are imported from their module files (not their packages, whose ``__init__``
pulls in OpenCV, scikit-image and numba) and built with random weights: nothing is downloaded.
With ``--wheels DIR`` the missing packages are first installed from the wheels that
``prepare.py`` downloaded. ``--smoke`` runs tiny shapes on the CPU in seconds (the test).

    python benchmarks/gpu/run.py --wheels benchmarks/gpu/wheels --out $OUT/gpu.json
    python benchmarks/gpu/run.py --smoke --out /tmp/gpu_smoke.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))  # support.dataset: the synthetic results tree

#: Dense bf16 peak TFLOP/s by a substring of ``torch.cuda.get_device_name()`` (vendor data
#: sheets, SXM parts; first match wins, so the longer names come first).
PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0),
               ("L40S", 362.0), ("A10G", 70.0), ("L4", 121.0), ("RTX 4090", 165.0))
#: import name -> distribution installed from ``--wheels`` when the import is missing.
NEEDED = {"open_clip": "open_clip_torch", "ftfy": "ftfy", "wcwidth": "wcwidth",
          "face_alignment": "face-alignment", "facer": "pyfacer", "pandas": "pandas",
          "pyarrow": "pyarrow", "dateutil": "python-dateutil", "pytz": "pytz", "six": "six"}
LABELS = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")


def install_missing(wheels: Path) -> list[str]:
    """``pip install`` (offline, from ``wheels``) the distributions whose import is missing."""
    missing = [dist for mod, dist in NEEDED.items() if importlib.util.find_spec(mod) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps",
                        "--find-links", str(wheels), *missing], check=True)
        importlib.invalidate_caches()
    return missing


def module_from_file(package: str, rel: str, name: str) -> ModuleType:
    """Import ``package/rel`` as ``name`` without running the package's ``__init__``."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{package} is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    mod_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def timed(step: Callable[[], Any], device: str, warmup: int, iters: int) -> float:
    """Seconds per call of ``step`` (after ``warmup`` calls), synchronising the GPU."""
    import torch

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def peak_tflops(device: str, override: float | None) -> tuple[str, float | None]:
    """The device's name and dense bf16 peak (``override`` wins; None when unknown / CPU)."""
    import torch

    if device != "cuda":
        return platform.processor() or "cpu", override
    name = torch.cuda.get_device_name()
    if override:
        return name, override
    return name, next((v for key, v in PEAK_TFLOPS if key in name), None)


def make_step(model: Any, opt: Any, inputs: dict[str, Any], targets: Any, device: str,
              dtype: Any) -> Callable[[], None]:
    """One forward (autocast), backward and optimiser step, as a closure for :func:`timed`."""
    import torch

    def step() -> None:
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            out = model(**inputs)
            loss = model.losses(out, targets)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def train_step(args: argparse.Namespace, device: str, peak: float | None) -> list[dict[str, Any]]:
    """FineCLIPER optimiser steps for each (levels, batch); one dict per setting."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dfer.methods.fineclipper import FineCLIPER, ModelConfig
    from dfer.model.config import TINY_CLIP_CFG

    rows = []
    for levels in (1, 3):
        model_dict: dict[str, Any] = {"pretrained": None, "use_parsing": levels == 3,
                                      "use_landmarks": levels == 3}
        if args.smoke:
            model_dict.update(backbone="tiny", model_cfg=TINY_CLIP_CFG)
        else:
            model_dict.update(backbone="ViT-B-16-quickgelu")
        model = FineCLIPER(ModelConfig.from_dict(model_dict), list(LABELS)).to(device).train()
        size = model.image_size
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4, fused=device == "cuda")
        for batch in args.batches:
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            gen = torch.Generator(device="cpu").manual_seed(0)
            clip = torch.randint(0, 256, (batch, args.frames, size, size, 3), generator=gen,
                                 dtype=torch.uint8).to(device)
            inputs: dict[str, Any] = {"frames": clip}
            if levels == 3:
                inputs.update(parsing=clip.flip(2), landmarks=clip.flip(3))
            inputs["captions"] = [f"the brows rise and the mouth opens, clip {i}" for i in range(batch)]
            targets = torch.arange(batch, device=device) % len(LABELS)
            dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32

            step = make_step(model, opt, inputs, targets, device, dtype)

            row: dict[str, Any] = {"levels": levels, "batch": batch, "frames": args.frames,
                                   "image_size": size, "dtype": args.dtype,
                                   "batch_levels": model.cfg.batch_levels}
            try:
                step()  # first step: allocations, kernels
                counter = FlopCounterMode(display=False)
                with counter:
                    step()
                flops = counter.get_total_flops()
                seconds = timed(step, device, args.warmup, args.iters)
            except torch.OutOfMemoryError as exc:
                row["error"] = f"OutOfMemoryError: {str(exc)[:200]}"
                rows.append(row)
                continue
            tflops = flops / seconds / 1e12
            row.update(seconds_per_step=round(seconds, 5), clips_per_s=round(batch / seconds, 2),
                       tflop_per_step=round(flops / 1e12, 4), achieved_tflops=round(tflops, 3),
                       fraction_of_peak=round(tflops / peak, 4) if peak else None,
                       peak_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 3)
                       if device == "cuda" else None)
            rows.append(row)
            print(f"train_step {row}", file=sys.stderr, flush=True)
        del model, opt
    return rows


def fan(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """face-alignment's FAN (2D, 4 modules) with random weights: frames/s at ``--fan-batch``."""
    import torch

    fan_mod = module_from_file("face_alignment", "models/fan.py", "_bench_fan")
    net = fan_mod.FAN(1 if args.smoke else 4).to(device).eval()
    side = 64 if args.smoke else 256
    x = torch.rand(args.fan_batch, 3, side, side, device=device)
    with torch.inference_mode():
        seconds = timed(lambda: net(x), device, args.warmup, args.iters)
    return {"batch": args.fan_batch, "input_px": side, "modules": 1 if args.smoke else 4,
            "dtype": "fp32", "frames_per_s": round(args.fan_batch / seconds, 2)}


def farl_parser(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """facer's FaRL ViT-B/16 encoder at 448 px with random weights: frames/s."""
    import torch

    farl = module_from_file("facer", "farl/model.py", "_bench_farl")
    side, width, layers = (64, 64, 2) if args.smoke else (448, 768, 12)
    net = farl.VisualTransformer(input_resolution=side, patch_size=16, width=width, layers=layers,
                                 heads=max(1, width // 64), output_dim=512).to(device).eval()
    x = torch.rand(args.parser_batch, 3, side, side, device=device)
    dtype = torch.float16 if device == "cuda" else torch.float32
    with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=device == "cuda"):
        seconds = timed(lambda: net(x), device, args.warmup, args.iters)
    return {"batch": args.parser_batch, "input_px": side, "layers": layers,
            "dtype": "fp16 autocast" if device == "cuda" else "fp32",
            "frames_per_s": round(args.parser_batch / seconds, 2),
            "note": "encoder only; the parser's decoder head is in facer's TorchScript file"}


def dataloader(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The training DataLoader's clips/s over a synthetic results tree, per worker count."""
    from support.dataset import write_synthetic_dataset
    from torch.utils.data import DataLoader

    from dfer.train.data import ClipDataset, DataConfig, Needs, collate, load_clip_table

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_dataset(tmp, "bench", num_classes=len(LABELS),
                                clips_per_class=args.loader_clips // len(LABELS), num_folds=2,
                                frames=args.frames, size=args.loader_size, num_shards=4)
        # every level the synthetic tree provides (its writer may lag the readers' inputs)
        for needs in (Needs(parsing=True, landmarks=True, captions=True),
                      Needs(landmarks=True, captions=True), Needs()):
            try:
                table = load_clip_table(tmp, "bench", needs)
                break
            except FileNotFoundError as exc:
                print(f"dataloader: {exc}; fewer levels", file=sys.stderr)
        levels = 1 + int(needs.parsing) + int(needs.landmarks)
        cfg = DataConfig(num_frames=args.frames, batch_size=args.loader_batch)
        for workers in args.workers:
            data = ClipDataset("bench", table.clips, table, needs, cfg,
                               image_size=args.loader_image_size, train=True)
            loader = DataLoader(data, batch_size=args.loader_batch, num_workers=workers,
                                collate_fn=collate, shuffle=True, drop_last=False,
                                persistent_workers=False)
            start = time.perf_counter()
            clips = sum(len(batch["label"]) for batch in loader)
            seconds = time.perf_counter() - start
            rows.append({"workers": workers, "clips": clips, "seconds": round(seconds, 3),
                         "clips_per_s": round(clips / seconds, 2), "frames": args.frames,
                         "image_size": args.loader_image_size, "levels": levels,
                         "captions": needs.captions})
            print(f"dataloader {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (seconds)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu.json")
    parser.add_argument("--wheels", type=Path, help="install missing packages from here first")
    parser.add_argument("--peak-tflops", type=float, help="the chip's dense bf16 peak, TFLOP/s")
    parser.add_argument("--parts", nargs="+", default=["train_step", "fan", "farl_parser", "dataloader"])
    args = parser.parse_args(argv)
    installed = install_missing(args.wheels) if args.wheels else []

    import torch

    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    smoke = args.smoke
    args.frames = 2 if smoke else 16
    args.batches = [2] if smoke else [8, 32]
    args.dtype = "fp32" if device == "cpu" else "bf16"
    args.warmup, args.iters = (0, 1) if smoke else (3, 10)
    args.fan_batch = 4 if smoke else 64
    args.parser_batch = 4 if smoke else 32
    args.workers = [0, 2] if smoke else [4, 8]
    args.loader_clips = 14 if smoke else 448
    args.loader_size = 32 if smoke else 224  # stored crop side (decode writes 224)
    args.loader_image_size = 32 if smoke else 224
    args.loader_batch = 4 if smoke else 32
    name, peak = peak_tflops(device, args.peak_tflops)

    res: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "weights": "random",
        "smoke": smoke, "device": device, "device_name": name, "peak_bf16_tflops": peak,
        "torch": torch.__version__, "python": platform.python_version(),
        "installed_from_wheels": installed, "errors": {},
    }
    parts = {"train_step": lambda: train_step(args, device, peak), "fan": lambda: fan(args, device),
             "farl_parser": lambda: farl_parser(args, device), "dataloader": lambda: dataloader(args)}
    start = time.perf_counter()
    for part in args.parts:
        try:
            res[part] = parts[part]()
        except Exception as exc:  # one part's failure must not lose the others' figures
            res["errors"][part] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
    steps = [r for r in res.get("train_step", []) if "clips_per_s" in r]
    loaders = res.get("dataloader", [])
    if steps and loaders:
        need = max(r["clips_per_s"] for r in steps if r["levels"] == 3) if any(
            r["levels"] == 3 for r in steps) else max(r["clips_per_s"] for r in steps)
        best = max(r["clips_per_s"] for r in loaders)
        res["ratios"] = {"dataloader_best_over_train_step_3_levels": round(best / need, 3)}
        res["data_keeps_up"] = best >= need
    res["seconds"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
