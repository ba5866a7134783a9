"""The gallery's cards, strips and fold folders, value by value (issue 25).

Fast and direct (no training run): which clips become cards and in what order, every key of a
card and of a fold record, the strips decoded back to pixels (colours of the face, the landmark
parts and the parsing labels, transparency), the page template, the data escaping, which
folders a rebuild keeps, and one small gallery built twice: the second time nothing is redrawn
until a prediction changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest

from dfer.core.artifacts import provenance, write_parquet, write_safetensors
from dfer.core.paths import shard_file
from dfer.landmarks.points import PARTS
from dfer.report import gallery as g
from dfer.train.render import PALETTE, PART_COLOURS


def _decode(data: bytes) -> np.ndarray:
    """PNG / JPEG bytes -> RGB(A) array (cv2 decodes to BGR(A))."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return img[..., [2, 1, 0, 3]] if img.shape[-1] == 4 else img[..., ::-1]


def test_fold_keys_and_found_folds(tmp_path: Path) -> None:
    res = tmp_path / "results"
    m1 = res / "ds" / "train" / "run" / "fold-2" / "metrics.json"
    m2 = res / "ds" / "train" / "zeroshot-from-x" / "fold-1" / "metrics.json"
    m3 = res / "ds" / "train" / "nopreds" / "fold-1" / "metrics.json"
    for m, labels in ((m1, ["a", "b"]), (m2, None), (m3, ["a"])):
        m.parent.mkdir(parents=True)
        m.write_text(json.dumps({"dataset": "ds", **({"labels": labels} if labels else {})}))
    for m in (m1, m2):
        (m.parent / "predictions.parquet").write_bytes(b"x")
    assert g.fold_key(m1, res) == "ds.run.fold-2"
    folds = g.find_folds(res, [m2, m1, m3])
    assert [(f.key, f.title, f.dataset, f.labels, f.metrics_path) for f in folds] == [
        ("ds.zeroshot-from-x.fold-1", "ds / zeroshot-from-x / fold-1", "ds", [], m2),
        ("ds.run.fold-2", "ds / run / fold-2", "ds", ["a", "b"], m1)]
    assert folds[1].predictions == m1.parent / "predictions.parquet" and folds[1].metrics == {
        "dataset": "ds", "labels": ["a", "b"]}


def test_cards_are_wrong_first_then_least_confident_then_by_id() -> None:
    preds = pd.DataFrame({"clip_id": ["e", "d", "c", "b", "a"], "correct": [True, False, True, False, False],
                          "prob": [0.5, 0.9, 0.2, 0.9, 0.3]})
    assert g.select_cards(preds, None)["clip_id"].tolist() == ["a", "b", "d", "c", "e"]
    assert g.select_cards(preds, 2)["clip_id"].tolist() == ["a", "b"]
    assert g.select_cards(preds, 0).empty and g.select_cards(preds, -3).empty
    assert g._embed_count(5, None) == 5 and g._embed_count(5, 3) == 3 and g._embed_count(5, 9) == 5
    assert g._embed_count(5, -1) == 0


def test_card_text_floats_and_script_json() -> None:
    assert g._card_text("x" * 2000) == "x" * 2000
    assert g._card_text("x" * 3234) == "x" * 2000 + " ... [1,234 more characters not shown]"
    assert g._floats([0.123456, -0.00001, float("nan"), [1, 2.55555]]) == [0.1235, 0.0, None, [1.0, 2.5556]]
    assert str(g._floats([-0.00001])[0]) == "0.0"  # no -0.0
    assert g._floats([0.5], digits=0) == [0.0] and g._floats(np.array([[1.25]]), 1) == [[1.2]]
    text = g._script_json({"b": "</script><!-- \u2028\u2029", "a": "é"})
    assert text == '{"a":"é","b":"\\u003c/script>\\u003c!-- \\u2028\\u2029"}'
    assert json.loads(text) == {"a": "é", "b": "</script><!-- \u2028\u2029"}


def _row(**kw: object) -> SimpleNamespace:
    base = {"clip_id": 7, "label_idx": 2, "pred_idx": 0, "prob": 0.612345, "correct": False,
            "probs": np.float32([0.612345, 0.1, 0.287655])}
    return SimpleNamespace(**{**base, **kw})


