"""``dfer predict``: frame folders, folders of clips and globs, ``--labels``, ``--json``,
``--output`` tables, ``--overlay`` strips, bad input, and checkpoint reload exactness.

A tiny model is trained for one epoch on a synthetic dataset (CPU, float32), then predicts
the astronaut face clip of ``support.videos`` stored losslessly twice: as a PNG frame folder
and as an FFV1 video. Both decode to the same pixels, so a folder must be predicted exactly
like the video. Landmarks use dlib's ``crop`` detector (the face box is the decode crop), so
nothing depends on a detector's score on this machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from face_geometry import FACE_SIDE
from support.dataset import simple_renderers, write_synthetic_dataset
from support.videos import face_frames, write_frame_folder, write_video

from dfer.cli import main as cli_main
from dfer.inference.overlay import BAND, TILE, overlay_names
from dfer.inference.predict import Predictor, predict_videos
from dfer.inference.sources import expand_sources
from dfer.methods.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from dfer.train.data import ClipDataset, DataConfig, fold_split, load_clip_table
from dfer.train.fit import train_fold
from dfer.train.inputs import needs_for

LABELS = ["class0", "class1", "class2"]
PRE = {"decode": {"num_frames": 4, "size": 112},
       "landmarks": {"backend": "dlib", "detector": "crop"},
       "parsing": {"backend": "landmarks"}}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    write_synthetic_dataset(root, "pre", num_classes=3, clips_per_class=2, frames=4, size=32)
    return root


@pytest.fixture(scope="module")
def checkpoint(results: Path) -> Path:
    params = {
        "dataset": "pre", "device": "cpu",
        "model": {"backbone": "tiny", "pretrained": None},
        "data": {"batch_size": 4, "num_workers": 0, "num_frames": 4},
        "optim": {"lr": 1e-2},
        "trainer": {"max_epochs": 1, "seed": 0, "log_every_n_steps": 1, "precision": "32-true"},
    }
    out = results / "pre" / "train" / "r" / "fold-1"
    return train_fold(results, "pre", 1, "r", params, out, renderers=simple_renderers())


@pytest.fixture(scope="module")
def face(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("face")
    frames = face_frames(8, size=FACE_SIDE, seed=1)
    return {"folder": write_frame_folder(d / "clip_frames", frames, ext=".png"),
            "video": write_video(d / "clip.mkv", frames, codec="ffv1", pix_fmt="bgr0")}


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_frame_folder_is_predicted_like_the_same_frames_as_a_video(checkpoint, face, capsys):
    # one clip per forward pass: in one batch, rows may differ in the last float bit
    folder, video = predict_videos(checkpoint, [face["folder"], face["video"]], device="cpu",
                                   preprocessing=PRE, batch_size=1)
    assert folder.error is None and video.error is None
    assert folder.labels == LABELS and folder.probs.shape == (3,)
    assert folder.probs.sum() == pytest.approx(1.0, abs=1e-6)
    # lossless both ways: the same pixels, so the same probabilities, bit for bit
    assert np.array_equal(folder.probs, video.probs)

    code = cli_main(["predict", "--checkpoint", str(checkpoint), "--device", "cpu", "--json",
                     "--preprocessing", json.dumps(PRE), str(face["folder"])])
    (line,) = _json_lines(capsys.readouterr().out)
    assert code == 0 and line["path"] == str(face["folder"])
    assert list(line["probs"]) == LABELS
    assert line["probs"] == pytest.approx(dict(zip(LABELS, folder.probs.tolist(), strict=True)), abs=1e-6)
    assert line["label"] == LABELS[int(np.argmax(folder.probs))]


def test_image_file_is_a_still_predicted_like_a_folder_of_that_one_image(checkpoint, face,
                                                                           tmp_path):
    """An image named on its own is a still (issue 27): decoded as one frame, repeated by the
    model side, it gets the probabilities of a frame folder holding only that image (decoded
    as copies of it), bit for bit."""
    image = next(iter(sorted(face["folder"].iterdir())))
    alone = tmp_path / "one" / image.name
    alone.parent.mkdir()
    alone.write_bytes(image.read_bytes())
    (source,) = expand_sources([str(image)])
    assert (source.path, source.kind) == (str(image), "image")
    still, folder = predict_videos(checkpoint, [image, alone.parent], device="cpu",
                                   preprocessing=PRE, batch_size=1)
    assert still.error is None and folder.error is None
    assert still.num_frames == 1
    assert np.array_equal(still.probs, folder.probs)


def test_labels_option_scores_the_given_names(checkpoint, face, capsys):
    (trained,) = predict_videos(checkpoint, [face["folder"]], device="cpu", preprocessing=PRE)
    # Two of the trained names, reordered: each class is scored by its own text, so the
    # probabilities are the trained ones of those classes, renormalised over the two.
    code = cli_main(["predict", "--checkpoint", str(checkpoint), "--device", "cpu", "--json",
                     "--preprocessing", json.dumps(PRE), "--labels", "class2,class0",
                     str(face["folder"])])  # comma-separated: the clip after it stays a clip
    (line,) = _json_lines(capsys.readouterr().out)
    assert code == 0 and list(line["probs"]) == ["class2", "class0"]
    sub = trained.probs[[2, 0]].astype(np.float64)
    assert [line["probs"]["class2"], line["probs"]["class0"]] == pytest.approx(list(sub / sub.sum()), abs=1e-5)
    assert line["label"] == ("class2" if sub[0] >= sub[1] else "class0")
    # plain-text output: the path, then the top class names with probabilities
    assert cli_main(["predict", "--checkpoint", str(checkpoint), "--device", "cpu", "--top", "1",
                     "--preprocessing", json.dumps(PRE), "--labels", "joy", "--labels", "anger",
                     str(face["folder"])]) == 0
    path, top = capsys.readouterr().out.strip().split("\t")  # one clip: VIDEO not taken as a label
    assert path == str(face["folder"]) and top.split()[0] in {"joy", "anger"}


def _dataset_probs(model, results: Path) -> dict[str, torch.Tensor]:
    needs = needs_for(model.cfg)
    table = load_clip_table(results, "pre", needs)
    ds = ClipDataset("pre", fold_split(table.clips, 1, "all"), table, needs,
                     DataConfig(num_frames=4, num_workers=0), model.image_size, train=False,
                     renderers=simple_renderers())
    out = {}
    for i in range(len(ds)):
        item = ds[i]
        inputs = {k: item[k].unsqueeze(0) for k in ("frames", "parsing", "landmarks") if k in item}
        out[item["clip_id"]] = model.predict_proba(**inputs)[0]
    return out


def test_reloaded_checkpoint_gives_identical_probabilities(checkpoint, results, tmp_path):
    first, _ = load_checkpoint(checkpoint)
    again, _ = load_checkpoint(checkpoint)
    a = _dataset_probs(first.to("cpu").float(), results)
    b = _dataset_probs(again.to("cpu").float(), results)
    assert len(a) == 6 and a.keys() == b.keys()
    assert all(a[k].dtype == torch.float32 and torch.equal(a[k], b[k]) for k in a)
    # saving the loaded model and loading that: the same weights and the same probabilities
    resaved = save_checkpoint(tmp_path / "again.safetensors", first, dataset="pre", run="r")
    s1, _ = read_checkpoint(checkpoint)
    s2, _ = read_checkpoint(resaved)
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    third, _ = load_checkpoint(resaved)
    c = _dataset_probs(third.to("cpu").float(), results)
    assert all(torch.equal(a[k], c[k]) for k in a)


# ---------------------------------------------------------------- which clips a command names
def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_sources_rule_files_frame_folders_folders_of_clips_globs(tmp_path):
    clips = tmp_path / "clips"
    a10, a2 = _touch(clips / "a10.mp4"), _touch(clips / "a2.MKV")
    _touch(clips / "notes.txt")  # not a video: ignored in a folder of clips
    sub = clips / "f1"
    _touch(sub / "00001.jpg")
    _touch(clips / "deeper" / "inner" / "00001.jpg")  # two levels down: not searched
    single = _touch(tmp_path / "frames" / "00001.png").parent
    got = expand_sources([str(clips), str(single), str(a2), str(tmp_path / "clips" / "*.mp4"),
                          str(tmp_path / "nothing*.avi"), str(tmp_path / "gone.mp4"),
                          str(_touch(tmp_path / "empty" / "readme.md").parent)])
    assert [(Path(s.path).relative_to(tmp_path).as_posix() if s.path.startswith(str(tmp_path)) else s.path,
             s.kind if s.error is None else s.error_type) for s in got] == [
        ("clips/a2.MKV", "video"),   # natural order: a2 before a10
        ("clips/a10.mp4", "video"),
        ("clips/f1", "frames"),
        ("frames", "frames"),        # a folder holding images is one clip
        # a2.MKV again and the glob's a10.mp4: already listed, predicted once
        ("nothing*.avi", "missing_file"),
        ("gone.mp4", "missing_file"),
        ("empty", "no_frames"),
    ]
    assert [s.path for s in got[:2]] == [str(a2), str(a10)]
    errors = {Path(s.path).name: s.error for s in got if s.error}
    assert errors["nothing*.avi"] == "the pattern matches no file or folder"
    assert errors["empty"].startswith("empty folder: no video files")


def test_a_folder_of_videos_and_an_image_is_a_folder_of_clips_with_a_note(tmp_path):
    """Videos and a loose image in one folder: each video is a clip and the image is named in a
    note (the folder was taken for ONE frame folder, its videos silently ignored)."""
    mixed = tmp_path / "mixed"
    v1, v2 = _touch(mixed / "v1.mp4"), _touch(mixed / "v2.avi")
    _touch(mixed / "cover.jpg")
    frames = _touch(mixed / "f" / "00001.png").parent
    only_images = _touch(tmp_path / "stills" / "a.jpg").parent
    _touch(only_images / "b.jpg")
    notes: list[str] = []
    got = expand_sources([str(mixed), str(only_images)], notes)
    assert [(s.path, s.kind) for s in got] == [(str(frames), "frames"), (str(v1), "video"),
                                               (str(v2), "video"), (str(only_images), "frames")]
    assert notes == [f"{mixed}: 1 image file(s) not predicted (cover.jpg): a folder holding "
                     "videos or frame folders is a folder of clips, and its 3 clip(s) were "
                     "predicted; to predict the images as one clip, move them into a folder of "
                     "their own (a frame folder)"]


def test_overlay_names_are_unique_and_follow_the_clip():
    names = overlay_names(["x/a.mp4", "y/a.mp4", "x/b c.mp4", "frames/clip_7"])
    assert names["x/b c.mp4"] == "b_c.mp4.png" and names["frames/clip_7"] == "clip_7.png"
    assert names["x/a.mp4"] != names["y/a.mp4"]
    assert all(names[p].startswith("a.mp4-") and names[p].endswith(".png") for p in ("x/a.mp4", "y/a.mp4"))


# ---------------------------------------------------------------- many clips, one invocation
@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A folder of clips: two lossless videos and a frame folder; plus a one-frame clip."""
    d = tmp_path_factory.mktemp("many")
    clips = d / "clips"
    clips.mkdir()
    out = {"dir": clips}
    for i, name in enumerate(("c1.mkv", "c2.mkv")):
        out[name] = write_video(clips / name, face_frames(8, size=FACE_SIDE, seed=10 + i),
                                codec="ffv1", pix_fmt="bgr0")
    out["c3"] = write_frame_folder(clips / "c3", face_frames(6, size=FACE_SIDE, seed=12), ext=".png")
    out["one"] = write_frame_folder(d / "one_frame", face_frames(1, size=FACE_SIDE, seed=13), ext=".png")
    return out


