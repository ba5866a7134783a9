"""The report reads only the stage folders its rule declares (``dfer report --stages``).

A study whose runs read only the frames (DFER-CLIP) declares no landmarks, parsing or
captions; folders of those left from an earlier study must not be read. Here they hold
garbage: read, they would raise; not read, the stage table says "not run" and the cards do
without them. (That the rule declares every file the job reads is checked end to end in
tests/test_pipeline_e2e.py::test_report_reads_only_its_declared_inputs.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dfer.core.artifacts import (
    FAILURES_SCHEMA,
    failures_frame,
    provenance,
    write_parquet,
    write_safetensors,
)
from dfer.core.integrity import DamagedArtifact
from dfer.core.paths import shard_file
from dfer.report import gallery as g
from dfer.report.stage_stats import collect_stage_stats
from dfer.stages.report import check_tables, stage_folders


def _tree(root: Path) -> tuple[Path, Path]:
    """Dataset ``ds``, one shard of clips a, b: frames (tensors and index), a manifest, one
    evaluated fold; landmarks, parsing and captions files that are not tables at all."""
    res = root / "results"
    meta = provenance("test", 1)
    ids = ["a", "b"]
    write_parquet(shard_file(res, "ds", "manifest", "000", ".parquet"), pd.DataFrame({"clip_id": ids}), meta)
    write_parquet(res / "ds" / "manifest" / "manifest.parquet", pd.DataFrame({"clip_id": ids, "label": ["x", "y"]}),
                  meta)
    write_safetensors(shard_file(res, "ds", "frames", "000", ".safetensors"),
                      {c: np.full((4, 16, 16, 3), 90, np.uint8) for c in ids}, meta)
    write_parquet(shard_file(res, "ds", "frames", "000", ".parquet"),
                  pd.DataFrame({"clip_id": ids, "face_found_frac": [1.0, 0.0]}), meta)
    write_parquet(shard_file(res, "ds", "frames", "000", ".failures.parquet"), failures_frame([]), meta,
                  schema=FAILURES_SCHEMA)
    for stage, suffix in (("landmarks", ".parquet"), ("parsing", ".safetensors"), ("parsing", ".parquet"),
                          ("captions", ".parquet")):
        path = shard_file(res, "ds", stage, "000", suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left over from another study, not a table")
    fold = res / "ds" / "train" / "r" / "fold-1"
    preds = pd.DataFrame({"clip_id": ids, "label": ["x", "y"], "label_idx": [0, 1], "pred_idx": [0, 0],
                          "pred_label": ["x", "x"], "prob": np.float32([0.9, 0.6]), "correct": [True, False],
                          "probs": [np.float32([0.9, 0.1]), np.float32([0.6, 0.4])]})
    write_parquet(fold / "predictions.parquet", preds, provenance("evaluate", 1, labels=["x", "y"]))
    (fold / "metrics.json").write_text(json.dumps({"dataset": "ds", "run": "r", "fold": 1, "uar": 0.5,
                                                   "war": 0.5, "labels": ["x", "y"]}))
    return res, fold / "metrics.json"


def test_stages_option_parses_dataset_and_folder() -> None:
    assert stage_folders(None, ["ds"]) is None
    assert stage_folders([], ["ds", "e"]) == {"ds": [], "e": []}
    assert stage_folders(["ds/frames", "e/captions", "ds/parsing"], ["ds", "e"]) == {
        "ds": ["frames", "parsing"], "e": ["captions"]}
    for bad in ("frames", "zz/frames", "ds/"):
        with pytest.raises(ValueError, match=rf"--stages '{bad}': expected DATASET/STAGE with DATASET one of \['ds'\]"):
            stage_folders([bad], ["ds"])


def test_undeclared_stage_folders_are_not_read(tmp_path: Path) -> None:
    res, metrics = _tree(tmp_path)
    frames_only = {"ds": ["frames"]}
    # every stage folder read: the garbage is found
    with pytest.raises(Exception, match="landmarks|parquet|Parquet"):
        collect_stage_stats(res, ["ds"])
    stats = collect_stage_stats(res, ["ds"], frames_only).set_index("stage")
    assert stats.loc["decode", "status"] == "ok" and stats.loc["decode", "centre_crops"] == 1
    assert list(stats.loc[["landmarks", "parsing", "captions"], "status"]) == ["not run"] * 3
    with pytest.raises(DamagedArtifact, match="landmarks/shard-000"):
        check_tables(res, ["ds"])
    check_tables(res, ["ds"], frames_only)  # the damaged undeclared tables are not looked at
    # the cards: frames, nothing from the undeclared stages, and their files not fingerprinted
    (_, art), (_, art_b) = g.clip_artifacts(res, "ds", ["a", "b"], {"frames"})
    assert art.frames is not None and art.frames[0, 0, 0, 0] == 90
    assert (art.points, art.maps, art.caption, art_b.maps) == (None, None, None, None)
    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow says about a non-Parquet file
        list(g.clip_artifacts(res, "ds", ["a"]))
    built = g.build_gallery(res, [metrics], tmp_path / "report", stages=frames_only)
    assert (built["cards"], built["no_images"]) == (2, [])
    inputs = json.loads((tmp_path / "report" / g.GALLERY_DIR / "ds.r.fold-1" / g.INPUTS_FILE).read_text())
    assert sorted(inputs["artifacts"]) == ["ds/frames/shard-000.safetensors", "ds/manifest/shard-000.parquet"]
