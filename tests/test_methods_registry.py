"""The method registry: one factory for every method, what each reads, its checkpoints, its
parameter counts and its optimiser stages, checked against the model cores and METHODS.md.

Expected values are written out by hand from the public code (``../shared/METHODS.md``):
learning rates, weight decays and schedules per parameter group, the epoch of CLIPER's stage
switch, the published parameter counts; models built through the registry are compared with
the standalone cores (the golden-fixture tests check those against the public code).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import load_file

from dfer.methods import api
from dfer.methods.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from dfer.methods.cliper import CLIPER, CLIPERConfig, cliper_loss
from dfer.methods.dferclip import DFERCLIP, DFERCLIPConfig
from dfer.methods.fineclipper import FineCLIPER, ModelConfig
from dfer.methods.registry import (
    build_model,
    get_method,
    list_methods,
    parse_model_block,
    spec_of_model,
)
from dfer.train.config import RunConfig
from dfer.train.inputs import Needs, needs_for
from dfer.train.optim import build_stage, stage_at, stage_starts

REPO = Path(__file__).resolve().parents[1]
SCHEMA2 = REPO / "tests" / "fixtures" / "checkpoints" / "fineclipper_schema2"
SEVEN = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
ELEVEN = [*SEVEN, "contempt", "anxiety", "helplessness", "disappointment"]
TINY = {
    "embed_dim": 32, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TEMPORAL = {"temporal_heads": 2, "temporal_head_dim": 16, "temporal_mlp_dim": 64, "max_frames": 4}
BLOCKS = {
    "fineclipper": {"backbone": "custom", "pretrained": None, "model_cfg": TINY, "max_frames": 4},
    "dferclip": {"method": "dferclip", "backbone": "custom", "pretrained": None, "model_cfg": TINY, **TEMPORAL},
    "cliper": {"method": "cliper", "backbone": "custom", "pretrained": None, "model_cfg": TINY},
}


def frames(n: int = 3, t: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, t, 32, 32, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# --- the registry -----------------------------------------------------------------------------------


def test_every_method_is_listed_and_an_unknown_one_is_named() -> None:
    assert {"fineclipper", "dferclip", "cliper"} <= set(list_methods())
    with pytest.raises(ValueError, match=r"model.method 'dfer_clip' is not a registered method \(known: .*dferclip"):
        get_method("dfer_clip")
    spec, cfg = parse_model_block({"use_parsing": False})  # no method: FineCLIPER, as every old run
    assert spec.name == "fineclipper" and isinstance(cfg, ModelConfig) and not cfg.use_parsing
    with pytest.raises(ValueError, match=r"model \(method dferclip\): unknown dferclip config key\(s\) \['use_parsing'\]"):
        parse_model_block({"method": "dferclip", "use_parsing": False})
    with pytest.raises(ValueError, match="model.method must be a string"):
        parse_model_block({"method": 3})
    with pytest.raises(ValueError, match="a model block of method 'cliper' given to build 'dferclip'"):
        build_model("dferclip", {"method": "cliper"}, SEVEN)
    with pytest.raises(ValueError, match="CLIPERConfig is not the config of method 'dferclip'"):
        build_model("dferclip", CLIPERConfig(), SEVEN)


def test_what_each_method_declares() -> None:
    """Hand-written from METHODS.md: pixels, checkpoint policy, zero-shot, inputs."""
    declared = {name: (s.pixels, s.checkpoint, s.zero_shot, s.inputs)
                for name in ("fineclipper", "dferclip", "cliper") for s in [get_method(name)]}
    assert declared == {
        "fineclipper": ("clip", "tunable", True, ("frames", "parsing", "landmarks", "captions")),
        "dferclip": ("unit", "full", False, ("frames",)),
        "cliper": ("clip", "full", False, ("frames",)),
    }


def test_needs_are_the_methods_and_cost_no_torch() -> None:
    """What the Snakefile asks while it is parsed (on every cluster job): no torch import."""
    code = (
        "import json, sys\n"
        "from dfer.train.inputs import needs_for\n"
        "out = {m: needs_for(b).__dict__ for m, b in json.loads(sys.argv[1]).items()}\n"
        "print(json.dumps({'needs': out, 'torch': 'torch' in sys.modules}))\n"
    )
    blocks = {"fineclipper": {}, "dagger": {"use_parsing": False, "use_landmarks": False},
              "dferclip": {"method": "dferclip"}, "cliper": {"method": "cliper", "aggregation": "temporal"},
              "s2d": {"method": "s2d"}, "s2d_fan": {"method": "s2d", "landmark_kind": "fan_heatmap_14",
                                                    "landmark_channels": 68}}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(blocks)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "src"), "PATH": ""}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["torch"] is False
    every = {"parsing": True, "landmarks": True, "captions": True, "landmark_features": None}
    nothing = {"parsing": False, "landmarks": False, "captions": False, "landmark_features": None}
    assert got["needs"] == {"fineclipper": every, "dagger": {**nothing, "captions": True},
                            "dferclip": nothing, "cliper": nothing,
                            "s2d": {**nothing, "landmark_features": "mobilefacenet_conv4"},
                            "s2d_fan": {**nothing, "landmark_features": "fan_heatmap_14"}}
    assert needs_for(DFERCLIPConfig()) == Needs()  # a parsed config: its method decides too


# --- registry-built models are the cores ------------------------------------------------------------


@pytest.mark.parametrize("method", ["fineclipper", "dferclip", "cliper"])
def test_registry_builds_the_standalone_core(method: str) -> None:
    """Same weights -> the same logits and losses through the registry and the generic
    training path (dfer.methods.api) as through the core called directly."""
    block = dict(BLOCKS[method])
    spec, cfg = parse_model_block(block)
    torch.manual_seed(0)
    core = {"fineclipper": FineCLIPER, "dferclip": DFERCLIP, "cliper": CLIPER}[method](cfg, SEVEN[:5])
    with torch.no_grad():  # away from any identity start (FineCLIPER's adapters)
        gen = torch.Generator().manual_seed(1)
        for p in core.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    built = build_model(method, block if method != "fineclipper" else cfg, SEVEN[:5])
    assert type(built) is type(core) and spec_of_model(built) is spec
    built.load_state_dict(core.state_dict())
    core.eval()
    built.eval()
    x, y = frames(), torch.tensor([0, 3, 4])
    batch = {"frames": x, "parsing": x.flip(2), "landmarks": x.flip(3), "label": y, "clip_id": ["a", "b", "c"]}
    with torch.no_grad():
        direct = core(frames=x, parsing=x.flip(2), landmarks=x.flip(3)) if method == "fineclipper" else core(x)
        generic = api.forward(built, spec, batch)
        torch.testing.assert_close(generic.logits, direct.logits, rtol=0, atol=0)
        torch.testing.assert_close(api.view_outputs(built, spec, batch)[0], direct.probabilities(), rtol=0, atol=0)
        losses = api.losses(built, spec, generic, y)
    if method == "cliper":  # the published loss on the similarities
        torch.testing.assert_close(losses["loss"], cliper_loss(direct.similarities, y).loss)
    else:
        torch.testing.assert_close(losses["loss"] if method == "dferclip" else losses["ce"],
                                   torch.nn.functional.cross_entropy(direct.logits, y))
    per_clip = api.clip_loss(built, spec, generic, y)
    torch.testing.assert_close(per_clip, torch.nn.functional.cross_entropy(direct.logits, y, reduction="none"))


def test_full_checkpoint_holds_the_tuned_tower_and_needs_no_weights(tmp_path: Path) -> None:
    """DFER-CLIP's checkpoint (policy ``full``) is the whole model: it loads into a model built
    without the configured weights file, and predicts what the saved model predicted."""
    torch.manual_seed(0)
    model = build_model("dferclip", BLOCKS["dferclip"], SEVEN)
    with torch.no_grad():
        for p in model.clip.visual.parameters():  # tune the tower away from its initialisation
            p.add_(0.02)
    model.cfg.pretrained = str(tmp_path / "gone.pt")  # as if trained from a file that is gone now
    path = save_checkpoint(tmp_path / "ckpt.safetensors", model.eval(), run="r")
    state, meta = read_checkpoint(path)
    assert meta["method"] == "dferclip" and meta["schema_version"] == 3 and meta["checkpoint_policy"] == "full"
    assert set(state) == set(model.state_dict())  # the tuned image tower is in it
    loaded, _ = load_checkpoint(path)
    assert isinstance(loaded, DFERCLIP) and loaded.cfg.pretrained == str(tmp_path / "gone.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(frames()).logits, model(frames()).logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="DFER-CLIP cannot score classes it was not trained on"):
        load_checkpoint(path, labels=SEVEN[:3])


def test_fineclipper_checkpoint_of_schema_2_still_loads(tmp_path: Path) -> None:
    """A checkpoint written by the code before the registry (no method key) rebuilds the model
    it was written from: the logits that code computed (tests/fixtures/checkpoints/README)."""
    expected = load_file(str(SCHEMA2 / "expected.safetensors"))
    _, meta = read_checkpoint(SCHEMA2 / "checkpoint.safetensors")
    assert meta["schema_version"] == 2 and "method" not in meta
    model, meta = load_checkpoint(SCHEMA2 / "checkpoint.safetensors")
    assert isinstance(model, FineCLIPER) and meta["method"] == "fineclipper"
    x = expected["frames"]
    with torch.no_grad():
        out = model(frames=x, parsing=x.flip(2), landmarks=x.flip(3))
    torch.testing.assert_close(out.logits, expected["logits"], rtol=1e-5, atol=1e-6)
    # written again today: schema 3, the method named, the same tensors
    again = save_checkpoint(tmp_path / "v3.safetensors", model)
    state, meta3 = read_checkpoint(again)
    assert meta3["method"] == "fineclipper" and meta3["checkpoint_policy"] == "tunable"
    old_state, _ = read_checkpoint(SCHEMA2 / "checkpoint.safetensors")
    assert set(state) == set(old_state) and all(torch.equal(state[k], old_state[k]) for k in state)


# --- parameter counts through the registry ----------------------------------------------------------


def meta_clip(name: str) -> dict:
    with torch.device("meta"):
        clip = open_clip.CLIP(**open_clip.get_model_config(name))
    return {"clip": clip, "tokenizer": open_clip.get_tokenizer(name)}


def test_tunable_parameter_counts_match_the_published_ones() -> None:
    """Full-size models on the meta device, counted by dfer.methods.api.count_parameters:
    DFER-CLIP ViT-B/32 tower 87,849,216 + temporal net 2,110,464 + context C x 8 x 512 (public
    modules: 89.99 M / 90.00 M, FineCLIPER's table: 90 M); CLIPER ViT-B/16 tower 86,192,640 +
    35 x 4 x 512 descriptors = 86.26 M static, + the temporal net = 88.37 M (published video: 88 M)."""
    b32, b16 = meta_clip("ViT-B-32-quickgelu"), meta_clip("ViT-B-16-quickgelu")
    got = {}
    for labels in (SEVEN, ELEVEN):
        model = build_model("dferclip", {"pretrained": None}, labels, **b32)
        got[f"dferclip{len(labels)}"] = api.count_parameters(model, get_method("dferclip"))
    for agg in ("mean", "temporal"):
        model = build_model("cliper", {"pretrained": None, "aggregation": agg}, SEVEN, **b16)
        got[f"cliper_{agg}"] = api.count_parameters(model, get_method("cliper"))
    assert got["dferclip7"]["tunable_total"] == 87_849_216 + 2_110_464 + 7 * 8 * 512 == 89_988_352
    assert got["dferclip11"]["tunable_total"] == 87_849_216 + 2_110_464 + 11 * 8 * 512 == 90_004_736
    assert {k: got["dferclip7"][k] for k in ("image", "temporal", "prompts")} == \
        {"image": 87_849_216, "temporal": 2_110_464, "prompts": 28_672}
    assert got["cliper_mean"]["tunable_total"] == 86_192_640 + 35 * 4 * 512 == 86_264_320
    assert got["cliper_temporal"]["tunable_total"] == 86_264_320 + 2_110_464
    published = {"dferclip7": 89.99, "dferclip11": 90.00, "cliper_mean": 86.26}
    for key, millions in published.items():
        assert round(got[key]["tunable_total"] / 1e6, 2) == millions, key
    assert round(got["cliper_temporal"]["tunable_total"] / 1e6) == 88
    # FineCLIPER through the same call: its own counter (the paper's 13-20 M; test_model_fidelity)
    fine = build_model("fineclipper", {"pretrained": None}, SEVEN, **b16)
    assert api.count_parameters(fine, get_method("fineclipper"))["tunable_total"] == 19_573_060


# --- optimiser groups, rates and stages -------------------------------------------------------------


def built(method: str, **run) -> tuple:
    cfg = RunConfig.from_dict({"model": BLOCKS[method], **run})
    torch.manual_seed(0)
    model = build_model(cfg.spec, cfg.model, SEVEN[:5])
    return cfg, model, api.parameter_groups(model, cfg.spec)


def groups_of(opt: torch.optim.Optimizer) -> list[tuple]:
    """(group, base learning rate, weight decay, parameters) of each optimiser group."""
    return [(g["name"], g.get("initial_lr", g["lr"]), g["weight_decay"], len(g["params"])) for g in opt.param_groups]


def lrs_over_epochs(stage, epochs: int) -> list[list[float]]:
    """Each group's learning rate at the start of every epoch (epoch-interval schedulers)."""
    out = []
    for _ in range(epochs):
        out.append([g["lr"] for g in stage.optimizer.param_groups])
        stage.optimizer.step()
        stage.scheduler["scheduler"].step()
    return out


def test_dferclip_optimiser_is_the_public_one() -> None:
    """SGD momentum 0.9, weight decay 1e-4 on every parameter, lr temporal 1e-2 / image 1e-5 /
    prompts 1e-3, MultiStepLR [30, 40] x 0.1 per epoch, 50 epochs, batch 48, float32."""
    cfg, model, groups = built("dferclip")
    assert (cfg.trainer.max_epochs, cfg.data.batch_size, cfg.trainer.precision) == (50, 48, "32-true")
    assert (cfg.data.train_frames, cfg.data.test_sampler, cfg.data.crop_scale) == ("segment_random", "segment_centre", [0.08, 1.0])
    stage = build_stage(cfg.optim, groups, 0, 50, 1000)
    assert isinstance(stage.optimizer, torch.optim.SGD)
    assert all(g["momentum"] == 0.9 for g in stage.optimizer.param_groups)
    n = {k: len(v) for k, v in model.parameter_groups().items()}
    assert groups_of(stage.optimizer) == [("temporal", 1e-2, 1e-4, n["temporal"]), ("image", 1e-5, 1e-4, n["image"]),
                                          ("prompts", 1e-3, 1e-4, 1)]
    assert stage.scheduler["interval"] == "epoch"
    rates = lrs_over_epochs(stage, 50)
    expected = [[1e-2, 1e-5, 1e-3]] * 30 + [[1e-3, 1e-6, 1e-4]] * 10 + [[1e-4, 1e-7, 1e-5]] * 10
    assert rates == [pytest.approx(r, rel=1e-9) for r in expected]
    assert stage_at(cfg.optim.resolved_stages(), 49) == 0  # one stage


def test_cliper_switches_stages_at_epoch_3_with_a_new_optimiser() -> None:
    """Epochs 1-2 (0-based 0, 1): AdamW on the descriptors only, lr 1e-2, no weight decay,
    eps 1e-4, constant; from epoch 3 (0-based 2) a new AdamW on the image tower only, lr 5e-6,
    weight decay 0.1, CosineAnnealingWarmRestarts(T0 = 10) per epoch; 59 epochs, batch 128."""
    cfg, model, groups = built("cliper")
    assert (cfg.trainer.max_epochs, cfg.data.batch_size) == (59, 128)
    stages = cfg.optim.resolved_stages()
    assert stage_starts(stages) == [0, 2]
    assert [stage_at(stages, e) for e in range(6)] == [0, 0, 1, 1, 1, 1]
    first = build_stage(cfg.optim, groups, 1, 59, 59)
    assert isinstance(first.optimizer, torch.optim.AdamW) and first.scheduler is None
    assert groups_of(first.optimizer) == [("descriptors", 1e-2, 0.0, 1)]
    assert first.optimizer.param_groups[0]["eps"] == 1e-4
    assert model.descriptors.requires_grad and not any(p.requires_grad for p in model.clip.visual.parameters())
    second = build_stage(cfg.optim, groups, 2, 59, 59)
    assert second.optimizer is not first.optimizer and second.index == 1
    n_image = len(list(model.clip.visual.parameters()))
    assert groups_of(second.optimizer) == [("image", 5e-6, 0.1, n_image)]
    assert second.optimizer.param_groups[0]["eps"] == 1e-4
    assert not model.descriptors.requires_grad and all(p.requires_grad for p in model.clip.visual.parameters())
    # cosine with warm restarts every 10 epochs: 5e-6 (1 + cos(pi e / 10)) / 2, e = epochs into the stage
    rates = [r[0] for r in lrs_over_epochs(second, 12)]
    expected = [5e-6 * (1 + math.cos(math.pi * (e % 10) / 10)) / 2 for e in range(12)]
    assert rates == pytest.approx(expected, rel=1e-9)
    assert rates[0] == rates[10] == 5e-6 and rates[5] == pytest.approx(2.5e-6)
    # under DDP the frozen group keeps its gradient switch (DDP registered it) but no optimiser holds it
    ddp = build_stage(cfg.optim, groups, 0, 59, 59, alone=False)
    assert all(p.requires_grad for p in model.clip.visual.parameters())
    assert groups_of(ddp.optimizer) == [("descriptors", 1e-2, 0.0, 1)]


def test_cliper_temporal_aggregation_trains_with_the_image_tower() -> None:
    cfg = RunConfig.from_dict({"model": {**BLOCKS["cliper"], "aggregation": "temporal", **TEMPORAL}})
    model = build_model(cfg.spec, cfg.model, SEVEN[:5])
    stage = build_stage(cfg.optim, api.parameter_groups(model, cfg.spec), 2, 59, 59)
    assert [g[0] for g in groups_of(stage.optimizer)] == ["image", "temporal"]


def test_fineclipper_optimiser_is_unchanged() -> None:
    """AdamW over the tunable parameters, weight decay 0.05 except 1-d ones, lr 1e-3, linear
    warm-up over 10 % of the steps then cosine to 1 % (per step)."""
    cfg, model, groups = built("fineclipper")
    stage = build_stage(cfg.optim, groups, 0, 10, 100)
    params = list(model.tunable_parameters().values())
    matrices = sum(p.ndim >= 2 for p in params)
    assert groups_of(stage.optimizer) == [("tunable", 1e-3, 0.05, matrices), ("tunable", 1e-3, 0.0, len(params) - matrices)]
    assert stage.scheduler["interval"] == "step"
    factor = stage.scheduler["scheduler"].lr_lambdas[0]
    assert factor(0) == pytest.approx(1 / 11) and factor(9) == pytest.approx(10 / 11)
    assert factor(10) == pytest.approx(1.0) and factor(100) == pytest.approx(0.01)
    assert factor(55) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))


