"""Issue 17, "your own dataset in ten minutes": each of the seven points a new user hit.

1. clips lost quietly (decode's no-face count, training's class check, face messages naming keys)
2. a worked overlay per dataset, dry-run on placeholder trees; the base config trains nothing
   that needs weights on a dataset a user merely names
3. config errors (runs included) caught at parse time in one line naming key and file
4. DFEW's zero-padding documented
5. an incomplete split-file set is an error naming the missing set_K files
6. ``snakemake -n`` writes only changed shard manifests, and ``dfer manifest --check`` nothing
7. a wrong ``root`` is one error
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from support.placeholder_trees import PLACEHOLDERS, placeholder_dfew, placeholder_ferv39k

from dfer.cli import main as cli_main
from dfer.config_check import config_problem
from dfer.core.artifacts import provenance, write_failures
from dfer.core.clip_losses import class_loss_problems, lost_clips
from dfer.manifests import ManifestError, build_manifest, sync_report
from dfer.train.data import ClipTable, DataConfig
from dfer.train.fit import ClassLossError, check_fold_classes
from dfer.train.inputs import DataInputs

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
BASE = REPO / "config" / "config.yaml"
META = provenance("test", 1)


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def merged(*overlays: dict[str, Any]) -> dict[str, Any]:
    from snakemake.utils import update_config

    config = load(BASE)
    for overlay in overlays:
        update_config(config, overlay)
    return config


# -- placeholder trees from data_manifests/examples ---------------------------------------------




def snakemake(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The repository's Snakefile in a project folder under ``tmp_path`` (its own config/)."""
    project = tmp_path / "project"
    if not project.exists():
        (project / "config").mkdir(parents=True)
        shutil.copy2(BASE, project / "config" / "config.yaml")
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(project), "--cores", "1", *args],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "DFER_LOCAL_GPUS": "0"},
    )


def worked_overlay(tmp_path: Path, name: str) -> Path:
    """config/examples/<name>.yaml with only its paths (and results) moved under ``tmp_path``."""
    overlay = load(REPO / "config" / "examples" / f"{name}.yaml")
    overlay["results"] = str(tmp_path / "results")
    overlay["dataset_defs"][name].update(PLACEHOLDERS[name](tmp_path / "data"))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def tree(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder`` with its mtime and bytes: "nothing changed on disk"."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- 2 + 4: worked overlays, dry-run as documented ---------------------------------------------


@pytest.mark.parametrize("name", ["dfew", "ferv39k", "mafw"])
def test_worked_overlay_dry_runs_on_a_placeholder_tree(tmp_path: Path, name: str) -> None:
    overlay = worked_overlay(tmp_path, name)
    # the documented form: targets before --configfile
    proc = snakemake(tmp_path, "decode_all", "train_all", "-n", "--configfile", str(overlay))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    folds = {"dfew": 5, "mafw": 5, "ferv39k": 1}[name]
    assert f"fineclip_vitb16/fold-{folds}/" in out and "demo_tiny" not in out
    assert not (tmp_path / "project" / "data" / "demo").exists()  # the demo is not generated


def test_base_config_trains_nothing_needing_weights_on_a_named_dataset() -> None:
    """Point 2: naming a dataset `dfew` no longer schedules five ViT-B/16 jobs."""
    runs = load(BASE)["train"]["runs"]
    assert runs["fineclip_vitb16"]["datasets"] == []
    assert all(run.get("datasets") is not None for run in runs.values())  # null would mean all


def test_docs_give_the_commands_and_the_zero_padding() -> None:
    doc = (REPO / "docs" / "your_data.md").read_text()
    assert "snakemake --cores all decode_all --configfile config/examples/dfew.yaml" in doc
    assert "--configfile=config/examples/dfew.yaml" in doc
    assert "zero-padded" in doc and "`00001`" in doc  # point 4
    for name in ("dfew", "ferv39k", "mafw"):
        assert f"config/examples/{name}.yaml" in doc


# -- 3: config errors at parse time -------------------------------------------------------------


@pytest.mark.parametrize(("overlay", "key", "words"), [
    ({"train": {"runs": {"demo_tiny": {"trainer": {"max_epoch": 5}}}}},
     "train.runs.demo_tiny.trainer.max_epoch", "unknown trainer key(s) ['max_epoch']"),
    ({"train": {"runs": {"demo_tiny": {"optim": {"lr": "1e-3"}}}}},
     "train.runs.demo_tiny.optim.lr", "must be a number, got '1e-3'"),
    ({"train": {"runs": {"demo_tiny": {"trainer": {"max_epochs": 2.5}}}}},
     "train.runs.demo_tiny.trainer.max_epochs", "must be an integer"),
    ({"train": {"runs": {"demo_tiny": {"model": {"temporal": "lstm"}}}}},
     "train.runs.demo_tiny.model.temporal", "model.temporal must be one of ['aim', 'attention', 'none']"),
    ({"dataset_defs": {"demo": {"layot": "demo"}}},
     "dataset_defs.demo.layot", "unknown key(s) ['layot']; allowed: "),
    ({"decode": {"detector": "cnn"}}, "decode.detector", "allowed: 'hog', 'mmod'"),
    ({"landmarks": {"upsample": 9}}, "landmarks.upsample", "9 is greater than the maximum of 3"),
])
def test_config_problem_is_one_line_naming_key_and_file(tmp_path: Path, overlay: dict, key: str,
                                                        words: str) -> None:
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(overlay))
    problem = config_problem(merged(overlay), SCHEMA, [str(BASE), str(path)])
    assert problem is not None and "\n" not in problem
    assert problem.startswith(f"config error at {key} (set in {path}): ")
    assert words in problem


