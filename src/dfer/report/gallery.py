"""The error-analysis gallery: one card per test clip of every evaluated fold.

Numbers say *how often* the model errs; the gallery shows *on which clips*: a strip of the face
crops the model saw (8 of the T frames) with the landmark and parsing overlays it was given,
the caption it read (and the MLLM's raw text when refinement changed it), the true and
predicted class with the top-3 probabilities, and, when the evaluation recorded them
(:data:`dfer.train.evaluate.EXPLAIN_FIELDS`), the modality weights and similarities behind the
prediction. A clickable confusion matrix filters the cards to one (true, predicted) cell.
With several runs, a fold of a run other than the reference is compared clip by clip with the
reference's evaluation of the same fold: both predictions on each card, the disagreements
first, and the 2x2 right / wrong counts in its header (:mod:`dfer.report.gallery_pairs`).

Two packagings of the same page (``assets/gallery.{html,css,js}``), both self-contained (no
network, opens from the file system):

* ``gallery/`` (directory): ``index.html``, ``folds.js`` and per fold ``{key}/cards.js`` plus
  one JPEG face strip and two PNG overlay strips per card. A fold's cards are loaded when it is
  selected, and only one page of cards is in the DOM at a time, with ``loading=lazy`` images,
  so a 10,000-clip fold stays browsable. Data files are ``<script>`` files, not JSON, because
  a page opened from ``file://`` may not ``fetch`` its neighbours.
* ``gallery.html`` (one file): the same cards with the images inlined as data URIs, capped per
  fold (``embed_max``), for ``snakemake --report report.html``, which embeds single files only
  (a directory result needs a ``.zip`` report).

At any scale (FERV39k's 7,847 test clips, MAFW->DFEW zero-shot's 5 x 11,697):

* **Memory is bounded by one shard, not by the cards.** Clips are read shard by shard (one
  shard's landmark points and captions at a time), each clip's frames and label maps read
  from its safetensors when its card is drawn and dropped after; a card keeps only its line
  of JSON (about 0.5 KB). ``gallery.html``
  is written fold by fold from the files already drawn. (It once held every card's frames in
  one dict: 3.5 MB a card, ~28 GB for FERV39k's test set.)
* **A fold is rebuilt only when its inputs changed.** Each fold's folder holds
  ``inputs.json``: its predictions' and metrics' SHA-256, the size and mtime of every shard
  artifact of its dataset it draws from, the caps and the drawing code's hash. A fold whose
  inputs are unchanged is kept as it is; a new run or fold adds its folder; a fold no longer
  evaluated loses its folder. A fold is drawn in ``.{key}.tmp`` and renamed into place, so a
  killed report leaves either the old folder or the new one (and the next run removes the
  leftover).
* **Cards per evaluation are capped by default** (:data:`DEFAULT_GALLERY_MAX`); the page says
  how many clips are not shown, and the confusion matrix still counts every clip.

Overlays are separate transparent PNGs over the JPEG so that toggling them is pure CSS and
both can be on at once; PNG because label colours and 1-px dots survive it (JPEG smears them
and has no alpha). Cards are chosen, when capped, wrong clips first, then least confident.
Everything is written deterministically (same inputs, same bytes).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import math
import shutil
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dfer.core.artifacts import atomic_path, read_meta, write_bytes_if_changed
from dfer.core.frame_sampling import uniform_indices
from dfer.core.integrity import problem
from dfer.core.landmark_table import clip_bounds, clip_ids, points_array, read_sorted
from dfer.core.paths import (
    FAILURES,
    PARQUET,
    PREDICTIONS,
    SAFETENSORS,
    manifest_file,
    shard_file,
    shard_file_name,
)
from dfer.core.sharding import shards_in
from dfer.landmarks.points import PARTS
from dfer.report.gallery_pairs import (
    DISAGREE,
    Pair,
    agreement,
    card_pair,
    join_reference,
    pair_folds,
    pair_text,
)
from dfer.train.render import PART_COLOURS, render_parsing

GALLERY_DIR = "gallery"
EMBED_FILE = "gallery.html"
#: frames shown per clip, thumbnail side in pixels, JPEG quality: about 6 KB a face strip
STRIP_FRAMES = 8
THUMB = 64
JPEG_QUALITY = 70
#: opacity (0..255) of the parsing colours over the face
PARSING_ALPHA = 140
#: default cap of cards per fold in the single-file gallery embedded by ``snakemake --report``
DEFAULT_EMBED_MAX = 100
#: default cap of cards per evaluation in ``gallery/``: every in-domain test fold of DFEW
#: (about 2,340 clips) and MAFW (about 2,010) is shown whole, while FERV39k's test set (7,847)
#: and zero-shot evaluations on a whole dataset (DFEW: 11,697 per source fold, 58,485 for
#: MAFW->DFEW's 5 folds) show their 2,500 wrong and least confident clips. At ~13 KB a card
#: that is ~33 MB and ~1.3 MB of ``cards.js`` per evaluation (details: docs/report.md).
DEFAULT_GALLERY_MAX = 2500
#: characters of a caption or raw MLLM text shown on a card (a runaway answer, e.g. 5 MB from
#: a server that ignored max_tokens, stays a few KB of page); a 128-token caption is ~600
MAX_CARD_TEXT = 2000
#: a fold folder's files besides the images: its cards, the embedded subset, its record, and
#: the fingerprint of its inputs (written last: a folder without it is incomplete)
CARDS_FILE = "cards.js"
EMBED_CARDS_FILE = "embed.json"
FOLD_FILE = "fold.json"
#: (clip id, why) of the fold's cards without images, for the report's count
NO_IMAGES_FILE = "noimg.json"
INPUTS_FILE = "inputs.json"
#: the stages whose shard artifacts a card draws from (the manifest says which shard holds a clip)
CARD_SOURCES = (("manifest", PARQUET), ("frames", SAFETENSORS), ("landmarks", PARQUET),
                ("parsing", SAFETENSORS), ("captions", PARQUET))


@dataclass
class Fold:
    """One evaluation (a fold, in-domain or zero-shot) that has predictions to show."""

    key: str  # folder name under gallery/, unique and file-system safe
    title: str
    dataset: str
    predictions: Path
    metrics: dict[str, Any]
    labels: list[str] = field(default_factory=list)
    metrics_path: Path | None = None
    #: the run, and what two runs' evaluations must share to be compared (dataset, the
    #: zero-shot source folder if any, fold): :mod:`dfer.report.gallery_pairs`
    run: str = ""
    slot: tuple[str, ...] = ()


def fold_key(metrics_path: Path, results: Path) -> str:
    """``{dataset}.{run}.fold-1`` (``...zeroshot-from-x.fold-1``): the path below results/
    without ``train``, so every evaluation has its own, readable folder."""
    parts = [p for p in metrics_path.parent.relative_to(results).parts if p != "train"]
    return ".".join(parts)


def find_folds(results: Path, metrics_paths: Sequence[Path]) -> list[Fold]:
    """Every evaluation among ``metrics_paths`` with a ``predictions.parquet`` beside it."""
    folds = []
    for path in metrics_paths:
        preds = path.parent / PREDICTIONS
        if not preds.exists():
            continue
        m = json.loads(path.read_text())
        key = fold_key(path, results)
        # the folder path: unique, and names a zero-shot source (a transfer between datasets
        # with the same labels is not flagged zero_shot in metrics.json)
        parts = path.parent.relative_to(results).parts
        title = " / ".join(p for p in parts if p != "train")
        # results/{dataset}/train/{run}[/zeroshot-from-{src}]/fold-{k}
        run = parts[2] if len(parts) > 3 and parts[1] == "train" else str(m.get("run") or "")
        slot = (str(m["dataset"]), *parts[3:]) if len(parts) > 3 else (str(m["dataset"]), key)
        folds.append(Fold(key, title, m["dataset"], preds, m, list(m.get("labels", [])), path, run, slot))
    return folds


def select_cards(preds: pd.DataFrame, max_cards: int | None) -> pd.DataFrame:
    """The clips to show, at most ``max_cards``: wrong ones first, then by rising confidence
    (the clips that teach most about the errors), clip id breaking ties. Compared with a
    reference run (a :data:`~dfer.report.gallery_pairs.DISAGREE` column), the clips on which
    the two predict different classes come before all others."""
    keys = ["correct", "prob", "clip_id"]
    if DISAGREE in preds.columns:
        preds = preds.assign(_agree=~preds[DISAGREE].astype(bool))
        keys = ["_agree", *keys]
    order = preds.sort_values(keys, ascending=True, kind="stable").drop(columns=["_agree"], errors="ignore")
    return order if max_cards is None else order.head(max(0, int(max_cards)))


# --------------------------------------------------------------------------- images


def _encode(image: np.ndarray, ext: str, params: Sequence[int] = ()) -> bytes:
    """RGB(A) uint8 -> encoded bytes (cv2 wants BGR(A))."""
    swapped = image[..., [2, 1, 0, 3]] if image.shape[-1] == 4 else image[..., ::-1]
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(swapped), list(params))
    if not ok:
        raise ValueError(f"could not encode a {image.shape} image as {ext}")
    return buf.tobytes()


def _thumb(image: np.ndarray, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    return cv2.resize(image, (THUMB, THUMB), interpolation=interpolation)


def face_strip(frames: np.ndarray) -> tuple[bytes, np.ndarray]:
    """JPEG of up to :data:`STRIP_FRAMES` frames side by side, and the frame indices used."""
    idx = uniform_indices(len(frames), STRIP_FRAMES)
    strip = np.hstack([_thumb(np.asarray(frames[i])) for i in idx])
    return _encode(strip, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]), idx


def landmark_strip(points: Mapping[int, np.ndarray], idx: np.ndarray, src_size: int) -> bytes:
    """Transparent PNG of the 68 landmark dots for the strip's frames, coloured by face part as
    in :func:`dfer.train.render.render_landmarks`; empty where a frame has no face. Plain dots, not
    the anti-aliased outlines the encoder sees: at 64 px those cost ~25 KB a strip, and a
    misplaced point is what a reader looks for."""
    tiles = []
    for i in idx:
        tile = np.zeros((THUMB, THUMB, 4), np.uint8)
        pts = points.get(int(i))
        if pts is not None and np.isfinite(pts).all():
            xy = np.round(np.asarray(pts, np.float64) * (THUMB / float(src_size))).astype(int)
            for part, members in PARTS.items():
                colour = (*PART_COLOURS[part], 255)
                for x, y in xy[list(members)]:
                    cv2.circle(tile, (int(x), int(y)), 1, colour, -1, cv2.LINE_8)
        tiles.append(tile)
    return _encode(np.hstack(tiles), ".png", [cv2.IMWRITE_PNG_COMPRESSION, 9])


def parsing_strip(maps: np.ndarray, idx: np.ndarray) -> bytes:
    """Transparent PNG of the parsing colours (:func:`dfer.train.render.render_parsing`) for the
    strip's frames; background left clear so the face shows through."""
    tiles = []
    for i in idx:
        labels = _thumb(np.asarray(maps[min(int(i), len(maps) - 1)]), cv2.INTER_NEAREST)
        rgb = render_parsing(labels)
        alpha = np.where(labels > 0, PARSING_ALPHA, 0).astype(np.uint8)[..., None]
        tiles.append(np.concatenate([rgb, alpha], axis=-1))
    return _encode(np.hstack(tiles), ".png", [cv2.IMWRITE_PNG_COMPRESSION, 9])