def test_card_record_every_key() -> None:
    art = g.ClipArtifacts(caption="The lips part.", raw_text=" The lips part. ")
    card = g.card_record(_row(sim_pos=[[0.5, float("nan")]], sim_neg=float("nan"), modality_weights=np.array([0.25, 0.75])),
                         art, {"img": "k/000001.jpg"})
    assert card == {"id": "7", "t": 2, "p": 0, "c": 0.6123, "ok": False,
                    "top": [[0, 0.6123], [2, 0.2877], [1, 0.1]], "img": "k/000001.jpg",
                    "cap": "The lips part.", "sp": [[0.5, None]], "w": [0.25, 0.75]}
    other = g.card_record(_row(probs=[0.2, 0.2, 0.6], correct=True),
                          g.ClipArtifacts(caption="a", raw_text="b " + "y" * 2100), {})
    assert other["top"] == [[2, 0.6], [0, 0.2], [1, 0.2]] and other["ok"] is True
    assert other["raw"].startswith("b yy") and other["raw"].endswith("[102 more characters not shown]")
    assert "cap" not in g.card_record(_row(), g.ClipArtifacts(raw_text="r"), {})
    assert g.card_record(_row(level_scores=[[1, 2]]), g.ClipArtifacts(), {})["ls"] == [[1.0, 2.0]]


def test_fold_record_every_key(tmp_path: Path) -> None:
    preds_path = tmp_path / "predictions.parquet"
    write_parquet(preds_path, pd.DataFrame({"clip_id": ["a", "b", "c"]}),
                  provenance("evaluate", 1, modality_levels=["video", "parsing"], score_levels=["video"]))
    fold = g.Fold("k", "ds / r / fold-1", "ds", preds_path,
                  {"run": "r", "zero_shot": 1, "confusion_matrix": [[1]], "uar": 0.5, "war": 0.25,
                   "test_clips": {"text": "evaluated 3 of 4 test clips"}}, ["x"])
    preds = pd.read_parquet(preds_path)
    assert g.fold_record(fold, preds, 2, 1, 2) == {
        "key": "k", "title": "ds / r / fold-1", "dataset": "ds", "run": "r", "zero_shot": True, "labels": ["x"],
        "cm": [[1]], "uar": 0.5, "war": 0.25, "clips": 3, "shown": 2, "embedded": 1, "cap": 2,
        "coverage": "evaluated 3 of 4 test clips", "levels": ["video", "parsing"], "score_levels": ["video"],
        "pair": None}
    write_parquet(preds_path, preds, provenance("evaluate", 1))
    bare = g.fold_record(g.Fold("k", "t", "ds", preds_path, {}), preds, 3)
    assert (bare["run"], bare["zero_shot"], bare["cm"], bare["uar"], bare["embedded"], bare["cap"]) == (
        None, False, [], None, 3, None)
    assert (bare["coverage"], bare["levels"], bare["score_levels"], bare["labels"]) == (None, [], [], [])


def test_face_strip_tiles_the_evenly_spaced_frames() -> None:
    frames = np.stack([np.full((16, 16, 3), (10 * k, 200, 250 - 10 * k), np.uint8) for k in range(20)])
    jpeg, idx = g.face_strip(frames)
    assert idx.tolist() == [0, 3, 5, 8, 11, 14, 16, 19]  # round(linspace(0, 19, 8))
    img = _decode(jpeg)
    assert img.shape == (64, 8 * 64, 3)
    for tile, k in enumerate(idx):
        centre = img[32, tile * 64 + 32].astype(int)
        assert np.abs(centre - [10 * k, 200, 250 - 10 * k]).max() <= 8  # JPEG, RGB order kept
    three, idx3 = g.face_strip(frames[:3])
    assert idx3.tolist() == [0, 1, 2] and _decode(three).shape == (64, 3 * 64, 3)


def test_landmark_strip_dots_in_part_colours_and_empty_tiles() -> None:
    pts = np.full((68, 2), 8.0)  # a 16 px source: every point at (8, 8) -> (32, 32) in the tile
    pts[list(PARTS["r_eye"])] = (2.0, 2.0)  # -> (8, 8)
    no_face = np.full((68, 2), np.nan)
    img = _decode(g.landmark_strip({0: pts, 2: no_face}, np.array([0, 1, 2]), 16))
    assert img.shape == (64, 3 * 64, 4)
    assert img[8, 8].tolist() == [*PART_COLOURS["r_eye"], 255]
    assert img[32, 32].tolist() == [*PART_COLOURS["inner_lips"], 255]  # the last part drawn there
    assert img[20, 20, 3] == 0  # between the dots: clear
    assert img[:, 64:, 3].max() == 0  # frame 1 has no points, frame 2 no face


def test_parsing_strip_colours_labels_and_clears_the_background() -> None:
    maps = np.zeros((2, 16, 16), np.uint8)
    maps[0, :8] = 5
    maps[1] = 2
    img = _decode(g.parsing_strip(maps, np.array([0, 1, 7])))  # frame 7 past the end: the last map
    assert img.shape == (64, 3 * 64, 4)
    assert img[10, 10].tolist() == [*PALETTE[5], g.PARSING_ALPHA] and img[50, 10, 3] == 0
    assert img[50, 64 + 10].tolist() == [*PALETTE[2], g.PARSING_ALPHA]
    assert img[10, 128 + 10].tolist() == img[10, 64 + 10].tolist()


