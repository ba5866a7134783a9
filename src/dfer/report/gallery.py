"""The error-analysis gallery: one card per test clip of every evaluated fold.

Numbers say *how often* the model errs; the gallery shows *on which clips*: a strip of the face
crops the model saw (8 of the T frames) with the landmark and parsing overlays it was given,
the caption it read (and the MLLM's raw text when refinement changed it), the true and
predicted class with the top-3 probabilities, and, when the evaluation recorded them
(:data:`dfer.train.evaluate.EXPLAIN_FIELDS`), the modality weights and similarities behind the
prediction. A clickable confusion matrix filters the cards to one (true, predicted) cell.

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

Overlays are separate transparent PNGs over the JPEG so that toggling them is pure CSS and
both can be on at once; PNG because label colours and 1-px dots survive it (JPEG smears them
and has no alpha). Cards are chosen, when capped, wrong clips first, then least confident.
Everything is written deterministically (same inputs, same bytes).
"""

from __future__ import annotations

import base64
import html
import json
import math
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dfer.core.artifacts import read_meta, write_bytes_atomic
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


@dataclass
class Fold:
    """One evaluation (a fold, in-domain or zero-shot) that has predictions to show."""

    key: str  # folder name under gallery/, unique and file-system safe
    title: str
    dataset: str
    predictions: Path
    metrics: dict[str, Any]
    labels: list[str] = field(default_factory=list)


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
        title = " / ".join(p for p in path.parent.relative_to(results).parts if p != "train")
        folds.append(Fold(key, title, m["dataset"], preds, m, list(m.get("labels", []))))
    return folds


def select_cards(preds: pd.DataFrame, max_cards: int | None) -> pd.DataFrame:
    """The clips to show, at most ``max_cards``: wrong ones first, then by rising confidence
    (the clips that teach most about the errors), clip id breaking ties."""
    order = preds.sort_values(["correct", "prob", "clip_id"], ascending=True, kind="stable")
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


def _tensors(path: Path, ids: set[str]) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        present = set(fh.keys()) & ids
        return {k: fh.get_tensor(k) for k in sorted(present)}


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