# --------------------------------------------------------------------------- clip data


@dataclass
class ClipArtifacts:
    """What one clip contributes to its card (any part may be missing upstream)."""

    frames: np.ndarray | None = None
    points: dict[int, np.ndarray] | None = None
    maps: np.ndarray | None = None
    caption: str | None = None
    raw_text: str | None = None
    no_frames: str | None = None  # why ``frames`` is None: shown on the card, counted in report.md


@contextlib.contextmanager
def _tensor_shard(path: Path, damage: str | None) -> Iterator[Any]:
    """``get(clip_id)`` over one safetensors shard: the clip's array (a copy), or None for an
    absent clip, or for every clip of a missing or damaged file (``damage``: why, from
    :func:`dfer.core.integrity.problem`). The file is opened (memory-mapped) for each clip and
    closed again: the pages a kept-open map touched would stay in this process's resident set
    until the shard is done (a 224-px frames shard of 300 clips: ~720 MB); reopening costs a
    header parse, ~0.1 ms."""
    if damage is not None:
        yield lambda _cid: None
        return
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        keys = set(fh.keys())

    def get(cid: str) -> np.ndarray | None:
        if cid not in keys:
            return None
        with safe_open(str(path), framework="numpy") as fh:
            return fh.get_tensor(cid)

    yield get