def test_card_images_draw_what_the_clip_has() -> None:
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    assert g.card_images(g.ClipArtifacts()) == {}
    assert g.card_images(g.ClipArtifacts(frames=frames[:0])) == {}
    assert set(g.card_images(g.ClipArtifacts(frames=frames))) == {"img"}
    assert set(g.card_images(g.ClipArtifacts(frames=frames, maps=np.zeros((0, 16, 16), np.uint8)))) == {"img"}
    both = g.card_images(g.ClipArtifacts(frames=frames, points={0: np.full((68, 2), 8.0)},
                                         maps=np.ones((4, 16, 16), np.uint8)))
    assert set(both) == {"img", "lm", "ps"} and both["lm"].startswith(b"\x89PNG")
    assert both["img"].startswith(b"\xff\xd8")  # JPEG


def test_page_template_and_write_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = g.render_page("a <b> & c", "<script>DATA</script>")
    assert "<title>a &lt;b&gt; &amp; c</title>" in page and "<script>DATA</script>" in page
    assert "{{" not in page and "/*{{" not in page
    assert g._asset("gallery.css") in page and g._asset("gallery.js") in page

    def full(self: Path, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError) as err:
        g._write(tmp_path / "x.jpg", b"1")
    assert err.value.filename == str(tmp_path / "x.jpg") and err.value.errno == 28
    monkeypatch.undo()
    with pytest.raises(IsADirectoryError) as err:
        g._write(tmp_path, b"1")
    assert err.value.filename == str(tmp_path)


