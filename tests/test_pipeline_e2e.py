"""The whole pipeline through Snakemake in the default suite: every rule runs once.

The demo at its smallest (two clips per class, two frames, one epoch) goes through decode,
landmarks, parsing, captions, train, evaluate, the fold summary, zero-shot (demo -> demo) and
the report, and then ``snakemake --report`` builds the HTML report. A broken command in any
rule file fails here, in CI, not only in the slow tests. The checks are about what each stage
hands on (every clip present, no failure rows, metrics within their ranges, the report
tables listing every fold), not about how well a two-frame, one-epoch model learns.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from project_copy import copy_project

from dfer.core.artifacts import read_parquet

CLIPS_PER_CLASS = 2
NUM_CLASSES = 5  # the demo's expressions

OVERLAY = {
    "decode": {"num_frames": 2, "detect_frames": 0},
    "captions": {"num_frames": 2},
    "train": {
        "runs": {"demo_tiny": {
            "device": "cpu",
            "data": {"num_frames": 2, "batch_size": 4, "num_workers": 0},
            "trainer": {"max_epochs": 1, "seed": 0, "log_every_n_steps": 1},
        }},
        "zero_shot": [{"run": "demo_tiny", "train": "demo", "eval": "demo"}],
    },
}


def snakemake(project: Path, *args: str, timeout: int = 2400) -> subprocess.CompletedProcess:
    """Run Snakemake in ``project``. The time limit only stops a hung run: the full pipeline takes
    about 3 minutes on 2 idle cores and took over 10 on a machine shared with other jobs."""
    return subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", *args], cwd=project,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str]:
    """A project copy after one full `snakemake --cores 2` run, and that run's log."""
    project = tmp_path_factory.mktemp("e2e") / "project"
    copy_project(project, clips_per_class=CLIPS_PER_CLASS)
    overlay = project / "config" / "smallest.yaml"
    overlay.write_text(yaml.safe_dump(OVERLAY, sort_keys=False))
    proc = snakemake(project, "--cores", "2", f"--configfile={overlay}")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    return project, log


#: the landmark-feature stage is opt-in (only a run whose method reads feature maps, S2D's,
#: schedules it), so the demo run above has no job of it: one shard is asked for by name, with
#: the one backend that runs without a weights file
LANDMARK_FEATURES = {"landmark_features": {"backend": "mobilefacenet", "random_init": True, "device": "cpu"}}


def test_every_rule_runs(finished: tuple[Path, str]) -> None:
    project, log = finished
    opt_in = project / "config" / "landmark_features.yaml"
    opt_in.write_text(yaml.safe_dump(LANDMARK_FEATURES, sort_keys=False))
    target = "results/demo/landmark_features/shard-000.parquet"
    proc = snakemake(project, target, "--cores", "1", "--configfile",
                     str(project / "config" / "smallest.yaml"), str(opt_in))
    log += proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    features = read_parquet(project / target)
    frames = read_parquet(project / "results" / "demo" / "frames" / "shard-000.parquet")
    assert sorted(features["clip_id"]) == sorted(frames["clip_id"])  # every decoded clip of the shard
    listed = snakemake(project, "--list-rules")
    assert listed.returncode == 0, listed.stderr[-2000:]
    # `<stage>_all` rules only gather targets for the command line; they have no job of their own
    every_rule = {name for name in listed.stdout.split() if not name.endswith("_all")}
    ran = set(re.findall(r"^(?:local)?rule (\w+):", log, flags=re.M))
    assert every_rule - ran == set(), f"rules that never ran: {sorted(every_rule - ran)}"


def test_every_clip_passes_every_stage(finished: tuple[Path, str]) -> None:
    project, _ = finished
    demo = project / "results" / "demo"
    clips = set(read_parquet(demo / "manifest" / "manifest.parquet")["clip_id"])
    assert len(clips) == CLIPS_PER_CLASS * NUM_CLASSES
    for stage in ("frames", "landmarks", "captions"):
        tables = sorted((demo / stage).glob("shard-*.parquet"))
        tables = [t for t in tables if not t.name.endswith(".failures.parquet")]
        seen = set(pd.concat([read_parquet(t) for t in tables])["clip_id"])
        assert seen == clips, (stage, clips ^ seen)
        failures = [read_parquet(f) for f in (demo / stage).glob("shard-*.failures.parquet")]
        assert sum(len(f) for f in failures) == 0, stage
    frames = pd.concat([read_parquet(t) for t in sorted((demo / "frames").glob("shard-*.parquet"))
                        if not t.name.endswith(".failures.parquet")])
    assert set(frames["frame_indices"].map(len)) == {2}


