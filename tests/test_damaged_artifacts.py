"""Deleted or cut-short artifacts (issue 24, item 3): noticed where they are read, rebuilt by
the next run, and never a silent loss in the report.

Each artifact kind a stage reads (manifest shard, frames tensors / index / failures, landmarks,
parsing tensors / table, captions) is deleted or truncated in a copy of a synthetic results
tree; the stage (or training's declared inputs) must stop with one line naming the file, what
is wrong and the command that rebuilds it, and the parse-time repair must remove exactly the
damaged job's other outputs. One test runs Snakemake itself: a deleted frames shard and a
truncated frames index are rebuilt by the next run (it said "Nothing to be done" before;
marked slow).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from support.dataset import write_synthetic_dataset

from dfer.cli import main
from dfer.core.artifacts import provenance, write_parquet
from dfer.core.integrity import DamagedArtifact, problem, repair_damaged_shards
from dfer.core.paths import shard_file
from dfer.train.evaluate import PREDICTIONS_SCHEMA
from dfer.train.inputs import DataInputs, Needs
from dfer.train.metrics import compute_metrics

REPO = Path(__file__).resolve().parents[1]
DS = "ds"
SHARDS = ["000", "001"]
LABELS = ["class0", "class1"]

#: (artifact folder, suffix) of every shard file a later stage reads
KINDS = [("manifest", ".parquet"), ("frames", ".safetensors"), ("frames", ".parquet"),
         ("frames", ".failures.parquet"), ("landmarks", ".parquet"),
         ("parsing", ".safetensors"), ("parsing", ".parquet"), ("captions", ".parquet")]
#: the files one shard job writes (its rule's outputs)
JOBS = {"frames": [".safetensors", ".parquet", ".failures.parquet"],
        "landmarks": [".parquet", ".failures.parquet"],
        "parsing": [".safetensors", ".parquet", ".failures.parquet"],
        "captions": [".parquet", ".failures.parquet"]}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic results tree (every stage's shards of 2 shards) with one evaluated fold."""
    root = tmp_path_factory.mktemp("pristine") / "results"
    write_synthetic_dataset(root, DS, num_classes=2, clips_per_class=4, frames=4, size=32,
                            num_shards=2)
    manifest = pd.read_parquet(root / DS / "manifest" / "manifest.parquet")
    test = manifest[manifest["test_fold"] == 1].sort_values("clip_id")
    rows = []
    for cid, label in zip(test["clip_id"], test["label_idx"], strict=True):
        probs = np.full(2, 0.5, np.float32)
        rows.append({"clip_id": cid, "label": LABELS[label], "label_idx": label, "pred_idx": 0,
                     "pred_label": LABELS[0], "prob": np.float32(0.5), "correct": label == 0,
                     "probs": probs})
    frame = pd.DataFrame(rows)
    fold = root / DS / "train" / "r" / "fold-1"
    write_parquet(fold / "predictions.parquet", frame, provenance("evaluate", 1, labels=LABELS),
                  schema=PREDICTIONS_SCHEMA)
    metrics = compute_metrics(frame["label_idx"], frame["pred_idx"], LABELS)
    metrics.update(dataset=DS, fold=1, run="r", trained_on=DS, zero_shot=False)
    (fold / "metrics.json").write_text(json.dumps(metrics))
    return root


