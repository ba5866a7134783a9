"""What an evaluation writes, worked out by hand on a five-clip split (issue 25).

``evaluate_checkpoint`` is run with the checkpoint loader and the forward pass replaced (a
recorder model and fixed class probabilities): the metrics of ``metrics.json`` -- with the clip
that failed to decode counted as wrong, and without it in ``scored_only`` --, the coverage
block, the per-class counts and every column of ``predictions.parquet`` are compared with
numbers computed in the docstrings. ``summarize_folds``, ``prediction_needs`` and
``predictions_frame`` are checked the same way. Fast: no model, no Lightning.

The recorder model is no registered method's model, so the registry's lookup of its method
(``spec_of_model``) is replaced by FineCLIPER's spec; its config is a real FineCLIPER config
(``prediction_needs`` looks up the config's method in the registry as well).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader, SequentialSampler

from dfer.core.artifacts import read_meta
from dfer.methods.dferclip import DFERCLIPConfig
from dfer.methods.registry import get_method
from dfer.methods.specs.fineclipper import FineCLIPERConfig
from dfer.train import evaluate, module
from dfer.train.data import ClipTable, collate
from dfer.train.evaluate import (
    Predictions,
    account_record,
    evaluate_checkpoint,
    prediction_needs,
    predictions_frame,
    summarize_folds,
)
from dfer.train.inputs import DataInputs, Needs

LABELS = ["a", "b", "c"]


def _cfg(mode: str = "unused", **levels: bool) -> FineCLIPERConfig:
    """A FineCLIPER config whose captions at prediction are ``mode``: ``unused`` (captions only
    in the training loss), ``optional`` (fused beside the visual levels) or ``required`` (the
    captions are the only level: no visual level, whatever ``levels`` say)."""
    if mode == "required":
        cfg = FineCLIPERConfig(use_video=False, use_parsing=False, use_landmarks=False, use_captions=True,
                               caption_in_fusion=True, backbone="tiny")
    else:
        cfg = FineCLIPERConfig(use_parsing=levels.get("parsing", False), use_landmarks=levels.get("landmarks", False),
                               use_captions=levels.get("captions", False) or mode == "optional",
                               caption_in_fusion=mode == "optional", backbone="tiny")
    assert cfg.captions_at_prediction == mode
    return cfg


@pytest.mark.parametrize(("mode", "want"), [
    ("unused", (Needs(parsing=True, landmarks=True, captions=False), False)),
    ("optional", (Needs(parsing=True, landmarks=True, captions=True), True)),
    # captions the only level: required, and no visual level read
    ("required", (Needs(parsing=False, landmarks=False, captions=True), False)),
])
def test_prediction_needs(mode: str, want: tuple[Needs, bool]) -> None:
    assert prediction_needs(_cfg(mode, parsing=True, landmarks=True, captions=True)) == want
    assert prediction_needs(_cfg(mode))[0].parsing is False


def test_prediction_needs_of_a_method_without_its_own() -> None:
    """DFER-CLIP declares no prediction needs: scoring reads what training reads (frames only,
    no optional captions); an object of no registered method is refused."""
    assert prediction_needs(DFERCLIPConfig()) == (Needs(), False)
    with pytest.raises(ValueError, match="^SimpleNamespace is not the config of a registered method$"):
        prediction_needs(SimpleNamespace(use_parsing=True, use_landmarks=False, use_captions=False,
                                         captions_at_prediction="unused"))


def _table() -> ClipTable:
    """Fold 1's test split lists c1..c4 (scored) and c6 (class b, lost at decode); c5 is fold 2;
    fold 3 lists only c7 (class a, lost at landmarks)."""
    clips = pd.DataFrame({"clip_id": ["c1", "c2", "c3", "c4", "c5"], "label": ["a", "a", "b", "c", "b"],
                          "label_idx": [0, 0, 1, 2, 1], "test_fold": [1, 1, 1, 1, 2], "shard": "000",
                          "one_frame": [False, False, True, False, False]})
    listed = pd.concat([clips[["clip_id", "label", "test_fold"]],
                        pd.DataFrame({"clip_id": ["c6", "c7"], "label": ["b", "a"], "test_fold": [1, 3]})],
                       ignore_index=True)
    lost = pd.DataFrame({"clip_id": ["c6", "c7"], "label": ["b", "a"], "test_fold": [1, 3],
                         "stage": ["decode", "landmarks"], "error_type": ["corrupt", "no_face"]})
    inputs = DataInputs("ds", Path("manifest.parquet"), ["000"])
    return ClipTable(clips, list(LABELS), 2, {"decode": 1}, False, None, inputs, {}, listed, lost, "ours")


#: fold 1's scored clips c1 (a), c2 (a), c3 (b), c4 (c) predicted a, b, b, a
PROBS = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.5, 0.25, 0.25]], np.float32)


@pytest.fixture()
def stubbed(monkeypatch: pytest.MonkeyPatch) -> dict:
    calls: dict = {}
    model = SimpleNamespace(cfg=_cfg(), image_size=16, fused_levels=["video", "parsing"],
                            set_labels=lambda prompts: calls.setdefault("prompts", prompts))
    fineclipper = get_method("fineclipper")

    def spec_of_model(model_):  # noqa: ANN001, ANN202
        assert model_ is model  # the loaded model's method is looked up, nothing else
        return fineclipper

    monkeypatch.setattr(evaluate, "spec_of_model", spec_of_model)
    meta = {"dataset": "ds", "run": "r", "labels": list(LABELS),
            "params": {"data": {"eval_batch_size": 3, "num_workers": 1}}}
    def load(ckpt, overrides=None):  # noqa: ANN001, ANN202
        calls["load"] = (ckpt, overrides)
        return model, meta

    monkeypatch.setattr(evaluate, "load_checkpoint", load)

    def predict(model_, loader, device, out, num_labels, test_views):  # noqa: ANN001, ANN202
        calls["test_views"] = test_views
        calls["clips"] = list(loader.dataset.clips["clip_id"])
        calls["batch_size"], calls["num_labels"] = loader.batch_size, num_labels
        calls["predict"] = (model_, device, out)
        calls["loader"] = loader
        return Predictions(["c1", "c2", "c3", "c4"], PROBS, np.array([0, 0, 1, 2]),
                           [{"sim_pos": np.ones((4, 3))}], ["video"])

    monkeypatch.setattr(evaluate, "predict_split", predict)
    monkeypatch.setattr(evaluate, "plot_confusion",
                        lambda cm, labels, path, title: calls.update(title=title, plot=(cm.tolist(), labels, path)))
    calls["meta"], calls["model"] = meta, model
    return calls


def test_metrics_count_the_lost_clip_as_wrong(tmp_path: Path, stubbed: dict, caplog) -> None:  # noqa: ANN001
    """Support a 2, b 1 + 1 lost, c 1; recalls 1/2, 1/2, 0: UAR 1/3, WAR 2 / 5. Scored only:
    recalls 1/2, 1, 0: UAR 1/2, WAR 2 / 4."""
    renderers = (lambda p, s: p, lambda m, s: m)
    caplog.set_level("INFO", logger="dfer.train.evaluate")
    m = evaluate_checkpoint("ck.pt", None, "ds", 1, tmp_path, table=_table(), device="cpu",
                            label_prompts={"b": "bee"}, model_overrides={"adapter_scale": 1.0},
                            renderers=renderers)
    assert stubbed["load"] == ("ck.pt", {"adapter_scale": 1.0})
    assert stubbed["predict"] == (stubbed["model"], "cpu", tmp_path)
    loader = stubbed["loader"]
    assert isinstance(loader.sampler, SequentialSampler) and loader.collate_fn is collate
    assert loader.num_workers == 1 and loader.dataset.dataset == "ds" and loader.dataset.train is False
    assert loader.dataset.needs == Needs() and loader.dataset.renderers() is renderers
    assert stubbed["prompts"] == ["a", "bee", "c"]
    assert stubbed["clips"] == ["c1", "c2", "c3", "c4"] and stubbed["batch_size"] == 3
    assert stubbed["num_labels"] == 3 and stubbed["test_views"] == ["identity"]  # the data block's default
    assert m["uar"] == pytest.approx(1 / 3) and m["war"] == pytest.approx(0.4) and m["num_clips"] == 5
    assert m["support"] == {"a": 2, "b": 2, "c": 1}
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert m["scored_only"] == {"uar": pytest.approx(0.5), "war": pytest.approx(0.5), "num_clips": 4}
    assert m["not_scored_per_class"] == {"a": 0, "b": 1, "c": 0}
    assert m["not_scored_clips"] == [{"clip_id": "c6", "label": "b", "test_fold": 1, "stage": "decode",
                                      "error_type": "corrupt"}]
    assert m["test_clips"] == {"listed": 5, "evaluated": 4, "not_scored": 1, "lost": {"decode corrupt": 1},
                               "one_frame": 1, "unscored_clips": "wrong",
                               "text": "evaluated 4 of 5 test clips (not scored: decode corrupt: 1; counted "
                                       "as wrong); 1 one-frame clip(s) among them"}
    assert (m["dataset"], m["fold"], m["split"], m["zero_shot"], m["trained_on"], m["run"]) == (
        "ds", 1, "test", False, "ds", "r")
    assert (m["checkpoint"], m["skipped_clips"], m["label_order"]) == ("ck.pt", {"decode": 1}, "ours")
    assert m["method"] == "fineclipper" and "static" not in m and "accuracy" not in m  # videos: WAR
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(m))
    assert (tmp_path / "metrics.json").read_text().split("\n")[:2] == ["{", '  "checkpoint": "ck.pt",']
    assert stubbed["title"] == "ds fold 1: UAR 0.333 WAR 0.400, 4 of 5 scored"
    assert stubbed["plot"] == ([[1, 1, 0], [0, 1, 0], [1, 0, 0]], LABELS, tmp_path / "confusion.png")
    assert [r.getMessage() for r in caplog.records if r.name == "dfer.train.evaluate"] == [
        "ds fold 1: evaluated 4 of 5 test clips (not scored: decode corrupt: 1; counted as wrong); "
        "1 one-frame clip(s) among them; UAR 0.3333 WAR 0.4000"]

    table = pq.read_table(tmp_path / "predictions.parquet")
    rows = table.to_pandas()
    assert table.schema.field("sim_pos").type.value_type == pa.float32()  # the schema, not inferred
    assert rows["clip_id"].tolist() == ["c1", "c2", "c3", "c4"]
    assert rows["label"].tolist() == ["a", "a", "b", "c"] and rows["pred_label"].tolist() == ["a", "b", "b", "a"]
    assert rows["label_idx"].tolist() == [0, 0, 1, 2] and rows["pred_idx"].tolist() == [0, 1, 1, 0]
    assert rows["correct"].tolist() == [True, False, True, False]
    np.testing.assert_allclose(rows["prob"], [0.7, 0.6, 0.8, 0.5], rtol=1e-6)
    np.testing.assert_allclose(np.stack(rows["probs"]), PROBS)
    assert [list(v) for v in rows["sim_pos"]] == [[1.0, 1.0, 1.0]] * 4
    meta = read_meta(tmp_path / "predictions.parquet")
    assert (meta["stage"], meta["schema_version"]) == ("evaluate", 1)
    assert meta["labels"] == LABELS and meta["model"] == "tiny" and meta["checkpoint"] == "ck.pt"
    assert meta["method"] == "fineclipper"
    assert meta["params"] == {"split": "test", "label_prompts": {"b": "bee"}}
    assert meta["modality_levels"] == ["video", "parsing"] and meta["score_levels"] == ["video"]
    assert meta["test_clips"] == m["test_clips"] and meta["label_order"] == "ours"


def test_excluded_clips_and_a_transfer(tmp_path: Path, stubbed: dict) -> None:
    """unscored_clips: exclude -> the metrics of the four scored clips; another dataset's name
    makes it zero-shot; the whole dataset ('all') lists c1..c6."""
    stubbed["meta"]["dataset"] = "src"
    m = evaluate_checkpoint("ck.pt", None, "ds", 1, tmp_path, table=_table(), device="cpu",
                            data={"unscored_clips": "exclude"})
    assert m["uar"] == pytest.approx(0.5) and m["war"] == pytest.approx(0.5) and m["num_clips"] == 4
    assert m["zero_shot"] is True and m["trained_on"] == "src"
    assert m["test_clips"]["text"].startswith("evaluated 4 of 5 test clips (not scored: decode corrupt: 1; "
                                              "left out of the metrics)")
    assert stubbed["batch_size"] == 3  # the checkpoint's data block, with the override on top
    m = evaluate_checkpoint("ck.pt", None, "ds", 1, tmp_path, table=_table(), device="cpu",
                            data={"test_views": ["identity", "hflip"]})
    assert stubbed["test_views"] == ["identity", "hflip"]  # the views reach the forward pass
    m = evaluate_checkpoint("ck.pt", None, "ds", 1, tmp_path, split="all", table=_table(), device="cpu")
    assert stubbed["clips"] == ["c1", "c2", "c3", "c4", "c5"]
    assert m["test_clips"]["listed"] == 7 and m["test_clips"]["text"].startswith("evaluated 5 of 7 clips")


def test_evaluation_needs_a_source_of_clips(tmp_path: Path, stubbed: dict) -> None:
    with pytest.raises(ValueError, match="^evaluate_checkpoint needs inputs, a table or a results folder$"):
        evaluate_checkpoint("ck.pt", None, "ds", 1, tmp_path, device="cpu")


def test_a_split_with_nothing_to_score(tmp_path: Path, stubbed: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fold 3 lists only c7, lost at landmarks: no forward pass; 0 of 1 scored, counted as a
    wrong prediction of class a (UAR 0 over the one present class, WAR 0 / 1)."""
    monkeypatch.setattr(evaluate, "predict_split", lambda *a: pytest.fail("nothing to predict"))
    m = evaluate_checkpoint("ck.pt", None, "ds", 3, tmp_path, table=_table(), device="cpu")
    assert (m["uar"], m["war"], m["num_clips"]) == (0.0, 0.0, 1)
    assert m["confusion_matrix"] == [[0, 0, 0]] * 3 and m["scored_only"]["num_clips"] == 0
    assert m["test_clips"]["text"] == "evaluated 0 of 1 test clips (not scored: landmarks no_face: 1; counted as wrong)"
    table = pq.read_table(tmp_path / "predictions.parquet")
    assert table.num_rows == 0 and table.schema.names == evaluate.PREDICTIONS_SCHEMA.names
    meta = read_meta(tmp_path / "predictions.parquet")
    assert meta["score_levels"] == [] and meta["modality_levels"] == ["video", "parsing"]
    del stubbed["model"].fused_levels  # a model that fuses nothing names no levels
    evaluate_checkpoint("ck.pt", None, "ds", 3, tmp_path, table=_table(), device="cpu")
    assert read_meta(tmp_path / "predictions.parquet")["modality_levels"] == []


