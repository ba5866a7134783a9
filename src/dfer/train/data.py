"""Training / evaluation data: the upstream artifacts of one dataset, joined on clip id.

The clip table holds only per-clip metadata (id, label, fold, shard and the positions of its
landmark points / caption), a few hundred bytes per clip, so the memory of a training process
does not grow with the dataset (issue 6). While it is built, landmark points and captions are
copied a shard at a time into a temporary :class:`dfer.train.shard_reader.SideStore` and read
back per clip with one positioned read; frames and parsing maps are memory-mapped one clip at a
time (``safe_open``) with at most ``DataConfig.max_open_shards`` shards of each kind open per
process (:class:`dfer.train.shard_reader.ShardReader`, LRU). A clip that failed in any stage
the model needs is absent from that stage's index; it is skipped here with a logged count (not
an error: the failure is already recorded upstream). Landmark and parsing images are rendered
on the fly by :mod:`dfer.train.render`.
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
from dfer.core.frame_sampling import jittered_indices, uniform_indices
from dfer.core.paths import PARQUET, SAFETENSORS, manifest_file
from dfer.core.sharding import shards_in
from dfer.train.config import DataConfig
from dfer.train.inputs import KINDS, DataInputs, Needs, kinds_read, stages_read
from dfer.train.shard_reader import ShardReader, SideStore

__all__ = ["DataConfig", "Needs"]  # re-exported: their home is config / inputs

log = logging.getLogger(__name__)

Renderer = Callable[[np.ndarray, int], np.ndarray]
#: the stages whose settings a checkpoint records, for ``dfer predict`` to repeat them
PREPROCESSING_SECTIONS = ("decode", "landmarks", "parsing")


@dataclass
class ClipTable:
    """The usable clips of a dataset: per-clip metadata; landmark points / captions in ``side``."""

    #: clip_id, label, label_idx, test_fold, shard; with landmarks also ``lm_start`` /
    #: ``lm_stop`` (the clip's rows in ``side``), with captions ``cap_offset`` / ``cap_length``
    clips: pd.DataFrame
    labels: list[str]
    num_folds: int
    skipped: dict[str, int]  # reason -> number of clips skipped
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


def _join(index: pd.DataFrame, extra: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Inner-join ``extra`` (keyed by clip_id) onto ``index`` keeping index order; dropped count."""
    joined = index.merge(extra, on="clip_id", how="inner", sort=False)
    return joined, len(index) - len(joined)


def load_clip_table(
    results: str | Path, dataset: str, needs: Needs, shards: Sequence[str] | None = None
) -> ClipTable:
    """:func:`read_clip_table` of the files :meth:`DataInputs.from_results` names (library
    callers; jobs pass their declared files to :func:`read_clip_table` directly)."""
    return read_clip_table(DataInputs.from_results(results, dataset, needs, shards), needs)


def _shard_clips(inputs: DataInputs, shard: str, needs: Needs, use_captions: bool,
                 side: SideStore | None, skipped: dict[str, int]) -> pd.DataFrame | None:
    """One shard's clips that every needed artifact has (None: an empty shard); the clips
    an artifact lacks are counted in ``skipped`` under that artifact's name."""
    def skip(reason: str, n: int) -> None:
        if n:
            skipped[reason] = skipped.get(reason, 0) + n

    index = read_parquet(inputs.path("frames", shard, PARQUET))
    if index.empty:
        return None
    index = index[["clip_id", "label", "label_idx", "test_fold"]].copy()
    index["clip_id"] = index["clip_id"].astype(str)
    index["shard"] = shard
    keep = index["clip_id"].isin(_safetensors_keys(inputs.path("frames", shard, SAFETENSORS)))
    skip("frames", int((~keep).sum()))
    index = index[keep]
    if needs.landmarks:
        assert side is not None
        index, dropped = _join(index, side.add_landmarks(inputs.path("landmarks", shard, PARQUET)))
        skip("landmarks", dropped)
    if needs.parsing:
        keep = index["clip_id"].isin(_safetensors_keys(inputs.path("parsing", shard, SAFETENSORS)))
        skip("parsing", int((~keep).sum()))
        index = index[keep]
    if use_captions:
        assert side is not None
        index, dropped = _join(index, side.add_captions(inputs.path("captions", shard, PARQUET)))
        skip("captions", dropped)
    return index