@pytest.fixture
def results(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "results"
    shutil.copytree(pristine, copy)
    return copy


def damage(path: Path, how: str) -> str:
    """Delete ``path`` or cut it to 60% of its bytes; the problem the check must report."""
    if how == "delete":
        path.unlink()
        return "missing"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    return "truncated"


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _rebuild(path: Path) -> str:
    target = path.parent / f"shard-{path.name[6:9]}.parquet"
    return f"rebuild it with `snakemake --cores all --forcerun {target}`"


# --- where a stage reads: one line naming the file, the problem and the rebuild -----------


def _run_consumer(results: Path, folder: str, suffix: str, tmp_path: Path) -> tuple[int, str]:
    """Run the stage that reads (folder, suffix) of shard 000 as its rule would."""
    def f(stage: str, suf: str) -> str:
        return str(shard_file(results, DS, stage, "000", suf))

    out = tmp_path / "out"
    if folder == "manifest":
        argv = ["decode", "--manifest", f("manifest", ".parquet"), "--out-frames",
                str(out / "f.safetensors"), "--out-index", str(out / "f.parquet"),
                "--out-failures", str(out / "f.failures.parquet"), "--no-progress"]
    elif folder == "frames" and suffix != ".failures.parquet":
        argv = ["landmarks", "--frames", f("frames", ".safetensors"), "--index",
                f("frames", ".parquet"), "--out", str(out / "l.parquet"), "--out-failures",
                str(out / "l.failures.parquet"), "--params", '{"backend": "dlib"}']
    elif folder == "landmarks":
        argv = ["parsing", "--frames", f("frames", ".safetensors"), "--index",
                f("frames", ".parquet"), "--landmarks", f("landmarks", ".parquet"),
                "--out-maps", str(out / "p.safetensors"), "--out-index", str(out / "p.parquet"),
                "--out-failures", str(out / "p.failures.parquet"),
                "--params", '{"backend": "landmarks"}']
    else:  # parsing, captions and failures tables: the report reads them (training too)
        argv = ["report", "--results", str(results), "--datasets", DS, "--out",
                str(tmp_path / "report")]
    return main(argv), argv[0]


@pytest.mark.parametrize("how", ["delete", "truncate"])
@pytest.mark.parametrize(("folder", "suffix"), KINDS)
def test_a_stage_stops_in_one_line_naming_the_file_and_its_rebuild(results, tmp_path, capsys,
                                                                   folder, suffix, how):
    path = shard_file(results, DS, folder, "000", suffix)
    kind = damage(path, how)
    if (folder, suffix) == ("parsing", ".safetensors"):
        # read by training, not by the report (whose cards only lose their parsing overlay)
        with pytest.raises(DamagedArtifact) as info:
            DataInputs.from_results(results, DS, Needs(parsing=True, landmarks=True,
                                                       captions=True))
        line = str(info.value)
    else:
        code, stage = _run_consumer(results, folder, suffix, tmp_path)
        assert code == 1
        line = _one_line(capsys.readouterr().err)
        assert line.startswith(f"dfer {stage}: ")
        line = line[len(f"dfer {stage}: "):]
    assert line.startswith(f"{path}: {kind}")
    if folder == "manifest":
        assert line.endswith("the workflow rewrites it when it is parsed: run `snakemake -n` "
                             "(or `python -m dfer manifest --dataset DATASET`)")
    else:
        assert line.endswith(_rebuild(path))


@pytest.mark.parametrize(("folder", "suffix"), [k for k in KINDS if k[0] != "manifest"])
def test_training_inputs_name_a_damaged_file(results, folder, suffix):
    path = shard_file(results, DS, folder, "001", suffix)
    damage(path, "truncate")
    with pytest.raises(DamagedArtifact) as info:
        DataInputs.from_results(results, DS, Needs(parsing=True, landmarks=True, captions=True))
    assert str(info.value).startswith(f"{path}: truncated")
    assert "\n" not in str(info.value)


# --- when the workflow is parsed: the damaged job's other outputs go, so it re-runs ---------


def _tree(results: Path) -> dict[str, bytes]:
    return {str(p.relative_to(results)): p.read_bytes() for p in sorted(results.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("how", ["delete", "truncate"])
@pytest.mark.parametrize(("folder", "suffix"), [k for k in KINDS if k[0] != "manifest"])
def test_parse_time_repair_removes_exactly_the_damaged_jobs_outputs(results, tmp_path, folder,
                                                                    suffix, how, caplog):
    path = shard_file(results, DS, folder, "001", suffix)
    damage(path, how)
    before = _tree(results)
    removed = repair_damaged_shards(results, {DS: SHARDS}, workdir=tmp_path)
    job = [shard_file(results, DS, folder, "001", s) for s in JOBS[folder]]
    assert sorted(removed) == sorted(p for p in job if p.exists() or p in removed)
    assert not any(p.exists() for p in job)  # the job's target is gone: Snakemake re-runs it
    after = _tree(results)
    gone = {str(p.relative_to(results)) for p in job}
    assert after == {k: v for k, v in before.items() if k not in gone}  # nothing else touched
    assert f"{path}: {'missing' if how == 'delete' else 'truncated'}" in caplog.text
    assert repair_damaged_shards(results, {DS: SHARDS}, workdir=tmp_path) == []  # now whole


def test_parse_time_repair_leaves_a_running_workflow_alone(results, tmp_path, caplog):
    path = shard_file(results, DS, "frames", "000", ".safetensors")
    damage(path, "delete")
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text("")
    before = _tree(results)
    assert repair_damaged_shards(results, {DS: SHARDS}, workdir=tmp_path) == []
    assert _tree(results) == before
    assert "another Snakemake run holds this folder, so nothing was removed" in caplog.text


def test_a_shard_not_run_yet_is_not_damaged(results, tmp_path):
    for suffix in JOBS["captions"]:
        shard_file(results, DS, "captions", "000", suffix).unlink()
    assert repair_damaged_shards(results, {DS: SHARDS}, workdir=tmp_path) == []


# --- the report: no image dropped without a word -------------------------------------------


@pytest.mark.parametrize("how", ["delete", "truncate"])
def test_report_says_which_cards_lack_images_and_why(results, tmp_path, how):
    from dfer.report.write import build_report

    path = shard_file(results, DS, "frames", "000", ".safetensors")
    kind = damage(path, how)
    out = tmp_path / "report"
    build_report(results, [DS], out)
    manifest = pd.read_parquet(results / DS / "manifest" / "manifest.parquet")
    test = manifest[manifest["test_fold"] == 1]
    lost = sorted(test[test["shard"] == "000"]["clip_id"])
    assert 0 < len(lost) < len(test)  # the fixture's fold has clips in both shards
    md = (out / "report.md").read_text()
    assert f"{len(lost)} of {len(test)} gallery card(s) have no images:" in md
    assert f"- frames shard {path}: {kind}" in md
    assert f": {len(lost)} card(s) (" in md
    cards = _cards(out)
    without = sorted(c["id"] for c in cards if "img" not in c)
    assert without == lost
    assert all(c["noimg"].startswith(f"frames shard {path}: {kind}") for c in cards if "img" not in c)


def _cards(out: Path) -> list[dict]:
    text = next((out / "gallery").glob("*/cards.js")).read_text()
    return json.loads(text[text.index(",") + 1: text.rindex(")")])


def test_report_on_a_full_disk_names_the_file_and_leaves_nothing(results, tmp_path, monkeypatch,
                                                                 capsys):
    out = tmp_path / "report"
    assert main(["report", "--results", str(results), "--datasets", DS, "--out", str(out)]) == 0
    capsys.readouterr()
    before = _tree(out)
    real = Path.write_bytes

    def full_disk(self: Path, data: bytes) -> int:  # what write() raises: no file name
        if self.parent.name.endswith(".tmp") and self.name.endswith(".jpg"):  # a fold's staging
            real(self, data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    # another card cap: every fold is drawn anew (unchanged folds would be kept, writing nothing)
    code = main(["report", "--results", str(results), "--datasets", DS, "--out", str(out),
                 "--gallery-max", "3"])
    line = _one_line(capsys.readouterr().err)
    assert code == 1
    assert line.startswith(f"dfer report: cannot write {out / 'gallery'}/.")
    assert line.endswith(".jpg: No space left on device")
    assert sorted(p.name for p in out.iterdir()) == sorted({Path(k).parts[0] for k in before})
    assert _tree(out) == before  # the previous report is whole, no staging folder is left


# --- Snakemake: the next run rebuilds a deleted or truncated shard ------------------------


def _snakemake(project: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(project), "--cores", "2", *args],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "DFER_LOCAL_GPUS": "0"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.mark.slow  # three Snakemake runs: about a minute on an idle 2-core machine
def test_snakemake_rebuilds_a_deleted_frames_shard_and_a_truncated_index(tmp_path):
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["datasets"] = ["demo"]
    config["dataset_defs"] = {"demo": {**config["dataset_defs"]["demo"], "num_shards": 2,
                                       "demo_clips_per_class": 1}}
    config["decode"].update(num_frames=2, size=32)
    (project / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    _snakemake(project, "decode_all")
    frames = project / "results" / "demo" / "frames"
    ids = {s: pq.read_table(frames / f"shard-{s}.parquet").column("clip_id").to_pylist()
           for s in SHARDS}
    (frames / "shard-000.safetensors").unlink()
    damage(frames / "shard-001.parquet", "truncate")
    manifest = project / "results" / "demo" / "manifest" / "shard-001.parquet"
    whole = manifest.read_bytes()
    damage(manifest, "truncate")
    out = _snakemake(project, "decode_all")  # said "Nothing to be done" before
    assert "removed the job's other outputs" in out
    for s in SHARDS:
        for suffix in JOBS["frames"]:
            assert problem(frames / f"shard-{s}{suffix}") is None
        assert pq.read_table(frames / f"shard-{s}.parquet").column("clip_id").to_pylist() == ids[s]
    assert manifest.read_bytes() == whole  # rewritten when the workflow was parsed
    assert "Nothing to be done" in _snakemake(project, "-n", "decode_all")