def _points(path: Path, ids: set[str]) -> dict[str, dict[int, np.ndarray]]:
    if not path.exists():
        return {}
    table = read_sorted(path, ["clip_id", "frame", "points"])
    cids = clip_ids(table)
    frames = np.asarray(table.column("frame").to_pylist(), dtype=np.int64)
    pts = points_array(table, path)
    starts, stops = clip_bounds(cids)
    return {str(cids[a]): {int(frames[r]): pts[r] for r in range(a, b)}
            for a, b in zip(starts, stops, strict=True) if str(cids[a]) in ids}


def _captions(path: Path, ids: set[str]) -> dict[str, tuple[str, str | None]]:
    if not path.exists():
        return {}
    names = set(pq.read_schema(path).names)
    table = pq.read_table(path, columns=[c for c in ("clip_id", "caption", "raw_text") if c in names])
    raw = table.column("raw_text").to_pylist() if "raw_text" in names else [None] * table.num_rows
    return {str(c): (str(t), r) for c, t, r in zip(table.column("clip_id").to_pylist(),
                                                   table.column("caption").to_pylist(), raw, strict=True)
            if str(c) in ids}


def clip_artifacts(results: Path, dataset: str, clip_ids_wanted: Sequence[str],
                   stages: Collection[str] | None = None) -> Iterator[tuple[str, ClipArtifacts]]:
    """(clip id, artifacts) of the wanted clips, shard by shard and in clip order within a
    shard; clips not in the manifest come last, with nothing. Memory: one shard's landmark
    points and captions of the wanted clips, and one clip's frames and maps at a time (read
    when its turn comes; the caller drops them with the card). ``stages``: the stage folders
    it may read (the report job's declared ones; None: all); the others are not opened, as if
    the stage had not run."""
    # the shard manifests say which shard holds a clip (the ``shard`` column's spelling varies)
    folder = manifest_file(results, dataset).parent
    wanted = {str(c) for c in clip_ids_wanted}
    by_shard: dict[str, list[str]] = {}  # in shard order
    for shard in shards_in(folder, PARQUET):
        ids = pq.read_table(folder / shard_file_name(shard, PARQUET), columns=["clip_id"]).column("clip_id").to_pylist()
        for cid in ids:
            if str(cid) in wanted:
                by_shard.setdefault(shard, []).append(str(cid))
    placed = {c for ids in by_shard.values() for c in ids}
    missing = sorted(wanted - placed)
    for shard, shard_ids in by_shard.items():
        ids = sorted(set(shard_ids))

        def path(stage: str, suffix: str, s: str = shard) -> Path:
            return shard_file(results, dataset, stage, s, suffix)

        def read(stage: str) -> bool:
            return stages is None or stage in stages

        # a missing or damaged tensor shard costs its cards' images, and each card says why
        frames_path, maps_path = path("frames", SAFETENSORS), path("parsing", SAFETENSORS)
        frames_problem = problem(frames_path) if read("frames") else "not an input of this report"
        absent = (f"frames shard {frames_path}: {frames_problem}" if frames_problem else
                  f"not in {frames_path} (see {path('frames', FAILURES)})")
        points = _points(path("landmarks", PARQUET), set(ids)) if read("landmarks") else {}
        captions = _captions(path("captions", PARQUET), set(ids)) if read("captions") else {}
        maps_problem = problem(maps_path) if read("parsing") else "not an input of this report"
        with _tensor_shard(frames_path, frames_problem) as frames, \
                _tensor_shard(maps_path, maps_problem) as maps:
            for cid in ids:
                caption, raw = captions.get(cid, (None, None))
                clip_frames = frames(cid)
                yield cid, ClipArtifacts(clip_frames, points.pop(cid, None), maps(cid), caption, raw,
                                         None if clip_frames is not None else absent)
    for cid in missing:
        yield cid, ClipArtifacts(no_frames=f"not in the manifest of dataset {dataset}")


