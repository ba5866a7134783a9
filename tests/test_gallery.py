"""The error-analysis gallery: explanations in the predictions, card choice, files, and the
page itself driven in a real headless Chromium (clicks, filters, console, screenshots).

A tiny model is trained for one epoch on a synthetic dataset and evaluated for real (fold 1),
so the gallery shows what the evaluation writes; a second evaluation with hand-set
probabilities (fold 2) pins which cards are chosen and in which order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cdp import Browser, find_browser
from support.dataset import simple_renderers, write_synthetic_dataset

from dfer.cli import main
from dfer.core.artifacts import provenance, read_meta, write_parquet
from dfer.core.paths import shard_file
from dfer.report.gallery import (
    DEFAULT_GALLERY_MAX,
    EMBED_FILE,
    GALLERY_DIR,
    MAX_CARD_TEXT,
    ClipArtifacts,
    build_gallery,
    card_record,
    select_cards,
)
from dfer.report.write import build_report
from dfer.train.evaluate import PREDICTIONS_SCHEMA, evaluate_checkpoint
from dfer.train.fit import train_fold
from dfer.train.metrics import compute_metrics

DS = "gal"
LABELS = ["class0", "class1", "class2"]
RAW_CLIP = "gal_01_000"  # its raw MLLM text differs from the refined caption


def _fake_fold(results: Path, clip_ids: list[str], truth: dict[str, int], run: str = "r",
               fold: int = 2, dataset: str = DS, step: float = 0.05) -> pd.DataFrame:
    """Fold ``fold`` of run ``run`` with hand-set probabilities: clip k predicts class (k % 3)
    with confidence 0.40 + step * (k % 10), so which cards are wrong and how confident is known."""
    rows = []
    for k, cid in enumerate(sorted(clip_ids)):
        pred, conf = k % 3, 0.40 + step * (k % 10)
        probs = np.full(3, (1 - conf) / 2, np.float32)
        probs[pred] = conf
        rows.append({"clip_id": cid, "label": LABELS[truth[cid]], "label_idx": truth[cid], "pred_idx": pred,
                     "pred_label": LABELS[pred], "prob": np.float32(conf), "correct": pred == truth[cid],
                     "probs": probs})
    frame = pd.DataFrame(rows)
    out = results / dataset / "train" / run / f"fold-{fold}"
    write_parquet(out / "predictions.parquet", frame, provenance("evaluate", 1, labels=LABELS),
                  schema=PREDICTIONS_SCHEMA)
    metrics = compute_metrics(frame["label_idx"], frame["pred_idx"], LABELS)
    metrics.update(dataset=dataset, fold=fold, run=run, trained_on=dataset, zero_shot=False)
    (out / "metrics.json").write_text(json.dumps(metrics))
    return frame


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gallery") / "results"
    ids = write_synthetic_dataset(root, DS, num_classes=3, clips_per_class=4, frames=8, size=32, num_shards=2)
    # give one clip a raw MLLM text that refinement changed
    for shard in ("000", "001"):
        path = shard_file(root, DS, "captions", shard, ".parquet")
        caps = pd.read_parquet(path)
        caps["raw_text"] = [f"{c} She looks happy." if cid == RAW_CLIP else c
                            for cid, c in zip(caps["clip_id"], caps["caption"], strict=True)]
        write_parquet(path, caps, read_meta(path))
    params = {
        "dataset": DS, "device": "cpu", "model": {"backbone": "tiny", "pretrained": None},
        "data": {"batch_size": 4, "num_workers": 0, "num_frames": 4},
        "optim": {"lr": 1e-2},
        "trainer": {"max_epochs": 1, "seed": 0, "log_every_n_steps": 1, "precision": "32-true"},
    }
    fold1 = root / DS / "train" / "r" / "fold-1"
    ckpt = train_fold(root, DS, 1, "r", params, fold1, renderers=simple_renderers())
    evaluate_checkpoint(ckpt, root, DS, 1, fold1, device="cpu", renderers=simple_renderers())
    manifest = pd.read_parquet(root / DS / "manifest" / "manifest.parquet")
    fold2 = manifest[manifest["test_fold"] == 2]
    _fake_fold(root, fold2["clip_id"].tolist(), dict(zip(manifest["clip_id"], manifest["label_idx"], strict=True)))
    assert len(ids) == 12
    return root


def _cards(report: Path, key: str) -> list[dict]:
    text = (report / GALLERY_DIR / key / "cards.js").read_text()
    match = re.fullmatch(r"window\.dferCards\((\"[^\"]+\"),(.*)\);\n", text, re.S)
    assert match, text[:200]
    assert json.loads(match.group(1)) == key
    return json.loads(match.group(2))


def test_evaluation_records_what_produced_each_prediction(results: Path) -> None:
    preds = pd.read_parquet(results / DS / "train" / "r" / "fold-1" / "predictions.parquet")
    meta = read_meta(results / DS / "train" / "r" / "fold-1" / "predictions.parquet")
    assert meta["modality_levels"] == ["video", "parsing", "landmarks"]
    for row in preds.itertuples():
        weights = np.asarray(row.modality_weights)
        assert weights.shape == (3,) and weights.sum() == pytest.approx(1.0, abs=1e-5)
        sim_pos, sim_neg = np.asarray(row.sim_pos), np.asarray(row.sim_neg)
        assert sim_pos.shape == sim_neg.shape == (3,)
        assert np.all(np.abs(sim_pos) <= 1 + 1e-5)  # cosine similarities
        # the recorded similarities are what decided: the predicted class has the best score
        # (positive minus the default negative weight 1 times the negative similarity)
        score = sim_pos - sim_neg
        assert int(np.argmax(score)) == row.pred_idx


def test_cards_wrong_first_then_least_confident() -> None:
    preds = pd.DataFrame({
        "clip_id": ["a", "b", "c", "d", "e"], "correct": [True, False, True, False, True],
        "prob": [0.9, 0.8, 0.3, 0.5, 0.3],
    })
    assert select_cards(preds, None)["clip_id"].tolist() == ["d", "b", "c", "e", "a"]
    assert select_cards(preds, 3)["clip_id"].tolist() == ["d", "b", "c"]
    assert select_cards(preds, 0).empty


def test_gallery_files(results: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    (report / GALLERY_DIR / "gal.r.fold-9").mkdir(parents=True)  # a fold that no longer exists
    build_report(results, [DS], report, gallery_max=4, embed_max=2)
    gallery = report / GALLERY_DIR
    assert sorted(p.name for p in gallery.iterdir()) == ["folds.js", "gal.r.fold-1", "gal.r.fold-2", "index.html"]
    folds = json.loads(re.fullmatch(r"window\.DFER_FOLDS=(.*);\n", (gallery / "folds.js").read_text(), re.S).group(1))
    assert [f["key"] for f in folds] == ["gal.r.fold-1", "gal.r.fold-2"]
    assert [(f["clips"], f["shown"]) for f in folds] == [(6, 4), (6, 4)]
    # the header's count is metrics.json's (issue 22): the same words as the log and the report
    evaluated = json.loads((results / DS / "train" / "r" / "fold-1" / "metrics.json").read_text())
    assert folds[0]["coverage"] == evaluated["test_clips"]["text"] == "evaluated 6 of 6 test clips"
    assert folds[1]["coverage"] is None  # a hand-written fold without the count
    assert folds[0]["levels"] == ["video", "parsing", "landmarks"] and folds[1]["levels"] == []
    fake = pd.read_parquet(results / DS / "train" / "r" / "fold-2" / "predictions.parquet")
    assert folds[1]["cm"] == compute_metrics(fake["label_idx"], fake["pred_idx"], LABELS)["confusion_matrix"]
    # fold 2: wrong cards first, by rising confidence
    want = fake.sort_values(["correct", "prob", "clip_id"])["clip_id"].tolist()[:4]
    cards = _cards(report, "gal.r.fold-2")
    assert [c["id"] for c in cards] == want
    assert [c["ok"] for c in cards] == fake.set_index("clip_id").loc[want, "correct"].tolist()
    for c in cards:
        row = fake.set_index("clip_id").loc[c["id"]]
        assert (c["t"], c["p"], c["c"]) == (row["label_idx"], row["pred_idx"], pytest.approx(row["prob"], abs=1e-4))
        assert c["top"][0] == [row["pred_idx"], pytest.approx(row["prob"], abs=1e-4)] and len(c["top"]) == 3
        assert "w" not in c and "sp" not in c  # nothing recorded, nothing shown
        for key, magic in (("img", b"\xff\xd8\xff"), ("lm", b"\x89PNG"), ("ps", b"\x89PNG")):
            data = (gallery / c[key]).read_bytes()
            assert data.startswith(magic), key
        jpeg = (gallery / c["img"]).read_bytes()
        assert len(jpeg) < 12_000  # a few KB for 8 frames of 64 px
        assert c["cap"].startswith("A bright square moves")
        assert ("raw" in c) is (c["id"] == RAW_CLIP)
    fold1 = _cards(report, "gal.r.fold-1")
    assert all(len(c["w"]) == 3 and len(c["sp"]) == 3 and len(c["sn"]) == 3 for c in fold1)
    # the single file: images inlined, 2 cards a fold, same page
    single = (report / EMBED_FILE).read_text()
    assert single.count("data:image/jpeg;base64,") == 4
    assert "<script src=" not in single and "http://" not in single and "https://" not in single
    # deterministic: a rebuild gives the same bytes
    before = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}
    build_report(results, [DS], report, gallery_max=4, embed_max=2)
    after = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}
    assert before == after


def test_cli_gallery_max(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert main(["report", "--results", str(results), "--datasets", DS, "--out", str(out), "--gallery-max", "1"]) == 0
    assert [len(_cards(out, k)) for k in ("gal.r.fold-1", "gal.r.fold-2")] == [1, 1]
    assert main(["report", "--results", str(results), "--datasets", DS, "--out", str(out)]) == 0
    assert [len(_cards(out, k)) for k in ("gal.r.fold-1", "gal.r.fold-2")] == [6, 6]
    with pytest.raises(SystemExit):
        main(["report", "--results", str(results), "--datasets", DS, "--gallery-max", "-1"])


def _files(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """relative path -> (inode, mtime_ns, bytes) of every file under ``folder``."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_gallery_redraws_only_the_folds_whose_inputs_changed(results: Path, tmp_path: Path) -> None:
    """A new run's fold is added without touching the others (same inode, mtime and bytes);
    a fold whose predictions changed is redrawn alone; an upstream artifact's change redraws
    every fold of its dataset; a fold no longer evaluated loses its folder. After each step
    the gallery equals one drawn from scratch."""
    root = tmp_path / "results"
    shutil.copytree(results, root, ignore=shutil.ignore_patterns("report"))
    out = tmp_path / "report"
    metrics = sorted(root.glob(f"{DS}/train/r/fold-*/metrics.json"))
    gallery = out / GALLERY_DIR

    def build(paths: list[Path]) -> dict:
        return build_gallery(root, paths, out, max_cards=4, embed_max=2)

    def fresh(paths: list[Path]) -> dict[str, bytes]:
        other = tmp_path / f"fresh{len(list(tmp_path.iterdir()))}"
        build_gallery(root, paths, other, max_cards=4, embed_max=2)
        assert (other / EMBED_FILE).read_bytes() == (out / EMBED_FILE).read_bytes()
        return {k: v[2] for k, v in _files(other / GALLERY_DIR).items()}

    first = build(metrics)
    assert (first["built"], first["kept"], first["folds"]) == (2, 0, 2)
    before = _files(gallery)
    # a second run, evaluated on fold 1: added, the others untouched
    manifest = pd.read_parquet(root / DS / "manifest" / "manifest.parquet")
    truth = dict(zip(manifest["clip_id"], manifest["label_idx"], strict=True))
    _fake_fold(root, manifest[manifest["test_fold"] == 1]["clip_id"].tolist(), truth, run="r2", fold=1)
    with_r2 = [*metrics, root / DS / "train" / "r2" / "fold-1" / "metrics.json"]
    second = build(with_r2)
    assert (second["built"], second["kept"], second["folds"]) == (1, 2, 3)
    after = _files(gallery)
    kept = {k: v for k, v in before.items() if k.startswith(("gal.r.fold-1/", "gal.r.fold-2/"))}
    assert kept and all(after[k] == v for k, v in kept.items())  # same inode, mtime, bytes
    assert len(_cards(out, "gal.r2.fold-1")) == 4
    assert {k: v[2] for k, v in after.items()} == fresh(with_r2)
    assert (out / EMBED_FILE).read_text().count("data:image/jpeg;base64,") == 6
    # fold 2's predictions change: only it is redrawn
    _fake_fold(root, manifest[manifest["test_fold"] == 2]["clip_id"].tolist(), truth, step=0.07)
    third = build(with_r2)
    assert (third["built"], third["kept"]) == (1, 2)
    now = _files(gallery)
    assert all(now[k] == after[k] for k in after if k.startswith(("gal.r.fold-1/", "gal.r2.fold-1/")))
    assert now["gal.r.fold-2/cards.js"] != after["gal.r.fold-2/cards.js"]
    assert {k: v[2] for k, v in now.items()} == fresh(with_r2)
    # nothing changed: nothing written at all (same inode and mtime of every file)
    assert build(with_r2)["built"] == 0 and _files(gallery) == now
    # an upstream artifact rewritten (a captions shard): every fold of the dataset is redrawn
    cap = shard_file(root, DS, "captions", "000", ".parquet")
    write_parquet(cap, pd.read_parquet(cap).assign(caption=lambda d: d["caption"] + " Again."), read_meta(cap))
    assert build(with_r2)["built"] == 3
    assert any("Again." in c["cap"] for c in _cards(out, "gal.r.fold-1"))
    # run r2 is gone from the report: its folder goes; a half-drawn folder of a killed run too
    (gallery / ".gal.r.fold-1.tmp").mkdir()
    last = build(metrics)
    assert (last["built"], last["kept"]) == (0, 2)
    assert sorted(p.name for p in gallery.iterdir()) == ["folds.js", "gal.r.fold-1", "gal.r.fold-2", "index.html"]


