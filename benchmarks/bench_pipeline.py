"""The whole pipeline at dataset scale: per-stage clips/s and peak memory, projected to DFEW.

Every other benchmark times one stage in-process; users run the pipeline through Snakemake,
where each shard is a separate ``python -m dfer <stage>`` job with its own start-up, file I/O
and scheduling. This script measures exactly that path: it writes ``--clips`` synthetic clips
shaped like DFEW's (2-5 s, 25 or 30 fps, 640x360 to 1280x720, one face: the animated real
face of ``dfer.demo`` pasted into a wider frame, encoded with ``tests/support/videos.py``),
declares them as a ``demo``-layout dataset in a copy of the project (``tests/project_copy.py``)
and runs ``decode -> landmarks -> parsing -> captions (offline) -> train`` (one epoch of the
tiny demo model, every fold) with ``snakemake --cores N``, one Snakemake call per stage.

Per job, a sampler thread reads each ``python -m dfer`` process's wall time, CPU time and
peak resident size (``VmHWM`` in ``/proc/<pid>/status``, read every 0.1 s; the rules have no
``benchmark:`` directive, and wrapping them would mean editing every rule). Per stage it
reports the Snakemake call's wall time (what a user waits for, DAG building included), clips/s
over that wall time, clips per job-second (the rate of one job on one core) and the largest
job's peak RSS.

Projection (``projected_hours``): shard jobs are independent, so a stage over ``S`` shards on
``c`` cores runs ``ceil(S / c)`` waves of one shard each, a shard taking ``(clips / S) /
clips_per_job_second`` (each job assumed to hold one core, as measured here with 2 jobs on 2
cores; no shared-disk or memory limit assumed). Training is one job per fold: ``ceil(folds /
c)`` waves of one epoch over the fold's training clips at the tiny model's measured CPU rate,
which says nothing about ViT-B/16 on a GPU (``benchmarks/gpu/``). Shard counts are the
project's configured ones (DFEW 64, FERV39k 128, MAFW 64); per-job start-up is measured inside
the rate, so with the few clips per shard used here the projection is on the slow side.

    python benchmarks/bench_pipeline.py                 # 300 clips, writes results/pipeline.*
    python benchmarks/bench_pipeline.py --clips 60 --keep /tmp/pipe
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))  # support.videos, project_copy: the test fixtures

DATASET = "bench"
RUN = "bench_tiny"
NUM_FOLDS = 2
#: (width, height) of DFEW-like clips; one is drawn per clip.
SIZES = ((640, 360), (854, 480), (960, 540), (1280, 720))
#: Stages in pipeline order: (name, the ``python -m dfer`` sub-command its jobs run).
STAGES = (("decode", "decode"), ("landmarks", "landmarks"), ("parsing", "parsing"),
          ("captions", "captions"), ("train", "train"))
#: Datasets to project to: clips, configured shards, folds (training jobs), training clips
#: per fold (FERV39k: its one official train/test split; DFEW, MAFW: 5-fold cross-validation).
TARGETS = {
    "DFEW": {"clips": 11_697, "shards": 64, "folds": 5, "train_clips": 11_697 * 4 // 5},
    "FERV39k": {"clips": 38_935, "shards": 128, "folds": 1, "train_clips": 31_088},
    "MAFW": {"clips": 9_172, "shards": 64, "folds": 5, "train_clips": 9_172 * 4 // 5},
}
CORES = (2, 16, 64)


# --- synthetic DFEW-like clips ------------------------------------------------------------


def make_clip(job: tuple[Path, int, int, int]) -> dict[str, Any]:
    """Render and encode one clip; returns its manifest row and shape (runs in a pool)."""
    from support.videos import write_video

    from dfer.demo import CLASSES, _draw_style, _render_clip, clip_rng

    root, seed, index, _ = job
    c = index % len(CLASSES)
    rng = clip_rng(seed, c, index)
    fps = int(rng.choice([25, 30]))
    seconds = float(rng.uniform(2.0, 5.0))
    num = int(round(seconds * fps))
    width, height = SIZES[int(rng.integers(len(SIZES)))]
    # The demo's face fills ~40% of its square; DFEW faces are roughly 1/4 to 1/2 the height.
    side = int(height * rng.uniform(0.55, 0.9)) // 2 * 2
    x0 = int(rng.integers(0, width - side + 1))
    y0 = int(rng.integers(0, height - side + 1))
    style = _draw_style(rng, (num, num), fps)
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = rng.integers(0, 256, 3, dtype=np.uint8)
    frames = []
    for face in _render_clip(CLASSES[c], style, rng, side, fps):
        frame = canvas.copy()
        frame[y0:y0 + side, x0:x0 + side] = face
        frames.append(frame)
    clip_id = f"clip_{index:05d}"
    rel = f"videos/{clip_id}.mp4"
    write_video(root / rel, frames, fps=fps, options={"crf": "23", "preset": "veryfast"})
    fold = (index // len(CLASSES)) % NUM_FOLDS + 1
    return {"row": f"{clip_id},{rel},{CLASSES[c]},{fold}", "frames": num, "width": width,
            "height": height, "face_px": int(side / 2.6)}  # the demo face is ~1/2.6 of its square


def make_dataset(root: Path, clips: int, seed: int, workers: int) -> dict[str, Any]:
    """Write ``clips`` clips and ``manifest.csv`` under ``root``; return their shape summary."""
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(root, seed, i, clips) for i in range(clips)]
    with Pool(workers) as pool:
        made = pool.map(make_clip, jobs, chunksize=1)
    (root / "manifest.csv").write_text(
        "clip_id,path,label,fold\n" + "\n".join(m["row"] for m in made) + "\n")
    frames = np.array([m["frames"] for m in made])
    return {
        "clips": clips, "source_frames": int(frames.sum()),
        "frames_per_clip_range": [int(frames.min()), int(frames.max())],
        "resolutions": sorted({f"{m['width']}x{m['height']}" for m in made}),
        "face_px_range": [min(m["face_px"] for m in made), max(m["face_px"] for m in made)],
        "bytes": sum(p.stat().st_size for p in (root / "videos").glob("*.mp4")),
    }


def configure(project: Path, data: Path, clips: int, clips_per_shard: int) -> dict[str, Any]:
    """Point the project copy's config at the synthetic dataset and a one-epoch tiny run."""
    import yaml

    cfg_path = project / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    shards = max(1, math.ceil(clips / clips_per_shard))
    cfg["datasets"] = [DATASET]
    cfg["dataset_defs"][DATASET] = {"layout": "demo", "root": str(data),
                                    "split_files": [str(data / "manifest.csv")],
                                    "num_shards": shards}
    cfg["captions"]["backend"] = "offline"
    tiny = cfg["train"]["runs"]["demo_tiny"]
    tiny["datasets"] = [DATASET]
    tiny["trainer"]["max_epochs"] = 1
    tiny["device"] = "cpu"
    cfg["train"]["runs"] = {RUN: tiny}
    cfg["train"]["zero_shot"] = []
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return {"num_shards": shards, "train_run": tiny}


