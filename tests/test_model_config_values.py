"""The model configuration's rules and the checkpoint round trip, by hand (issue 25).

Every refusal of :meth:`ModelConfig.validate` with the message it must give, the derived
properties (levels, what a prediction needs of a caption), the schema-1 translation key by key,
and a checkpoint written and read back: its metadata field by field, the weights bit for bit,
overrides and label swaps, the schema-1 data default, and the errors for files that are not
dfer checkpoints. The model is a 1-layer, 16-wide random CLIP: a second to build.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from dfer.core.artifacts import META_KEY
from dfer.model.checkpoint import (
    CHECKPOINT_SCHEMA_VERSION,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from dfer.model.config import TINY_CLIP_CFG, ModelConfig, looks_like_path, migrate_v1
from dfer.model.fineclip import FineCLIPER

SMALL = {"embed_dim": 8, "quick_gelu": True,
         "vision_cfg": {"image_size": 16, "layers": 1, "width": 16, "patch_size": 8, "head_width": 8},
         "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}


@pytest.mark.parametrize(("value", "path"), [
    ("openai", False), ("laion2b_s34b_b88k", False), ("a/b", True), ("a\\b", True), ("w.pt", True),
    ("w.pth", True), ("w.bin", True), ("w.safetensors", True), ("w.ckpt", False),
])
def test_looks_like_path(value: str, path: bool) -> None:
    assert looks_like_path(value) is path


@pytest.mark.parametrize(("change", "message"), [
    ({"temporal": "lstm"}, "model.temporal must be one of ['aim', 'attention', 'none'], got 'lstm'"),
    ({"text_adapter_position": "x"}, "model.text_adapter_position must be one of ['attn', 'mlp'], got 'x'"),
    ({"pn_loss": "x"}, "model.pn_loss must be one of ['combined', 'two_term'], got 'x'"),
    ({"model_cfg": SMALL, "pretrained": None, "backbone": "ViT-B-16"},
     "model.model_cfg is given with model.pretrained: null while model.backbone is the named architecture "
     "'ViT-B-16': the backbone would be random, not ViT-B-16's weights. Set model.pretrained to a local "
     "checkpoint file, or model.backbone to one of ['custom', 'tiny'] to ask for a random backbone."),
    ({"model_cfg": SMALL, "pretrained": "openai"},
     "model.pretrained 'openai' is an open_clip tag, which only names weights of a named architecture; "
     "with model.model_cfg give a local checkpoint file"),
    ({"backbone": "custom", "pretrained": None}, "model.backbone 'custom' needs model.model_cfg"),
    ({"backbone": "tiny", "pretrained": "openai"},
     "model.pretrained 'openai': the tiny backbone has no open_clip weights; set model.pretrained: null "
     "(random) or a local checkpoint file"),
    ({"max_frames": 0}, "model.max_frames must be >= 1"),
    ({"use_video": False, "use_parsing": False, "use_landmarks": False},
     "at least one visual level (use_video/use_parsing/use_landmarks) is needed, or captions as the only "
     "level (use_captions and caption_in_fusion: the paper's \"High only\" ablation)"),
    ({"adapter_ratio": 0.0},
     "adapter ratios (adapter_ratio, mid_adapter_ratio, text_adapter_ratio) must be > 0"),
    ({"mid_adapter_ratio": 0.0},
     "adapter ratios (adapter_ratio, mid_adapter_ratio, text_adapter_ratio) must be > 0"),
    ({"text_adapter_ratio": -1.0},
     "adapter ratios (adapter_ratio, mid_adapter_ratio, text_adapter_ratio) must be > 0"),
    ({"negative_template": "no label"}, "descriptor templates must contain '{label}'"),
])
def test_validate_refuses_with_the_key_named(change: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        ModelConfig.from_dict(change)
    assert str(err.value) == message


def test_settings_that_are_accepted() -> None:
    for ok in ({"model_cfg": SMALL, "pretrained": None, "backbone": "custom"},
               {"model_cfg": SMALL, "pretrained": "/w/clip.pt", "backbone": "ViT-B-16"},
               {"backbone": "tiny", "pretrained": None}, {"backbone": "tiny", "pretrained": "w.pt"},
               {"max_frames": 1, "adapter_ratio": 1e-3},
               {"use_video": False, "use_parsing": False, "use_landmarks": False, "caption_in_fusion": True}):
        ModelConfig.from_dict(ok)
    with pytest.raises(ValueError, match=r"^unknown model config key\(s\) \['no_such_key'\]; known: \['adapter_ratio'"):
        ModelConfig.from_dict({"no_such_key": 1})
    ModelConfig.from_dict({"use_video": False, "use_landmarks": False})  # parsing alone is a visual level


def test_derived_properties_by_hand() -> None:
    cfg = ModelConfig.from_dict({"backbone": "tiny", "pretrained": None})
    assert cfg.open_clip_cfg() is TINY_CLIP_CFG
    assert ModelConfig.from_dict({"backbone": "custom", "model_cfg": SMALL, "pretrained": None}).open_clip_cfg() is SMALL
    assert ModelConfig().open_clip_cfg() is None
    assert cfg.visual_levels == ["video", "parsing", "landmarks"] and cfg.captions_at_prediction == "unused"
    assert ModelConfig(use_parsing=False).visual_levels == ["video", "landmarks"]
    assert ModelConfig(use_video=False, use_landmarks=False).visual_levels == ["parsing"]
    assert ModelConfig(caption_in_fusion=True).captions_at_prediction == "optional"
    high = ModelConfig(use_video=False, use_parsing=False, use_landmarks=False, caption_in_fusion=True)
    assert high.high_only and high.captions_at_prediction == "required" and high.visual_levels == []
    assert not ModelConfig(use_video=False, use_parsing=False, use_landmarks=False).high_only
    assert not ModelConfig(caption_in_fusion=True).high_only
    assert ModelConfig(use_captions=False, caption_in_fusion=True).captions_at_prediction == "unused"
    assert not ModelConfig(use_captions=False, use_video=False, use_parsing=False, use_landmarks=False,
                           caption_in_fusion=True).high_only
    d = ModelConfig(max_frames=3).to_dict()
    assert d["max_frames"] == 3 and d["extra"] == {} and json.loads(json.dumps(d)) == d


def test_schema_1_keys_in_todays_terms() -> None:
    assert migrate_v1({}) == {"share_mid_adapters": True, "max_frames": 64, "mid_adapter_ratio": 0.25,
                              "text_adapter_ratio": 0.25, "temporal": "attention", "mid_temporal": "none",
                              "text_adapter": "output"}
    old = {"adapter_ratio": 0.5, "temporal_adapter": False, "mid_temporal_adapter": True,
           "text_adapters": False, "share_mid_adapters": False, "max_frames": 8, "text_adapter_ratio": 0.1}
    assert migrate_v1(old) == {"adapter_ratio": 0.5, "share_mid_adapters": False, "max_frames": 8,
                               "mid_adapter_ratio": 0.5, "text_adapter_ratio": 0.1, "temporal": "none",
                               "mid_temporal": "attention", "text_adapter": "none"}
    assert "temporal_adapter" in old  # the stored block is left as it was
    assert migrate_v1({"mid_adapter_ratio": 0.3, "adapter_ratio": 0.5})["mid_adapter_ratio"] == 0.3


def _model(labels: list[str], **kw: object) -> FineCLIPER:
    cfg = ModelConfig.from_dict({"backbone": "custom", "model_cfg": SMALL, "pretrained": None, "max_frames": 4,
                                 **kw})
    m = FineCLIPER(cfg, labels)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g))
    return m


def test_checkpoint_round_trip_by_value(tmp_path: Path) -> None:
    m = _model(["a", "b"], use_parsing=False, use_landmarks=False, adapter_scale=0.3)
    path = save_checkpoint(tmp_path / "m.safetensors", m, run="r", fold=2)
    assert path == tmp_path / "m.safetensors"
    state, meta = read_checkpoint(path)
    want = m.tunable_state_dict()
    assert set(state) == set(want) and all(state[k].dtype == torch.float32 for k in state)
    assert all(torch.equal(state[k], want[k].float()) for k in want)
    assert (meta["stage"], meta["schema_version"], meta["run"], meta["fold"]) == ("train", CHECKPOINT_SCHEMA_VERSION, "r", 2)
    assert meta["model"] == json.loads(json.dumps(m.cfg.to_dict())) and meta["labels"] == ["a", "b"]
    _, renamed = read_checkpoint(save_checkpoint(tmp_path / "n.safetensors", m, labels=("x", "y")))
    assert renamed["labels"] == ["x", "y"]

    back, meta = load_checkpoint(path)
    assert not back.training and back.labels == ["a", "b"] and back.cfg.adapter_scale == 0.3
    assert back.cfg.to_dict() == m.cfg.to_dict()
    got = back.tunable_state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    swapped, _ = load_checkpoint(path, overrides={"adapter_scale": 0.7}, labels=("c", "d", "e"))
    assert swapped.cfg.adapter_scale == 0.7 and swapped.labels == ["c", "d", "e"]


def test_schema_1_checkpoint_is_translated_and_draws_landmarks_on_black(tmp_path: Path) -> None:
    m = _model(["a"], use_parsing=False, use_landmarks=False, temporal="attention", text_adapter="output",
               share_mid_adapters=True, mid_adapter_ratio=0.25, text_adapter_ratio=0.25)
    v1 = {k: v for k, v in m.cfg.to_dict().items()
          if k not in ("temporal", "mid_temporal", "text_adapter", "mid_adapter_ratio", "text_adapter_ratio",
                       "share_mid_adapters")}
    v1.update({"temporal_adapter": True, "text_adapters": True})
    tensors = {k: v.float().numpy() for k, v in m.tunable_state_dict().items()}

    def write(name: str, params: object) -> Path:
        meta = {"stage": "train", "schema_version": 1, "model": v1, "labels": ["a"], "params": params}
        save_file(tensors, str(tmp_path / name), metadata={META_KEY: json.dumps(meta)})
        return tmp_path / name

    back, meta = load_checkpoint(write("v1.safetensors", {"data": {"num_frames": 4}}))
    assert back.cfg.temporal == "attention" and back.cfg.text_adapter == "output"
    assert back.cfg.share_mid_adapters is True and back.cfg.mid_temporal == "none"
    assert meta["params"]["data"] == {"num_frames": 4, "landmarks_on_face": False}
    assert all(torch.equal(back.tunable_state_dict()[k], v) for k, v in m.tunable_state_dict().items())
    _, meta = load_checkpoint(write("v1b.safetensors", {"data": {"landmarks_on_face": True}}))
    assert meta["params"]["data"] == {"landmarks_on_face": True}  # an explicit setting stays
    _, meta = load_checkpoint(write("v1c.safetensors", {"data": None}))
    assert meta["params"] == {"data": None}
    # no schema_version: today's schema (the config is read as it is, not translated)
    today = {k: v for k, v in m.cfg.to_dict().items()}
    save_file(tensors, str(tmp_path / "v2.safetensors"), metadata={META_KEY: json.dumps(
        {"stage": "train", "model": today, "labels": ["a"], "params": {"data": {}}})})
    back, meta = load_checkpoint(tmp_path / "v2.safetensors")
    assert back.cfg.to_dict() == m.cfg.to_dict() and meta["params"] == {"data": {}}


def test_files_that_are_not_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^checkpoint .*missing.safetensors does not exist$"):
        read_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        read_checkpoint(tmp_path)  # a folder is not a checkpoint file
    plain = tmp_path / "plain.safetensors"
    save_file({"w": np.zeros(1, np.float32)}, str(plain))
    with pytest.raises(ValueError, match=rf"plain.safetensors is not a dfer checkpoint \(no '{META_KEY}' metadata\)"):
        read_checkpoint(plain)
    other = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(1, np.float32)}, str(other), metadata={META_KEY: json.dumps({"stage": "decode"})})
    with pytest.raises(ValueError, match=r"other.safetensors is not a dfer training checkpoint \(metadata "
                                         r"stage='decode'\)"):
        read_checkpoint(other)
    no_model = tmp_path / "nomodel.safetensors"
    save_file({"w": np.zeros(1, np.float32)}, str(no_model), metadata={META_KEY: json.dumps({"stage": "train"})})
    with pytest.raises(ValueError, match=r"not a dfer training checkpoint \(metadata stage='train'\)"):
        read_checkpoint(no_model)


def test_old_names_of_fineclipper_config_resolve_when_asked() -> None:
    """dfer.model.config resolves FineCLIPER's names on attribute access (a module __getattr__),
    so the names are looked up here, in the test, not at import time."""
    import dfer.model.config as old
    from dfer.methods.specs import fineclipper

    assert old.ModelConfig is fineclipper.ModelConfig and old.migrate_v1 is fineclipper.migrate_v1
    with pytest.raises(AttributeError) as err:
        old.ModelConfg  # noqa: B018 - the attribute access is the test
    assert str(err.value) == "module 'dfer.model.config' has no attribute 'ModelConfg'"


def test_backbone_of_any_method_config() -> None:
    from types import SimpleNamespace

    from dfer.model.config import BackboneConfig, backbone_of

    cfg = SimpleNamespace(backbone="custom", pretrained="w/clip.pt", model_cfg={"embed_dim": 8}, init_seed="7")
    assert backbone_of(cfg) == BackboneConfig("custom", "w/clip.pt", {"embed_dim": 8}, 7)
    no_seed = SimpleNamespace(backbone="tiny", pretrained=None, model_cfg=None)  # a config without init_seed
    assert backbone_of(no_seed) == BackboneConfig("tiny", None, None, 0)


def test_fineclipper_registry_hooks_by_value() -> None:
    """What FineCLIPER's registry entry says it reads, scores and logs, on hand-made inputs."""
    from types import SimpleNamespace

    from dfer.methods.specs import fineclipper as spec
    from dfer.train.inputs import Needs

    assert spec._needs({}) == Needs(parsing=True, landmarks=True, captions=True)  # the defaults
    assert spec._needs({"use_parsing": False, "use_captions": False}) == Needs(False, True, False)
    assert spec._needs({"use_landmarks": False}) == Needs(True, False, True)
    # captions at prediction: unused (training loss only), optional (fused), required (high only)
    assert spec._prediction_needs(ModelConfig()) == (Needs(True, True, False), False)
    assert spec._prediction_needs(ModelConfig(use_parsing=False, caption_in_fusion=True)) == (
        Needs(False, True, True), True)
    high = ModelConfig(use_video=False, use_parsing=False, use_landmarks=False, caption_in_fusion=True)
    assert spec._prediction_needs(high) == (Needs(False, False, True), False)
    asked = []
    model = SimpleNamespace(class_loss_terms=lambda out, t: asked.append((out, t)) or {"ce": "per clip", "x": 0},
                            log_logit_scale=torch.tensor([0.0]), fused_levels=["video", "caption"])
    assert spec._clip_loss(model, "out", "targets") == "per clip" and asked == [("out", "targets")]
    extras = spec._extras(model, SimpleNamespace(modality_weights=torch.tensor([0.25, 0.75])))
    assert list(extras) == ["logit_scale", "weight_video", "weight_caption"]
    assert extras["logit_scale"].tolist() == [1.0] and float(extras["weight_caption"]) == 0.75
    with pytest.raises(ValueError):  # one weight per fused level
        spec._extras(model, SimpleNamespace(modality_weights=torch.tensor([1.0])))