def test_shipped_configs_have_no_problem() -> None:
    assert config_problem(load(BASE), SCHEMA) is None
    for path in sorted((REPO / "config").glob("*/*.yaml")):
        assert config_problem(merged(load(path)), SCHEMA) is None, path


def test_bad_run_setting_stops_snakemake_before_any_job(tmp_path: Path) -> None:
    """The issue's case: a typo in a run failed inside the job after Snakemake had deleted
    the previous checkpoint. Now the parse fails, in a few lines, and no file is touched."""
    overlay = worked_overlay(tmp_path, "dfew")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": {"runs": {"fineclip_vitb16": {"trainer": {"max_epoch": 5}}}}}))
    old = tmp_path / "results" / "dfew" / "train" / "fineclip_vitb16" / "fold-1" / "checkpoint.safetensors"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"previous fold")
    proc = snakemake(tmp_path, "--configfile", str(overlay), str(bad))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert (f"config error at train.runs.fineclip_vitb16.trainer.max_epoch (set in {bad}): "
            "unknown trainer key(s) ['max_epoch']") in out
    assert len(out.splitlines()) < 10, out
    assert old.read_bytes() == b"previous fold"
    assert not (tmp_path / "results" / "dfew" / "manifest").exists()  # nothing synced either


# -- 5 + 7: incomplete split sets, wrong root -------------------------------------------------


def test_partial_dfew_split_set_names_the_missing_files(tmp_path: Path) -> None:
    paths = placeholder_dfew(tmp_path, sets=(1, 2))
    with pytest.raises(ManifestError) as info:
        build_manifest("dfew", {"layout": "dfew", "num_shards": 2, **paths})
    text = str(info.value)
    assert "fold(s) 3, 4, 5 of 5 have no test clips" in text
    assert "set_3, set_4, set_5" in text and "`num_folds: 2`" in text
    # num_folds says otherwise: two folds, both with test clips
    build = build_manifest("dfew", {"layout": "dfew", "num_shards": 2, "num_folds": 2, **paths})
    assert build.num_folds == 2
    assert {1, 2} <= set(build.table.column("test_fold").to_pylist()) <= {0, 1, 2}


def test_ferv39k_without_its_test_file_is_an_error(tmp_path: Path) -> None:
    paths = placeholder_ferv39k(tmp_path)
    paths["split_files"] = paths["split_files"][:1]
    with pytest.raises(ManifestError, match="no test clips: the test split file"):
        build_manifest("ferv39k", {"layout": "ferv39k", "num_shards": 2, **paths})


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_wrong_root_is_one_error(tmp_path: Path, make: str) -> None:
    paths = placeholder_dfew(tmp_path)
    root = tmp_path / "nowhere"
    if make == "empty":
        root.mkdir()
    with pytest.raises(ManifestError) as info:
        build_manifest("dfew", {"layout": "dfew", "num_shards": 2, **paths, "root": str(root),
                                "on_missing": "skip"})
    assert len(info.value.problems) == 1
    word = "does not exist" if make == "missing" else "is an empty folder"
    assert f"dataset_defs.dfew.root: the dataset root {root} {word}" in info.value.problems[0]


# -- 6: what a dry run writes ------------------------------------------------------------------