# --- per-job sampling -----------------------------------------------------------------------


@dataclass
class Job:
    """What the sampler saw of one ``python -m dfer`` job process."""

    command: str
    started: float
    last_seen: float
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0


@dataclass
class Sampler:
    """Polls the descendants of one process for ``python -m dfer <command>`` jobs."""

    root_pid: int
    interval: float = 0.1
    jobs: dict[int, Job] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    @staticmethod
    def _hwm_mb(pid: int) -> float:
        """Peak resident size so far (``VmHWM``), MiB; 0 when the process is gone."""
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _poll(self) -> None:
        import psutil

        try:
            children = psutil.Process(self.root_pid).children(recursive=True)
        except psutil.Error:
            return
        now = time.time()
        for proc in children:
            try:
                job = self.jobs.get(proc.pid)
                if job is None:
                    argv = proc.cmdline()
                    if "-m" not in argv or argv[argv.index("-m") + 1:][:1] != ["dfer"]:
                        continue
                    rest = argv[argv.index("-m") + 2:]
                    job = Job(rest[0] if rest else "?", proc.create_time(), now)
                    self.jobs[proc.pid] = job
                times = proc.cpu_times()
                job.cpu_s = max(job.cpu_s, times.user + times.system)
                job.peak_rss_mb = max(job.peak_rss_mb, self._hwm_mb(proc.pid))
                job.last_seen = now
            except (psutil.Error, IndexError):
                continue

    def run(self) -> None:
        """Sample until :meth:`stop` (a thread target)."""
        while not self._stop.is_set():
            self._poll()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()