def test_default_card_limit_and_how_many_clips_are_not_shown(tmp_path: Path) -> None:
    """An evaluation of 2,600 clips (none with frames: cards without images, so it stays
    quick) gets the default limit: 2,500 cards, the 100 most confident correct clips left
    out, and the count said in the fold record and the report."""
    root = tmp_path / "results"
    ids = [f"big_{k:05d}" for k in range(2600)]
    truth = {cid: k % 3 for k, cid in enumerate(sorted(ids))}
    truth.update({cid: (k + 1) % 3 for k, cid in enumerate(sorted(ids)) if k % 7 == 0})  # some wrong
    preds = _fake_fold(root, ids, truth, run="z", fold=1, dataset="big")
    metrics = root / "big" / "train" / "z" / "fold-1" / "metrics.json"
    summary = build_gallery(root, [metrics], tmp_path / "report")
    assert DEFAULT_GALLERY_MAX == 2500
    assert (summary["cards"], summary["clips"], summary["not_shown"]) == (2500, 2600, 100)
    folds = json.loads(re.fullmatch(r"window\.DFER_FOLDS=(.*);\n",
                                    (tmp_path / "report" / GALLERY_DIR / "folds.js").read_text(), re.S).group(1))
    assert [(f["clips"], f["shown"], f["embedded"], f["cap"]) for f in folds] == [(2600, 2500, 100, 2500)]
    cards = _cards(tmp_path / "report", "big.z.fold-1")
    left_out = set(preds["clip_id"]) - {c["id"] for c in cards}
    want = preds.sort_values(["correct", "prob", "clip_id"])["clip_id"].tolist()[2500:]
    assert left_out == set(want) and preds.set_index("clip_id").loc[want, "correct"].all()
    assert all("img" not in c for c in cards[:3])
    # the report says it, and `all` lifts the limit
    out = tmp_path / "o"
    assert main(["report", "--results", str(root), "--datasets", "big", "--out", str(out)]) == 0
    assert "100 of 2600 test clips are not shown as cards (at most 2500 per evaluation" in (out / "report.md").read_text()
    assert main(["report", "--results", str(root), "--datasets", "big", "--out", str(out),
                 "--gallery-max", "all"]) == 0
    assert len(_cards(out, "big.z.fold-1")) == 2600 and "not shown" not in (out / "report.md").read_text()


