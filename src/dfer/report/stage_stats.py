"""Per-dataset statistics of every preprocessing stage, read back from the artifacts.

The numbers a researcher checks before trusting a training run: how many clips each stage
processed, how many failed and why, how often the face detector found a face. They are read
from the artifacts themselves (not from logs), so the report is true to what is on disk.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from dfer.core.paths import (
    PARQUET,
    STAGE_DIRS,
    failure_files,
    manifest_failures_file,
    manifest_file,
    shard_file_name,
    stage_dir,
)
from dfer.core.sharding import shards_in

STATS_COLUMNS = [
    "dataset", "stage", "status", "shards", "clips_ok", "clips_failed", "failure_types",
    "frames", "face_rate", "centre_crops", "lost_by_class", "one_frame_clips",
    "still_images", "captions_cut_at_77",
]


#: The workflow's preprocessing stages: the stage table has a row for each, "not run" where the
#: stage left no artifacts (the configured runs read none of it, or it has not run yet).
#: Opt-in stages (``landmark_features``) get a row only when they ran.
WORKFLOW_STAGES = ("decode", "landmarks", "parsing", "captions")
#: ``status`` of a stage with no output tables
NOT_RUN = "not run"


def _not_run(dataset: str, stage: str) -> dict[str, object]:
    """The row of a stage without artifacts: nothing counted, so every count is empty (a 0
    would claim the stage ran and processed no clip)."""
    return {**dict.fromkeys(STATS_COLUMNS), "dataset": dataset, "stage": stage, "status": NOT_RUN,
            "failure_types": "", "lost_by_class": ""}


def _shard_tables(folder: Path) -> list[Path]:
    """The per-shard output tables of a stage (not its failures tables)."""
    return [folder / shard_file_name(s, PARQUET) for s in shards_in(folder, PARQUET)]


def _read_columns(path: Path, wanted: list[str]) -> pd.DataFrame:
    """Only the columns we count with; missing ones are simply absent (older schemas)."""
    names = set(pq.read_schema(path).names)
    return pq.read_table(path, columns=[c for c in wanted if c in names]).to_pandas()


def _failures(files: list[Path]) -> pd.DataFrame:
    tables = [pd.read_parquet(p) for p in files if p.exists()]
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["clip_id", "error_type"])


def _labels(manifest: Path) -> pd.Series:
    """clip_id -> class name from the dataset manifest (empty when it has no labels)."""
    if not manifest.exists() or "label" not in pq.read_schema(manifest).names:
        return pd.Series(dtype=str)
    table = pq.read_table(manifest, columns=["clip_id", "label"]).to_pandas()
    return pd.Series(table["label"].to_numpy(), index=table["clip_id"].astype(str))


def _lost_by_class(fails: pd.DataFrame, labels: pd.Series) -> str:
    """``"sadness: 1, anger: 2"``: the classes of the clips a stage lost, so that a stage that
    empties one class is visible in the report (a total count hides it)."""
    if not len(fails) or labels.empty:
        return ""
    ids = fails["clip_id"].astype(str).drop_duplicates()
    counts = labels.reindex(ids).dropna().value_counts()
    return ", ".join(f"{name}: {int(n)}" for name, n in sorted(counts.items()))


def stage_stats(dataset_dir: Path, stages: Collection[str] | None = None) -> list[dict[str, object]]:
    """One row per stage of ``dataset_dir`` (``results/{dataset}``): the manifest when it
    exists, every stage with artifacts (``status`` ok), and a ``status`` "not run" row with empty
    counts for each of :data:`WORKFLOW_STAGES` that has none.

    ``lost_by_class`` counts the clips the stage recorded as failed per class;
    ``centre_crops`` (decode) the clips kept with no face found, which later stages lose;
    ``one_frame_clips`` (decode) videos and frame folders of one frame, ``still_images``
    (decode) the images of a static dataset, one frame each by design.
    ``face_rate``: decode, the share of decoded clips in which a face was found (a clip's
    ``face_found_frac`` counts the frames its deciding pass examined, 1 of 1 for a clip the
    quick pass settles, so its mean would mix two meanings); landmarks, the share of frames.
    ``stages``: the stage folders to read (the report job's declared ones); the others are
    "not run" without being looked at (None: every folder there is).
    """
    rows: list[dict[str, object]] = []
    dataset = dataset_dir.name
    manifest = manifest_file(dataset_dir.parent, dataset)
    labels = _labels(manifest)
    if manifest.exists():
        fails = _failures([manifest_failures_file(dataset_dir.parent, dataset)])
        rows.append({
            "dataset": dataset, "stage": "manifest", "status": "ok", "shards": len(_shard_tables(manifest.parent)),
            "clips_ok": pq.read_metadata(manifest).num_rows, "clips_failed": len(fails),
            "failure_types": _failure_types(fails), "frames": None, "face_rate": None,
            "centre_crops": None, "lost_by_class": "", "one_frame_clips": None,
            "still_images": None, "captions_cut_at_77": None,
        })
    for stage, sub in STAGE_DIRS.items():
        folder = stage_dir(dataset_dir.parent, dataset, sub)
        declared = stages is None or sub in stages
        shards = _shard_tables(folder) if declared and folder.is_dir() else []
        if not shards:
            if stage in WORKFLOW_STAGES:
                rows.append(_not_run(dataset, stage))
            continue
        parts = [_read_columns(p, ["clip_id", "has_face", "face_found_frac", "frame",
                                   "num_source_frames", "source_kind"]) for p in shards]
        table = pd.concat(parts, ignore_index=True)
        fails = _failures(failure_files(folder))
        frames: int | None = None
        face_rate: float | None = None
        centre_crops: int | None = None
        if "has_face" in table.columns:  # landmarks: one row per frame
            frames = len(table)
            face_rate = float(table["has_face"].mean()) if frames else None
        elif "face_found_frac" in table.columns:  # decode: one row per clip
            centre_crops = int((table["face_found_frac"] <= 0).sum())
            face_rate = 1 - centre_crops / len(table) if len(table) else None
        elif "frame" in table.columns:  # parsing stats: one row per frame
            frames = len(table)
        rows.append({
            "dataset": dataset, "stage": stage, "status": "ok", "shards": len(shards),
            "clips_ok": int(table["clip_id"].nunique()) if "clip_id" in table else len(table),
            "clips_failed": int(fails["clip_id"].nunique()) if len(fails) else 0,
            "failure_types": _failure_types(fails), "frames": frames, "face_rate": face_rate,
            "centre_crops": centre_crops, "lost_by_class": _lost_by_class(fails, labels),
            "one_frame_clips": _one_frame_clips(table) if stage == "decode" else None,
            "still_images": _still_images(table) if stage == "decode" else None,
            "captions_cut_at_77": _captions_cut(shards) if stage == "captions" else None,
        })
    return rows


def _is_image(table: pd.DataFrame) -> pd.Series:
    if "source_kind" not in table.columns:
        return pd.Series(False, index=table.index)
    return table["source_kind"] == "image"


def _one_frame_clips(table: pd.DataFrame) -> int | None:
    """decode: clips decoded from one source frame (repeated as the whole clip); still images
    (a static dataset's clips, one frame by design) are counted apart (:func:`_still_images`)."""
    if "num_source_frames" not in table.columns:
        return None
    return int(((table["num_source_frames"] == 1) & ~_is_image(table)).sum())


def _still_images(table: pd.DataFrame) -> int | None:
    """decode: still images (``source_kind: image``) decoded."""
    if "source_kind" not in table.columns:
        return None
    return int(_is_image(table).sum())


def _captions_cut(shards: list[Path]) -> int | None:
    """captions: captions longer than CLIP's 77-token context, summed over the shards; from
    each shard's provenance, counted from its captions where the stage could not (vLLM env)."""
    from dfer.captions.clip_tokens import captions_cut
    from dfer.core.artifacts import read_meta

    total = 0
    for path in shards:
        cut = read_meta(path).get("captions_cut_at_77")
        if cut is None:
            names = set(pq.read_schema(path).names)
            if "caption" not in names:
                return None
            cut = captions_cut(pq.read_table(path, columns=["caption"]).column("caption").to_pylist())
            if cut is None:
                return None
        total += int(cut)
    return total


def _failure_types(fails: pd.DataFrame) -> str:
    """``"CorruptVideo: 2, NoFace: 1"``: the causes at a glance."""
    if not len(fails) or "error_type" not in fails:
        return ""
    counts = fails["error_type"].value_counts()
    return ", ".join(f"{name}: {int(n)}" for name, n in sorted(counts.items()))


def collect_stage_stats(results: Path, datasets: list[str],
                        stages: Mapping[str, Collection[str]] | None = None) -> pd.DataFrame:
    """Stage statistics of several datasets as one table (columns :data:`STATS_COLUMNS`);
    ``stages``: dataset -> the stage folders to read (None: all)."""
    rows = [row for ds in datasets for row in stage_stats(results / ds, None if stages is None else stages.get(ds, ()))]
    return pd.DataFrame(rows, columns=STATS_COLUMNS)