def snakemake(project: Path, targets: list[str], cores: int, log: Path) -> tuple[float, list[Job]]:
    """Run Snakemake on ``targets`` in ``project``; its wall time and the dfer jobs it ran."""
    cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", str(cores), "--nolock"]
    start = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=project, stdout=out, stderr=subprocess.STDOUT)
        sampler = Sampler(proc.pid)
        thread = threading.Thread(target=sampler.run, daemon=True)
        thread.start()
        code = proc.wait()
        sampler.stop()
        thread.join()
    wall = time.perf_counter() - start
    if code:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"snakemake {' '.join(targets)} failed (exit {code}):\n{tail}")
    return wall, list(sampler.jobs.values())


def stage_targets(stage: str) -> list[str]:
    """The files one stage's Snakemake call asks for (train: every fold's checkpoint only)."""
    from dfer.core import paths

    if stage == "train":
        return [paths.under("results", paths.fold_file_rel(DATASET, RUN, k, paths.CHECKPOINT))
                for k in range(1, NUM_FOLDS + 1)]
    return [f"{stage}_all"]


# --- figures --------------------------------------------------------------------------------


def projection(stages: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Hours per dataset and core count (assumptions in the module docstring)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, target in TARGETS.items():
        per_cores: dict[str, dict[str, float]] = {}
        for cores in CORES:
            hours: dict[str, float] = {}
            for stage, fig in stages.items():
                rate = fig["clips_per_job_second"]
                if stage == "train":
                    waves = math.ceil(target["folds"] / cores)
                    seconds = waves * target["train_clips"] / rate
                else:
                    waves = math.ceil(target["shards"] / cores)
                    seconds = waves * (target["clips"] / target["shards"]) / rate
                hours[stage] = round(seconds / 3600, 3)
            hours["total"] = round(sum(hours.values()), 3)
            per_cores[str(cores)] = hours
        out[name] = per_cores
    return out


def git_state() -> dict[str, Any]:
    """The commit measured and whether the decode stage's code had uncommitted changes (the
    decode stage was being sped up concurrently when this benchmark was written)."""
    def git(*a: str) -> str:
        proc = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=False)
        return proc.stdout.rstrip()

    changed = git("status", "--porcelain", "--", "src/dfer/video").splitlines()
    return {"head": git("log", "-1", "--oneline").strip(),
            "uncommitted_in_src_dfer_video": [line[3:] for line in changed]}