def test_card_text_is_capped() -> None:
    row = pd.DataFrame({"clip_id": ["a"], "label_idx": [0], "pred_idx": [1], "prob": [0.6],
                        "correct": [False], "probs": [[0.3, 0.6, 0.1]]}).itertuples(index=False).__next__()
    huge = "The mouth opens. " * 300_000  # a runaway 5 MB answer stored by an older client
    card = card_record(row, ClipArtifacts(caption="The mouth opens.", raw_text=huge), {})
    assert card["cap"] == "The mouth opens."
    assert card["raw"] == huge[:MAX_CARD_TEXT] + f" ... [{len(huge) - MAX_CARD_TEXT:,} more characters not shown]"
    assert len(json.dumps(card)) < 3000


# ----------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser_binary() -> str:
    binary = find_browser()
    if binary is None:
        if os.environ.get("DFER_ALLOW_NO_BROWSER") == "1":
            pytest.skip("no Chromium (DFER_ALLOW_NO_BROWSER=1); `make browser` installs it")
        pytest.fail("no Chromium on PATH: run `make browser` (Debian's chromium package), "
                    "or set DFER_ALLOW_NO_BROWSER=1 to skip the browser tests")
    return binary


def test_gallery_in_chromium(results: Path, browser_binary: str) -> None:
    report = results / "report"
    build_report(results, [DS], report)
    fake = pd.read_parquet(results / DS / "train" / "r" / "fold-2" / "predictions.parquet")
    with Browser(browser_binary) as b:
        b.open((report / GALLERY_DIR / "index.html").as_uri())
        b.wait_for("document.querySelectorAll('#cards .card').length > 0")
        assert b.js("document.querySelectorAll('#cards .card').length") == 6
        assert b.js("document.querySelectorAll('#cm td.cell').length") == 9
        # a card's face strip loads once in view (lazy): 8 frames of 64 px
        b.rect("#cards .card img.face")
        b.wait_for("(i => i.complete && i.naturalWidth === 512 && i.naturalHeight === 64)"
                   "(document.querySelector('#cards img.face'))")
        # switch to fold 2 (hand-set probabilities) and click its busiest off-diagonal cell
        b.js("(() => { const s = document.getElementById('fold'); s.value = '1';"
             " s.dispatchEvent(new Event('change')); })()")
        b.wait_for("document.querySelector('#cm td.cell') && document.querySelectorAll('#cards .card').length === 6"
                   " && document.getElementById('fold-summary').textContent.includes('6 clips')")
        cm = np.array(compute_metrics(fake["label_idx"], fake["pred_idx"], LABELS)["confusion_matrix"])
        off = cm - np.diag(np.diag(cm))
        t, p = np.unravel_index(int(np.argmax(off)), cm.shape)
        assert cm[t, p] > 0
        texts = b.js(f"document.querySelector('#cm td[data-true=\"{t}\"][data-pred=\"{p}\"]').innerText")
        assert texts.split() == [str(cm[t, p]), f"{100 * cm[t, p] / cm[t].sum():.1f}%"]
        b.click(f'#cm td[data-true="{t}"][data-pred="{p}"]')
        b.wait_for(f"document.getElementById('status').getAttribute('data-matching') === '{cm[t, p]}'")
        shown = b.js("Array.from(document.querySelectorAll('#cards .card')).map(c => "
                     "[c.dataset.id, c.dataset.true, c.dataset.pred])")
        want = fake[(fake["label_idx"] == t) & (fake["pred_idx"] == p)]["clip_id"].tolist()
        assert sorted(s[0] for s in shown) == sorted(want)
        assert {(s[1], s[2]) for s in shown} == {(str(t), str(p))}
        assert b.js("document.getElementById('f-true').value") == str(t)
        # a filter: clear, then show only the wrong clips
        b.click("#f-reset")
        b.wait_for("document.querySelectorAll('#cards .card').length === 6")
        b.js("(() => { const s = document.getElementById('f-outcome'); s.value = 'wrong';"
             " s.dispatchEvent(new Event('change')); })()")
        wrong = int((~fake["correct"]).sum())
        b.wait_for(f"document.querySelectorAll('#cards .card').length === {wrong}")
        assert b.js("Array.from(document.querySelectorAll('#cards .card')).every(c => c.dataset.ok === '0')")
        # confidence sort: lowest first by default
        confs = b.js("Array.from(document.querySelectorAll('#cards .card .verdict')).map(v => v.textContent)")
        values = [float(re.search(r"\(([\d.]+)%\)", v).group(1)) for v in confs]
        assert values == sorted(values)
        # overlays toggle with a real click on the checkbox
        assert b.js("getComputedStyle(document.querySelector('#cards img.lm')).display") == "none"
        b.click("#o-landmarks")
        b.wait_for("getComputedStyle(document.querySelector('#cards img.lm')).display === 'block'")
        assert b.js("getComputedStyle(document.querySelector('#cards img.ps')).display") == "none"
        b.click("#f-reset")
        b.wait_for("document.querySelectorAll('#cards .card').length === 6")
        b.screenshot(report / "gallery-screenshot.png", full_page=True)
        b.screenshot(report / "confusion-screenshot.png", selector="#matrix-section")
        # the single-file gallery (what snakemake --report embeds) works the same way
        b.open((report / EMBED_FILE).as_uri())
        b.wait_for("document.querySelectorAll('#cards .card').length === 6")
        assert b.js("document.querySelector('#cards img.face').src.startsWith('data:image/jpeg')")
        assert b.js("document.getElementById('limit-note').textContent") == ""  # all 6 shown
        # capped at 4 cards: the page says how many clips it leaves out
        capped = results / "report-capped"
        build_report(results, [DS], capped, gallery_max=4)
        b.open((capped / GALLERY_DIR / "index.html").as_uri())
        b.wait_for("document.querySelectorAll('#cards .card').length === 4")
        assert b.js("document.getElementById('limit-note').getAttribute('data-not-shown')") == "2"
        assert b.js("document.getElementById('limit-note').textContent").startswith(
            "2 of 6 clips are not shown: this page shows at most 4 cards per evaluation")
        assert b.js("getComputedStyle(document.getElementById('limit-note')).display") != "none"
        assert b.console == []
    for name in ("gallery-screenshot.png", "confusion-screenshot.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
