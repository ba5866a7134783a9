"""The report's stage table, every column, on stage outputs written by hand (issue 25).

Six listed clips a..f (classes x / y) and one the manifest refused; decode keeps four (two with
no face found, one from a single source frame) and fails two; landmarks, parsing and captions
tables of a few rows. Every number below is counted from those rows by hand.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dfer.core.artifacts import provenance, write_parquet
from dfer.report.stage_stats import STATS_COLUMNS, collect_stage_stats, stage_stats


def _table(path: Path, meta: dict | None = None, **columns: list) -> None:
    write_parquet(path, pd.DataFrame(columns), meta or provenance("test", 1))


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    ds = tmp_path / "ds"
    _table(ds / "manifest" / "manifest.parquet", clip_id=list("abcdef"), label=list("xxyxyx"))
    _table(ds / "manifest" / "shard-000.parquet", clip_id=list("abc"))
    _table(ds / "manifest" / "shard-001.parquet", clip_id=list("def"))
    _table(ds / "manifest" / "failures.parquet", clip_id=["g"], error_type=["missing_file"])
    # c, not the first row, is the clip of one source frame
    _table(ds / "frames" / "shard-000.parquet", clip_id=list("abc"), face_found_frac=[1.0, 0.0, 0.5],
           num_source_frames=[8, 8, 1])
    _table(ds / "frames" / "shard-001.parquet", clip_id=["d"], face_found_frac=[0.0], num_source_frames=[8])
    _table(ds / "frames" / "shard-000.failures.parquet", clip_id=["e", "e"], error_type=["corrupt", "corrupt"])
    _table(ds / "frames" / "shard-001.failures.parquet", clip_id=["f"], error_type=["decode_error"])
    _table(ds / "landmarks" / "shard-000.parquet", clip_id=["a", "a", "b", "b"], frame=[0, 1, 0, 1],
           has_face=[True, False, True, True])
    _table(ds / "landmarks" / "shard-000.failures.parquet", clip_id=[], error_type=[])
    _table(ds / "parsing" / "shard-000.parquet", clip_id=["a", "a"], frame=[0, 1])
    _table(ds / "captions" / "shard-000.parquet", {**provenance("captions", 1), "captions_cut_at_77": 2},
           clip_id=["a"], caption=["The lips part."])
    _table(ds / "captions" / "shard-001.parquet", clip_id=["b", "c"],
           caption=["The eyes close.", " ".join(["The brows rise and the lips part"] * 12)])
    # a dataset without manifest: its captions table has no caption column and no count
    other = tmp_path / "other"
    _table(other / "captions" / "shard-000.parquet", clip_id=["z"])
    # z: a video of one source frame; w: a still image (one frame by design, counted apart);
    # v: a video of eight
    _table(other / "frames" / "shard-000.parquet", clip_id=["z", "w", "v"], face_found_frac=[1.0, 1.0, 1.0],
           num_source_frames=[1, 1, 8], source_kind=["video", "image", "video"])
    return tmp_path


def test_every_column_of_every_stage(results: Path) -> None:
    table = collect_stage_stats(results, ["ds", "other"])
    assert list(table.columns) == STATS_COLUMNS
    rows = {(r["dataset"], r["stage"]): r for r in table.to_dict("records")}
    # every workflow stage has a row ("not run" where it left nothing: other's landmarks and
    # parsing); the opt-in landmark_features stage none, as it never ran
    assert list(rows) == [("ds", "manifest"), ("ds", "decode"), ("ds", "landmarks"), ("ds", "parsing"),
                          ("ds", "captions"), ("other", "decode"), ("other", "landmarks"),
                          ("other", "parsing"), ("other", "captions")]
    nothing = {"frames": None, "face_rate": None, "centre_crops": None, "one_frame_clips": None,
               "still_images": None, "captions_cut_at_77": None}

    def check(key: tuple[str, str], status: str = "ok", **want: object) -> None:
        got = {k: (None if pd.isna(v) else v) if not isinstance(v, str) else v for k, v in rows[key].items()}
        assert got == {"dataset": key[0], "stage": key[1], "status": status, **nothing, **want}

    check(("ds", "manifest"), shards=2, clips_ok=6, clips_failed=1, failure_types="missing_file: 1",
          lost_by_class="")
    # decode: 4 clips, b and d without a face (frac 0) -> 1 - 2 / 4; e failed twice (one clip), f once
    check(("ds", "decode"), shards=2, clips_ok=4, clips_failed=2, failure_types="corrupt: 2, decode_error: 1",
          face_rate=0.5, centre_crops=2, lost_by_class="x: 1, y: 1", one_frame_clips=1)
    # landmarks: 4 frames of 2 clips, 3 with a face
    check(("ds", "landmarks"), shards=1, clips_ok=2, clips_failed=0, failure_types="", frames=4,
          face_rate=0.75, lost_by_class="")
    check(("ds", "parsing"), shards=1, clips_ok=1, clips_failed=0, failure_types="", frames=2, lost_by_class="")
    # captions: 2 from shard 000's provenance, 1 counted in shard 001 (12 x 8 words > 77 tokens)
    check(("ds", "captions"), shards=1 + 1, clips_ok=3, clips_failed=0, failure_types="", lost_by_class="",
          captions_cut_at_77=3)
    # other's decode: z (a video of one frame) is a one-frame clip, w (an image) a still image
    check(("other", "decode"), shards=1, clips_ok=3, clips_failed=0, failure_types="", face_rate=1.0,
          centre_crops=0, lost_by_class="", one_frame_clips=1, still_images=1)
    for stage in ("landmarks", "parsing"):  # nothing counted: every count empty, not 0
        check(("other", stage), status="not run", shards=None, clips_ok=None, clips_failed=None,
              failure_types="", lost_by_class="")
    check(("other", "captions"), shards=1, clips_ok=1, clips_failed=0, failure_types="", lost_by_class="")


def test_no_datasets_and_empty_stages(results: Path) -> None:
    assert collect_stage_stats(results, []).empty
    assert list(collect_stage_stats(results, []).columns) == STATS_COLUMNS
    # a dataset with no artifacts at all: the four workflow stages, each "not run"
    missing = collect_stage_stats(results, ["missing"])
    assert missing[["dataset", "stage", "status"]].values.tolist() == [
        ["missing", s, "not run"] for s in ("decode", "landmarks", "parsing", "captions")]
    assert missing[["shards", "clips_ok", "clips_failed"]].isna().all().all()


def test_manifest_row_has_exactly_the_table_columns(results: Path) -> None:
    # stage_stats is public: its rows carry every column by name (the table would fill a
    # missing or misspelt key with NaN and hide it)
    assert stage_stats(results / "ds")[0] == {
        "dataset": "ds", "stage": "manifest", "status": "ok", "shards": 2, "clips_ok": 6,
        "clips_failed": 1, "failure_types": "missing_file: 1", "frames": None, "face_rate": None,
        "centre_crops": None, "lost_by_class": "", "one_frame_clips": None, "still_images": None,
        "captions_cut_at_77": None}


def test_empty_tables_tables_without_clip_id_and_other_stages_columns(tmp_path: Path) -> None:
    ds = tmp_path / "e"
    # decode and landmarks ran and kept nothing: no rate over zero clips or frames
    _table(ds / "frames" / "shard-000.parquet", clip_id=pd.Series([], dtype=str),
           face_found_frac=pd.Series([], dtype=float))
    _table(ds / "landmarks" / "shard-000.parquet", clip_id=pd.Series([], dtype=str),
           frame=pd.Series([], dtype=int), has_face=pd.Series([], dtype=bool))
    # a failures table without error_type: the clip counts as failed, with no cause to list
    _table(ds / "landmarks" / "shard-000.failures.parquet", clip_id=["q"])
    # parsing stats without clip_id (each row one clip), carrying columns that decode and
    # captions count: only decode counts clips of one frame and stills, only captions the cut
    _table(ds / "parsing" / "shard-000.parquet", frame=[0, 1, 2], num_source_frames=[1, 1, 1],
           source_kind=["image"] * 3, caption=[" ".join(["word"] * 100)] * 3)
    rows = {r["stage"]: r for r in stage_stats(ds)}
    assert list(rows) == ["decode", "landmarks", "parsing", "captions"]
    empty = dict.fromkeys(STATS_COLUMNS)
    assert rows["decode"] == {**empty, "dataset": "e", "stage": "decode", "status": "ok", "shards": 1,
                              "clips_ok": 0, "clips_failed": 0, "failure_types": "", "centre_crops": 0,
                              "lost_by_class": ""}
    assert rows["landmarks"] == {**empty, "dataset": "e", "stage": "landmarks", "status": "ok",
                                 "shards": 1, "clips_ok": 0, "clips_failed": 1, "failure_types": "",
                                 "frames": 0, "lost_by_class": ""}
    assert rows["parsing"] == {**empty, "dataset": "e", "stage": "parsing", "status": "ok", "shards": 1,
                               "clips_ok": 3, "clips_failed": 0, "failure_types": "", "frames": 3,
                               "lost_by_class": ""}
    assert rows["captions"]["status"] == "not run"