def _run(capsys, *argv: str) -> tuple[int, str, list[str]]:
    code = cli_main(["predict", "--device", "cpu", "--no-progress", *argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err.splitlines()


def test_folder_and_glob_inputs_json_lines_match_predictor(checkpoint, clip_dir, capsys):
    code, out, err = _run(capsys, "--checkpoint", str(checkpoint), "--json",
                          "--preprocessing", json.dumps(PRE), "--batch-size", "2",
                          str(clip_dir["dir"]), str(clip_dir["dir"] / "*.mkv"), str(clip_dir["one"]))
    lines = _json_lines(out)
    assert code == 0
    assert [r["path"] for r in lines] == [str(clip_dir["c1.mkv"]), str(clip_dir["c2.mkv"]),
                                          str(clip_dir["c3"]), str(clip_dir["one"])]
    assert [r["num_frames"] for r in lines] == [8, 8, 6, 1]  # the frames each clip really has
    assert all(r["error"] is None and r["error_type"] is None for r in lines)
    # one clip at a time through the library: the same probabilities (batching changes nothing
    # beyond float rounding)
    single = predict_videos(checkpoint, [r["path"] for r in lines], device="cpu",
                            preprocessing=PRE, batch_size=1)
    for r, p in zip(lines, single, strict=True):
        assert list(r["probs"]) == LABELS
        assert [r["probs"][k] for k in LABELS] == pytest.approx(p.probs.tolist(), abs=2e-6)
        assert r["label"] == LABELS[int(np.argmax(p.probs))] == r["top"][0][0]
        assert r["prob"] == pytest.approx(float(p.probs.max()), abs=2e-6)
        assert [t[1] for t in r["top"]] == sorted((t[1] for t in r["top"]), reverse=True)
    assert err[-1].startswith("dfer predict: 4 clip(s), 4 predicted, 0 failed; start-up ")


def test_cli_predicts_each_video_of_a_mixed_folder_and_notes_the_image(checkpoint, clip_dir,
                                                                       tmp_path, capsys):
    import shutil

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("c1.mkv", "c2.mkv"):
        shutil.copy2(clip_dir[name], mixed / name)
    shutil.copy2(next(clip_dir["one"].iterdir()), mixed / "still.png")
    code, out, err = _run(capsys, "--checkpoint", str(checkpoint), "--json",
                          "--preprocessing", json.dumps(PRE), str(mixed))
    assert code == 0
    assert [r["path"] for r in _json_lines(out)] == [str(mixed / "c1.mkv"), str(mixed / "c2.mkv")]
    assert err[0].startswith(f"dfer predict: note: {mixed}: 1 image file(s) not predicted "
                             "(still.png)")
    assert err[-1].startswith("dfer predict: 2 clip(s), 2 predicted, 0 failed")


def test_predictor_forward_is_lightning_predict_step(checkpoint, clip_dir):
    """The forward pass without a Trainer computes what FineCLIPERModule.predict_step does."""
    from dfer.train.module import FineCLIPERModule

    pred = Predictor(checkpoint, device="cpu", preprocessing=PRE)
    items = [pred.prepare(s).inputs for s in expand_sources([clip_dir["c1.mkv"], clip_dir["c3"]])]
    ours = pred.probabilities(items)
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    batch.update(label=torch.zeros(2, dtype=torch.long), clip_id=["a", "b"])
    with torch.no_grad():
        theirs = FineCLIPERModule(pred.model).eval().predict_step(batch, 0)["probs"].numpy()
    assert ours.shape == (2, 3) and np.array_equal(ours, theirs)


def test_output_table_parquet_and_csv(checkpoint, clip_dir, tmp_path, capsys):
    import pandas as pd

    from dfer.core.artifacts import read_meta

    missing = tmp_path / "missing.mp4"
    rows = {}
    for ext in ("parquet", "csv"):
        table = tmp_path / f"preds.{ext}"
        code, out, err = _run(capsys, "--checkpoint", str(checkpoint), "--json", "--top", "2",
                              "--preprocessing", json.dumps(PRE), "--output", str(table),
                              str(clip_dir["c1.mkv"]), str(missing), str(clip_dir["c3"]))
        assert code == 1  # one clip failed
        rows[ext] = pd.read_parquet(table) if ext == "parquet" else pd.read_csv(table)
        lines = _json_lines(out)
    pq_rows, csv_rows = rows["parquet"], rows["csv"]
    cols = ["path", "label", "prob", "top", "prob_class0", "prob_class1", "prob_class2",
            "num_frames", "error_type", "error"]
    assert list(pq_rows.columns) == cols and list(csv_rows.columns) == cols
    assert pq_rows["path"].tolist() == [str(clip_dir["c1.mkv"]), str(missing), str(clip_dir["c3"])]
    for table in (pq_rows, csv_rows):
        for i in (0, 2):
            rec = lines[i]
            assert table.loc[i, "label"] == rec["label"]
            assert [table.loc[i, f"prob_{k}"] for k in LABELS] == pytest.approx(
                [rec["probs"][k] for k in LABELS], abs=1e-6)
            assert table.loc[i, "top"] == ", ".join(f"{k} {p:.3f}" for k, p in rec["top"])
            assert len(rec["top"]) == 2
        assert table["num_frames"].tolist()[::2] == [8, 6]
        assert pd.isna(table.loc[1, "label"]) and pd.isna(table.loc[1, "prob_class0"])
        assert table.loc[1, "error_type"] == "missing_file"
        assert table.loc[1, "error"] == "no such file or folder"
    assert read_meta(tmp_path / "preds.parquet")["labels"] == LABELS
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temporary files left


def test_overlay_writes_one_strip_per_clip(checkpoint, clip_dir, tmp_path, capsys):
    import cv2

    overlay = tmp_path / "overlay"
    code, out, _ = _run(capsys, "--checkpoint", str(checkpoint), "--preprocessing", json.dumps(PRE),
                        "--overlay", str(overlay), str(clip_dir["c1.mkv"]), str(clip_dir["one"]),
                        str(tmp_path / "gone.mp4"))
    assert code == 1
    assert sorted(p.name for p in overlay.iterdir()) == ["c1.mkv.png", "one_frame.png"]  # none for the failure
    strip = cv2.imread(str(overlay / "c1.mkv.png"))
    one = cv2.imread(str(overlay / "one_frame.png"))
    # 4 sampled frames (PRE decode.num_frames) of 8: four tiles; one frame: one tile, text room
    assert strip.shape == (TILE + BAND, 4 * TILE, 3) and one.shape == (TILE + BAND, 4 * TILE, 3)
    tiles = strip[:TILE].reshape(TILE, 4, TILE, 3)
    assert all(tiles[:, k].std() > 20 for k in range(4))  # four face crops, not blank
    assert (one[:TILE, TILE:] == 255).all() and one[:TILE, :TILE].std() > 20
    # landmarks drawn: pure green dots in the tile
    green = (strip[:TILE, :, 1] > 200) & (strip[:TILE, :, 0] < 60) & (strip[:TILE, :, 2] < 60)
    assert green.sum() > 4 * 30
    assert (strip[TILE:] < 128).any()  # the text band holds text
    assert len(out.splitlines()) == 2


def test_bad_input_one_line_per_clip_and_exit_codes(checkpoint, clip_dir, tmp_path, capsys):
    corrupt = _touch(tmp_path / "corrupt.mp4", b"not a video at all" * 20)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    noise = write_frame_folder(tmp_path / "noise", [np.random.default_rng(0).integers(
        0, 256, (FACE_SIDE, FACE_SIDE, 3), dtype=np.uint8)], ext=".png")
    # a landmark detector that really detects, so a clip without a face fails
    pre = {**PRE, "landmarks": {"backend": "dlib", "detector": "hog"}}
    args = ["--checkpoint", str(checkpoint), "--preprocessing", json.dumps(pre)]
    code, out, err = _run(capsys, *args, str(tmp_path / "gone.mp4"), str(corrupt), str(empty),
                          str(tmp_path / "none*.mp4"), str(noise), str(clip_dir["c1.mkv"]))
    assert code == 1
    errors = err[:-1]  # the last line is the summary
    assert len(errors) == 5
    expected = [(tmp_path / "gone.mp4", "missing_file", "no such file or folder"),
                (corrupt, "corrupt", "not a readable video container"),
                (empty, "no_frames", "empty folder"),
                (tmp_path / "none*.mp4", "missing_file", "the pattern matches no file or folder"),
                (noise, "no_face", "no face found on its 1 frame (")]
    for line, (path, kind, cause) in zip(errors, expected, strict=True):
        assert line.startswith(f"{path}: ERROR {kind}: {cause}")
    assert "16 frames" not in err[-2] and "4 frames" not in err[-2]
    assert err[-1].startswith("dfer predict: 6 clip(s), 1 predicted, 5 failed")
    assert out.startswith(f"{clip_dir['c1.mkv']}\t") and len(out.splitlines()) == 1  # the good clip still predicted
    # decode told to fail without a face: its message counts the clip's real frames too
    strict = {**pre, "decode": {**PRE["decode"], "on_no_face": "fail"}}
    code, _, err = _run(capsys, "--checkpoint", str(checkpoint), "--preprocessing",
                        json.dumps(strict), str(noise))
    assert code == 1 and err[0].startswith(f"{noise}: ERROR no_face: no face found by dlib (")
    assert "in 1 examined frame(s) of the clip's 1 " in err[0]
    # all good: exit 0; nothing at all to predict: exit 1, and the model is never loaded
    assert _run(capsys, *args, str(clip_dir["c1.mkv"]))[0] == 0
    code, out, err = _run(capsys, "--checkpoint", str(tmp_path / "no_such.safetensors"),
                          str(tmp_path / "gone.mp4"))
    assert code == 1 and out == "" and err[0] == f"{tmp_path / 'gone.mp4'}: ERROR missing_file: no such file or folder"


def test_usage_errors_exit_2(checkpoint, clip_dir, tmp_path, capsys):
    video = str(clip_dir["c1.mkv"])
    code, _, err = _run(capsys, "--checkpoint", str(checkpoint), "--output", str(tmp_path / "t.xlsx"), video)
    assert code == 2 and "use .parquet or .csv" in err[0]
    code, _, err = _run(capsys, "--checkpoint", str(tmp_path / "no_such.safetensors"), video)
    assert code == 2 and err[0].startswith("dfer predict: error: cannot load") and "does not exist" in err[0]


def _with_stored_decode(checkpoint: Path, decode: dict, out: Path) -> Path:
    """A copy of ``checkpoint`` whose stored preprocessing has ``decode`` as its decode section."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(str(checkpoint), framework="numpy") as fh:
        metadata = dict(fh.metadata())
    meta = json.loads(metadata["dfer"])
    meta.setdefault("preprocessing", {})["decode"] = decode
    save_file(load_file(str(checkpoint)), str(out), metadata={**metadata, "dfer": json.dumps(meta)})
    return out


def test_an_older_checkpoint_is_decoded_as_its_training_frames_were(checkpoint, tmp_path):
    """A stored decode section without the quick-pass settings predates them: ``dfer predict``
    crops as that training data was cropped (no quick pass, full-size RGB detection), not
    with today's defaults; a section that records them is taken as recorded."""
    from dfer.video import DecodeConfig

    rest = {k: v for k, v in PRE.items() if k != "decode"}
    old = _with_stored_decode(checkpoint, {"num_frames": 4, "size": 112}, tmp_path / "old.st")
    cfg = Predictor(old, device="cpu", preprocessing=rest).decode_cfg
    assert (cfg.quick_frames, cfg.detect_scale, cfg.detect_gray) == (0, 1.0, False)
    assert (cfg.num_frames, cfg.size) == (4, 112)
    recorded = {"num_frames": 4, "size": 112, "quick_frames": 2, "detect_scale": 0.5,
                "detect_gray": True}
    new = _with_stored_decode(checkpoint, recorded, tmp_path / "new.st")
    assert Predictor(new, device="cpu", preprocessing=rest).decode_cfg == DecodeConfig(**recorded)
    # an override on the command line still wins over the stored and the filled-in settings
    over = Predictor(old, device="cpu", preprocessing={**rest, "decode": {"quick_frames": 1}})
    assert over.decode_cfg.quick_frames == 1 and over.decode_cfg.detect_scale == 1.0
    assert DecodeConfig.from_provenance(None) == DecodeConfig()


def test_dferclip_checkpoint_predicts_from_frames_alone(face, tmp_path):
    """``dfer predict`` with another method's checkpoint (DFER-CLIP, policy ``full``): no
    landmark or parsing model is loaded, and each clip's probabilities are the saved model's
    forward pass on the decoded frames, computed here without the predictor."""
    from dfer.methods.registry import build_model
    from dfer.video import decode_clip

    tiny = {"embed_dim": 32, "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    block = {"backbone": "custom", "pretrained": None, "model_cfg": tiny, "temporal_heads": 2,
             "temporal_head_dim": 16, "temporal_mlp_dim": 64, "max_frames": 4}
    torch.manual_seed(0)
    model = build_model("dferclip", block, ["happiness", "sadness", "anger"]).eval()
    with torch.no_grad():  # a tuned tower: the checkpoint must carry it
        for p in model.clip.visual.parameters():
            p.add_(0.01 * torch.randn(p.shape))
    ckpt = save_checkpoint(tmp_path / "dc.safetensors", model, run="dc",
                           params={"model": {"method": "dferclip", **block}, "data": {"num_frames": 4}},
                           preprocessing={"decode": {**PRE["decode"], "size": 32}})  # the tower's size
    predictor = Predictor(ckpt, device="cpu")
    assert predictor.landmarks_cfg is None and predictor.parsing_cfg is None
    [got] = predict_videos(ckpt, [face["video"]], device="cpu", batch_size=1)
    assert got.error is None and got.labels == ["happiness", "sadness", "anger"]
    decoded = decode_clip(face["video"], "video", predictor.decode_cfg)
    assert decoded.frames.shape[0] == 4  # segment centres of 4 stored frames: all of them
    with torch.no_grad():
        want = model(torch.from_numpy(np.ascontiguousarray(decoded.frames))[None]).probabilities()[0].numpy()
    # crops at the tower's size: no resize on either side, the same arithmetic (the frames in
    # reverse order move these saturated probabilities by 2e-5 only)
    np.testing.assert_allclose(got.probs, want, rtol=0, atol=1e-7)


def _tiny_s2d_checkpoint(tmp_path: Path, features: dict | None) -> tuple[torch.nn.Module, Path]:
    """A tiny S2D (28 px / 2 px patches: the 14 x 14 grid of the maps) with perturbed weights,
    saved with a decode section and, unless None, a landmark_features section."""
    from dfer.methods.registry import build_model

    block = {"img_size": 28, "patch_size": 2, "embed_dim": 32, "depth": 2, "num_heads": 2,
             "adapter_heads": 2, "num_frames": 4, "head_dropout": 0.0}
    torch.manual_seed(0)
    model = build_model("s2d", block, ["happiness", "sadness", "anger"]).eval()
    with torch.no_grad():  # adapters and prompts off their initial values, so the maps matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    pre = {"decode": {**PRE["decode"], "size": 28}}
    if features is not None:
        pre["landmark_features"] = features
    ckpt = save_checkpoint(tmp_path / "s2d.safetensors", model, run="s2d",
                           params={"model": {"method": "s2d", **block}, "data": {"num_frames": 4}},
                           preprocessing=pre)
    return model, ckpt


def test_s2d_checkpoint_predicts_with_the_landmark_features_it_was_trained_on(face, tmp_path):
    """``dfer predict`` with an S2D checkpoint computes the landmark feature maps the recorded
    settings make (here a MobileFaceNet of random weights from seed 3), rounded to the stored
    dtype as training read them; computed here from the trunk alone, with a resize and a
    normalisation written in the test."""
    import torch.nn.functional as F

    from dfer.landmark_features.mobilefacenet import random_trunk
    from dfer.video import decode_clip

    settings = {"backend": "mobilefacenet", "random_init": True, "init_seed": 3, "dtype": "float16"}
    model, ckpt = _tiny_s2d_checkpoint(tmp_path, settings)
    predictor = Predictor(ckpt, device="cpu")
    [got] = predictor.predict(expand_sources([face["video"]]))
    assert got.error is None and got.labels == ["happiness", "sadness", "anger"]

    frames = decode_clip(face["video"], "video", predictor.decode_cfg).frames
    assert frames.shape == (4, 28, 28, 3)  # the window of 4: every stored frame, no resize
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=True)
    with torch.no_grad():
        maps = random_trunk(3)(x).half().float()  # float16: the stage's stored dtype
        assert maps.shape == (4, 128, 14, 14)
        want = model(torch.from_numpy(frames)[None], maps[None]).probabilities()[0].numpy()
        other = model(torch.from_numpy(frames)[None], random_trunk(4)(x)[None]).probabilities()[0].numpy()
    np.testing.assert_allclose(got.probs, want, rtol=0, atol=1e-6)
    assert np.abs(other - want).max() > 1e-3  # the maps move the prediction: the check can fail
    # the model's input: the maps of the 4 picked frames, float32 holding float16 values
    fed = predictor.prepare(expand_sources([face["video"]])[0]).inputs["landmark_features"]
    assert fed.dtype == torch.float32 and torch.equal(fed, fed.half().float())
    torch.testing.assert_close(fed, maps, rtol=2e-3, atol=2e-3)


def test_s2d_checkpoint_without_or_with_other_feature_settings_is_refused(tmp_path):
    """A checkpoint that does not say how its maps were made (older ones) or whose settings make
    maps of another kind stops with what to pass, before any clip."""
    _, old = _tiny_s2d_checkpoint(tmp_path, None)
    with pytest.raises(ValueError, match=r"S2D reads landmark feature maps \(mobilefacenet_conv4\), and the "
                                         r"checkpoint does not record the settings.*--preprocessing"):
        Predictor(old, device="cpu")
    fan = {"landmark_features": {"backend": "fan_heatmaps"}}
    with pytest.raises(ValueError, match=r"kind 'mobilefacenet_conv4', but landmark_features.backend "
                                         r"'fan_heatmaps' makes 'fan_heatmap_14' \(68 channels\)"):
        Predictor(old, device="cpu", preprocessing=fan)
    # the override supplies what the checkpoint lacks; a weights file that is not there stops
    # the predictor, naming the key
    missing = {"landmark_features": {"backend": "mobilefacenet", "weights": str(tmp_path / "no.pth")}}
    with pytest.raises(FileNotFoundError, match=r"MobileFaceNet weights not found at .*no\.pth"):
        Predictor(old, device="cpu", preprocessing=missing)
    assert Predictor(old, device="cpu", preprocessing={"landmark_features": {"random_init": True}}).features_cfg.random_init
