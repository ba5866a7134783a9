"""Training / evaluation data: the upstream artifacts of one dataset, joined on clip id.

The clip table holds only per-clip metadata (id, label, fold, shard and the positions of its
landmark points / caption), a few hundred bytes per clip, so the memory of a training process
does not grow with the dataset (issue 6). While it is built, landmark points and captions are
copied a shard at a time into a temporary :class:`dfer.train.shard_reader.SideStore` and read
back per clip with one positioned read; frames and parsing maps are memory-mapped one clip at a
time (``safe_open``) with at most ``DataConfig.max_open_shards`` shards of each kind open per
process (:class:`dfer.train.shard_reader.ShardReader`, LRU). A clip that failed in any stage
the model needs is absent from that stage's index; it is left out here (not an error: the
failure is already recorded upstream) and *counted once, at the stage that lost it*: the
table keeps every clip the split files list (``listed``) and every one it lost (``lost``,
with the stage and error type of the first failures table naming it, so a clip that failed
at decode is counted at decode, not nowhere). :meth:`ClipTable.account` turns them into the
``evaluated N of M`` numbers that the evaluation log, metrics.json, the report and the gallery
all print. Clips decoded from a single source frame (repeated ``T`` times) are flagged in
``one_frame`` and, with ``data.one_frame_clips: drop``, lost at decode; still images (the
static datasets' clips, ``source_kind: image``, one stored frame each) are flagged ``static``
instead, never ``one_frame``, and :func:`prepare_clip` repeats their frame to
``data.num_frames``. Landmark and parsing
images are rendered on the fly by :mod:`dfer.train.render`; a training flip mirrors the
landmark points and parsing labels before rendering, so left and right keep their colours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from dfer.core.artifacts import read_meta, read_parquet
from dfer.core.clip_losses import UNRECORDED, lost_clips, read_failures
from dfer.core.frame_sampling import uniform_indices
from dfer.core.paths import PARQUET, SAFETENSORS, manifest_file
from dfer.core.sharding import shard_name, shard_of, shards_in
from dfer.manifests.labels import label_order_note
from dfer.train.config import DataConfig
from dfer.train.inputs import KINDS, DataInputs, Needs, kinds_read, stages_read
from dfer.train.sampling import (
    AUGMENT_STREAM,
    Augment,
    apply_colour,
    apply_geometry,
    draw_augment,
    frame_indices,
)
from dfer.train.shard_reader import ShardReader, SideStore

__all__ = ["DataConfig", "Needs"]  # re-exported: their home is config / inputs

log = logging.getLogger(__name__)

Renderer = Callable[[np.ndarray, int], np.ndarray]
#: the stages whose settings a checkpoint records, for ``dfer predict`` to repeat them
PREPROCESSING_SECTIONS = ("decode", "landmarks", "parsing", "landmark_features")


#: Columns of :attr:`ClipTable.lost`: a listed clip the table cannot use, with the stage that
#: lost it and why (``error_type`` of its failure row; ``absent`` when the stage's output just
#: lacks it, ``one_frame`` for a clip dropped by ``data.one_frame_clips: drop``).
LOST_COLUMNS = ["clip_id", "label", "test_fold", "stage", "error_type"]


@dataclass(frozen=True)
class SplitAccount:
    """Which clips of one split (a fold's test clips, or every clip) a table can score.

    ``listed`` (M) counts every clip the split files put in the split, including those the
    manifest skipped for missing media; ``evaluated`` (N) those with every artifact the model
    reads; ``lost`` maps ``"stage error_type"`` to the count of the rest, each clip once at
    the first stage that lost it. The same numbers go to the log, metrics.json, the report
    and the gallery.
    """

    listed: int
    evaluated: int
    lost: dict[str, int]
    one_frame: int
    #: the lost clips themselves (LOST_COLUMNS)
    lost_clips: pd.DataFrame
    #: still images among the scored clips (a static dataset: all of them)
    static: int = 0

    @property
    def images(self) -> bool:
        """Every scored clip is a still image: the split is a static dataset's."""
        return self.evaluated > 0 and self.static == self.evaluated

    @property
    def complete(self) -> bool:
        return self.evaluated == self.listed

    def lost_text(self) -> str:
        """``decode corrupt: 1, landmarks no_face: 2`` (empty when nothing was lost)."""
        return ", ".join(f"{k}: {v}" for k, v in sorted(self.lost.items()))

    def text(self, what: str = "test clips", policy: str | None = None) -> str:
        """``evaluated 12 of 14 test clips (not scored: decode corrupt: 1, ...; counted as
        wrong)``; ``policy`` (``data.unscored_clips``) says what the metrics did with them."""
        out = f"evaluated {self.evaluated} of {self.listed} {what}"
        if self.lost:
            done = {"wrong": "; counted as wrong", "exclude": "; left out of the metrics"}
            out += f" (not scored: {self.lost_text()}{done.get(policy or '', '')})"
        if self.one_frame:
            out += f"; {self.one_frame} one-frame clip(s) among them"
        if self.static and not self.images:
            out += f"; {self.static} still image(s) among them"
        return out


@dataclass
class ClipTable:
    """The usable clips of a dataset: per-clip metadata; landmark points / captions in ``side``."""

    #: clip_id, label, label_idx, test_fold, shard, one_frame; with landmarks also ``lm_start``
    #: / ``lm_stop`` (the clip's rows in ``side``), with captions ``cap_offset`` /
    #: ``cap_length`` (-1 / 0 for a clip without one, where captions are optional)
    clips: pd.DataFrame
    labels: list[str]
    num_folds: int
    skipped: dict[str, int]  # stage -> number of listed clips lost there (from ``lost``)
    #: captions are used: wanted by the model and every shard of the dataset has a captions file
    has_captions: bool = False
    #: landmark points / captions of the clips (None when the model reads neither)
    side: SideStore | None = None
    #: the declared files the table was read from; the datasets read frames / parsing maps
    #: from these and from nowhere else
    inputs: DataInputs | None = None
    #: per stage read, the backend / model every shard shares (and what ``auto`` chose),
    #: from the provenance check the table was read after
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: every clip the split files list in the table's shards (clip_id, label, test_fold),
    #: those the manifest skipped for missing media included
    listed: pd.DataFrame | None = None
    #: the listed clips not in ``clips`` (:data:`LOST_COLUMNS`)
    lost: pd.DataFrame | None = None
    #: whose class order ``label_idx`` follows (dfer.manifests.labels.LABEL_ORDERS)
    label_order: str = ""

    def account(self, fold: int, split: str) -> SplitAccount:
        """:class:`SplitAccount` of ``split`` (:func:`fold_split`'s) of fold ``fold``."""
        clips = fold_split(self.clips, fold, split)
        listed = fold_split(self.listed, fold, split) if self.listed is not None else clips
        lost = (fold_split(self.lost, fold, split) if self.lost is not None
                else pd.DataFrame(columns=LOST_COLUMNS))
        keys = [f"{s} {e}".strip() for s, e in zip(lost["stage"], lost["error_type"], strict=True)]
        counts = {str(k): int(v) for k, v in pd.Series(keys, dtype=object).value_counts().items()}
        one_frame = int(clips["one_frame"].sum()) if "one_frame" in clips else 0
        static = int(clips["static"].sum()) if "static" in clips else 0
        return SplitAccount(len(listed), len(clips), counts, one_frame, lost.reset_index(drop=True),
                            static)

    @property
    def static(self) -> bool:
        """A still-image dataset: every usable clip is an image (accuracy, not WAR, in reports)."""
        if "static" not in self.clips or not len(self.clips):
            return False
        return bool(self.clips["static"].all())


def dataset_shards(results: str | Path, dataset: str) -> list[str]:
    """Shard labels of a dataset, from its synced shard manifests."""
    folder = manifest_file(results, dataset).parent
    shards = shards_in(folder, PARQUET)
    if not shards:
        raise FileNotFoundError(f"no shard manifests under {folder}; run the manifest stage first")
    return shards


def dataset_labels(results: str | Path, dataset: str) -> tuple[list[str], int]:
    """Ordered class names and number of folds from the manifest metadata."""
    return manifest_labels(manifest_file(results, dataset))


def manifest_labels(path: str | Path) -> tuple[list[str], int]:
    """Ordered class names and number of folds from a manifest file's metadata."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"manifest {path} does not exist; run the manifest stage first")
    meta = read_meta(path)
    labels = meta.get("labels")
    if not labels:
        raise ValueError(f"manifest {path} has no 'labels' in its metadata")
    return list(labels), int(meta.get("num_folds", 1))


def _safetensors_keys(path: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        return set(fh.keys())


def load_clip_table(
    results: str | Path, dataset: str, needs: Needs, shards: Sequence[str] | None = None,
    **options: Any,
) -> ClipTable:
    """:func:`read_clip_table` of the files :meth:`DataInputs.from_results` names (library
    callers; jobs pass their declared files to :func:`read_clip_table` directly)."""
    return read_clip_table(DataInputs.from_results(results, dataset, needs, shards), needs, **options)


def _shard_clips(inputs: DataInputs, shard: str, needs: Needs, captions: str,
                 side: SideStore | None, dropped: dict[str, str]) -> pd.DataFrame | None:
    """One shard's clips that every needed artifact has (None: an empty shard); a clip an
    artifact lacks is recorded in ``dropped`` (clip -> that artifact's stage).

    ``captions``: ``required`` (the clip needs one), ``optional`` (joined where present) or
    ``unused`` (not read).
    """
    def drop(index: pd.DataFrame, keep: Any, stage: str) -> pd.DataFrame:
        for clip_id in index.loc[~np.asarray(keep, dtype=bool), "clip_id"]:
            dropped.setdefault(str(clip_id), stage)
        return index[np.asarray(keep, dtype=bool)]

    index = read_parquet(inputs.path("frames", shard, PARQUET))
    if index.empty:
        return None
    sources = index.get("num_source_frames")
    kinds = index.get("source_kind")
    still = (np.asarray(kinds) == "image") if kinds is not None else np.zeros(len(index), bool)
    index = index[["clip_id", "label", "label_idx", "test_fold"]].copy()
    index["clip_id"] = index["clip_id"].astype(str)
    index["shard"] = shard
    # a still image has one frame by design: static, not one_frame (which flags videos and
    # frame folders that turned out to hold a single frame)
    index["one_frame"] = ((np.asarray(sources) == 1) & ~still) if sources is not None else False
    index["static"] = still
    index = drop(index, index["clip_id"].isin(_safetensors_keys(inputs.path("frames", shard, SAFETENSORS))),
                 "decode")
    if needs.landmarks:
        assert side is not None
        points = side.add_landmarks(inputs.path("landmarks", shard, PARQUET))
        index = drop(index, index["clip_id"].isin(points["clip_id"]), "landmarks")
        index = index.merge(points, on="clip_id", how="inner", sort=False)
    if needs.parsing:
        index = drop(index, index["clip_id"].isin(_safetensors_keys(inputs.path("parsing", shard, SAFETENSORS))),
                     "parsing")
    if needs.landmark_features:
        from dfer.landmark_features.kinds import feature_kind
        from dfer.landmark_features.reader import check_kind

        path = inputs.path("landmark_features", shard, SAFETENSORS)
        # a shard of another kind (128-channel MobileFaceNet maps for a 68-channel model, or
        # the reverse) is refused before any clip is read
        check_kind(read_meta(path), path, feature_kind(needs.landmark_features))
        index = drop(index, index["clip_id"].isin(_safetensors_keys(path)), "landmark_features")
    if captions != "unused":
        assert side is not None
        caps = side.add_captions(inputs.path("captions", shard, PARQUET))
        if captions == "required":
            index = drop(index, index["clip_id"].isin(caps["clip_id"]), "captions")
        index = index.merge(caps, on="clip_id", how="left", sort=False)
        index["cap_offset"] = index["cap_offset"].fillna(-1).astype(np.int64)
        index["cap_length"] = index["cap_length"].fillna(0).astype(np.int64)
    return index


def listed_clips(manifest: Path, shards: Sequence[str]) -> pd.DataFrame:
    """``clip_id, label, test_fold`` of every clip the split files list in ``shards``: the
    manifest's rows plus the clips it skipped for missing media (``on_missing: skip``), which
    belong to their test split all the same."""
    table = read_parquet(manifest)
    meta = read_meta(manifest)
    wanted = set(shards)
    num_shards = int(meta.get("num_shards") or 0)
    if "shard" in table and num_shards:
        names = [shard_name(int(k), num_shards) for k in table["shard"]]
        table = table[[n in wanted for n in names]]
    rows = table[["clip_id", "label", "test_fold"]].copy()
    rows["clip_id"] = rows["clip_id"].astype(str)
    skipped = [s for s in meta.get("skipped") or [] if s.get("label") is not None
               and (not num_shards or shard_name(shard_of(str(s["clip_id"]), num_shards), num_shards) in wanted)]
    if skipped:
        extra = pd.DataFrame({"clip_id": [str(s["clip_id"]) for s in skipped],
                              "label": [s["label"] for s in skipped],
                              "test_fold": [int(s.get("test_fold") or 0) for s in skipped]})
        rows = pd.concat([rows, extra], ignore_index=True)
    rows["test_fold"] = rows["test_fold"].astype(np.int64)
    return rows.sort_values("clip_id", kind="stable").reset_index(drop=True)


def lost_table(listed: pd.DataFrame, kept: Sequence[str], inputs: DataInputs,
               dropped: dict[str, str], skipped_ids: set[str]) -> pd.DataFrame:
    """Every listed clip not in ``kept``, once, with the first stage that lost it: the first
    failures table listing it (pipeline order), else the manifest (missing media), else the
    stage whose output lacks it (``absent``), else :data:`UNRECORDED`."""
    lost = lost_clips(listed, kept, failures=read_failures(inputs.failures))
    for i, clip_id in enumerate(lost["clip_id"]):
        if lost.at[i, "stage"] != UNRECORDED:
            continue
        if clip_id in skipped_ids:
            lost.at[i, "stage"], lost.at[i, "error_type"] = "manifest", "missing_file"
        elif clip_id in dropped:
            stage = dropped[clip_id]
            lost.at[i, "stage"] = "decode" if stage == "one_frame" else stage
            lost.at[i, "error_type"] = "one_frame" if stage == "one_frame" else "absent"
    lost["test_fold"] = lost["test_fold"].astype(np.int64)
    return lost[LOST_COLUMNS]


def read_clip_table(inputs: DataInputs, needs: Needs, optional_captions: bool = False,
                    one_frame_clips: str = "keep") -> ClipTable:
    """Join the frames index with every artifact the model needs; leave out incomplete clips.

    Reads exactly ``inputs``. Captions are optional: when the model wants them and none were
    declared, it trains without the high level (logged). ``optional_captions``: a clip
    without a caption is kept (its ``cap_offset`` is -1); evaluation of a model that fuses
    captions uses this. ``one_frame_clips``: ``keep`` (flagged) or ``drop`` (lost at decode).
    Every clip the manifest lists and the table cannot use is in ``lost``, once.
    """
    if one_frame_clips not in ("keep", "drop"):
        raise ValueError(f"data.one_frame_clips must be 'keep' or 'drop', got {one_frame_clips!r}")
    dataset, shards = inputs.dataset, inputs.shards
    labels, num_folds = manifest_labels(inputs.manifest)
    use_captions = needs.captions and inputs.has("captions")
    if needs.captions and not use_captions:
        log.warning("%s: no captions among the inputs; training without the caption level", dataset)
    captions = "unused" if not use_captions else ("optional" if optional_captions else "required")
    # one setup per stage: shards made by different backends / models / params are refused
    from dfer.train.provenance import check_consistent

    backends = check_consistent(inputs, stages_read(needs.landmarks, needs.parsing, use_captions,
                                                    needs.landmark_features))
    side = SideStore() if needs.landmarks or use_captions else None
    dropped: dict[str, str] = {}
    rows = [_shard_clips(inputs, s, needs, captions, side, dropped) for s in shards]
    rows = [r for r in rows if r is not None]
    clips = (
        pd.concat(rows, ignore_index=True) if rows
        else pd.DataFrame(columns=["clip_id", "label", "label_idx", "test_fold", "shard", "one_frame",
                                   "static"])
    )
    clips = clips.sort_values("clip_id", kind="stable").reset_index(drop=True)
    clips["label_idx"] = clips["label_idx"].astype(np.int64)
    clips["test_fold"] = clips["test_fold"].astype(np.int64)
    clips["one_frame"] = clips["one_frame"].astype(bool)
    clips["static"] = clips["static"].astype(bool)
    if one_frame_clips == "drop" and clips["one_frame"].any():
        for clip_id in clips.loc[clips["one_frame"], "clip_id"]:
            dropped[str(clip_id)] = "one_frame"
        clips = clips[~clips["one_frame"]].reset_index(drop=True)
    listed = listed_clips(inputs.manifest, shards)
    meta = read_meta(inputs.manifest)
    skipped_ids = {str(s["clip_id"]) for s in meta.get("skipped") or []}
    lost = lost_table(listed, clips["clip_id"], inputs, dropped, skipped_ids)
    skipped = {str(k): int(v) for k, v in lost["stage"].value_counts().items()}
    _log_losses(dataset, listed, lost, clips)
    order = str(meta.get("label_order") or label_order_note(str(meta.get("layout", dataset)), labels))
    return ClipTable(clips, labels, num_folds, skipped, use_captions, side, inputs, backends,
                     listed, lost, order)


def _log_losses(dataset: str, listed: pd.DataFrame, lost: pd.DataFrame, clips: pd.DataFrame) -> None:
    """One warning with the lost clips by stage; one with the one-frame clips."""
    if len(lost):
        keys = [f"{s} {e}".strip() for s, e in zip(lost["stage"], lost["error_type"], strict=True)]
        counts = pd.Series(keys, dtype=object).value_counts()
        log.warning("%s: %d of %d listed clip(s) usable; %d lost, each at the first stage that "
                    "lost it (%s)", dataset, len(clips), len(listed), len(lost),
                    ", ".join(f"{k}: {int(v)}" for k, v in sorted(counts.items())))
    one_frame = int(clips["one_frame"].sum()) if len(clips) else 0
    if one_frame:
        shown = ", ".join(clips.loc[clips["one_frame"], "clip_id"].head(10))
        log.warning("%s: %d one-frame clip(s), their single frame repeated as a video (%s%s); "
                    "data.one_frame_clips: drop leaves them out", dataset, one_frame, shown,
                    " ..." if one_frame > 10 else "")


def fold_split(clips: pd.DataFrame, fold: int, split: str) -> pd.DataFrame:
    """``train``: clips with ``test_fold != fold``; ``test``: ``== fold``; ``all``: every clip."""
    if split == "train":
        sel = clips["test_fold"] != fold
    elif split == "test":
        sel = clips["test_fold"] == fold
    elif split == "all":
        sel = np.ones(len(clips), dtype=bool)
    else:
        raise ValueError(f"unknown split {split!r}; expected train, test or all")
    return clips[sel].reset_index(drop=True)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> uint8 ``[T, size, size, 3]`` (antialiased bilinear)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    x = images.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def default_renderers() -> tuple[Renderer, Renderer]:
    """``(render_landmarks, render_parsing)`` from :mod:`dfer.train.render` (imported lazily)."""
    try:
        from dfer.train.render import render_landmarks, render_parsing
    except ImportError as exc:  # pragma: no cover - depends on the render module being present
        raise ImportError(
            "dfer.train.render (render_landmarks / render_parsing) is needed for the middle level; "
            "switch it off with use_parsing/use_landmarks: false"
        ) from exc
    return render_landmarks, render_parsing


class ClipDataset(Dataset):
    """One item per clip: uint8 images per enabled level, caption, label and id.

    Reads only the files in ``table.inputs`` (the job's declared inputs).
    """

    def __init__(
        self,
        dataset: str,
        clips: pd.DataFrame,
        table: ClipTable,
        needs: Needs,
        cfg: DataConfig,
        image_size: int,
        train: bool,
        seed: int = 0,
        renderers: tuple[Renderer, Renderer] | None = None,
    ) -> None:
        self.dataset = dataset
        self.clips = clips.reset_index(drop=True)
        self.table = table
        self.needs = needs
        self.cfg = cfg
        self.size = int(cfg.image_size or image_size)
        self.train = train
        self.seed = seed
        self.epoch = 0
        self._renderers = renderers
        if table.inputs is None:
            raise ValueError("the clip table carries no input files; build it with read_clip_table")
        if needs.landmark_features and train and (cfg.flip or cfg.rotation or cfg.crop_scale is not None):
            raise ValueError("data.flip / rotation / crop_scale move the frames, but the stored landmark "
                             "feature maps cannot follow them (they were computed on the unaugmented "
                             "frames): switch them off for a method that reads landmark features")
        # per process: pickled empty into spawned workers, reset in forked ones
        self.reader = ShardReader(table.inputs, cfg.max_open_shards)

    def __len__(self) -> int:
        return len(self.clips)

    def _side(self) -> SideStore:
        if self.table.side is None:
            raise ValueError("the clip table was loaded without landmarks / captions; "
                             "load it with the Needs of this dataset")
        return self.table.side

    def renderers(self) -> tuple[Renderer, Renderer]:
        if self._renderers is None:
            self._renderers = default_renderers()
        return self._renderers

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.clips.iloc[i]
        clip_id, shard = str(row["clip_id"]), str(row["shard"])
        # flip deterministically per (seed, epoch, clip): runs repeat exactly, epochs differ
        flip = bool(self.train and self.cfg.flip
                    and np.random.default_rng([self.seed, self.epoch, i]).random() < 0.5)
        try:
            item = self._load(row, clip_id, shard, i, flip)
        except Exception as exc:
            raise RuntimeError(f"{self.dataset}/{clip_id} (shard {shard}): {type(exc).__name__}: {exc}") from exc
        item["label"] = int(row["label_idx"])
        item["clip_id"] = clip_id
        return item

    def _load(self, row: pd.Series, clip_id: str, shard: str, i: int, flip: bool = False) -> dict[str, Any]:
        frames = self.reader.tensor("frames", shard, clip_id)
        points = self._side().points(int(row["lm_start"]), int(row["lm_stop"])) if self.needs.landmarks else None
        maps = self.reader.tensor("parsing", shard, clip_id) if self.needs.parsing else None
        features = (self.reader.tensor("landmark_features", shard, clip_id)
                    if self.needs.landmark_features else None)
        if flip:
            # mirror the inputs of the renderers, not their images: a flipped subject's left
            # eye is then drawn as a left eye (render.mirror_*), as a mirrored face would be seen
            from dfer.train.render import mirror_parsing, mirror_points

            frames = np.ascontiguousarray(frames[:, :, ::-1])
            points = mirror_points(points, frames.shape[2]) if points is not None else None
            maps = mirror_parsing(maps) if maps is not None else None
        # the training frame draw and the augmentation per (seed, epoch, clip), each a stream
        # apart from the flip's
        rng = np.random.default_rng([self.seed, self.epoch, i, 1]) if self.train else None
        aug_rng = (np.random.default_rng([self.seed, self.epoch, i, AUGMENT_STREAM])
                   if self.train and self.cfg.augments else None)
        item = prepare_clip(frames, points, maps, self.cfg, self.size,
                            self.renderers() if self.needs.landmarks or self.needs.parsing else None, rng,
                            aug_rng, features)
        if self.needs.captions and self.table.has_captions:
            offset = int(row["cap_offset"])
            # None: no caption for this clip (captions optional for this table)
            item["caption"] = self._side().caption(offset, int(row["cap_length"])) if offset >= 0 else None
        return item


def prepare_clip(
    frames: np.ndarray,
    points: np.ndarray | None,
    maps: np.ndarray | None,
    cfg: DataConfig,
    size: int,
    renderers: tuple[Renderer, Renderer] | None,
    rng: np.random.Generator | None = None,
    augment_rng: np.random.Generator | None = None,
    features: np.ndarray | None = None,
) -> dict[str, torch.Tensor]:
    """Model inputs of one clip from its decoded arrays (shared by training and ``dfer predict``).

    ``frames`` uint8 [T, S, S, 3]; ``points`` [T, 68, 2] crop pixels or None (level off);
    ``maps`` uint8 [T, S, S] or None. Returns uint8 ``frames`` / ``landmarks`` / ``parsing``
    tensors ``[t, size, size, 3]``: ``cfg.num_frames`` frames picked by the training sampler
    (``cfg.train_frames``) when ``rng`` is given (training), else by ``cfg.test_sampler``
    (dfer.train.sampling), and the middle level on ``cfg.mid_frames`` of those. A clip of one
    frame (a still image, stored once by the decode stage) is that frame ``cfg.num_frames``
    times, so the model sees ``[T, size, size, 3]`` as for a video. ``augment_rng`` (training
    only) draws the clip's augmentation (colour on the frames; rotation and crop on every level
    alike). ``features``: the clip's landmark feature maps ``[T, C, G, G]`` (one per stored
    frame) or None; the picked frames' maps become float32 ``landmark_features``.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames have shape {frames.shape}, expected [T, S, S, 3]")
    t, crop = frames.shape[0], frames.shape[1]
    if t == 1:
        idx = np.zeros(cfg.num_frames or 1, dtype=np.int64)
    else:
        sampler = cfg.train_frames if rng is not None else cfg.test_sampler
        idx = frame_indices(sampler, t, cfg.num_frames, rng)
    mid_idx = idx[uniform_indices(len(idx), cfg.mid_frames)]
    aug = (draw_augment(cfg, augment_rng, frames.shape[1], frames.shape[2])
           if augment_rng is not None and cfg.augments else Augment())
    picked = torch.from_numpy(np.ascontiguousarray(frames[idx]))
    if aug.any:
        picked = apply_geometry(apply_colour(picked, aug), aug, size)
    item: dict[str, torch.Tensor] = {"frames": _resize(picked, size)}
    if features is not None:
        if len(features) != t:
            raise ValueError(f"{len(features)} landmark feature maps for {t} video frames")
        item["landmark_features"] = torch.from_numpy(np.ascontiguousarray(features[idx], dtype=np.float32))
    geometry = Augment(angle=aug.angle, crop=aug.crop)  # the middle level: no colour change
    if points is not None:
        if renderers is None:
            raise ValueError("rendering landmarks needs renderers")
        if len(points) != t:
            raise ValueError(f"{len(points)} landmark frames for {t} video frames")
        render_landmarks = renderers[0]
        scale = size / crop
        imgs = [np.asarray(render_landmarks(points[j] * scale, size)) for j in mid_idx]
        if cfg.landmarks_on_face:
            from dfer.train.render import overlay_on_face

            faces = _resize(torch.from_numpy(np.ascontiguousarray(frames[mid_idx])), size).numpy()
            imgs = [overlay_on_face(face, img) for face, img in zip(faces, imgs, strict=True)]
        item["landmarks"] = _resize(apply_geometry(torch.from_numpy(np.stack(imgs)), geometry, size), size)
    if maps is not None:
        if renderers is None:
            raise ValueError("rendering parsing maps needs renderers")
        if len(maps) != t:
            raise ValueError(f"{len(maps)} parsing maps for {t} video frames")
        render_parsing = renderers[1]
        imgs = [np.asarray(render_parsing(maps[j], size)) for j in mid_idx]
        item["parsing"] = _resize(apply_geometry(torch.from_numpy(np.stack(imgs)), geometry, size), size)
    return item


def preprocessing_params(inputs: DataInputs, needs: Needs) -> dict[str, Any]:
    """The decode / landmarks / parsing / landmark_features config sections the artifacts
    were made with (those of the kinds the model reads).

    Read from the provenance of the first shard's declared files; stored in checkpoints so
    that ``dfer predict`` repeats the exact preprocessing the model was trained on.
    """
    out: dict[str, Any] = {}
    shard = inputs.shards[0]
    for kind in kinds_read(needs):
        section = KINDS[kind][0]
        if section in PREPROCESSING_SECTIONS and inputs.has(kind):
            out[section] = read_meta(inputs.path(kind, shard, PARQUET)).get("params", {})
    return out


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images and labels; keep ids and captions as lists."""
    batch: dict[str, Any] = {
        "clip_id": [it["clip_id"] for it in items],
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
    }
    for key in ("frames", "landmarks", "parsing", "landmark_features"):
        if key in items[0]:
            batch[key] = torch.stack([it[key] for it in items])
    if "caption" in items[0]:
        batch["captions"] = [it["caption"] for it in items]
    return batch
