"""``dfer predict``: one invocation on many clips against one invocation per clip.

What is timed (each ``python -m dfer predict`` a fresh subprocess on the CPU, as a user runs
it; wall time measured outside, peak RSS from ``os.wait4`` of that process):

* ``batch``: one invocation on ``--clips`` demo clips (default 50): total wall, and the
  command's own split (its closing summary line) into start-up (imports, checkpoint, detectors;
  from the command's start to the first clip) and per-clip time; once per ``--batch-sizes``.
* ``separate``: ``--separate`` invocations (default 50), one clip each, one after the other:
  what predicting those clips cost before ``dfer predict`` took many clips. With fewer than
  ``--clips`` the total for ``--clips`` is extrapolated (mean x clips) and labelled so.
* ``baseline``: with ``--baseline-ref REF`` the same one-clip invocation of the code at git
  ``REF`` (``git archive REF src``) on the first ``--baseline-runs`` of those clips, taking
  turns with today's: the cost per invocation before this change (it imported Lightning).
* ``vit_b16``: start-up and per-clip time of a ViT-B/16 (``ViT-B-16-quickgelu``) checkpoint
  with a random-init backbone (no weights can be downloaded here; the time does not depend on
  the weights) on ``--vit-clips`` clips, 16 frames, 224 px.
* ``imports``: ``python -c "import torch"`` against ``import torch, lightning`` (best of 2):
  what going through a Lightning ``Trainer`` would add to every invocation's start-up.

Checkpoints: ``--checkpoint`` (e.g. a trained demo_tiny fold), else one built here with the
``demo_tiny`` model block of ``config/config.yaml`` at random init (time does not depend on
trained weights) and the preprocessing the demo pipeline stores (decode / landmarks / parsing
of the config, dlib and landmark polygons). Clips: ``dfer.demo.generate_demo`` (256 px, 24-36
frames, mp4 and JPEG frame folders), in a temporary folder.

    python benchmarks/bench_predict.py                      # writes benchmarks/results/predict.{json,md}
    python benchmarks/bench_predict.py --separate 10 --baseline-ref HEAD --baseline-runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

SUMMARY = re.compile(r"dfer predict: (\d+) clip\(s\), (\d+) predicted, (\d+) failed; start-up "
                     r"([\d.]+) s, clips ([\d.]+) s")


def build_checkpoint(path: Path, vit: bool, decode_keys: list[str] | None = None) -> Path:
    """A demo_tiny (or ViT-B/16) checkpoint at random init with the demo's preprocessing
    (``decode_keys``: only these keys of the decode section, for older code to read it)."""
    import yaml

    from dfer.methods.checkpoint import save_checkpoint
    from dfer.methods.fineclipper import FineCLIPER
    from dfer.methods.specs.fineclipper import ModelConfig
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    run = cfg["train"]["runs"]["fineclip_vitb16" if vit else "demo_tiny"]
    model_block = dict(run["model"])
    model_block["pretrained"] = None  # random init: no weights to download here
    model = FineCLIPER(ModelConfig.from_dict(model_block),
                       labels=["anger", "happiness", "sadness", "surprise", "neutral"])
    # the config's own keys (what a demo run stores), so that older code reads them too
    decode = {k: v for k, v in cfg["decode"].items() if decode_keys is None or k in decode_keys}
    pre = {"decode": decode,
           "landmarks": {**cfg["landmarks"], "backend": "dlib"},
           "parsing": {**cfg["parsing"], "backend": "landmarks"}}
    data = {k: v for k, v in run["data"].items() if k != "num_workers"}
    return save_checkpoint(path, model, params={"data": data}, preprocessing=pre,
                           dataset="demo", run="bench_vitb16" if vit else "bench_demo_tiny")


def demo_clips(root: Path, n: int) -> list[Path]:
    """``n`` demo clips (videos and frame folders), in the manifest's order."""
    import csv

    from dfer.demo import generate_demo

    per_class = max(1, -(-n // 5))
    manifest = generate_demo(root, clips_per_class=per_class, progress=False)
    with open(manifest, newline="") as fh:
        paths = [root / row["path"] for row in csv.DictReader(fh)]
    return paths[:n]


def run_cli(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """One ``python -m dfer predict`` subprocess: wall seconds, its own peak RSS
    (``os.wait4``; the output goes to files meanwhile), and its summary line's split."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "dfer", "predict", *argv], cwd=ROOT,
                                stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text_out, text_err = out.read(), err.read()
    res: dict[str, Any] = {"wall_s": wall, "rc": proc.returncode, "lines": len(text_out.splitlines()),
                           "peak_rss_mb": usage.ru_maxrss / 1024}
    m = SUMMARY.search(text_err)
    if m:
        res.update(clips=int(m[1]), predicted=int(m[2]), failed=int(m[3]),
                   startup_s=float(m[4]), clips_s=float(m[5]))
    if proc.returncode != 0:
        res["stderr_tail"] = text_err[-2000:]
    return res


def import_seconds(code: str, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        best = min(best, time.perf_counter() - start)
    return best


def decode_keys_of(src: Path) -> list[str]:
    """The decode config keys the code under ``src`` accepts (its DecodeConfig fields)."""
    code = ("import dataclasses, json; from dfer.video.config import DecodeConfig; "
            "print(json.dumps([f.name for f in dataclasses.fields(DecodeConfig)]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(src)})
    return json.loads(out.stdout)


def baseline_src(ref: str, dest: Path) -> tuple[Path, str]:
    """``src/`` of git ``ref`` unpacked under ``dest``; and the ref's short commit."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    return dest / "src", commit


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    return {"runs": len(runs), "total_wall_s": sum(walls), "mean_wall_s": sum(walls) / len(walls),
            "median_wall_s": sorted(walls)[len(walls) // 2],
            "min_wall_s": min(walls), "max_wall_s": max(walls),
            "peak_rss_mb": max(r.get("peak_rss_mb", 0.0) for r in runs),
            "failed_runs": sum(r["rc"] != 0 for r in runs),
            "mean_startup_s": (sum(r.get("startup_s", 0.0) for r in runs) / len(runs))}


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    clips = demo_clips(tmp / "demo", args.clips)
    src = commit = None
    keys = None
    if args.baseline_ref and args.baseline_runs:
        src, commit = baseline_src(args.baseline_ref, tmp / "baseline")
        keys = decode_keys_of(src)  # one checkpoint both versions read, for every run
    ckpt = (Path(args.checkpoint) if args.checkpoint
            else build_checkpoint(tmp / "demo.safetensors", vit=False, decode_keys=keys))
    common = ["--checkpoint", str(ckpt), "--device", "cpu", "--no-progress"]
    res: dict[str, Any] = {"clips": len(clips), "checkpoint": "given: " + str(args.checkpoint)
                           if args.checkpoint else "demo_tiny model block, random init"}

    print(f"batch: {len(clips)} clips in one invocation", file=sys.stderr)
    res["batch"] = {}
    for bs in args.batch_sizes:
        r = run_cli([*common, "--batch-size", str(bs), *map(str, clips)])
        r["per_clip_s"] = r["clips_s"] / len(clips) if "clips_s" in r else None
        res["batch"][str(bs)] = r

    n = min(args.separate, len(clips))
    n_base = min(args.baseline_runs, n) if args.baseline_ref else 0
    env = None
    if n_base:
        env = {**os.environ, "PYTHONPATH": str(src)}
    print(f"separate: {n} invocations, one clip each; {n_base} of the code before, taking turns",
          file=sys.stderr)
    runs, base_runs = [], []
    for i, c in enumerate(clips[:n]):  # taking turns: a load change on the shared CPUs hits both
        runs.append(run_cli([*common, str(c)]))
        if i < n_base:
            base_runs.append(run_cli([str(c), "--checkpoint", str(ckpt), "--device", "cpu"], env=env))
    sep = _summary(runs)
    sep["extrapolated"] = n < len(clips)
    sep["total_for_clips_s"] = sep["mean_wall_s"] * len(clips)
    res["separate"] = sep
    if n_base:
        base = _summary(base_runs)
        base.update(ref=args.baseline_ref, commit=commit,
                    total_for_clips_s=base["mean_wall_s"] * len(clips),
                    extrapolated=n_base < len(clips),
                    same_clips_new_mean_wall_s=sum(r["wall_s"] for r in runs[:n_base]) / n_base)
        res["baseline"] = base

    if args.vit_clips:
        print(f"vit_b16: {args.vit_clips} clips", file=sys.stderr)
        vit = build_checkpoint(tmp / "vitb16.safetensors", vit=True, decode_keys=keys)
        r = run_cli(["--checkpoint", str(vit), "--device", "cpu", "--no-progress",
                         *map(str, clips[:args.vit_clips])])
        r["per_clip_s"] = r["clips_s"] / args.vit_clips if "clips_s" in r else None
        res["vit_b16"] = {"many": r, "clips": args.vit_clips}

    print("imports", file=sys.stderr)
    codes = {"torch_s": "import torch", "torch_lightning_s": "import torch, lightning",
             "torch_open_clip_s": "import torch, open_clip"}
    best = dict.fromkeys(codes, float("inf"))
    for _ in range(3):  # taking turns, best of 3
        for key, code in codes.items():
            best[key] = min(best[key], import_seconds(code, repeats=1))
    res["imports"] = best
    return res


def _f(x: Any, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown(res: dict[str, Any]) -> str:
    m = res["measured"]
    n = m["clips"]
    lines = [
        "# predict",
        "",
        f"{res['date']}; {res['machine']}, {res['cpu_count']} CPUs **shared with other jobs** "
        f"(load average {res['loadavg'][0]:.1f} / {res['loadavg'][1]:.1f} / {res['loadavg'][2]:.1f} "
        f"at the start, {res['loadavg_end'][0]:.1f} at the end: times vary by tens of percent "
        f"between runs). Generated by `python benchmarks/bench_predict.py "
        f"{' '.join(res['argv'])}`; code {res['git']}. Every row is a fresh `python -m dfer "
        f"predict` process on the CPU; demo clips (256 px, 24-36 frames); checkpoint: "
        f"{m['checkpoint']} (decode 16 frames with dlib HOG, dlib landmarks, polygon parsing).",
        "",
        "## One invocation on many clips against one invocation per clip",
        "",
        "| what | invocations | clips | total wall s | start-up s | per clip s | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for bs, r in m["batch"].items():
        lines.append(f"| one invocation, --batch-size {bs} | 1 | {n} | {_f(r['wall_s'])} | "
                     f"{_f(r.get('startup_s'))} | {_f(r.get('per_clip_s'), 3)} | {_f(r['peak_rss_mb'], 0)} |")
    s = m["separate"]
    label = (f"separate invocations (measured {s['runs']}, total for {n} extrapolated)"
             if s["extrapolated"] else "separate invocations")
    lines.append(f"| {label} | {s['runs']} | {s['runs']} | {_f(s['total_wall_s'])} (for {n}: "
                 f"{_f(s['total_for_clips_s'])}) | {_f(s['mean_startup_s'])} | "
                 f"{_f(s['mean_wall_s'])} wall each (median {_f(s['median_wall_s'])}) | {_f(s['peak_rss_mb'], 0)} |")
    b = m.get("baseline")
    if b:
        label = (f"before this change (`{b['commit']}`), separate invocations (measured {b['runs']}"
                 f"{', total for ' + str(n) + ' extrapolated' if b['extrapolated'] else ''})")
        lines.append(f"| {label} | {b['runs']} | {b['runs']} | {_f(b['total_wall_s'])} (for {n}: "
                     f"{_f(b['total_for_clips_s'])}) | n/a | {_f(b['mean_wall_s'])} wall each "
                     f"(median {_f(b['median_wall_s'])}) | "
                     f"{_f(b['peak_rss_mb'], 0)} |")
    for what, r in [*((f"--batch-size {bs}", r) for bs, r in m["batch"].items()),
                    *(("ViT-B/16", m["vit_b16"]["many"]) for _ in [0] if "vit_b16" in m)]:
        if r["rc"] != 0 or r.get("failed"):
            lines.append(f"\n**warning**: the one invocation ({what}) failed on "
                         f"{r.get('failed', 'some')} clip(s) (exit status {r['rc']})")
    best = min(m["batch"].values(), key=lambda r: r["wall_s"])
    lines += ["", "Ratios (total wall for the same clips; > 1: the one invocation is faster):", ""]
    lines.append(f"- {n} separate invocations of today's command / one invocation: "
                 f"**{s['total_for_clips_s'] / best['wall_s']:.1f}x**"
                 + (" (separate total extrapolated)" if s["extrapolated"] else ""))
    if b:
        lines.append(f"- {n} separate invocations before this change / one invocation: "
                     f"**{b['total_for_clips_s'] / best['wall_s']:.1f}x**"
                     + (" (extrapolated from the measured mean)" if b["extrapolated"] else ""))
        same = b["same_clips_new_mean_wall_s"]
        lines.append(f"- one one-clip invocation, before / now (the same {b['runs']} clips, "
                     f"taking turns): **{b['mean_wall_s'] / same:.2f}x** "
                     f"({_f(b['mean_wall_s'])} s -> {_f(same)} s; peak RSS "
                     f"{_f(b['peak_rss_mb'], 0)} -> {_f(s['peak_rss_mb'], 0)} MB)")
        if b["failed_runs"]:
            lines.append(f"- **warning**: {b['failed_runs']} of the {b['runs']} invocations of "
                         "the code before failed (exit status not 0); its times are not comparable")
    v = m.get("vit_b16")
    if v:
        many = v["many"]
        lines += ["", "## Start-up and per-clip time by model", "",
                  "| model | clips | start-up s (in the command) | per clip s | invocation wall s | peak RSS MB |",
                  "|---|---:|---:|---:|---:|---:|"]
        for bs, r in m["batch"].items():
            lines.append(f"| demo_tiny (width 64, 2 layers, 112 px, 8 frames), --batch-size {bs} | {n} | "
                         f"{_f(r.get('startup_s'))} | {_f(r.get('per_clip_s'), 3)} | {_f(r['wall_s'])} | "
                         f"{_f(r['peak_rss_mb'], 0)} |")
        lines.append(f"| ViT-B/16 (random init, 224 px, 16 frames), --batch-size 8 | {v['clips']} | "
                     f"{_f(many.get('startup_s'))} | {_f(many.get('per_clip_s'), 3)} | "
                     f"{_f(many['wall_s'])} | {_f(many['peak_rss_mb'], 0)} |")
    imp = m["imports"]
    lines += ["", "## Why no Lightning Trainer in `dfer predict`", "",
              f"`python -c 'import torch'` {_f(imp['torch_s'])} s, `import torch, open_clip` "
              f"{_f(imp['torch_open_clip_s'])} s, `import torch, lightning` "
              f"{_f(imp['torch_lightning_s'])} s (best of 3 taking turns, interpreter start included): "
              f"Lightning adds {_f(imp['torch_lightning_s'] - imp['torch_s'])} s to every "
              "invocation before a Trainer is even built. `dfer predict` runs the forward pass "
              "of `FineCLIPERModule.predict_step` (eval mode, no autograd, softmax of the float "
              "logits) directly; `tests/test_predict.py` checks both give identical "
              "probabilities.",
              "", "Start-up is measured by the command itself, from its start to its first clip "
              "(imports, checkpoint, detectors); the interpreter's own start (~0.1 s) is outside it. "
              "Per clip: the clip loop's time / clips (decode, HOG face box, landmarks, parsing, "
              "model, output)."]
    return "\n".join(lines) + "\n"


def _git_state() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    dirty = git("status", "--porcelain", "--", "src/dfer/inference", "src/dfer/stages/predict.py")
    return f"`{git('log', '-1', '--oneline')}`" + (" + uncommitted changes to dfer predict" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=50, help="clips of the one invocation")
    ap.add_argument("--separate", type=int, default=50, help="one-clip invocations to time")
    ap.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8],
                    help="--batch-size values for the one invocation (comma-separated)")
    ap.add_argument("--baseline-ref", default=None,
                    help="git ref of the code before the change, timed one clip per invocation")
    ap.add_argument("--baseline-runs", type=int, default=5)
    ap.add_argument("--vit-clips", type=int, default=2, help="clips for ViT-B/16 (0: skip)")
    ap.add_argument("--checkpoint", default=None, help="a demo checkpoint to use instead of building one")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    res: dict[str, Any] = {
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()} {platform.system()}, Python {platform.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg": list(os.getloadavg()), "cpu_count": os.cpu_count(), "git": _git_state(),
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        res["measured"] = measure(args, Path(tmp))
    res["seconds"] = time.perf_counter() - start
    res["loadavg_end"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predict.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    (args.out / "predict.md").write_text(markdown(res))
    print((args.out / "predict.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
