"""Which clips of a dataset the preprocessing stages lost, by class and by stage.

A clip that one stage fails (no face for landmarks, a corrupt video for decode) is skipped by
training with no error, as its failure is recorded upstream. That is right for one clip in a
thousand and wrong when it empties a class: a fold whose training set has no *sadness* clip
trains a model that cannot predict sadness, and nothing said so. This module attributes
every lost clip to the first stage whose failures table lists it, so the training check
(:func:`class_loss_problems`) and the report's stage table name the class and the stage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from dfer.core.paths import STAGE_DIRS, failure_files

#: Stage name for a lost clip that no failures table lists (e.g. a shard not yet processed).
UNRECORDED = "not in the artifacts"

LOST_COLUMNS = ["clip_id", "label", "test_fold", "stage", "error_type"]


def stage_failures(dataset_dir: str | Path) -> pd.DataFrame:
    """``clip_id, stage, error_type``: every clip a stage recorded as failed, first stage only."""
    return read_failures([(stage, path) for stage, folder in STAGE_DIRS.items()
                          for path in failure_files(Path(dataset_dir) / folder)])


def read_failures(files: Iterable[tuple[str, Path]]) -> pd.DataFrame:
    """:func:`stage_failures` of given ``(stage, path)`` failures tables, in pipeline order
    (a training job reads only its declared files)."""
    rows: list[pd.DataFrame] = []
    for stage, path in files:
        table = pd.read_parquet(path, columns=None)
        if len(table) and "clip_id" in table:
            kinds = table.get("error_type", "")
            rows.append(pd.DataFrame({"clip_id": table["clip_id"].astype(str),
                                      "stage": stage, "error_type": kinds}))
    if not rows:
        return pd.DataFrame(columns=["clip_id", "stage", "error_type"])
    return pd.concat(rows, ignore_index=True).drop_duplicates("clip_id", keep="first")


def lost_clips(manifest: pd.DataFrame, kept: Iterable[str], dataset_dir: str | Path | None = None,
               failures: pd.DataFrame | None = None) -> pd.DataFrame:
    """Clips of ``manifest`` (``clip_id, label, test_fold``) not in ``kept``, with their stage
    (from ``failures``, :func:`read_failures`, or else the tables under ``dataset_dir``)."""
    kept_ids = {str(c) for c in kept}
    lost = manifest.loc[~manifest["clip_id"].astype(str).isin(kept_ids),
                        ["clip_id", "label", "test_fold"]].copy()
    lost["clip_id"] = lost["clip_id"].astype(str)
    if failures is None:
        if dataset_dir is None:
            raise ValueError("lost_clips needs the failures tables or the dataset folder")
        failures = stage_failures(dataset_dir)
    lost = lost.merge(failures, on="clip_id", how="left")
    lost["stage"] = lost["stage"].fillna(UNRECORDED)
    lost["error_type"] = lost["error_type"].fillna("")
    return lost[LOST_COLUMNS].reset_index(drop=True)


def _stages_text(lost: pd.DataFrame) -> str:
    """``landmarks no_face: 1, decode corrupt: 2``."""
    keys = [f"{s} {e}".strip() for s, e in zip(lost["stage"], lost["error_type"], strict=True)]
    counts = pd.Series(keys).value_counts()
    return ", ".join(f"{k}: {int(n)}" for k, n in sorted(counts.items()))


def class_loss_problems(labels: Iterable[str], manifest: pd.DataFrame, lost: pd.DataFrame,
                        fold: int, max_loss: float) -> list[str]:
    """Classes of fold ``fold``'s training set that are empty or lost more than ``max_loss``.

    ``manifest`` has every listed clip (``label, test_fold``); ``lost`` is :func:`lost_clips`.
    One sentence per class, naming the stages that dropped its clips.
    """
    train = manifest[manifest["test_fold"] != fold]
    lost_train = lost[lost["test_fold"] != fold]
    problems: list[str] = []
    for label in labels:
        listed = int((train["label"] == label).sum())
        gone = lost_train[lost_train["label"] == label]
        kept = listed - len(gone)
        if listed == 0:
            problems.append(f"class {label!r} has no training clips in fold {fold}: the split "
                            "files list none")
        elif kept <= 0:
            problems.append(f"class {label!r} has no training clips in fold {fold}: all {listed} "
                            f"were dropped ({_stages_text(gone)})")
        elif len(gone) / listed > max_loss:
            problems.append(f"class {label!r} lost {len(gone)} of its {listed} training clips in "
                            f"fold {fold} ({_stages_text(gone)})")
    return problems


def advice(lost: pd.DataFrame) -> str:
    """The config keys that bring lost clips back, chosen by why they were lost."""
    tips = []
    if (lost["error_type"] == "no_face").any():
        tips.append("no_face: raise decode.upsample or set decode.detector: mmod (smaller faces), "
                    "or landmarks.detector: crop (trust the decode crop)")
    if (lost["stage"] == UNRECORDED).any():
        tips.append(f"'{UNRECORDED}': run every stage on every shard first")
    return "; ".join(tips)


def lost_per_class(lost: pd.DataFrame, labels: Iterable[str] | None = None) -> Mapping[str, dict[str, int]]:
    """``stage -> {label: lost clips}`` (every label of ``labels`` present, zeros included)."""
    order = list(labels) if labels is not None else sorted(set(lost["label"]))
    out: dict[str, dict[str, int]] = {}
    for stage, part in lost.groupby("stage", sort=False):
        counts = part["label"].value_counts()
        out[str(stage)] = {label: int(counts.get(label, 0)) for label in order}
    return out