def test_optim_stages_are_checked_before_any_job_runs() -> None:
    with pytest.raises(ValueError, match=r"optim.stages\[0\].epochs is needed"):
        RunConfig.from_dict({"model": BLOCKS["cliper"], "optim": {"stages": [{"groups": ["image"]}, {}]}})
    with pytest.raises(ValueError, match=r"unknown optim.stages\[1\] key\(s\) \['learning_rate'\]"):
        RunConfig.from_dict({"model": BLOCKS["cliper"], "optim": {"stages": [{"epochs": 1}, {"learning_rate": 1}]}})
    cfg, _, groups = built("cliper", optim={"stages": [{"epochs": 1, "groups": ["descriptor"]}, {}]})
    with pytest.raises(ValueError, match=r"optim groups \['descriptor'\] are not parameter groups of this method"):
        build_stage(cfg.optim, groups, 0, 5, 5)
    cfg, _, groups = built("dferclip", optim={"group_lr": {"text": 1.0}})
    with pytest.raises(ValueError, match=r"optim.group_lr names \['text'\]"):
        build_stage(cfg.optim, groups, 0, 5, 5)


def test_resume_digest_names_the_method() -> None:
    from dfer.train import resume

    def digest(model: dict) -> str:
        return resume.run_digest(RunConfig.from_dict({"model": model}), dataset="d", fold=1, labels=SEVEN,
                                 precision="32-true", train_clips=["a"], test_clips=["b"], preprocessing={})

    plain, named = digest({}), digest({"method": "fineclipper"})
    assert plain == named  # the default method, written or not, is the same run
    assert digest({"method": "cliper"}) != plain and digest({"method": "dferclip"}) != digest({"method": "cliper"})


