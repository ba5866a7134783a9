"""What every cluster job pays before it works: Snakefile parse and Python start-up.

A SLURM job runs ``python -m snakemake --mode remote --target-jobs <one job> ...`` on its
node (the executor plugin's command line), which parses the whole Snakefile, then runs the
job's ``python -m dfer <stage>``. At FERV39k size (38,935 clips, 128 shards) this measures,
for the code of this checkout (``after``) and of a baseline revision (``before``, default the
commit before cluster jobs stopped re-syncing manifests), in the same run on the same data:

* ``remote_parse_<rule>``: that remote-mode Snakemake command as a dry run (``-n``): parse +
  config check + manifest handling + the job's DAG, for one ``decode`` and one ``train`` job;
* ``login_dry_run``: ``snakemake -n`` of every decode job where the user starts it (it syncs
  the manifests, nothing changed);
* ``snakemake_floor``: the same remote-mode command on a one-rule Snakefile: what Snakemake
  itself costs per job (its imports, the executor plugins it loads), whatever the workflow;
* ``startup_<stage>``: a fresh interpreter importing what ``python -m dfer <stage>`` imports
  before its first clip (the same code before and after: the floor a job cannot avoid).

Each figure is the median of ``--repeats`` fresh processes; before and after take turns so
that load on a shared machine hits both alike. The synthetic clips are files of a few bytes
(the manifest stats them; nothing decodes them).

    python benchmarks/bench_job_overhead.py                  # writes results/job_overhead.{json,md}
    python benchmarks/bench_job_overhead.py --clips 2000 --repeats 1 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
PROJECT_PARTS = ("Snakefile", "workflow", "config", "envs", "src")
#: the last commit whose cluster jobs re-synced every manifest and checked the whole config
DEFAULT_BASELINE = "948f741"
FERV39K_CLIPS = 38_935
FERV39K_SHARDS = 128
LABELS = ("happiness", "sadness", "neutral", "anger", "surprise")  # the demo layout's classes
#: what each stage's job imports before its first clip (``dfer.stages.<stage>.run``)
STARTUP = {
    "decode": "dfer.video.shard",
    "landmarks": "dfer.landmarks.shard",
    "parsing": "dfer.parsing.shard",
    "captions": "dfer.captions.shard",
    "train": "dfer.train.fit",
    "evaluate": "dfer.train.evaluate",
}


def make_dataset(root: Path, clips: int) -> dict:
    """A ``demo``-layout dataset of ``clips`` fake videos in FERV39k's 128 shards."""
    videos = root / "videos"
    videos.mkdir(parents=True)
    lines = ["clip_id,path,label,fold"]
    for i in range(clips):
        cid = f"clip_{i:06d}"
        (videos / f"{cid}.mp4").write_bytes(cid.encode())
        lines.append(f"{cid},videos/{cid}.mp4,{LABELS[i % len(LABELS)]},{i % 2 + 1}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return {"layout": "demo", "root": str(root), "split_files": [str(root / "manifest.csv")],
            "num_shards": FERV39K_SHARDS}


def make_project(dest: Path, revision: str | None, definition: dict) -> Path:
    """The workflow of ``revision`` (None: this checkout) in ``dest``, configured for the
    synthetic dataset with the shipped config's tiny run training on it."""
    dest.mkdir(parents=True)
    if revision is None:
        for part in PROJECT_PARTS:
            src = REPO / part
            if src.is_dir():
                shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, dest / part)
    else:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, *PROJECT_PARTS],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    cfg = yaml.safe_load((dest / "config" / "config.yaml").read_text())
    cfg["results"] = str(dest / "results")
    cfg["datasets"] = ["ferv"]
    cfg["dataset_defs"] = {"ferv": definition}
    run = cfg["train"]["runs"]["demo_tiny"]
    run["datasets"] = ["ferv"]
    run["model"].update(use_parsing=False, use_captions=False)
    cfg["train"]["runs"] = {"demo_tiny": run}
    (dest / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def placeholder_inputs(project: Path) -> None:
    """Empty frames / landmarks files of every shard: a train job's declared inputs exist,
    as they would on a cluster by the time it runs (nothing reads them in a dry run)."""
    results = project / "results" / "ferv"
    for stage, suffixes in (("frames", (".safetensors", ".parquet", ".failures.parquet")),
                            ("landmarks", (".parquet", ".failures.parquet"))):
        (results / stage).mkdir(parents=True, exist_ok=True)
        for s in range(FERV39K_SHARDS):
            for suffix in suffixes:
                (results / stage / f"shard-{s:03d}{suffix}").write_bytes(b"")


def snakemake(project: Path, *args: str) -> float:
    """Seconds of one Snakemake process in ``project`` (fails loudly)."""
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", *args], cwd=project,
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} in {project} failed:\n{proc.stderr[-3000:]}"
                           f"{proc.stdout[-3000:]}")
    return seconds