def clip_artifacts(results: Path, dataset: str, clip_ids_wanted: Sequence[str]) -> Iterator[tuple[str, ClipArtifacts]]:
    """(clip id, artifacts) of the wanted clips, read one shard at a time (memory bounded by
    a shard, whatever the fold's size); clips not in the manifest come with nothing."""
    # the shard manifests say which shard holds a clip (the ``shard`` column's spelling varies)
    folder = manifest_file(results, dataset).parent
    shard_of = {str(cid): shard for shard in shards_in(folder, PARQUET)
                for cid in pq.read_table(folder / shard_file_name(shard, PARQUET), columns=["clip_id"])
                .column("clip_id").to_pylist()}
    by_shard: dict[str | None, list[str]] = {}
    for cid in clip_ids_wanted:
        by_shard.setdefault(shard_of.get(str(cid)), []).append(str(cid))
    for shard in sorted(by_shard, key=lambda s: (s is None, s or "")):
        ids = set(by_shard[shard])
        if shard is None:
            for cid in sorted(ids):
                yield cid, ClipArtifacts(no_frames=f"not in the manifest of dataset {dataset}")
            continue

        def path(stage: str, suffix: str, s: str = shard) -> Path:
            return shard_file(results, dataset, stage, s, suffix)

        # a missing or damaged tensor shard costs its cards' images, and each card says why
        frames_path, maps_path = path("frames", SAFETENSORS), path("parsing", SAFETENSORS)
        frames_problem = problem(frames_path)
        frames = {} if frames_problem else _tensors(frames_path, ids)
        maps = {} if problem(maps_path) else _tensors(maps_path, ids)
        points = _points(path("landmarks", PARQUET), ids)
        captions = _captions(path("captions", PARQUET), ids)
        absent = (f"frames shard {frames_path}: {frames_problem}" if frames_problem else
                  f"not in {frames_path} (see {path('frames', FAILURES)})")
        for cid in sorted(ids):
            caption, raw = captions.get(cid, (None, None))
            yield cid, ClipArtifacts(frames.get(cid), points.get(cid), maps.get(cid), caption, raw,
                                     None if cid in frames else absent)


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
        card["cap"] = art.caption
        if art.raw_text and art.raw_text.strip() != art.caption.strip():
            card["raw"] = art.raw_text
    for column, key in (("sim_pos", "sp"), ("sim_neg", "sn"), ("modality_weights", "w"), ("level_scores", "ls")):
        value = getattr(row, column, None)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            card[key] = _floats(value)
    return card


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def fold_cards(results: Path, fold: Fold, chosen: pd.DataFrame, image_dir: Path | None,
               rel: str = "", no_images: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """Cards of ``chosen`` in their order. ``image_dir``: write the strips there and refer to
    them as ``{rel}{n}.jpg``; None: inline them as data URIs. ``no_images`` receives
    (clip id, why) of every card without images (its ``noimg`` says why on the page)."""
    arts = dict(clip_artifacts(results, fold.dataset, chosen["clip_id"].astype(str).tolist()))
    cards = []
    for n, row in enumerate(chosen.itertuples(index=False)):
        art = arts.get(str(row.clip_id), ClipArtifacts())
        images: dict[str, str] = {}
        if art.frames is not None and len(art.frames):
            blobs: dict[str, tuple[bytes, str, str]] = {}
            jpeg, idx = face_strip(art.frames)
            blobs["img"] = (jpeg, "jpg", "image/jpeg")
            if art.points is not None:
                blobs["lm"] = (landmark_strip(art.points, idx, art.frames.shape[1]), "lm.png", "image/png")
            if art.maps is not None and len(art.maps):
                blobs["ps"] = (parsing_strip(art.maps, idx), "ps.png", "image/png")
            for key, (data, suffix, mime) in blobs.items():
                if image_dir is None:
                    images[key] = _data_uri(data, mime)
                else:
                    name = f"{n:06d}.{suffix}"
                    _write(image_dir / name, data)
                    images[key] = f"{rel}{name}"
        card = card_record(row, art, images)
        if not images:
            card["noimg"] = art.no_frames or "no frames"
            if no_images is not None:
                no_images.append((str(row.clip_id), card["noimg"]))
        cards.append(card)
    return cards


def _write(path: Path, data: bytes) -> None:
    """Write one gallery file; an ``OSError`` names it (a full disk's ENOSPC names none)."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def fold_record(fold: Fold, preds: pd.DataFrame, shown: int) -> dict[str, Any]:
    """What the page needs about a fold besides its cards: labels, the confusion matrix of
    *all* its clips (not only the shown cards), metrics and the level names of the weights."""
    meta = read_meta(fold.predictions)
    m = fold.metrics
    return {
        "key": fold.key, "title": fold.title, "dataset": fold.dataset, "run": m.get("run"),
        "zero_shot": bool(m.get("zero_shot", False)), "labels": fold.labels,
        "cm": m.get("confusion_matrix", []), "uar": m.get("uar"), "war": m.get("war"),
        "clips": int(len(preds)), "shown": int(shown),
        "levels": list(meta.get("modality_levels") or []),
        "score_levels": list(meta.get("score_levels") or []),
    }


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
                  max_cards: int | None = None, embed_max: int | None = DEFAULT_EMBED_MAX) -> dict[str, Any]:
    """Write ``out/gallery/`` (every fold, ``max_cards`` cards each) and ``out/gallery.html``
    (``embed_max`` cards each, images inlined). Returns ``{"folds": n, "cards": n,
    "bytes": size of gallery/}``. The folder is built beside the old one and swapped in, so a
    reader never sees half a gallery and cards of removed folds do not linger; a build that
    fails (a full disk) leaves no staging folder behind. ``no_images`` in the result: (fold,
    clip id, why) of every card of ``gallery/`` without images."""
    results, out = Path(results), Path(out)
    folds = find_folds(results, metrics_paths)
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".{GALLERY_DIR}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        return _build_gallery(results, folds, out, staging, max_cards, embed_max)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _build_gallery(results: Path, folds: list[Fold], out: Path, staging: Path,
                   max_cards: int | None, embed_max: int | None) -> dict[str, Any]:
    """``build_gallery``'s work, in ``staging`` until it is swapped in."""
    final = out / GALLERY_DIR
    records, inline_records, inline_cards = [], [], {}
    no_images: list[tuple[str, str, str]] = []
    total = 0
    for fold in folds:
        preds = pd.read_parquet(fold.predictions)
        chosen = select_cards(preds, max_cards)
        folder = staging / fold.key
        folder.mkdir()
        missing: list[tuple[str, str]] = []
        cards = fold_cards(results, fold, chosen, folder, rel=f"{fold.key}/", no_images=missing)
        no_images += [(fold.key, cid, why) for cid, why in missing]
        _write(folder / "cards.js", f"window.dferCards({json.dumps(fold.key)},"
                                    f"{_script_json(cards)});\n".encode())
        records.append(fold_record(fold, preds, len(cards)))
        total += len(cards)
        caps = [c for c in (max_cards, embed_max) if c is not None]
        embedded = select_cards(preds, min(caps) if caps else None)
        inline_cards[fold.key] = fold_cards(results, fold, embedded, None)
        inline_records.append(fold_record(fold, preds, len(embedded)))
    _write(staging / "folds.js", f"window.DFER_FOLDS={_script_json(records)};\n".encode())
    _write(staging / "index.html",
           render_page("dfer gallery", '<script src="folds.js"></script>').encode("utf-8"))
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    inline = (f"<script>window.DFER_FOLDS={_script_json(inline_records)};"
              f"window.DFER_INLINE={_script_json(inline_cards)};</script>")
    write_bytes_atomic(out / EMBED_FILE, render_page("dfer gallery", inline).encode("utf-8"))
    size = sum(p.stat().st_size for p in final.rglob("*") if p.is_file())
    return {"folds": len(folds), "cards": total, "bytes": size, "no_images": no_images}