def test_config_block_of_another_method_is_refused_in_the_config_check() -> None:
    import yaml

    from dfer.config_check import config_problem

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["train"]["runs"]["r"] = {"model": {"method": "cliper", "sub_descriptor": 5}}
    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    problem = config_problem(config, schema)
    assert problem is not None and "train.runs.r.model.sub_descriptor" in problem
    assert "model (method cliper): unknown cliper config key(s) ['sub_descriptor']" in problem


def test_cliper_config_for_the_registry_is_its_core_config() -> None:
    assert isinstance(parse_model_block({"method": "cliper"})[1], CLIPERConfig)
    assert isinstance(parse_model_block({"method": "dferclip"})[1], DFERCLIPConfig)


def test_schema_lists_the_registered_methods() -> None:
    """config.schema.yaml's ``model.method`` enum is the registry's list (a method added to one
    and not the other is caught here)."""
    import yaml

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    run = schema["properties"]["train"]["properties"]["runs"]["additionalProperties"]
    assert sorted(run["properties"]["model"]["properties"]["method"]["enum"]) == list_methods()


def test_zero_shot_of_a_method_that_cannot_is_refused_in_the_config_check() -> None:
    """DFER-CLIP's and CLIPER's text side is learned per trained class: a zero-shot entry that
    names such a run is a config error naming the entry; a FineCLIPER run passes."""
    import yaml

    from dfer.config_check import config_problem

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    tiny = {"backbone": "custom", "pretrained": None, "model_cfg": TINY}
    config["train"]["runs"] = {"fine": {"model": {"backbone": "tiny", "pretrained": None}},
                               "dc": {"model": {"method": "dferclip", **tiny}}}
    config["train"]["zero_shot"] = [{"run": "fine", "train": "demo", "eval": "demo"}]
    assert config_problem(config, schema) is None
    config["train"]["zero_shot"].append({"run": "dc", "train": "demo", "eval": "demo"})
    problem = config_problem(config, schema)
    assert problem is not None and problem.startswith("config error at train.zero_shot.1.run: ")
    assert "run 'dc' trains DFER-CLIP (model.method dferclip), which cannot score classes" in problem
    config["train"]["runs"]["dc"]["model"]["method"] = "dfer-clip"
    problem = config_problem(config, schema)
    assert problem is not None and "dfer-clip" in problem and "fineclipper" in problem