# --------------------------------------------------------------------------- cards


def _floats(values: Any, digits: int = 4) -> list[Any]:
    """Rounded floats (nested lists kept): short JSON, and no -0.0 / NaN surprises in JS."""
    out: list[Any] = []
    for v in values:
        if isinstance(v, (list, tuple, np.ndarray)):
            out.append(_floats(v, digits))
        else:
            f = float(v)
            out.append(None if math.isnan(f) else round(f, digits) + 0.0)
    return out


def _card_text(text: str) -> str:
    """At most :data:`MAX_CARD_TEXT` characters of a caption, saying how much was left out."""
    if len(text) <= MAX_CARD_TEXT:
        return text
    return f"{text[:MAX_CARD_TEXT]} ... [{len(text) - MAX_CARD_TEXT:,} more characters not shown]"


def card_record(row: Any, art: ClipArtifacts, images: Mapping[str, str]) -> dict[str, Any]:
    """The JSON of one card (short keys: a 10,000-clip fold's data stays a few MB)."""
    probs = np.asarray(row.probs, dtype=np.float64)
    top = np.argsort(-probs, kind="stable")[:3]
    card: dict[str, Any] = {
        "id": str(row.clip_id), "t": int(row.label_idx), "p": int(row.pred_idx),
        "c": round(float(row.prob), 4), "ok": bool(row.correct),
        "top": [[int(k), round(float(probs[k]), 4)] for k in top], **images,
    }
    if art.caption is not None:
        card["cap"] = _card_text(art.caption)
        if art.raw_text and art.raw_text.strip() != art.caption.strip():
            card["raw"] = _card_text(art.raw_text)
    for column, key in (("sim_pos", "sp"), ("sim_neg", "sn"), ("modality_weights", "w"), ("level_scores", "ls")):
        value = getattr(row, column, None)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            card[key] = _floats(value)
    return card


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


