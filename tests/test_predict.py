"""``dfer predict`` on frame folders and with ``--labels``, and checkpoint reload exactness.

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
from dfer.inference.predict import predict_videos
from dfer.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from dfer.train.data import ClipDataset, DataConfig, fold_split, load_clip_table
from dfer.train.fit import train_fold
from dfer.train.module import needs_for

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
    folder, video = predict_videos(checkpoint, [face["folder"], face["video"]], device="cpu",
                                   preprocessing=PRE)
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


def test_labels_option_scores_the_given_names(checkpoint, face, capsys):
    (trained,) = predict_videos(checkpoint, [face["folder"]], device="cpu", preprocessing=PRE)
    # Two of the trained names, reordered: each class is scored by its own text, so the
    # probabilities are the trained ones of those classes, renormalised over the two.
    code = cli_main(["predict", "--checkpoint", str(checkpoint), "--device", "cpu", "--json",
                     "--preprocessing", json.dumps(PRE), str(face["folder"]),
                     "--labels", "class2", "class0"])  # after the paths: --labels takes 1+ names
    (line,) = _json_lines(capsys.readouterr().out)
    assert code == 0 and list(line["probs"]) == ["class2", "class0"]
    sub = trained.probs[[2, 0]].astype(np.float64)
    assert [line["probs"]["class2"], line["probs"]["class0"]] == pytest.approx(list(sub / sub.sum()), abs=1e-5)
    assert line["label"] == ("class2" if sub[0] >= sub[1] else "class0")
    # plain-text output: the path, then the top class names with probabilities
    assert cli_main(["predict", "--checkpoint", str(checkpoint), "--device", "cpu", "--top", "1",
                     "--preprocessing", json.dumps(PRE), str(face["folder"]),
                     "--labels", "joy", "anger"]) == 0
    path, top = capsys.readouterr().out.strip().split("\t")
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