def test_the_table_comes_from_the_declared_inputs(tmp_path: Path, stubbed: dict,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list = []
    declared = DataInputs("ds", Path("m.parquet"), ["000"])

    def from_results(results, dataset, needs):  # noqa: ANN001, ANN202
        calls.append(("from_results", results, dataset, needs))
        return declared

    def read(inputs, needs, optional_captions=False, one_frame_clips="keep"):  # noqa: ANN001, ANN202
        calls.append(("read", inputs, needs, optional_captions, one_frame_clips))
        return _table()

    monkeypatch.setattr(evaluate.DataInputs, "from_results", from_results)
    monkeypatch.setattr(evaluate, "read_clip_table", read)
    stubbed["model"].cfg = _cfg("optional", parsing=True, captions=True)
    stubbed["meta"]["params"]["data"]["one_frame_clips"] = "drop"
    evaluate_checkpoint("ck.pt", tmp_path / "res", "ds", 1, tmp_path)  # device "auto": the CPU here
    assert stubbed["predict"][1] == "cpu"
    want_needs = Needs(parsing=True, landmarks=False, captions=True)
    assert calls == [("from_results", tmp_path / "res", "ds", want_needs),
                     ("read", declared, want_needs, True, "drop")]
    calls.clear()
    other = DataInputs("ds", Path("other.parquet"), ["000"])
    evaluate_checkpoint("ck.pt", None, "ds", 1, tmp_path, inputs=other, device="cpu")
    assert calls == [("read", other, want_needs, True, "drop")]  # the given inputs, no lookup


class _Scorer(torch.nn.Module):
    """Stand-in model: class scores are the frames' mean grey per channel (3 classes), so the
    probabilities are a softmax worked out in the test; one level's scores, named 'video'."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, frames: torch.Tensor) -> SimpleNamespace:
        logits = frames.float().mean(dim=(1, 2, 3)) * self.w  # [B, 3]
        return SimpleNamespace(probabilities=lambda: logits.softmax(-1), sim_pos=logits,
                               level_scores={"video": logits})


def test_predict_split_runs_lightning_over_every_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three clips in batches of 2 (then 1): clip k's frames are the colour (k, 0, 2k). The
    stand-in is looked up as a frames-only method (DFER-CLIP's spec: its forward gets the
    frames)."""
    monkeypatch.setattr(module, "spec_of_model", lambda model: get_method("dferclip"))
    items = [{"clip_id": f"c{k}", "label": k % 3,
              "frames": torch.tensor([k, 0, 2 * k], dtype=torch.uint8).expand(2, 4, 4, 3).clone()}
             for k in range(3)]
    loader = DataLoader(items, batch_size=2, collate_fn=collate)
    preds = evaluate.predict_split(_Scorer(), loader, "cpu", tmp_path / "out", 3)
    assert not (tmp_path / "out").exists()  # no logger, no checkpoint: nothing written
    assert preds.clip_ids == ["c0", "c1", "c2"] and preds.target.tolist() == [0, 1, 2]
    want = torch.tensor([[k, 0.0, 2 * k] for k in range(3)]).softmax(-1).numpy()
    np.testing.assert_allclose(preds.probs, want, rtol=1e-6)
    assert preds.probs.dtype == np.float32 and preds.pred.tolist() == [0, 2, 2]
    assert len(preds.explained) == 2 and preds.explained[1]["sim_pos"].tolist() == [[2.0, 0.0, 4.0]]
    assert preds.explained[0]["level_scores"].shape == (2, 1, 3) and preds.score_levels == ["video"]
    empty = evaluate.predict_split(_Scorer(), DataLoader([], batch_size=2, collate_fn=collate), "cpu", tmp_path, 3)
    assert empty.probs.shape == (0, 3) and empty.probs.dtype == np.float32
    assert empty.target.dtype == np.int64 and empty.target.shape == (0,) and empty.clip_ids == []
    assert empty.explained == [] and empty.score_levels == [] and empty.pred.tolist() == []


def test_predictions_frame_keeps_explanations_every_batch_has() -> None:
    preds = Predictions(["x", "y", "z"], np.array([[0.1, 0.9], [0.6, 0.4], [0.5, 0.5]], np.float32),
                        np.array([1, 1, 0]),
                        [{"sim_pos": np.array([[1, 2], [3, 4]]), "level_scores": np.zeros((2, 1, 2))},
                         {"sim_pos": np.array([[5, 6]])}], [])
    frame, schema = predictions_frame(preds, ["n", "p"])
    assert frame["pred_idx"].tolist() == [1, 0, 0] and frame["correct"].tolist() == [True, False, True]
    assert [str(frame[c].dtype) for c in ("label_idx", "pred_idx", "prob")] == ["int64", "int64", "float32"]
    assert frame["probs"][0].dtype == np.float32
    assert frame["sim_pos"].tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert "level_scores" not in frame and schema.names[-1] == "sim_pos"
    assert schema.names[:8] == ["clip_id", "label", "label_idx", "pred_idx", "pred_label", "prob", "correct", "probs"]
    empty, schema = predictions_frame(Predictions([], np.zeros((0, 2), np.float32), np.zeros(0, np.int64), [], []),
                                      ["n", "p"])
    assert len(empty) == 0 and schema.names == evaluate.PREDICTIONS_SCHEMA.names
    assert str(empty["prob"].dtype) == "float32"


def test_account_record_fields() -> None:
    account = SimpleNamespace(listed=7, evaluated=5, lost={"z x": 1, "a b": 1}, one_frame=2, static=0,
                              text=lambda what, policy: f"{what}/{policy}")
    assert account_record(account, "exclude", "clips") == {
        "listed": 7, "evaluated": 5, "not_scored": 2, "lost": {"a b": 1, "z x": 1}, "one_frame": 2,
        "unscored_clips": "exclude", "text": "clips/exclude"}  # no still image: no static key
    assert list(account_record(account, "wrong", "x")["lost"]) == ["a b", "z x"]
    account.static = 5  # five still images among the scored clips: counted
    assert account_record(account, "wrong", "images") == {
        "listed": 7, "evaluated": 5, "not_scored": 2, "lost": {"a b": 1, "z x": 1}, "one_frame": 2,
        "unscored_clips": "wrong", "text": "images/wrong", "static": 5}


def _fold(path: Path, **m: object) -> Path:
    path.write_text(json.dumps(m))
    return path


def test_summarize_folds_by_hand(tmp_path: Path) -> None:
    """UAR 0.4 / 0.8 -> 0.6 ± 0.2; WAR 0.5 / 0.7 -> 0.6 ± 0.1; 9 + 9 of 10 + 11 clips, 7 + 8
    clips in the metrics; lost: decode corrupt 1 + 1, landmarks no_face 1."""
    common = {"run": "r", "dataset": "d", "trained_on": "d", "labels": ["a"], "label_order": "o"}
    f1 = _fold(tmp_path / "1.json", fold=1, uar=0.4, war=0.5, num_clips=7, per_class_accuracy={"a": 0.4},
               test_clips={"listed": 10, "evaluated": 9, "lost": {"decode corrupt": 1}}, zero_shot=True, **common)
    f2 = _fold(tmp_path / "2.json", fold=2, uar=0.8, war=0.7, num_clips=8, per_class_accuracy={"a": 0.8},
               test_clips={"listed": 11, "evaluated": 9, "lost": {"landmarks no_face": 1, "decode corrupt": 1}},
               **common)
    out = tmp_path / "summary.json"
    s = summarize_folds([f1, str(f2)], out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(s))
    assert out.read_text().split("\n")[:2] == ["{", '  "dataset": "d",']  # sorted keys, indented by 2
    assert s["uar"] == pytest.approx(0.6) and s["uar_std"] == pytest.approx(0.2)
    assert s["war"] == pytest.approx(0.6) and s["war_std"] == pytest.approx(0.1)
    assert (s["run"], s["dataset"], s["trained_on"], s["labels"], s["label_order"]) == ("r", "d", "d", ["a"], "o")
    assert s["zero_shot"] is True and s["num_clips"] == 15 and s["num_folds"] == 2  # zero_shot of the first
    assert s["test_clips"] == {"listed": 21, "evaluated": 18, "not_scored": 3,
                               "lost": {"decode corrupt": 2, "landmarks no_face": 1},
                               "text": "evaluated 18 of 21 test clips (not scored: decode corrupt: 2, "
                                       "landmarks no_face: 1)"}
    assert s["per_fold"] == [{"fold": 1, "uar": 0.4, "war": 0.5, "evaluated": 9, "listed": 10},
                             {"fold": 2, "uar": 0.8, "war": 0.7, "evaluated": 9, "listed": 11}]
    assert s["sources"] == [str(f1), str(f2)]
    # old files without counts: num_clips is both; a split of 'all' says clips summed over folds
    old = _fold(tmp_path / "3.json", fold=1, uar=0.5, war=0.5, num_clips=4, split="all",
                per_class_accuracy={"a": 0.5}, **common)
    s = summarize_folds([old], tmp_path / "s2.json")
    assert s["test_clips"] == {"listed": 4, "evaluated": 4, "not_scored": 0, "lost": {},
                               "text": "evaluated 4 of 4 clips (summed over folds)"}
    assert s["per_fold"][0]["listed"] == 4 and s["per_fold"][0]["evaluated"] == 4
    assert s["zero_shot"] is False and s["num_clips"] == 4 and math.isclose(s["uar_std"], 0.0)
    bare = _fold(tmp_path / "4.json", fold=1, uar=0.5, war=0.5, per_class_accuracy={}, **common)
    s = summarize_folds([bare], tmp_path / "s3.json")
    assert s["num_clips"] == 0 and s["test_clips"]["listed"] == 0 and s["test_clips"]["evaluated"] == 0
    assert s["per_fold"][0]["evaluated"] == 0 and s["per_fold"][0]["listed"] == 0


def test_summarize_folds_refuses_mixed_runs(tmp_path: Path) -> None:
    a = _fold(tmp_path / "a.json", run="r", dataset="d", uar=0.1, war=0.1, labels=["x"], per_class_accuracy={})
    b = _fold(tmp_path / "b.json", run="s", dataset="d", uar=0.1, war=0.1, labels=["x"], per_class_accuracy={})
    with pytest.raises(ValueError, match=r"""cannot average folds with different 'run': \['"r"', '"s"'\]"""):
        summarize_folds([a, b], tmp_path / "o.json")
    c = _fold(tmp_path / "c.json", run="r", dataset="d", uar=0.1, war=0.1, labels=["y"], per_class_accuracy={})
    with pytest.raises(ValueError, match=r"different 'labels'"):
        summarize_folds([a, c], tmp_path / "o.json")
    d = _fold(tmp_path / "d.json", run="r", dataset="e", uar=0.1, war=0.1, labels=["x"], per_class_accuracy={})
    with pytest.raises(ValueError, match=r"different 'dataset'"):
        summarize_folds([a, d], tmp_path / "o.json")
    e = _fold(tmp_path / "e.json", run="r", dataset="d", trained_on="f", uar=0.1, war=0.1, labels=["x"],
              per_class_accuracy={})
    with pytest.raises(ValueError, match=r"different 'trained_on'"):
        summarize_folds([a, e], tmp_path / "o.json")
    with pytest.raises(ValueError, match=r"^summarize_folds needs at least one metrics.json$"):
        summarize_folds([], tmp_path / "o.json")