def test_manifest_check_writes_nothing_and_names_the_shards_a_run_would_rewrite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    definition = {"layout": "dfew", "num_shards": 4, **placeholder_dfew(tmp_path / "data")}
    results = tmp_path / "results"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"results": str(results), "dataset_defs": {"dfew": definition}}))
    assert cli_main(["manifest", "--check", "--config", str(config), "--dataset", "dfew"]) == 0
    assert not results.exists()
    assert "rewrite (their shards re-run): 000, 001, 002, 003" in capsys.readouterr().out
    sync_report("dfew", definition, results)
    before = tree(results)
    # a new clip (id 99, fold 1 test) in one shard
    csv = Path(definition["split_files"][0]) / "test(single-labeled)" / "set_1.csv"
    csv.write_text(csv.read_text().rstrip("\n") + "\n99,3\n")
    (Path(definition["root"]) / "00099").mkdir()
    report = sync_report("dfew", definition, results, write=False)
    assert len(report.changed) == 1 and report.manifest_changed
    assert tree(results) == before
    assert sync_report("dfew", definition, results).changed == report.changed


def test_manifest_check_after_a_dry_run_sees_no_change(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """``--check`` reads the config as the Snakefile does (schema defaults filled in), so after
    the pipeline synced a dataset it reports no change: it said ``none (whole manifest would be
    rewritten)`` (seen first on a FERV39k split file saved with a BOM), because the manifest's
    metadata records the dataset section the Snakefile saw, defaults and all."""
    overlay = worked_overlay(tmp_path, "ferv39k")
    definition = load(overlay)["dataset_defs"]["ferv39k"]
    for name in definition["split_files"]:  # saved by a spreadsheet: a BOM before line 1
        split = Path(name)
        split.write_text("\ufeff" + split.read_text(encoding="utf-8"), encoding="utf-8")
    proc = snakemake(tmp_path, "decode_all", "-n", "--configfile", str(overlay))
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifests = tmp_path / "results" / "ferv39k" / "manifest"
    before = tree(manifests)
    assert cli_main(["manifest", "--check", "--config", str(overlay), "--dataset", "ferv39k"]) == 0
    out = capsys.readouterr().out
    assert ("shard manifests that a run would rewrite (their shards re-run): none (whole "
            "manifest unchanged); nothing was written (--check)") in out
    assert tree(manifests) == before


def test_dry_run_writes_only_changed_shards_and_says_so(tmp_path: Path) -> None:
    overlay = worked_overlay(tmp_path, "dfew")
    first = snakemake(tmp_path, "decode_all", "-n", "--configfile", str(overlay))
    assert first.returncode == 0, first.stderr[-3000:]
    manifests = tmp_path / "results" / "dfew" / "manifest"
    before = tree(manifests)
    again = snakemake(tmp_path, "decode_all", "-n", "--configfile", str(overlay))
    assert again.returncode == 0
    assert tree(manifests) == before  # unchanged data: the dry run writes nothing
    assert "dry run: dataset dfew" not in again.stdout + again.stderr


# -- 1: no clip lost without a loud word -------------------------------------------------------


def _fold_data(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """A 2-fold, 3-class manifest; clip s1 (fold 1's only *sadness* training clip) failed
    landmarks with no face, as in the issue."""
    results = tmp_path / "results"
    manifest = pd.DataFrame({
        "clip_id": ["a1", "a2", "h1", "h2", "s1", "s2"],
        "label": ["anger", "anger", "happiness", "happiness", "sadness", "sadness"],
        "test_fold": [1, 2, 1, 2, 2, 1],
    })
    (results / "ds" / "manifest").mkdir(parents=True)
    manifest.assign(label_idx=0, shard=0).to_parquet(results / "ds" / "manifest" / "manifest.parquet")
    write_failures(results / "ds" / "landmarks" / "shard-000.failures.parquet",
                   [{"clip_id": "s1", "stage": "landmarks", "source": "s1", "error_type": "no_face",
                     "message": "no face"}], META)
    return results, manifest


def _inputs(results: Path) -> DataInputs:
    """The files a job on ``ds`` declares that the class check reads: manifest and failures."""
    return DataInputs("ds", results / "ds" / "manifest" / "manifest.parquet", ["000"], {},
                      [("landmarks", results / "ds" / "landmarks" / "shard-000.failures.parquet")])


def _table(manifest: pd.DataFrame, drop: str) -> ClipTable:
    kept = manifest[manifest["clip_id"] != drop].reset_index(drop=True)
    return ClipTable(kept, ["anger", "happiness", "sadness"], 2, {"landmarks": 1})


def test_training_refuses_a_fold_whose_class_has_no_training_clips(tmp_path: Path) -> None:
    results, manifest = _fold_data(tmp_path)
    labels = ["anger", "happiness", "sadness"]
    with pytest.raises(ClassLossError) as info:
        check_fold_classes(_inputs(results), 1, labels, _table(manifest, "s1"), DataConfig())
    text = str(info.value)
    assert ("ds fold 1: class 'sadness' has no training clips in fold 1: all 1 were dropped "
            "(landmarks no_face: 1)") in text
    assert "decode.upsample" in text and "data.class_loss: warn" in text
    # fold 2 trains on s2 and lost nothing of it
    assert check_fold_classes(_inputs(results), 2, labels, _table(manifest, "s1"),
                              DataConfig())["class_problems"] == []


def test_class_loss_warn_trains_and_records_the_counts(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    results, manifest = _fold_data(tmp_path)
    cfg = DataConfig.from_dict({"class_loss": "warn"})
    out = check_fold_classes(_inputs(results), 1, ["anger", "happiness", "sadness"],
                             _table(manifest, "s1"), cfg)
    assert out["lost_training_clips"] == {"landmarks": {"anger": 0, "happiness": 0, "sadness": 1}}
    assert "class 'sadness' has no training clips" in caplog.text


def test_a_share_lost_above_the_limit_is_named() -> None:
    manifest = pd.DataFrame({"clip_id": [f"c{i}" for i in range(4)], "label": ["x"] * 4,
                             "test_fold": [2, 2, 2, 1]})
    lost = lost_clips(manifest, ["c0"], "/nonexistent")
    assert class_loss_problems(["x"], manifest, lost, 1, 0.5) == [
        "class 'x' lost 2 of its 3 training clips in fold 1 (not in the artifacts: 2)"]
    assert class_loss_problems(["x"], manifest, lost, 1, 0.7) == []


def test_config_rejects_a_bad_class_loss_setting() -> None:
    with pytest.raises(ValueError, match="'class_loss' must be one of 'error', 'warn', got 'ignore'"):
        DataConfig.from_dict({"class_loss": "ignore"})


def test_decode_counts_clips_kept_without_a_face(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from dfer.video import shard as decode_shard_module
    from dfer.video.api import DecodedClip

    def fake_decode(path: str, kind: str, cfg: Any, threads: int = 0) -> DecodedClip:
        found = 0.0 if "noface" in path else 1.0
        return DecodedClip(np.zeros((2, 16, 16, 3), np.uint8), np.arange(2, dtype=np.int32), 2,
                           25.0, 0.08, 16, 16, np.zeros(4, np.float32), found, 0.0)

    monkeypatch.setattr(decode_shard_module, "decode_clip", fake_decode)
    manifest = tmp_path / "shard-000.parquet"
    pd.DataFrame({"clip_id": ["a", "b"], "path": ["a.mp4", "noface.mp4"], "source_kind": "video",
                  "label": "anger", "label_idx": np.int32(0), "test_fold": np.int32(1)}).to_parquet(manifest)
    out = tmp_path / "frames"
    result = decode_shard_module.decode_shard(manifest, out / "s.safetensors", out / "s.parquet",
                                              out / "s.failures.parquet", {"size": 16}, progress=False)
    assert result.summary() == "2 clip(s) decoded, 0 failed, 1 with no face found (centre crop)"
    assert "no face found in 1 clip(s), kept as a centre crop: b" in caplog.text
    assert "decode.upsample" in caplog.text and "decode.on_no_face: fail" in caplog.text


def test_face_messages_name_the_keys_that_change_the_outcome() -> None:
    from dfer.landmarks import NoFaceError, detect_landmarks
    from dfer.video.api import DecodeConfig, decode_array
    from dfer.video.errors import NoFace

    blank = np.zeros((2, 96, 96, 3), np.uint8)
    with pytest.raises(NoFaceError) as lm:
        detect_landmarks(blank, {"backend": "dlib", "detector": "hog"})
    for key in ("landmarks.detector", "decode.upsample", "decode.detector"):
        assert key in str(lm.value)
    with pytest.raises(NoFace) as dec:
        decode_array(blank, DecodeConfig(on_no_face="fail", size=16))
    for key in ("decode.detector", "decode.upsample", "decode.escalate", "decode.on_no_face"):
        assert key in str(dec.value)
