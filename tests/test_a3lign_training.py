"""A3lign-DFER through the one trainer (dfer.train): the three BAP stages in a real Lightning fit,
a resume across each stage boundary, evaluation of the checkpoint.

A tiny random-init CLIP on the synthetic artifacts (tests/support/dataset.py), one epoch per BAP
stage. What each stage may change is written out here by hand (parameter names of the MAT and of
the two dynamic encoders), not read from ``BAP_STAGES``; every other tensor of the model (the
whole CLIP included) must stay bit-identical across the stage's epoch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from support.dataset import write_synthetic_dataset

from dfer.core.paths import RESUME
from dfer.methods.checkpoint import load_checkpoint, read_checkpoint
from dfer.train.evaluate import evaluate_checkpoint
from dfer.train.fit import train_fold

REPO = Path(__file__).resolve().parents[1]
LABELS = ["happiness", "sadness", "neutral", "anger", "surprise"]
TINY = {
    "embed_dim": 32, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 24, "heads": 2, "layers": 1},
}
S, L_TOK, T, HEADS, HEAD_DIM, MLP = 2, 2, 4, 2, 8, 16
E, D_TEXT = 32, 24

#: one dynamic encoder's parameters (1 layer; heads x head_dim = 16 != 32: it has a projection)
DYNAMIC = ["cls_token", "pos_embedding", "layers.0.attn_norm.weight", "layers.0.attn_norm.bias",
           "layers.0.qkv.weight", "layers.0.proj.weight", "layers.0.proj.bias", "layers.0.mlp_norm.weight",
           "layers.0.mlp_norm.bias", "layers.0.fc1.weight", "layers.0.fc1.bias", "layers.0.fc2.weight",
           "layers.0.fc2.bias"]
TEXT = {"mat"} | {f"text_dynamic.{n}" for n in DYNAMIC}
VIDEO = {f"video_dynamic.{n}" for n in DYNAMIC}
#: what each epoch (= BAP stage 1, 2, 3) may change, by hand from the paper notes' stages
CHANGES = [TEXT, VIDEO, TEXT | VIDEO]


def dynamic_count(n_positions: int) -> int:
    """One dynamic encoder's parameters from its shapes: class token E, positions (n + 1) E, two
    LayerNorms 2 x 2E, qkv 3 x inner x E (no bias), projection inner x E + E, MLP E x m + m + m x E + E."""
    inner = HEADS * HEAD_DIM
    return E + (n_positions + 1) * E + 4 * E + 3 * inner * E + inner * E + E + E * MLP + MLP + MLP * E + E


def stages(epochs: tuple[int, int, int] = (1, 1, 1)) -> list[dict]:
    groups = [["mat", "text_dynamic", "text_tower"], ["video_dynamic", "image_tower"],
              ["mat", "text_dynamic", "text_tower", "video_dynamic", "image_tower"]]
    return [{"epochs": e, "groups": g} for e, g in zip(epochs, groups, strict=True)]


def run_params() -> dict:
    model = {"method": "a3lign", "backbone": "custom", "pretrained": None, "model_cfg": TINY,
             "sentences": S, "mat_tokens": L_TOK, "dynamic_heads": HEADS, "dynamic_head_dim": HEAD_DIM,
             "dynamic_mlp_dim": MLP, "max_frames": T}
    return {
        "device": "cpu", "model": model,
        "data": {"batch_size": 8, "num_workers": 0, "num_frames": T},
        # the method's SGD and rates; one epoch per BAP stage
        "optim": {"stages": stages()},
        "trainer": {"max_epochs": 3, "seed": 0, "log_every_n_steps": 1, "precision": "32-true"},
    }


def test_registration_declares_frames_only_and_the_bap_schedule() -> None:
    """Hand-written from METHODS.md 4 (all UNVERIFIED) and our choices (docs/methods.md): frames,
    CLIP pixels, a ``tunable`` checkpoint, no zero-shot; the three BAP stages as optimiser stages
    of 40 / 30 / 30 epochs, each a new SGD over exactly the stage's groups; batch 64."""
    from dfer.methods.registry import get_method
    from dfer.train.config import RunConfig

    spec = get_method("a3lign")
    assert (spec.pixels, spec.checkpoint, spec.zero_shot, spec.inputs, spec.title) == (
        "clip", "tunable", False, ("frames",), "A3lign-DFER")
    cfg = RunConfig.from_dict({"model": {"method": "a3lign"}})
    got = [(s.epochs, s.groups, s.optimizer, s.momentum, s.group_lr["mat"], s.group_lr["video_dynamic"])
           for s in cfg.optim.resolved_stages()]
    assert got == [
        (40, ["mat", "text_dynamic", "text_tower"], "sgd", 0.9, 1e-3, 1e-2),
        (30, ["video_dynamic", "image_tower"], "sgd", 0.9, 1e-3, 1e-2),
        (30, ["mat", "text_dynamic", "text_tower", "video_dynamic", "image_tower"], "sgd", 0.9, 1e-3, 1e-2),
    ]
    assert (cfg.trainer.max_epochs, cfg.data.batch_size, cfg.data.num_frames) == (100, 64, 16)
    assert cfg.data.crop_scale == [pytest.approx(12544 / 14400)] * 2  # a 112 px square of 120 px