def remote_job(project: Path, target: str, rule: str) -> float:
    """The command a SLURM job runs for one job (as snakemake-executor-plugin-slurm builds it,
    less the resource flags), as a dry run."""
    return snakemake(project, "--snakefile", str(project / "Snakefile"), "--target-jobs", target,
                     "--allowed-rules", rule, "--cores", "all", "--attempt", "1", "--force",
                     "--target-files-omit-workdir-adjustment", "--max-inventory-time", "0",
                     "--no-hooks", "--nolock", "--ignore-incomplete", "--mode", "remote", "-n")


FLOOR_SNAKEFILE = """
rule one:
    output: "one.txt"
    shell: "touch {output}"
"""


def startup(project: Path, module: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], env=env, check=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=FERV39K_CLIPS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision measured as `before`")
    parser.add_argument("--no-write", action="store_true", help="print, do not write results/")
    args = parser.parse_args(argv)

    load = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dfer-overhead-") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        definition = make_dataset(tmp_path / "data", args.clips)
        make_seconds = time.perf_counter() - t0
        projects = {"before": make_project(tmp_path / "before", args.baseline, definition),
                    "after": make_project(tmp_path / "after", None, definition)}
        floor = tmp_path / "floor"
        floor.mkdir()
        (floor / "Snakefile").write_text(FLOOR_SNAKEFILE)
        first_sync = {}
        for name, project in projects.items():  # the login node's first parse writes them
            first_sync[name] = snakemake(project, "-n", "--cores", "1", "decode_all")
            placeholder_inputs(project)
        runs: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
        jobs = {"decode": "decode:dataset=ferv,shard=000",
                "train": "train:dataset=ferv,run=demo_tiny,fold=1"}
        for _ in range(args.repeats):
            for name, project in projects.items():  # take turns: load hits both alike
                for rule, target in jobs.items():
                    runs[name].setdefault(f"remote_parse_{rule}", []).append(remote_job(project, target, rule))
                runs[name].setdefault("login_dry_run", []).append(
                    snakemake(project, "-n", "--cores", "1", "decode_all"))
        for _ in range(args.repeats):
            runs["after"].setdefault("snakemake_floor", []).append(remote_job(floor, "one:", "one"))
            for stage, module in STARTUP.items():
                runs["after"].setdefault(f"startup_{stage}", []).append(startup(projects["after"], module))

    medians = {name: {k: round(statistics.median(v), 3) for k, v in figures.items()}
               for name, figures in runs.items()}
    per_job = {}
    for rule, stage in (("decode", "decode"), ("train", "train")):
        before = medians["before"][f"remote_parse_{rule}"] + medians["after"][f"startup_{stage}"]
        after = medians["after"][f"remote_parse_{rule}"] + medians["after"][f"startup_{stage}"]
        per_job[rule] = {"before_s": round(before, 3), "after_s": round(after, 3),
                         "ratio": round(after / before, 3)}
    report = {
        "clips": args.clips, "shards": FERV39K_SHARDS, "repeats": args.repeats,
        "baseline": args.baseline,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average_at_start": [round(x, 2) for x in load],
        "dataset_seconds": round(make_seconds, 2),
        "first_sync_seconds": {k: round(v, 2) for k, v in first_sync.items()},
        "median_seconds": medians, "per_job": per_job,
        "runs": runs, "wall_seconds": round(time.perf_counter() - started, 1),
    }
    text = markdown(report)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "job_overhead.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / "job_overhead.md").write_text(text)
    return 0


def markdown(report: dict) -> str:
    m = report["median_seconds"]
    lines = [
        "# Per-job overhead on a cluster (`benchmarks/bench_job_overhead.py`)",
        "",
        f"{report['clips']:,} synthetic clips in {report['shards']} shards (FERV39k size); "
        f"{report['machine']}; median of {report['repeats']} fresh processes, before (`{report['baseline']}`) "
        f"and after taking turns; load average at the start "
        f"{' / '.join(str(x) for x in report['load_average_at_start'])} (1 / 5 / 15 min).",
        "",
        "| what every job pays (s) | before | after | after / before |",
        "|---|---|---|---|",
    ]
    for key, label in (("remote_parse_decode", "Snakefile parse on the node, one `decode` job"),
                       ("remote_parse_train", "Snakefile parse on the node, one `train` job"),
                       ("login_dry_run", "`snakemake -n decode_all` where the user starts it")):
        b, a = m["before"][key], m["after"][key]
        lines.append(f"| {label} | {b:.2f} | {a:.2f} | {a / b:.2f} |")
    lines += ["", f"Snakemake's own floor (the same remote-mode command on a one-rule Snakefile): "
              f"{m['after']['snakemake_floor']:.2f} s.",
              "", "Python start-up of a job's `python -m dfer <stage>` (imports before its first clip; "
              "the same code before and after):", "", "| stage | seconds |", "|---|---|"]
    for stage in STARTUP:
        lines.append(f"| {stage} | {m['after'][f'startup_{stage}']:.2f} |")
    lines += ["", "Per job, parse + start-up: " + "; ".join(
        f"`{rule}` {v['before_s']:.2f} s -> {v['after_s']:.2f} s ({v['ratio']:.2f}x)"
        for rule, v in report["per_job"].items()) + ".",
        "", f"First parse (writes all {report['shards']} shard manifests): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in report["first_sync_seconds"].items()) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