#: card key -> (file suffix, MIME type) of its image
IMAGE_KINDS = {"img": ("jpg", "image/jpeg"), "lm": ("lm.png", "image/png"), "ps": ("ps.png", "image/png")}


def card_images(art: ClipArtifacts) -> dict[str, bytes]:
    """The encoded strips of one clip (none when it has no frames)."""
    if art.frames is None or not len(art.frames):
        return {}
    jpeg, idx = face_strip(art.frames)
    blobs = {"img": jpeg}
    if art.points is not None:
        blobs["lm"] = landmark_strip(art.points, idx, art.frames.shape[1])
    if art.maps is not None and len(art.maps):
        blobs["ps"] = parsing_strip(art.maps, idx)
    return blobs


def card_lines(results: Path, fold: Fold, chosen: pd.DataFrame, image_dir: Path, rel: str,
               no_images: list[tuple[str, str]] | None = None, pair: Pair | None = None,
               stages: Collection[str] | None = None) -> list[str]:
    """The JSON of every card of ``chosen``, in its order; the strips are written to
    ``image_dir`` as ``{n:06d}.jpg`` (``.lm.png``, ``.ps.png``) and referred to as ``{rel}...``.
    ``no_images`` receives (clip id, why) of every card without images (its ``noimg`` says why
    on the page: the gallery never drops a card's images silently). ``pair``: the reference
    run the cards are compared with (``chosen`` then has the columns of
    :func:`~dfer.report.gallery_pairs.join_reference`), each card gets its ``pair`` keys.

    Clips are drawn in shard order (:func:`clip_artifacts`), one at a time: what stays in
    memory per card is its line of JSON, never its frames.
    """
    positions: dict[str, list[int]] = {}
    for n, cid in enumerate(chosen["clip_id"].astype(str)):
        positions.setdefault(cid, []).append(n)
    rows = list(chosen.itertuples(index=False))
    lines: list[str] = [""] * len(rows)
    for cid, art in clip_artifacts(results, fold.dataset, list(positions), stages):
        blobs = card_images(art)
        for n in positions[cid]:
            images = {}
            for key, data in blobs.items():
                name = f"{n:06d}.{IMAGE_KINDS[key][0]}"
                _write(image_dir / name, data)
                images[key] = f"{rel}{name}"
            card = card_record(rows[n], art, images)
            if pair is not None:
                card.update(card_pair(rows[n], fold.labels, pair.label, pair.ref_label))
            if not images:
                card["noimg"] = art.no_frames or "no frames"
                if no_images is not None:
                    no_images.append((cid, card["noimg"]))
            lines[n] = _script_json(card)
        del art, blobs
    return lines


