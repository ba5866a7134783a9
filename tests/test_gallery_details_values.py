"""The gallery's details that tests/test_gallery_values.py leaves open, value by value (issue 25):
file hashes of large files, image encoding settings, thumbnail interpolation, the landmark dot,
fold inputs, the fold folder's file formats and its staging, two folds in one gallery.

Expected values come from hand computation (block means, scaled coordinates, the dot's shape)
or from hashlib / cv2 called directly in the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest

from dfer.core.artifacts import provenance, write_parquet, write_safetensors
from dfer.core.paths import shard_file
from dfer.report import gallery as g
from dfer.report import gallery_pairs as gp
from dfer.train.render import PALETTE, PART_COLOURS


def _decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return img[..., [2, 1, 0, 3]] if img.shape[-1] == 4 else img[..., ::-1]


def test_sha256_of_a_file_larger_than_one_read(tmp_path: Path) -> None:
    data = bytes(range(256)) * (10 * 1024 + 7)  # 2.5 MiB and a bit: three 1 MiB reads
    (tmp_path / "f").write_bytes(data)
    assert g._sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    (tmp_path / "e").write_bytes(b"")
    assert g._sha256(tmp_path / "e") == hashlib.sha256(b"").hexdigest()


def test_code_hash_covers_the_drawing_code() -> None:
    import dfer.landmarks.points as points_mod
    import dfer.report.gallery_pairs as pairs_mod
    import dfer.train.render as render_mod

    digest = hashlib.sha256()
    for f in (g.__file__, render_mod.__file__, points_mod.__file__, pairs_mod.__file__):
        digest.update(Path(f).read_bytes())
    assert g._code_hash() == digest.hexdigest()[:16]


def test_encode_passes_its_settings_and_names_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    want = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 10])[1].tobytes()
    assert g._encode(rgb, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 10]) == want
    assert g._encode(rgb, ".jpg") != want  # the default quality (95) is another file
    monkeypatch.setattr(g.cv2, "imencode", lambda *a: (False, None))
    with pytest.raises(ValueError) as err:
        g._encode(rgb, ".jpg")
    assert str(err.value) == "could not encode a (16, 24, 3) image as .jpg"


def test_strips_are_encoded_with_their_quality_and_compression() -> None:
    frames = np.random.default_rng(1).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    jpeg, idx = g.face_strip(frames)
    assert idx.tolist() == list(range(8))
    strip = np.hstack(list(frames))  # 64 px frames: the thumbnails are the frames
    assert jpeg == cv2.imencode(".jpg", np.ascontiguousarray(strip[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes()
    maps = np.ones((1, 64, 64), np.uint8)
    rgba = np.concatenate([np.broadcast_to(np.uint8(PALETTE[1]), (64, 64, 3)), np.full((64, 64, 1), 140, np.uint8)], -1)
    want = cv2.imencode(".png", np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]), [cv2.IMWRITE_PNG_COMPRESSION, 9])[1]
    assert g.parsing_strip(maps, np.array([0])) == want.tobytes()
    empty = np.zeros((64, 64, 4), np.uint8)
    want = cv2.imencode(".png", empty, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1]
    assert g.landmark_strip({}, np.array([0]), 64) == want.tobytes()


def test_thumbnails_average_the_face_and_keep_parsing_labels() -> None:
    # 256 px: a 4 x 4 block of the source per thumbnail pixel; columns 0, 0, 0, 200 repeating
    face = np.zeros((256, 256, 3), np.uint8)
    face[:, 3::4] = 200
    assert (g._thumb(face) == 50).all()  # the block mean (INTER_AREA), not one sampled column
    # parsing labels 1, 1, 5, 5 repeating: a thumbnail pixel shows the label of its block's
    # first column (nearest), never a mean (3) that is another face part
    maps = np.zeros((1, 256, 256), np.uint8)
    maps[0, :, 0::4] = maps[0, :, 1::4] = 1
    maps[0, :, 2::4] = maps[0, :, 3::4] = 5
    img = _decode(g.parsing_strip(maps, np.array([0])))
    assert (img[..., :3] == np.uint8(PALETTE[1])).all() and (img[..., 3] == g.PARSING_ALPHA).all()


def test_parsing_label_1_is_coloured_and_only_0_is_clear() -> None:
    maps = np.zeros((1, 64, 64), np.uint8)
    maps[0, :32] = 1
    img = _decode(g.parsing_strip(maps, np.array([0])))
    assert img[10, 10].tolist() == [*PALETTE[1], g.PARSING_ALPHA] and img[50, 10, 3] == 0


def test_a_landmark_dot_is_the_centre_and_its_four_neighbours() -> None:
    pts = np.full((68, 2), 32.0)  # a 64 px source: every point at (32, 32)
    img = _decode(g.landmark_strip({0: pts}, np.array([0]), 64))
    on = (img[..., 3] > 0).astype(int)
    want = np.zeros((64, 64), int)
    want[32, 31:34] = 1
    want[31:34, 32] = 1
    assert (on == want).all()
    assert img[32, 31].tolist() == [*PART_COLOURS["inner_lips"], 255]


def test_landmarks_scale_by_the_frame_height_in_double_precision() -> None:
    # 112 px frames: 11.375 * 64 / 112 = 6.5 exactly, which rounds (half to even) to 6; in
    # float32 the product is a little over 6.5 and the dot would move to 7
    pts = np.full((68, 2), np.nan, np.float32)
    pts[:] = (11.375, 21.875)  # x -> 6.5 -> 6, y -> 12.5 -> 12
    img = _decode(g.landmark_strip({0: pts}, np.array([0]), 112))
    assert img[12, 6, 3] == 255 and img[13, 7, 3] == 0 and img[13, 6, 3] == 255
    # card_images takes the source size from the frames' height (frames are square crops;
    # a wider frame must not shrink the dots towards the corner)
    frames = np.zeros((1, 112, 224, 3), np.uint8)
    art = g.ClipArtifacts(frames=frames, points={0: np.full((68, 2), 56.0, np.float32)})
    lm = _decode(g.card_images(art)["lm"])
    assert lm[32, 32, 3] == 255 and lm[16, 16, 3] == 0


def test_card_record_top_three_and_the_negative_similarity() -> None:
    row = SimpleNamespace(clip_id="c", label_idx=4, pred_idx=1, prob=0.4, correct=False,
                          probs=[0.1, 0.4, 0.05, 0.3, 0.15], sim_neg=[0.25, -0.5])
    card = g.card_record(row, g.ClipArtifacts(), {})
    assert card["top"] == [[1, 0.4], [3, 0.3], [4, 0.15]] and card["sn"] == [0.25, -0.5]


def test_a_card_without_frames_or_reason_says_no_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(g, "clip_artifacts", lambda results, dataset, ids, stages=None: iter(
        [("a", g.ClipArtifacts(frames=np.zeros((0, 16, 16, 3), np.uint8)))]))
    chosen = pd.DataFrame({"clip_id": ["a"], "label_idx": [0], "pred_idx": [0], "prob": [0.5], "correct": [True],
                           "probs": [[0.5, 0.5]]})
    no_images: list = []
    lines = g.card_lines(tmp_path, g.Fold("k", "t", "ds", tmp_path, {}), chosen, tmp_path, "k/", no_images)
    assert json.loads(lines[0])["noimg"] == "no frames" and no_images == [("a", "no frames")]


def test_write_keeps_the_errors_text_and_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: Path, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError) as err:
        g._write(tmp_path / "x.jpg", b"1")
    assert (err.value.errno, err.value.strerror) == (28, "No space left on device")

    def bare(self: Path, data: bytes) -> int:
        raise OSError("the device went away")

    monkeypatch.setattr(Path, "write_bytes", bare)
    with pytest.raises(OSError) as err:
        g._write(tmp_path / "y.jpg", b"1")
    assert (err.value.strerror, err.value.filename) == ("the device went away", str(tmp_path / "y.jpg"))


def test_find_folds_goes_on_past_an_evaluation_without_predictions(tmp_path: Path) -> None:
    res = tmp_path / "results"
    paths = []
    for run in ("nopreds", "run"):
        m = res / "ds" / "train" / run / "fold-1" / "metrics.json"
        m.parent.mkdir(parents=True)
        m.write_text(json.dumps({"dataset": "ds"}))
        paths.append(m)
    (paths[1].parent / "predictions.parquet").write_bytes(b"x")
    assert [f.key for f in g.find_folds(res, paths)] == ["ds.run.fold-1"]


def test_prune_looks_at_every_entry(tmp_path: Path) -> None:
    names = [f"old{i:02d}" for i in range(30)]
    for d in ("keep", *names):
        (tmp_path / d).mkdir()
    g._prune(tmp_path, {"keep"})
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]


# --- folds, their folders and the whole gallery --------------------------------------------------


def _results(root: Path, runs: tuple[str, ...] = ("r1", "r2")) -> tuple[Path, list[Path]]:
    """Dataset ``ds``, one shard: clip a (frames, landmarks), b (frames), c and d in the
    landmarks table only; one evaluation per run of clips a, b and z (z: in no manifest)."""
    res = root / "results"
    meta = provenance("test", 1)
    write_parquet(shard_file(res, "ds", "manifest", "000", ".parquet"), pd.DataFrame({"clip_id": ["a", "b"]}), meta)
    write_safetensors(shard_file(res, "ds", "frames", "000", ".safetensors"),
                      {"a": np.full((2, 16, 16, 3), 50, np.uint8), "b": np.full((2, 16, 16, 3), 90, np.uint8)}, meta)
    metrics = []
    for run in runs:
        fold = res / "ds" / "train" / run / "fold-1"
        preds = pd.DataFrame({"clip_id": ["a", "b", "z"], "label_idx": [0] * 3, "pred_idx": [0, 1, 1],
                              "prob": np.float32([0.9, 0.8, 0.6]), "correct": [True, False, False],
                              "probs": [np.float32([0.9, 0.1])] * 3})
        write_parquet(fold / "predictions.parquet", preds, provenance("evaluate", 1))
        (fold / "metrics.json").write_text(json.dumps({"dataset": "ds", "run": run, "labels": ["x", "y"]}))
        metrics.append(fold / "metrics.json")
    return res, metrics


def test_points_of_each_clip_are_its_own_rows(tmp_path: Path) -> None:
    path = tmp_path / "lm.parquet"
    rows = [("a", 0, 1.0), ("a", 1, 2.0), ("b", 0, 3.0), ("b", 2, 4.0), ("c", 5, 5.0)]
    write_parquet(path, pd.DataFrame({"clip_id": [r[0] for r in rows], "frame": [r[1] for r in rows],
                                      "points": [np.full(136, r[2], np.float32).tolist() for r in rows]}),
                  provenance("test", 1))
    got = g._points(path, {"a", "b"})
    assert sorted(got) == ["a", "b"] and sorted(got["b"]) == [0, 2] and sorted(got["a"]) == [0, 1]
    assert got["b"][2][0].tolist() == [4.0, 4.0] and got["a"][1][67].tolist() == [2.0, 2.0]
    bad = tmp_path / "bad.parquet"
    write_parquet(bad, pd.DataFrame({"clip_id": ["a"], "frame": [0], "points": [[1.0, 2.0]]}), provenance("test", 1))
    with pytest.raises(ValueError, match=rf"^{bad}: 2 landmark values for 1 rows"):
        g._points(bad, {"a"})


def test_fold_inputs_every_key(tmp_path: Path) -> None:
    res, (metrics,) = _results(tmp_path, ("r1",))
    fold, = g.find_folds(res, [metrics])
    preds_bytes = fold.predictions.read_bytes()
    got = g.fold_inputs(res, fold, 5, 2, "c0de")
    frames = shard_file(res, "ds", "frames", "000", ".safetensors")
    assert got == {
        "key": "ds.r1.fold-1", "title": "ds / r1 / fold-1", "code": "c0de", "max_cards": 5, "embed_max": 2,
        "predictions": hashlib.sha256(preds_bytes).hexdigest(),
        "metrics": hashlib.sha256(metrics.read_bytes()).hexdigest(),
        "artifacts": {"ds/manifest/shard-000.parquet": [
            os.stat(shard_file(res, "ds", "manifest", "000", ".parquet")).st_size,
            os.stat(shard_file(res, "ds", "manifest", "000", ".parquet")).st_mtime_ns],
            "ds/frames/shard-000.safetensors": [os.stat(frames).st_size, os.stat(frames).st_mtime_ns],
            "ds/landmarks/shard-000.parquet": None, "ds/parsing/shard-000.safetensors": None,
            "ds/captions/shard-000.parquet": None},
        "pair": None}  # no reference run to compare with
    fold.metrics_path = None
    assert g.fold_inputs(res, fold, None, None, "c")["metrics"] is None


def test_fold_folder_files_and_staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res, (metrics,) = _results(tmp_path, ("r1",))
    fold, = g.find_folds(res, [metrics])
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    stale = gallery / ".ds.r1.fold-1.tmp"  # a killed run's half-drawn folder
    stale.mkdir()
    (stale / "000009.jpg").write_bytes(b"old")
    inputs = {"z": 1, "a": {"y": 2, "b": 3}}
    record = g.build_fold(res, fold, gallery, None, None, inputs)
    folder = gallery / "ds.r1.fold-1"
    assert not stale.exists() and not (folder / "000009.jpg").exists()
    assert (folder / g.INPUTS_FILE).read_text() == '{\n "a": {\n  "b": 3,\n  "y": 2\n },\n "z": 1\n}\n'
    text = (folder / g.FOLD_FILE).read_text()
    assert text.endswith("}\n") and list(json.loads(text)) == sorted(record)  # keys sorted
    assert json.loads(text) == record
    # an error while drawing: the staging folder goes, the old folder and the error stay

    def broken(*a: object, **k: object) -> list[str]:
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(g, "card_lines", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        g.build_fold(res, fold, gallery, None, None, inputs)
    assert not stale.exists() and (folder / g.FOLD_FILE).read_text() == text


def test_two_folds_counted_and_pages_written(tmp_path: Path) -> None:
    res, metrics = _results(tmp_path)
    out = tmp_path / "report"
    (out / ".gallery.tmp").mkdir(parents=True)  # an older layout's staging
    first = g.build_gallery(res, metrics, out, max_cards=None, embed_max=1)
    assert not (out / ".gallery.tmp").exists()
    assert (first["built"], first["kept"], first["folds"], first["cards"]) == (2, 0, 2, 6)
    why = "not in the manifest of dataset ds"
    assert first["no_images"] == [("ds.r1.fold-1", "z", why), ("ds.r2.fold-1", "z", why)]
    inputs = json.loads((out / "gallery" / "ds.r1.fold-1" / g.INPUTS_FILE).read_text())
    assert inputs["code"] == g._code_hash() and len(inputs["code"]) == 16
    index = (out / "gallery" / "index.html").read_text()
    # the template's data line is exactly the script that loads folds.js
    assert "<title>dfer gallery</title>" in index and '\n<script src="folds.js"></script>\n' in index
    page = (out / g.EMBED_FILE).read_text()
    assert "<title>dfer gallery</title>" in page
    folds = json.loads(page.split("window.DFER_FOLDS=", 1)[1].split(";</script>", 1)[0])
    assert [(f["key"], f["shown"], f["embedded"]) for f in folds] == [("ds.r1.fold-1", 1, 1), ("ds.r2.fold-1", 1, 1)]
    again = g.build_gallery(res, metrics, out, max_cards=None, embed_max=1)
    assert (again["built"], again["kept"]) == (0, 2) and again["no_images"] == first["no_images"]


def test_fold_inputs_keep_to_the_declared_stages_and_name_the_pair(tmp_path: Path) -> None:
    """With the report's stage folders given, only those (and the manifest) are inputs; a
    compared fold also depends on the reference's predictions, labels and both names."""
    res, (m1, m2) = _results(tmp_path, ("r1", "r2"))
    f1, f2 = g.find_folds(res, [m1, m2])
    assert f1.slot == f2.slot == ("ds", "fold-1")  # the same fold of two runs: comparable
    got = g.fold_inputs(res, f2, 5, 2, "c", stages={"frames"})
    assert sorted(got["artifacts"]) == ["ds/frames/shard-000.safetensors", "ds/manifest/shard-000.parquet"]
    pair = gp.Pair(f1, "Mine", "Theirs")
    assert g.fold_inputs(res, f2, 5, 2, "c", pair)["pair"] == {
        "key": "ds.r1.fold-1", "predictions": hashlib.sha256(f1.predictions.read_bytes()).hexdigest(),
        "labels": ["x", "y"], "label": "Mine", "ref_label": "Theirs"}


def test_a_duplicate_prediction_of_a_compared_fold_names_its_file(tmp_path: Path) -> None:
    res, (m1, m2) = _results(tmp_path, ("r1", "r2"))
    path = m2.parent / "predictions.parquet"
    preds = pd.read_parquet(path)
    write_parquet(path, pd.concat([preds, preds.head(1)], ignore_index=True), provenance("evaluate", 1))
    with pytest.raises(ValueError, match=re.escape(f"{path}: clip 'a' has more than one prediction")):
        g.build_gallery(res, [m1, m2], tmp_path / "out", max_cards=None, embed_max=None, reference="r1")