def write_markdown(res: dict[str, Any], path: Path) -> None:
    """The human summary beside the JSON."""
    data = res["data"]
    load = res.get("loadavg_at_start")
    git = res.get("git") or {}
    dirty = git.get("uncommitted_in_src_dfer_video") or []
    lines = [
        "# pipeline",
        "",
        f"Code: `{git.get('head', '?')}`; src/dfer/video "
        + (f"had uncommitted changes ({', '.join(dirty)})" if dirty else "had no uncommitted changes")
        + " when this ran. "
        + (f"The machine was shared with other jobs: load average {load[0]:.1f} / {load[1]:.1f} / "
           f"{load[2]:.1f} (1 / 5 / 15 min) at the start on {res.get('cpu_count', '?')} cores, so "
           "wall times and per-job rates are slower than on an idle machine."
           if load else ""),
        "",
        f"{res['date']}, {res['machine']}; N = {data['clips']} DFEW-like clips "
        f"({', '.join(data['resolutions'])}; {data['frames_per_clip_range'][0]}-"
        f"{data['frames_per_clip_range'][1]} frames at 25/30 fps; faces "
        f"{data['face_px_range'][0]}-{data['face_px_range'][1]} px), {res['num_shards']} shards, "
        f"`snakemake --cores {res['cores']}`, one call per stage. Generating the clips took "
        f"{res['generate_s']:.0f} s (not counted). Generated by `python benchmarks/bench_pipeline.py "
        f"--clips {data['clips']}`.",
        "",
        "| stage | wall s (Snakemake call) | clips/s (wall) | jobs | job s (sum) | clips per job-s "
        "| CPU/wall per job | peak RSS per job MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stage, f in res["stages"].items():
        lines.append(
            f"| {stage} | {f['wall_s']:.1f} | {f['clips_per_s']:.2f} | {f['jobs']} | "
            f"{f['job_seconds']:.1f} | {f['clips_per_job_second']:.2f} | {f['cpu_per_wall']:.2f} | "
            f"{f['peak_rss_mb']:.0f} |")
    total = res["total"]
    lines += [
        f"| **all** | {total['wall_s']:.1f} | {total['clips_per_s']:.2f} | | | | | "
        f"{total['peak_rss_mb']:.0f} |",
        "",
        f"Ratio, whole pipeline wall / sum of job seconds per core: "
        f"{res['ratios']['pipeline_wall_over_ideal']:.2f} (1.0: Snakemake adds nothing and the "
        "cores are never idle). Train = one epoch of the tiny demo model on CPU, every fold "
        f"({res['train_clips']} training-clip passes); `train` clips/s counts training clips. "
        "Peak RSS is each job's `VmHWM` read every 0.1 s, so a lower bound: a shard job peaks "
        "as it writes its outputs, just before it exits, and a read can miss that.",
        "",
        "Projected hours (shard jobs independent, one core each, `ceil(shards / cores)` waves; "
        "training one job per fold at the tiny model's CPU rate: a placeholder for ViT-B/16 on "
        "a GPU, see `benchmarks/gpu/`):",
        "",
        "| dataset | cores | decode | landmarks | parsing | captions | train (1 epoch, tiny) | total |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, per in res["projected_hours"].items():
        for cores, h in per.items():
            lines.append(f"| {name} | {cores} | " + " | ".join(
                f"{h[s]:.2f}" for s in ("decode", "landmarks", "parsing", "captions", "train"))
                + f" | {h['total']:.2f} |")
    lines += ["", "No GPU was used: landmarks and parsing ran the offline dlib / polygon backends."]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=300, help="synthetic clips (default 300)")
    parser.add_argument("--clips-per-shard", type=int, default=40,
                        help="clips per shard job (default 40; DFEW's configured 64 shards hold ~183)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)

    from project_copy import copy_project

    loadavg = [round(x, 2) for x in os.getloadavg()]
    git = git_state()
    work = args.keep or Path(tempfile.mkdtemp(prefix="dfer-bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    data, project = work / "data", work / "project"
    t0 = time.perf_counter()
    shape = make_dataset(data, args.clips, args.seed, args.cores)
    generate_s = time.perf_counter() - t0
    print(f"generated {args.clips} clips in {generate_s:.1f} s", file=sys.stderr)
    copy_project(project, clips_per_class=1)
    setup = configure(project, data, args.clips, args.clips_per_shard)
    log = work / "snakemake.log"

    stages: dict[str, dict[str, Any]] = {}
    manifest_rows = args.clips
    train_clips = manifest_rows * (NUM_FOLDS - 1)  # each fold trains on the other folds' clips
    for stage, command in STAGES:
        wall, jobs = snakemake(project, stage_targets(stage),
                               args.cores, log)
        mine = [j for j in jobs if j.command == command]
        job_s = sum(j.last_seen - j.started for j in mine)
        cpu_s = sum(j.cpu_s for j in mine)
        clips = train_clips if stage == "train" else manifest_rows
        stages[stage] = {
            "wall_s": round(wall, 3), "clips_per_s": round(clips / wall, 3), "jobs": len(mine),
            "job_seconds": round(job_s, 3),
            "clips_per_job_second": round(clips / job_s, 3) if job_s else float("nan"),
            "cpu_per_wall": round(cpu_s / job_s, 3) if job_s else float("nan"),
            "peak_rss_mb": round(max((j.peak_rss_mb for j in mine), default=0.0), 1),
        }
        print(f"{stage}: {stages[stage]}", file=sys.stderr)

    wall = sum(s["wall_s"] for s in stages.values())
    ideal = sum(s["job_seconds"] for s in stages.values()) / args.cores
    res = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
                   f"Python {platform.python_version()}",
        "loadavg_at_start": loadavg, "cpu_count": os.cpu_count(), "git": git,
        "shared_machine": True,
        "cores": args.cores, "num_shards": setup["num_shards"], "num_folds": NUM_FOLDS,
        "generate_s": round(generate_s, 1), "data": shape, "train_clips": train_clips,
        "stages": stages,
        "total": {"wall_s": round(wall, 3), "clips_per_s": round(args.clips / wall, 3),
                  "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values())},
        "ratios": {"pipeline_wall_over_ideal": round(wall / ideal, 3) if ideal else float("nan")},
        "projected_hours": projection(stages),
        "assumptions": ("shard jobs independent, one core each, ceil(shards/cores) waves; "
                        "training one job per fold, tiny demo model, one epoch, CPU rate"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.json").write_text(json.dumps(res, indent=2) + "\n")
    write_markdown(res, args.out / "pipeline.md")
    print(f"wrote {args.out / 'pipeline.json'}", file=sys.stderr)
    if args.keep is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