def test_fineclipper_names_still_import_from_their_old_places() -> None:
    """Code written before the registry imports FineCLIPER from dfer.model: the same objects."""
    import dfer.methods.checkpoint as ckpt
    import dfer.methods.fineclipper as fine
    import dfer.model as old
    from dfer.model.config import ModelConfig as OldConfig
    from dfer.model.fineclip import FineCLIPER as OldModel

    assert OldConfig is ModelConfig and OldModel is FineCLIPER
    assert (old.FineCLIPER, old.ModelConfig, old.FineCLIPEROutput, old.count_parameters) == \
        (fine.FineCLIPER, ModelConfig, fine.FineCLIPEROutput, fine.count_parameters)
    assert (old.load_checkpoint, old.read_checkpoint, old.save_checkpoint) == \
        (ckpt.load_checkpoint, ckpt.read_checkpoint, ckpt.save_checkpoint)


def test_view_outputs_averages_views_and_explains_with_the_identity_view() -> None:
    """Probabilities are the mean over the views; the output kept for the explanation columns is
    the identity view's even when hflip comes first (frames [B, T, H, W, 3], W mirrored)."""
    from types import SimpleNamespace

    from dfer.methods import api

    class Out(SimpleNamespace):
        def probabilities(self) -> torch.Tensor:
            return self.p

    def model(frames: torch.Tensor) -> Out:  # class 0's probability: the first column's mean
        left = frames[..., 0, :].float().mean().reshape(1, 1) / 10
        return Out(p=torch.cat([left, 1 - left], dim=1), first_column=left)

    frames = torch.zeros(1, 1, 2, 2, 3)
    frames[..., 0, :] = 4.0  # the first column bright, the second dark
    spec = SimpleNamespace(inputs=("frames",), shares_batch=False)
    probs, out = api.view_outputs(model, spec, {"frames": frames}, ("hflip", "identity"))
    assert torch.allclose(probs, torch.tensor([[0.2, 0.8]]))  # (0.4 + 0.0) / 2, (0.6 + 1.0) / 2
    assert out.first_column.item() == pytest.approx(0.4)  # the identity view's, not the flipped 0.0


