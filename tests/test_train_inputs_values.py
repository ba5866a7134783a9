"""Which files a training / evaluation job reads, written out by hand (issue 25).

``dfer.train.inputs`` decides the declared inputs of the train and evaluate rules and the files
the trainer may open. The expected lists here are spelled out path by path, so a level that
reads the wrong stage, a lost suffix, a failures table in the wrong order or a check that no
longer names the file shows up. Files are tiny but real (Parquet / safetensors headers), since
every declared file is checked to be readable before anything is grouped.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import save_file

from dfer.core.integrity import DamagedArtifact
from dfer.methods.dferclip import DFERCLIPConfig
from dfer.methods.specs.fineclipper import FineCLIPERConfig
from dfer.train.inputs import (
    DataInputs,
    Needs,
    declared_files,
    kinds_read,
    needs_for,
    stages_read,
)


def test_needs_from_a_raw_block_or_a_config() -> None:
    raw = {"use_parsing": False, "use_landmarks": True, "use_captions": True}
    assert needs_for(raw) == Needs(parsing=False, landmarks=True, captions=True)
    assert needs_for({"use_parsing": True, "use_landmarks": False, "use_captions": False}) == Needs(parsing=True)
    # a parsed config: its registered method (here FineCLIPER) says which levels it reads
    cfg = FineCLIPERConfig(use_parsing=True, use_landmarks=False, use_captions=True)
    assert needs_for(cfg) == Needs(parsing=True, landmarks=False, captions=True)
    assert needs_for(FineCLIPERConfig(use_parsing=False, use_landmarks=True, use_captions=False)) == Needs(
        landmarks=True)
    # DFER-CLIP reads frames only, whether given as a block or as its config
    assert needs_for({"method": "dferclip"}) == Needs() == needs_for(DFERCLIPConfig())
    assert needs_for(None) == needs_for({})  # both: the model config's defaults
    assert needs_for(None) == Needs(parsing=True, landmarks=True, captions=True)  # FineCLIPER's: all on
    # an object of no registered method is refused, not read by attribute name
    with pytest.raises(ValueError, match="SimpleNamespace is not the config of a registered method"):
        needs_for(SimpleNamespace(use_parsing=True, use_landmarks=False, use_captions=True))


@pytest.mark.parametrize(("needs", "kinds", "stages"), [
    (Needs(), ["frames"], ["decode"]),
    (Needs(landmarks=True), ["frames", "landmarks"], ["decode", "landmarks"]),
    # parsing reads the landmarks too (their settings go into the checkpoint)
    (Needs(parsing=True), ["frames", "landmarks", "parsing"], ["decode", "landmarks", "parsing"]),
    (Needs(captions=True), ["frames", "captions"], ["decode", "captions"]),
    (Needs(True, True, True), ["frames", "landmarks", "parsing", "captions"],
     ["decode", "landmarks", "parsing", "captions"]),
])
def test_kinds_and_stages_read(needs: Needs, kinds: list[str], stages: list[str]) -> None:
    assert kinds_read(needs) == kinds
    assert stages_read(landmarks=needs.landmarks, parsing=needs.parsing, captions=needs.captions) == stages
    assert stages_read(needs.landmarks, needs.parsing, needs.captions) == stages  # positional order


def test_declared_files_path_by_path() -> None:
    got = declared_files("R", "ds", ["000", "001"], Needs(landmarks=True, captions=True))
    assert got == {
        "manifest": ["R/ds/manifest/manifest.parquet"],
        "frames": ["R/ds/frames/shard-000.parquet", "R/ds/frames/shard-000.safetensors",
                   "R/ds/frames/shard-001.parquet", "R/ds/frames/shard-001.safetensors"],
        "landmarks": ["R/ds/landmarks/shard-000.parquet", "R/ds/landmarks/shard-001.parquet"],
        "parsing": [],
        "captions": ["R/ds/captions/shard-000.parquet", "R/ds/captions/shard-001.parquet"],
        "landmark_features": [],
        "failures": ["R/ds/frames/shard-000.failures.parquet", "R/ds/frames/shard-001.failures.parquet",
                     "R/ds/landmarks/shard-000.failures.parquet", "R/ds/landmarks/shard-001.failures.parquet",
                     "R/ds/captions/shard-000.failures.parquet", "R/ds/captions/shard-001.failures.parquet"],
    }
    assert list(got) == ["manifest", "frames", "landmarks", "parsing", "captions", "landmark_features", "failures"]
    # S2D's maps: their own kind of input, with the frames only (no points, no parsing)
    s2d = declared_files("R", "ds", ["003"], Needs(landmark_features="mobilefacenet_conv4"))
    assert s2d["landmark_features"] == ["R/ds/landmark_features/shard-003.parquet",
                                        "R/ds/landmark_features/shard-003.safetensors"]
    assert s2d["landmarks"] == s2d["parsing"] == s2d["captions"] == []
    assert s2d["failures"] == ["R/ds/frames/shard-003.failures.parquet",
                               "R/ds/landmark_features/shard-003.failures.parquet"]
    parsing = declared_files(Path("/r"), "x", ["007"], Needs(parsing=True))
    assert parsing["parsing"] == ["/r/x/parsing/shard-007.parquet", "/r/x/parsing/shard-007.safetensors"]
    assert parsing["captions"] == [] and parsing["landmarks"] == ["/r/x/landmarks/shard-007.parquet"]


def _parquet(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"clip_id": ["a"]}), path)
    return path


def _tensors(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"a": np.zeros(1, np.uint8)}, str(path))
    return path


def _results(root: Path, shards: list[str], captions: list[str]) -> Path:
    """frames and landmarks of every shard, captions of ``captions``, failures of frames 010 and
    landmarks 002 only, and the shard manifests the shards are found from."""
    _parquet(root / "ds" / "manifest" / "manifest.parquet")
    for s in shards:
        _parquet(root / "ds" / "manifest" / f"shard-{s}.parquet")
        _parquet(root / "ds" / "frames" / f"shard-{s}.parquet")
        _tensors(root / "ds" / "frames" / f"shard-{s}.safetensors")
        _parquet(root / "ds" / "landmarks" / f"shard-{s}.parquet")
    for s in captions:
        _parquet(root / "ds" / "captions" / f"shard-{s}.parquet")
    _parquet(root / "ds" / "frames" / "shard-010.failures.parquet")
    _parquet(root / "ds" / "landmarks" / "shard-002.failures.parquet")
    return root


def test_from_results_groups_by_shard_and_orders_failures_by_stage(tmp_path: Path) -> None:
    res = _results(tmp_path, ["010", "002"], captions=["002", "010"])
    inputs = DataInputs.from_results(res, "ds", Needs(landmarks=True, captions=True))
    ds = res / "ds"
    assert inputs.dataset == "ds" and inputs.manifest == ds / "manifest" / "manifest.parquet"
    assert inputs.shards == ["002", "010"]  # in shard order
    assert inputs.files["frames"]["010"] == {".parquet": ds / "frames" / "shard-010.parquet",
                                             ".safetensors": ds / "frames" / "shard-010.safetensors"}
    assert inputs.path("captions", "002", ".parquet") == ds / "captions" / "shard-002.parquet"
    assert inputs.has("landmarks") and inputs.has("captions") and not inputs.has("parsing")
    # only the failures tables that exist, decode before landmarks
    assert inputs.failures == [("decode", ds / "frames" / "shard-010.failures.parquet"),
                               ("landmarks", ds / "landmarks" / "shard-002.failures.parquet")]
    with pytest.raises(KeyError, match=r"ds: no parsing file shard-002.parquet among the declared inputs; "
                                       r"the rule must declare every file the job reads"):
        inputs.path("parsing", "002", ".parquet")
    # the explicit shard list is used as given
    assert DataInputs.from_results(res, "ds", Needs(), shards=["010"]).shards == ["010"]


def test_from_results_leaves_captions_out_when_a_shard_has_none(tmp_path: Path) -> None:
    res = _results(tmp_path, ["000", "001"], captions=["000"])
    for s in ("000", "001"):
        _parquet(res / "ds" / "parsing" / f"shard-{s}.parquet")
        _tensors(res / "ds" / "parsing" / f"shard-{s}.safetensors")
    inputs = DataInputs.from_results(res, "ds", Needs(parsing=True, landmarks=True, captions=True))
    assert not inputs.has("captions") and inputs.has("landmarks") and inputs.has("parsing")
    with pytest.raises(FileNotFoundError, match=r"no shard manifests under .*other/manifest; "
                                                r"run the manifest stage first"):
        DataInputs.from_results(res, "other", Needs())


def test_from_files_sorts_shards_by_number_and_orders_failures(tmp_path: Path) -> None:
    man = _parquet(tmp_path / "manifest.parquet")
    frames = [_parquet(tmp_path / "frames" / "shard-1000.parquet"),
              _tensors(tmp_path / "frames" / "shard-1000.safetensors"),
              _parquet(tmp_path / "frames" / "shard-999.parquet"),
              _tensors(tmp_path / "frames" / "shard-999.safetensors")]
    fails = [_parquet(tmp_path / "captions" / "shard-999.failures.parquet"),
             _parquet(tmp_path / "other" / "shard-999.failures.parquet"),
             _parquet(tmp_path / "parsing" / "shard-999.failures.parquet"),
             _parquet(tmp_path / "frames" / "shard-999.failures.parquet"),
             _parquet(tmp_path / "frames" / "shard-1000.failures.parquet")]
    # any iterables of paths (read twice: checked, then grouped)
    inputs = DataInputs.from_files("d", str(man), {"frames": map(str, frames)}, iter(fails))
    assert inputs.shards == ["999", "1000"]  # by number, not as text
    assert inputs.manifest == man and set(inputs.files) == {"frames"}
    # stage order, then path ("shard-1000" < "shard-999" as text); a folder that is no stage last
    assert inputs.failures == [("decode", fails[4]), ("decode", fails[3]), ("parsing", fails[2]),
                               ("captions", fails[0]), ("other", fails[1])]


def test_from_files_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    man = _parquet(tmp_path / "manifest.parquet")
    f0 = _parquet(tmp_path / "frames" / "shard-000.parquet")
    t0 = _tensors(tmp_path / "frames" / "shard-000.safetensors")
    lm = _parquet(tmp_path / "landmarks" / "shard-000.parquet")
    with pytest.raises(ValueError, match=r"unknown input kind\(s\) \['faces'\]; expected "
                                         r"\['captions', 'frames', 'landmark_features', 'landmarks', 'parsing'\]"):
        DataInputs.from_files("d", man, {"frames": [f0, t0], "faces": [lm]})
    with pytest.raises(ValueError, match=r"landmarks/x.parquet: not a frames shard file "
                                         r"\(shard-NNN.parquet or .safetensors\)"):
        DataInputs.from_files("d", man, {"frames": [f0, t0, lm.rename(tmp_path / "landmarks" / "x.parquet")]})
    with pytest.raises(ValueError, match=r"^d: no frames shards among the declared inputs$"):
        DataInputs.from_files("d", man, {"frames": [], "landmarks": []})
    with pytest.raises(ValueError, match=r"^d: frames of shard 000 not declared \(shard-000.safetensors\)$"):
        DataInputs.from_files("d", man, {"frames": [f0]})
    with pytest.raises(ValueError, match=r"^d: landmarks of shard 001 not declared \(shard-001.parquet\)$"):
        DataInputs.from_files("d", man, {
            "frames": [f0, t0, _parquet(tmp_path / "frames" / "shard-001.parquet"),
                       _tensors(tmp_path / "frames" / "shard-001.safetensors")],
            "landmarks": [_parquet(tmp_path / "landmarks" / "shard-000.parquet")]})
    with pytest.raises(ValueError, match=r"^d: parsing of shard 000 not declared \(shard-000.parquet, .safetensors\)$"):
        DataInputs.from_files("d", man, {"frames": [f0, t0], "parsing": [
            _parquet(tmp_path / "parsing" / "shard-001.parquet")]})
    with pytest.raises(DamagedArtifact, match=r"shard-002.parquet"):
        DataInputs.from_files("d", man, {"frames": [f0, t0, tmp_path / "frames" / "shard-002.parquet"]})