def _write(path: Path, data: bytes) -> None:
    """Write one gallery file; an ``OSError`` names it (a full disk's ENOSPC names none)."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def fold_record(fold: Fold, preds: pd.DataFrame, shown: int, embedded: int | None = None,
                cap: int | None = None, pair: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the page needs about a fold besides its cards: labels, the confusion matrix of
    *all* its clips (not only the shown cards), metrics, the level names of the weights, and
    how many cards it shows (``shown`` in ``gallery/``, ``embedded`` in ``gallery.html``)
    under which cap (``cap``: None for every clip); ``pair``: its comparison with the
    reference run (:func:`pair_record`; None: not compared)."""
    meta = read_meta(fold.predictions)
    m = fold.metrics
    return {
        "key": fold.key, "title": fold.title, "dataset": fold.dataset, "run": m.get("run"),
        "zero_shot": bool(m.get("zero_shot", False)), "labels": fold.labels,
        "cm": m.get("confusion_matrix", []), "uar": m.get("uar"), "war": m.get("war"),
        "clips": int(len(preds)), "shown": int(shown),
        "embedded": int(shown if embedded is None else embedded), "cap": cap,
        # "evaluated N of M test clips (not scored: ...)": metrics.json's count, the same
        # numbers as the evaluation log and the report (None for an older evaluation)
        "coverage": (m.get("test_clips") or {}).get("text"),
        "levels": list(meta.get("modality_levels") or []),
        "score_levels": list(meta.get("score_levels") or []),
        "pair": pair,
    }


def pair_record(fold: Fold, pair: Pair, preds: pd.DataFrame, ref_preds: pd.DataFrame | None) -> dict[str, Any]:
    """The fold record's ``pair``: which run and evaluation it is compared with, the names the
    page gives both, the counts of :func:`~dfer.report.gallery_pairs.agreement` and the
    header's line (``text``). ``ref_preds`` None: not comparable (``skipped`` says why)."""
    ref = pair.reference
    counts: dict[str, Any] = (agreement(preds, ref_preds, str(fold.predictions), str(ref.predictions))
                              if ref_preds is not None else
                              {"skipped": f"its labels {fold.labels} differ from {ref.key}'s {ref.labels}"})
    return {"reference": ref.run, "ref_key": ref.key, "label": pair.label, "ref_label": pair.ref_label,
            **counts, "text": pair_text(counts, pair.label, pair.ref_label)}


# --------------------------------------------------------------------------- fold folders


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _code_hash() -> str:
    """Hash of the code that draws a card (this module, the renderers, the landmark parts):
    a new drawing rebuilds every fold, without a version number to remember to bump."""
    import dfer.landmarks.points as points_mod
    import dfer.report.gallery_pairs as pairs_mod
    import dfer.train.render as render_mod

    digest = hashlib.sha256()
    for module_file in (__file__, render_mod.__file__, points_mod.__file__, pairs_mod.__file__):
        digest.update(Path(str(module_file)).read_bytes())
    return digest.hexdigest()[:16]