def test_folds_and_zero_shot_are_evaluated_on_their_clips(finished: tuple[Path, str]) -> None:
    project, _ = finished
    run = project / "results" / "demo" / "train" / "demo_tiny"
    manifest = read_parquet(project / "results" / "demo" / "manifest" / "manifest.parquet")
    for fold in (1, 2):
        metrics = json.loads((run / f"fold-{fold}" / "metrics.json").read_text())
        preds = read_parquet(run / f"fold-{fold}" / "predictions.parquet")
        held_out = set(manifest.loc[manifest["test_fold"] == fold, "clip_id"])
        assert set(preds["clip_id"]) == held_out
        assert 0.0 <= metrics["uar"] <= 1.0 and 0.0 <= metrics["war"] <= 1.0
        assert metrics["war"] == pytest.approx(float(preds["correct"].mean()))
        zs = read_parquet(run / "zeroshot-from-demo" / f"fold-{fold}" / "predictions.parquet")
        assert set(zs["clip_id"]) == set(manifest["clip_id"])  # zero-shot scores every clip
    summary = json.loads((run / "summary.json").read_text())
    assert summary["num_folds"] == 2 and summary["num_clips"] == len(manifest)


def test_report_tables_and_snakemake_report(finished: tuple[Path, str]) -> None:
    project, _ = finished
    report = project / "results" / "report"
    per_fold = pd.read_csv(report / "metrics.csv")
    assert len(per_fold[per_fold["dataset"] == "demo"]) >= 2
    stages = pd.read_csv(report / "stages.csv").set_index("stage")
    assert {"manifest", "decode", "landmarks", "parsing", "captions"} <= set(stages.index)
    assert set(stages["clips_ok"]) == {CLIPS_PER_CLASS * NUM_CLASSES}
    assert set(stages["clips_failed"]) == {0}
    for name in ("metrics.png", "confusion.png", "stages.png", "report.md", "report.html"):
        assert (report / name).stat().st_size > 0, name
    html = project / "report.html"
    proc = snakemake(project, f"--configfile={project / 'config' / 'smallest.yaml'}",
                     "--report", str(html))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    text = html.read_text(errors="replace")
    assert len(text) > 10_000 and "summary.csv" in text and "confusion.png" in text


def test_report_reads_only_its_declared_inputs(finished: tuple[Path, str], tmp_path: Path) -> None:
    """The report job, run again on a tree holding only the files its rule declares (as
    Snakemake recorded them for the job that ran), writes the same tables, report and
    gallery data: a file it read without declaring it would be missing there, and its
    absence would show (a stage "not run", a fold without cards, "not recorded" training)."""
    project, _ = finished
    overlay = f"--configfile={project / 'config' / 'smallest.yaml'}"
    proc = snakemake(project, "--detailed-summary", "--cores", "1", overlay)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    head = lines.index(next(x for x in lines if x.startswith("output_file\t")))
    cols = lines[head].split("\t")
    rows = [dict(zip(cols, x.split("\t"), strict=False)) for x in lines[head + 1:]]
    (job,) = [r for r in rows if r["output_file"] == "results/report/report.md"]
    declared = job["input-file(s)"].split(",")
    assert "results/demo/train/demo_tiny/fold-1/train.json" in declared
    assert "results/demo/train/demo_tiny/zeroshot-from-demo/fold-2/predictions.parquet" in declared
    assert "results/demo/frames/shard-000.safetensors" in declared
    # the undeclared rest of the results tree is left behind
    copy = tmp_path / "declared"
    for rel in declared:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project / rel, copy / rel)
    (copy / "results" / "logs").mkdir(parents=True)
    run = subprocess.run(["bash", "-c", job["shellcmd"]], cwd=copy, capture_output=True, text=True,
                         timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    ours, theirs = copy / "results" / "report", project / "results" / "report"
    gallery = sorted(str(p.relative_to(theirs)) for p in (theirs / "gallery").rglob("*.js"))
    assert len(gallery) == 1 + 4  # folds.js, and cards.js of 2 folds + 2 zero-shot folds
    for name in ("metrics.csv", "summary.csv", "stages.csv", "report.md", *gallery):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