def test_hflip_view_of_a_model_reading_middle_levels_is_refused_in_the_config_check() -> None:
    """The hflip test view mirrors frames only: a FineCLIPER run with its landmark and parsing
    levels on is refused by the config check (before any fold trains), naming the run; the same
    view on a frames-only FineCLIPER and on DFER-CLIP passes."""
    import yaml

    from dfer.config_check import config_problem

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    tiny = {"backbone": "custom", "pretrained": None, "model_cfg": TINY}
    views = {"test_views": ["identity", "hflip"]}
    config["train"]["runs"] = {
        "frames_only": {"model": {**tiny, "use_landmarks": False, "use_parsing": False}, "data": views},
        "dc": {"model": {"method": "dferclip", **tiny}, "data": views}}
    assert config_problem(config, schema) is None
    config["train"]["runs"]["three_levels"] = {"model": tiny, "data": views}
    problem = config_problem(config, schema)
    assert problem is not None and "train.runs.three_levels" in problem
    assert "data.test_views hflip mirrors the frames only" in problem
    # S2D reads stored landmark feature maps, which a flip would not follow either
    del config["train"]["runs"]["three_levels"]
    config["train"]["runs"]["s2d"] = {"model": {"method": "s2d"}, "data": views}
    problem = config_problem(config, schema)
    assert problem is not None and "train.runs.s2d" in problem and "hflip" in problem