def fold_inputs(results: Path, fold: Fold, max_cards: int | None, embed_max: int | None,
                code: str, pair: Pair | None = None, stages: Collection[str] | None = None) -> dict[str, Any]:
    """Everything a fold's folder depends on (its ``inputs.json``): equal inputs, equal folder.

    Predictions and metrics by content (small); the dataset's shard artifacts by size and
    mtime (as Snakemake and make judge them: hashing every frames shard would read the whole
    dataset on each report). Every shard of the dataset counts, because the shards are a hash
    of the clip id: each fold's test clips lie in all of them. A fold compared with a
    reference run also depends on the reference's predictions and on the names both get.
    """
    folder = manifest_file(results, fold.dataset).parent
    stats: dict[str, list[int] | None] = {}
    for shard in shards_in(folder, PARQUET):
        for stage, suffix in CARD_SOURCES:
            if stages is not None and stage != "manifest" and stage not in stages:
                continue  # not an input of this report: never looked at
            path = shard_file(results, fold.dataset, stage, shard, suffix)
            try:
                st = path.stat()
                stats[str(path.relative_to(results))] = [st.st_size, st.st_mtime_ns]
            except FileNotFoundError:
                stats[str(path.relative_to(results))] = None
    return {
        "key": fold.key, "title": fold.title, "code": code,
        "max_cards": max_cards, "embed_max": embed_max,
        "predictions": _sha256(fold.predictions),
        "metrics": _sha256(fold.metrics_path) if fold.metrics_path is not None else None,
        "artifacts": stats,
        "pair": None if pair is None else {
            "key": pair.reference.key, "predictions": _sha256(pair.reference.predictions),
            "labels": pair.reference.labels, "label": pair.label, "ref_label": pair.ref_label},
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _embed_count(shown: int, embed_max: int | None) -> int:
    return shown if embed_max is None else min(shown, max(0, int(embed_max)))


def build_fold(results: Path, fold: Fold, gallery: Path, max_cards: int | None,
               embed_max: int | None, inputs: Mapping[str, Any], pair: Pair | None = None,
               stages: Collection[str] | None = None) -> dict[str, Any]:
    """Draw one fold into ``gallery/.{key}.tmp`` and rename it to ``gallery/{key}``; return
    its record. On any error the half-drawn folder is removed and the old one is kept.
    ``pair``: the reference run's evaluation its cards are compared with."""
    preds = pd.read_parquet(fold.predictions)
    paired = None
    if pair is not None:
        ref_preds = (pd.read_parquet(pair.reference.predictions) if pair.reference.labels == fold.labels
                     else None)
        paired = pair_record(fold, pair, preds, ref_preds)
        if ref_preds is None:
            pair = None  # class indices mean different things: no card is compared
        else:
            preds = join_reference(preds, ref_preds, str(fold.predictions), str(pair.reference.predictions))
    chosen = select_cards(preds, max_cards)
    embedded = _embed_count(len(chosen), embed_max)
    staging = gallery / f".{fold.key}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        no_images: list[tuple[str, str]] = []
        lines = card_lines(results, fold, chosen, staging, rel=f"{fold.key}/", no_images=no_images, pair=pair,
                           stages=stages)
        key = json.dumps(fold.key)
        cards_js = f"window.dferCards({key},[{','.join(lines)}]);\n"
        _write(staging / CARDS_FILE, cards_js.encode("utf-8"))
        _write(staging / EMBED_CARDS_FILE, f"[{','.join(lines[:embedded])}]\n".encode())
        _write(staging / NO_IMAGES_FILE, (json.dumps(no_images) + "\n").encode("utf-8"))
        record = fold_record(fold, preds, len(chosen), embedded, max_cards, paired)
        _write(staging / FOLD_FILE, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
        _write(staging / INPUTS_FILE,
               (json.dumps(inputs, sort_keys=True, indent=1) + "\n").encode("utf-8"))
        final = gallery / fold.key
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return record


def _prune(gallery: Path, keys: set[str]) -> None:
    """Remove what no current fold owns: folders of folds no longer evaluated, half-drawn
    ``.{key}.tmp`` folders of a killed run, stray files."""
    for entry in gallery.iterdir():
        if entry.is_dir() and entry.name in keys:
            continue
        if entry.is_file() and entry.name in ("folds.js", "index.html"):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def write_embedded(path: Path, gallery: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """``gallery.html``: the page with each fold's first ``embedded`` cards, images inlined,
    written fold by fold from the folders already drawn (one fold's inlined cards in memory
    at a time), atomically."""
    marker = "\x00dfer-data\x00"
    head, tail = render_page("dfer gallery", marker).split(marker)
    inline_records = [{**r, "shown": r["embedded"]} for r in records]
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        fh.write(head)
        fh.write("<script>window.DFER_INLINE={};")
        for rec in records:
            cards = _read_json(gallery / rec["key"] / EMBED_CARDS_FILE) or []
            for card in cards:
                for key, (_suffix, mime) in IMAGE_KINDS.items():
                    if key in card:
                        card[key] = _data_uri((gallery / card[key]).read_bytes(), mime)
            fh.write(f"window.DFER_INLINE[{_script_json(rec['key'])}]={_script_json(cards)};")
        fh.write(f"window.DFER_FOLDS={_script_json(inline_records)};</script>")
        fh.write(tail)


# --------------------------------------------------------------------------- pages


def _asset(name: str) -> str:
    return resources.files("dfer.report").joinpath("assets", name).read_text(encoding="utf-8")


def _script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>`` or ``<!--`` can end it)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_page(title: str, data_script: str) -> str:
    """The gallery page: template with the CSS, the app and ``data_script`` inlined."""
    page = _asset("gallery.html")
    return (page.replace("{{title}}", html.escape(title))
            .replace("/*{{css}}*/", _asset("gallery.css"))
            .replace("{{data}}", data_script)
            .replace("/*{{js}}*/", _asset("gallery.js")))


def build_gallery(results: Path, metrics_paths: Sequence[Path], out: Path,
                  max_cards: int | None = DEFAULT_GALLERY_MAX,
                  embed_max: int | None = DEFAULT_EMBED_MAX,
                  reference: str | None = None,
                  stages: Mapping[str, Collection[str]] | None = None) -> dict[str, Any]:
    """Write ``out/gallery/`` (every fold, ``max_cards`` cards each) and ``out/gallery.html``
    (``embed_max`` cards each, images inlined). Returns ``{"folds", "cards", "clips",
    "not_shown", "bytes" (size of gallery/), "built", "kept", "no_images", "pairs"}``: ``built``
    folds were drawn, ``kept`` were already up to date (their ``inputs.json`` matched) and left
    untouched; ``no_images``: (fold, clip id, why) of every card of ``gallery/`` without images
    (kept folds included: each fold folder records its own); ``pairs``: (fold title, its
    ``pair`` record) of every fold compared with ``reference`` (a run name; None compares
    nothing): :mod:`dfer.report.gallery_pairs`. ``stages``: dataset -> the stage folders the
    cards may read (the report job's declared inputs; None: all)."""
    results, out = Path(results), Path(out)
    folds = find_folds(results, metrics_paths)
    gallery = out / GALLERY_DIR
    gallery.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / f".{GALLERY_DIR}.tmp", ignore_errors=True)  # an older layout's staging
    _prune(gallery, {f.key for f in folds})
    code = _code_hash()
    records: list[dict[str, Any]] = []
    no_images: list[tuple[str, str, str]] = []
    built = kept = 0
    pairs = pair_folds(folds, reference)
    for fold in folds:
        pair = pairs.get(fold.key)
        read = None if stages is None else stages.get(fold.dataset, ())
        inputs = json.loads(json.dumps(fold_inputs(results, fold, max_cards, embed_max, code, pair, read)))
        folder = gallery / fold.key
        record = _read_json(folder / FOLD_FILE)
        if record is not None and _read_json(folder / INPUTS_FILE) == inputs:
            kept += 1
        else:
            record = build_fold(results, fold, gallery, max_cards, embed_max, inputs, pair, read)
            built += 1
        records.append(record)
        no_images += [(fold.key, str(cid), str(why))
                      for cid, why in _read_json(folder / NO_IMAGES_FILE) or []]
    write_bytes_if_changed(gallery / "folds.js", f"window.DFER_FOLDS={_script_json(records)};\n".encode())
    write_bytes_if_changed(gallery / "index.html",
                           render_page("dfer gallery", '<script src="folds.js"></script>').encode())
    write_embedded(out / EMBED_FILE, gallery, records)
    size = sum(p.stat().st_size for p in gallery.rglob("*") if p.is_file())
    cards = sum(int(r["shown"]) for r in records)
    clips = sum(int(r["clips"]) for r in records)
    return {"folds": len(folds), "cards": cards, "clips": clips, "not_shown": clips - cards,
            "bytes": size, "built": built, "kept": kept, "no_images": no_images,
            "pairs": [(str(r["title"]), r["pair"]) for r in records if r.get("pair")]}