def test_needs_frames_only_without_torch_and_no_zero_shot() -> None:
    """The Snakefile's question (no torch import): frames only; a zero-shot entry naming an
    A3lign-DFER run is a config error naming the entry (its MAT rows are learned per class)."""
    import yaml

    from dfer.config_check import config_problem

    code = ("import json, sys\nfrom dfer.train.inputs import needs_for\n"
            "print(json.dumps({'needs': needs_for({'method': 'a3lign'}).__dict__, 'torch': 'torch' in sys.modules}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "src"), "PATH": ""}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"needs": {"parsing": False, "landmarks": False, "captions": False,
                                                 "landmark_features": None},
                                       "torch": False}
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["train"]["runs"] = {"a3": {"model": {"method": "a3lign", "backbone": "custom", "pretrained": None,
                                                "model_cfg": TINY}}}
    config["train"]["zero_shot"] = [{"run": "a3", "train": "demo", "eval": "demo"}]
    problem = config_problem(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    assert problem is not None and problem.startswith("config error at train.zero_shot.0.run: ")
    assert "A3lign-DFER" in problem


def test_an_optim_stage_that_is_no_bap_stage_is_refused_before_any_job(results: Path, tmp_path: Path) -> None:
    """By the run's config (the config check names the key), and so by training too."""
    import yaml

    from dfer.config_check import config_problem
    from dfer.train.config import RunConfig

    params = run_params()
    params["optim"] = {"stages": [{"epochs": 1, "groups": ["mat", "text_dynamic", "text_tower"]},
                                  {"groups": ["mat", "video_dynamic"]}]}
    with pytest.raises(ValueError, match=r"optim.stages\[1\].groups: an A3lign-DFER optim stage must train the "
                                         r"groups of one BAP stage, got \['mat', 'video_dynamic'\]"):
        RunConfig.from_dict(params)
    with pytest.raises(ValueError, match=r"optim.groups: .* got \['mat'\]"):
        RunConfig.from_dict({**params, "optim": {"stages": None, "groups": ["mat"]}})
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["train"]["runs"] = {"a3": {k: v for k, v in params.items() if k != "device"}}
    problem = config_problem(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    assert problem is not None and problem.startswith("config error at train.runs.a3.optim.stages: "), problem
    with pytest.raises(ValueError, match="one BAP stage"):
        train_fold(results, "syn", 1, "a3lign", params, tmp_path / "bad")
    assert not (tmp_path / "bad" / "checkpoint.safetensors").exists()


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("a3lign")
    write_synthetic_dataset(root, "syn", num_classes=5, clips_per_class=4, frames=6, size=32, num_shards=1,
                            labels=LABELS)
    return root


class Watch(L.Callback):
    """Before training and at each epoch's end: a copy of every tensor of the model; at each
    epoch's first batch: the model's BAP stage, the optimiser's groups and rates, and which
    parameters need a gradient."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []
        self.stage: list[int] = []
        self.groups: list[list[tuple[str, float]]] = []
        self.grad_on: list[set[str]] = []

    def _snap(self, module: L.LightningModule) -> None:
        self.states.append({n: p.detach().clone() for n, p in module.model.named_parameters()})

    def on_train_start(self, trainer, module) -> None:
        self._snap(module)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == 0:
            [opt] = trainer.optimizers
            self.stage.append(module.model.stage)
            self.groups.append([(g["name"], g["lr"]) for g in opt.param_groups])
            self.grad_on.append({n for n, p in module.model.named_parameters() if p.requires_grad})

    def on_train_epoch_end(self, trainer, module) -> None:
        self._snap(module)


@pytest.fixture(scope="module")
def a3lign_run(results: Path) -> tuple[Path, Watch]:
    watch = Watch()
    out = results / "a3lign"
    train_fold(results, "syn", 1, "a3lign", run_params(), out, callbacks=[watch])
    return out, watch


def test_each_bap_stage_changes_exactly_its_parameters(a3lign_run) -> None:
    """Epoch k is BAP stage k: a new SGD over exactly its groups (the empty tower groups left
    out), the model in that stage, and after the epoch exactly the stage's parameters differ,
    every other tensor of the model (CLIP's included) bit-identical."""
    out, watch = a3lign_run
    assert watch.stage == [1, 2, 3]
    assert watch.groups == [[("mat", 1e-3), ("text_dynamic", 1e-2)], [("video_dynamic", 1e-2)],
                            [("mat", 1e-3), ("text_dynamic", 1e-2), ("video_dynamic", 1e-2)]]
    assert watch.grad_on == CHANGES
    names = set(watch.states[0])
    assert any(n.startswith("clip.visual.") for n in names) and any(n.startswith("clip.transformer.") for n in names)
    for epoch, expected in enumerate(CHANGES):
        before, after = watch.states[epoch], watch.states[epoch + 1]
        changed = {n for n in names if not torch.equal(before[n], after[n])}
        assert changed == expected, f"epoch {epoch}: unexpected {sorted(changed - expected)[:4]}, " \
                                    f"unchanged {sorted(expected - changed)[:4]}"
    summary = json.loads((out / "train.json").read_text())
    assert summary["method"] == "a3lign" and summary["epochs"] == 3
    mat = 5 * S * L_TOK * D_TEXT  # C x S x L x D_text
    text, video = dynamic_count(S), dynamic_count(T)
    parts = {k: v for k, v in summary["parameters"].items() if k != "frozen"}
    assert parts == {"mat": mat, "text_dynamic": text, "text_tower": 0, "video_dynamic": video,
                     "image_tower": 0, "tunable_total": mat + text + video}


def test_checkpoint_holds_the_trained_parts_and_the_stage_and_evaluates(results: Path, a3lign_run,
                                                                         tmp_path: Path) -> None:
    out, watch = a3lign_run
    state, meta = read_checkpoint(out / "checkpoint.safetensors")
    assert meta["method"] == "a3lign" and meta["checkpoint_policy"] == "tunable"
    assert set(state) == TEXT | VIDEO | {"stage_number"}  # no CLIP tensor: re-created from init_seed
    assert float(state["stage_number"]) == 3.0
    final = watch.states[-1]
    assert all(torch.equal(state[n], final[n]) for n in TEXT | VIDEO)
    model, _ = load_checkpoint(out / "checkpoint.safetensors")
    assert model.stage == 3
    assert all(torch.equal(p, final[n]) for n, p in model.named_parameters())  # CLIP too, from init_seed
    metrics = evaluate_checkpoint(out / "checkpoint.safetensors", results, "syn", 1, tmp_path / "eval", device="cpu")
    assert metrics["method"] == "a3lign" and 0.0 <= metrics["uar"] <= 1.0


def test_trained_video_encoder_depends_on_frame_order(a3lign_run) -> None:
    """On the trained weights: in stage 3 (and 2) shuffled frames give another video feature;
    in stage 1 (the frame mean) the same."""
    model, _ = load_checkpoint(a3lign_run[0] / "checkpoint.safetensors")
    frames = torch.randint(0, 256, (2, T, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    shuffled = frames[:, [3, 1, 0, 2]]
    with torch.no_grad():
        for stage in (3, 2):
            model.set_stage(stage)
            assert float((model(frames).video_features - model(shuffled).video_features).abs().max()) > 1e-3
        model.set_stage(1)
        torch.testing.assert_close(model(frames).video_features, model(shuffled).video_features)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}


@pytest.mark.parametrize(("kill_at", "saved_groups"), [
    (1, ["mat", "text_dynamic"]),  # frame mean -> video encoder
    # stage 2 -> 3: the same code path with other groups (the kill test costs ~15 s of the default suite)
    pytest.param(2, ["video_dynamic"], marks=pytest.mark.slow),
])
def test_killed_at_a_stage_boundary_resumes_into_the_next_stage(results: Path, a3lign_run, kill_at: int,
                                                                 saved_groups: list[str]) -> None:
    """Killed as the first epoch of BAP stage 2 (or 3) starts, the resume file holds the previous
    stage's optimiser; the fold continues in the next stage and ends with the uninterrupted
    run's weights and stage, bit for bit."""
    out = results / f"a3lign_killed_{kill_at}"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "support" / "kill_training.py"), str(results), "syn", str(out),
         json.dumps(run_params()), str(kill_at)],
        env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-3000:]
    saved = torch.load(out / RESUME, weights_only=True)
    assert saved["epoch"] == kill_at - 1
    assert [g["name"] for g in saved["optimizer_states"][0]["param_groups"]] == saved_groups
    assert int(saved["state_dict"]["model.stage_number"]) == kill_at  # the stage that was training
    train_fold(results, "syn", 1, "a3lign", run_params(), out)
    assert json.loads((out / "train.json").read_text())["resumed_at_epoch"] == kill_at
    a = read_checkpoint(out / "checkpoint.safetensors")[0]
    b = read_checkpoint(a3lign_run[0] / "checkpoint.safetensors")[0]
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # two Lightning processes (~1 min on 2 loaded cores)
def test_two_processes_match_one_across_the_bap_stages(results: Path, a3lign_run) -> None:
    """Lightning's DDP on 2 CPU processes: the model's stage follows the optimiser stages without
    switching ``requires_grad`` off (dfer.train.optim), the frame-mean stage leaves the video
    encoder unused, and the three stages end with the one-process weights (to float reduction
    order) and in stage 3."""
    out = results / "a3lign_two"
    params = run_params()
    params["trainer"].update(devices=2, accelerator="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", "dfer", "train", "--results", str(results), "--dataset", "syn", "--fold", "1",
         "--run", "a3lign", "--out", str(out), "--params", json.dumps(params)],
        env=env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    a = read_checkpoint(out / "checkpoint.safetensors")[0]
    b = read_checkpoint(a3lign_run[0] / "checkpoint.safetensors")[0]
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert json.loads((out / "train.json").read_text())["processes"] == 2