def test_prune_keeps_current_folds_and_the_page(tmp_path: Path) -> None:
    for d in ("keep", "old", ".keep.tmp"):
        (tmp_path / d).mkdir()
    for f in ("folds.js", "index.html", "stray.txt"):
        (tmp_path / f).write_text("x")
    g._prune(tmp_path, {"keep"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folds.js", "index.html", "keep"]


def _results(root: Path) -> tuple[Path, Path]:
    """Dataset ``ds``: shard 000 holds clips a, b (frames, landmarks of a, parsing, captions),
    shard 001 holds c (frames only); predictions of a, b, c and of z (in no manifest)."""
    res = root / "results"
    meta = provenance("test", 1)
    write_parquet(shard_file(res, "ds", "manifest", "000", ".parquet"), pd.DataFrame({"clip_id": ["b", "a"]}), meta)
    write_parquet(shard_file(res, "ds", "manifest", "001", ".parquet"), pd.DataFrame({"clip_id": ["c"]}), meta)
    frames = {c: np.full((4, 16, 16, 3), v, np.uint8) for c, v in (("a", 50), ("b", 100))}
    write_safetensors(shard_file(res, "ds", "frames", "000", ".safetensors"), frames, meta)
    write_safetensors(shard_file(res, "ds", "frames", "001", ".safetensors"),
                      {"c": np.zeros((4, 16, 16, 3), np.uint8)}, meta)
    write_safetensors(shard_file(res, "ds", "parsing", "000", ".safetensors"),
                      {"a": np.ones((4, 16, 16), np.uint8)}, meta)
    write_parquet(shard_file(res, "ds", "landmarks", "000", ".parquet"),
                  pd.DataFrame({"clip_id": ["a"] * 4, "frame": [3, 1, 0, 2],
                                "points": [np.full(136, 8.0, np.float32).tolist()] * 4}), meta)
    write_parquet(shard_file(res, "ds", "captions", "000", ".parquet"),
                  pd.DataFrame({"clip_id": ["a", "b"], "caption": ["cap a", "cap b"]}), meta)
    fold = res / "ds" / "train" / "r" / "fold-1"
    ids = ["a", "b", "c", "z"]
    preds = pd.DataFrame({"clip_id": ids, "label": ["x"] * 4, "label_idx": [0] * 4, "pred_idx": [0, 1, 0, 1],
                          "pred_label": ["x", "y", "x", "y"], "prob": np.float32([0.9, 0.8, 0.7, 0.6]),
                          "correct": [True, False, True, False],
                          "probs": [np.float32([0.9, 0.1])] * 4})
    write_parquet(fold / "predictions.parquet", preds, provenance("evaluate", 1, labels=["x", "y"]))
    (fold / "metrics.json").write_text(json.dumps({"dataset": "ds", "run": "r", "fold": 1, "uar": 0.5,
                                                   "war": 0.5, "labels": ["x", "y"]}))
    return res, fold / "metrics.json"


def test_clip_artifacts_shard_by_shard(tmp_path: Path) -> None:
    res, _ = _results(tmp_path)
    got = list(g.clip_artifacts(res, "ds", ["z", "c", "b", "a"]))
    assert [cid for cid, _ in got] == ["a", "b", "c", "z"]  # shard order, clip order, the unknown last
    a, b, c, z = (art for _, art in got)
    assert a.frames[0, 0, 0, 0] == 50 and sorted(a.points) == [0, 1, 2, 3] and a.points[2].shape == (68, 2)
    assert a.maps.shape == (4, 16, 16) and (a.caption, a.raw_text, a.no_frames) == ("cap a", None, None)
    assert b.points is None and b.maps is None and b.caption == "cap b"
    assert c.caption is None and c.maps is None and c.frames is not None
    assert z.frames is None and z.no_frames == "not in the manifest of dataset ds"
    # a damaged frames shard: every card of it says why
    shard_file(res, "ds", "frames", "001", ".safetensors").write_bytes(b"")
    (_, c2), = [(cid, art) for cid, art in g.clip_artifacts(res, "ds", ["c"])]
    assert c2.frames is None and c2.no_frames.startswith("frames shard ") and "empty file (0 bytes)" in c2.no_frames
    shard_file(res, "ds", "frames", "001", ".safetensors").unlink()
    write_safetensors(shard_file(res, "ds", "frames", "001", ".safetensors"), {"other": np.zeros(1, np.uint8)},
                      provenance("test", 1))
    (_, c3), = list(g.clip_artifacts(res, "ds", ["c"]))
    assert c3.no_frames == (f"not in {shard_file(res, 'ds', 'frames', '001', '.safetensors')} "
                            f"(see {shard_file(res, 'ds', 'frames', '001', '.failures.parquet')})")


def test_small_gallery_built_then_kept_then_rebuilt(tmp_path: Path) -> None:
    res, metrics = _results(tmp_path)
    out = tmp_path / "report"
    first = g.build_gallery(res, [metrics], out, max_cards=3, embed_max=1)
    assert {k: first[k] for k in ("folds", "cards", "clips", "not_shown", "built", "kept")} == {
        "folds": 1, "cards": 3, "clips": 4, "not_shown": 1, "built": 1, "kept": 0}
    assert first["no_images"] == [("ds.r.fold-1", "z", "not in the manifest of dataset ds")]
    folder = out / g.GALLERY_DIR / "ds.r.fold-1"
    # cards: wrong first (z 0.6, b 0.8), then the least confident right one (c 0.7); at most 3
    cards = json.loads((folder / g.CARDS_FILE).read_text()[len('window.dferCards("ds.r.fold-1",'):-3])
    assert [c["id"] for c in cards] == ["z", "b", "c"]
    assert cards[0]["noimg"] == "not in the manifest of dataset ds" and "img" not in cards[0]
    assert cards[1]["img"] == "ds.r.fold-1/000001.jpg" and cards[1]["cap"] == "cap b"
    assert sorted(p.name for p in folder.iterdir()) == ["000001.jpg", "000002.jpg", "cards.js", "embed.json",
                                                        "fold.json", "inputs.json", "noimg.json"]
    assert json.loads((folder / g.EMBED_CARDS_FILE).read_text())[0]["id"] == "z"  # embed_max 1
    record = json.loads((folder / g.FOLD_FILE).read_text())
    assert (record["shown"], record["embedded"], record["cap"], record["clips"]) == (3, 1, 3, 4)
    inputs = json.loads((folder / g.INPUTS_FILE).read_text())
    assert inputs["max_cards"] == 3 and inputs["embed_max"] == 1 and inputs["metrics"] == g._sha256(metrics)
    assert inputs["artifacts"]["ds/landmarks/shard-001.parquet"] is None
    assert inputs["artifacts"]["ds/frames/shard-000.safetensors"][0] > 0
    assert (out / g.GALLERY_DIR / "folds.js").read_text().startswith("window.DFER_FOLDS=[")
    assert (out / g.EMBED_FILE).read_text().count('"id":"z"') == 1

    again = g.build_gallery(res, [metrics], out, max_cards=3, embed_max=1)
    assert (again["built"], again["kept"]) == (0, 1) and again["no_images"] == first["no_images"]
    assert again["bytes"] == first["bytes"] > 0
    other_cap = g.build_gallery(res, [metrics], out, max_cards=None, embed_max=1)
    assert (other_cap["built"], other_cap["cards"], other_cap["not_shown"]) == (1, 4, 0)
    (out / g.GALLERY_DIR / "old.fold").mkdir()
    assert g.build_gallery(res, [], out)["folds"] == 0
    assert sorted(p.name for p in (out / g.GALLERY_DIR).iterdir()) == ["folds.js", "index.html"]