def read_clip_table(inputs: DataInputs, needs: Needs) -> ClipTable:
    """Join the frames index with every artifact the model needs; skip incomplete clips.

    Reads exactly ``inputs``. Captions are optional: when the model wants them and none were
    declared, it trains without the high level (logged).
    """
    dataset, shards = inputs.dataset, inputs.shards
    labels, num_folds = manifest_labels(inputs.manifest)
    use_captions = needs.captions and inputs.has("captions")
    if needs.captions and not use_captions:
        log.warning("%s: no captions among the inputs; training without the caption level", dataset)
    # one setup per stage: shards made by different backends / models / params are refused
    from dfer.train.provenance import check_consistent

    backends = check_consistent(inputs, stages_read(needs.landmarks, needs.parsing, use_captions))
    side = SideStore() if needs.landmarks or use_captions else None
    skipped: dict[str, int] = {}
    rows = [_shard_clips(inputs, s, needs, use_captions, side, skipped) for s in shards]
    rows = [r for r in rows if r is not None]
    clips = (
        pd.concat(rows, ignore_index=True) if rows
        else pd.DataFrame(columns=["clip_id", "label", "label_idx", "test_fold", "shard"])
    )
    clips = clips.sort_values("clip_id", kind="stable").reset_index(drop=True)
    clips["label_idx"] = clips["label_idx"].astype(np.int64)
    clips["test_fold"] = clips["test_fold"].astype(np.int64)
    if skipped:
        log.warning(
            "%s: skipped %d clip(s) missing from upstream artifacts (%s)", dataset,
            sum(skipped.values()), ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())),
        )
    return ClipTable(clips, labels, num_folds, skipped, use_captions, side, inputs, backends)


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
        try:
            item = self._load(row, clip_id, shard, i)
        except Exception as exc:
            raise RuntimeError(f"{self.dataset}/{clip_id} (shard {shard}): {type(exc).__name__}: {exc}") from exc
        # flip deterministically per (seed, epoch, clip): runs repeat exactly, epochs differ
        if self.train and self.cfg.flip and np.random.default_rng([self.seed, self.epoch, i]).random() < 0.5:
            for key in ("frames", "landmarks", "parsing"):
                if key in item:
                    item[key] = item[key].flip(2)
        item["label"] = int(row["label_idx"])
        item["clip_id"] = clip_id
        return item

    def _load(self, row: pd.Series, clip_id: str, shard: str, i: int) -> dict[str, Any]:
        frames = self.reader.tensor("frames", shard, clip_id)
        points = self._side().points(int(row["lm_start"]), int(row["lm_stop"])) if self.needs.landmarks else None
        maps = self.reader.tensor("parsing", shard, clip_id) if self.needs.parsing else None
        # temporal jitter per (seed, epoch, clip), a stream apart from the flip's
        rng = np.random.default_rng([self.seed, self.epoch, i, 1]) if self.train else None
        item = prepare_clip(frames, points, maps, self.cfg, self.size,
                            self.renderers() if self.needs.landmarks or self.needs.parsing else None, rng)
        if self.needs.captions and self.table.has_captions:
            item["caption"] = self._side().caption(int(row["cap_offset"]), int(row["cap_length"]))
        return item


def prepare_clip(
    frames: np.ndarray,
    points: np.ndarray | None,
    maps: np.ndarray | None,
    cfg: DataConfig,
    size: int,
    renderers: tuple[Renderer, Renderer] | None,
    rng: np.random.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Model inputs of one clip from its decoded arrays (shared by training and ``dfer predict``).

    ``frames`` uint8 [T, S, S, 3]; ``points`` [T, 68, 2] crop pixels or None (level off);
    ``maps`` uint8 [T, S, S] or None. Returns uint8 ``frames`` / ``landmarks`` / ``parsing``
    tensors ``[t, size, size, 3]``, frames subsampled to ``cfg.num_frames`` and the middle level
    to ``cfg.mid_frames`` of those. ``rng`` (training only) draws the frames with
    ``cfg.temporal_jitter``; without it the evenly spaced frames are used.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames have shape {frames.shape}, expected [T, S, S, 3]")
    t, crop = frames.shape[0], frames.shape[1]
    if cfg.temporal_jitter and rng is not None:
        idx = jittered_indices(t, cfg.num_frames, rng)
    else:
        idx = uniform_indices(t, cfg.num_frames)
    mid_idx = idx[uniform_indices(len(idx), cfg.mid_frames)]
    item: dict[str, torch.Tensor] = {"frames": _resize(torch.from_numpy(np.ascontiguousarray(frames[idx])), size)}
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
        item["landmarks"] = _resize(torch.from_numpy(np.stack(imgs)), size)
    if maps is not None:
        if renderers is None:
            raise ValueError("rendering parsing maps needs renderers")
        if len(maps) != t:
            raise ValueError(f"{len(maps)} parsing maps for {t} video frames")
        render_parsing = renderers[1]
        imgs = [np.asarray(render_parsing(maps[j], size)) for j in mid_idx]
        item["parsing"] = _resize(torch.from_numpy(np.stack(imgs)), size)
    return item


def preprocessing_params(inputs: DataInputs, needs: Needs) -> dict[str, Any]:
    """The decode / landmarks / parsing config sections the artifacts were made with.

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
    for key in ("frames", "landmarks", "parsing"):
        if key in items[0]:
            batch[key] = torch.stack([it[key] for it in items])
    if "caption" in items[0]:
        batch["captions"] = [it["caption"] for it in items]
    return batch
