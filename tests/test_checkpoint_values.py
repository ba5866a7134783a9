"""Checkpoint loading by value: the ``full`` policy's exact-fit check and its error message,
the config a model is built from, the schema translation and the label check.

Expected values are written out by hand: the key lists in the error messages, the config each
policy builds from, the translated keys. A small ``nn.Module`` with a policy-``full`` spec stands
in for a method where the loading rules, not a CLIP, are under test; the build step of
:func:`load_checkpoint` is replaced by one that records the config it is given.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from torch import nn

import dfer.methods.checkpoint as ckpt
from dfer.core.artifacts import META_KEY
from dfer.methods.checkpoint import (
    _without_weights_source,
    load_checkpoint,
    load_method_state,
    method_state,
)
from dfer.methods.registry import MethodSpec, build_model, get_method

TINY = {
    "embed_dim": 32, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
FULL = MethodSpec(name="toy", title="Toy method", source="", build=lambda cfg, labels: None,
                  config="dfer.model.config:BackboneConfig", model="torch.nn:Module", checkpoint="full")


class Toy(nn.Module):
    """Seven plain weights p0..p6, a 0-d scale (as CLIP's logit_scale), a weight of shape [1],
    a float64 buffer and a BatchNorm (its num_batches_tracked)."""

    def __init__(self) -> None:
        super().__init__()
        for i in range(7):
            self.register_parameter(f"p{i}", nn.Parameter(torch.zeros(2)))
        self.scale = nn.Parameter(torch.tensor(0.0))
        self.one = nn.Parameter(torch.zeros(1))
        self.register_buffer("stat", torch.zeros(2, dtype=torch.float64))
        self.bn = nn.BatchNorm1d(2)


def toy_state() -> dict[str, torch.Tensor]:
    """What a safetensors file of a Toy holds: float32, the 0-d scale stored as [1]."""
    state = {f"p{i}": torch.tensor([float(i), -float(i)]) for i in range(7)}
    state.update({"scale": torch.tensor([4.5]), "one": torch.tensor([2.5]), "stat": torch.tensor([0.25, 0.75]),
                  "bn.weight": torch.tensor([2.0, 3.0]), "bn.bias": torch.tensor([-1.0, 1.0]),
                  "bn.running_mean": torch.tensor([0.5, 0.125]), "bn.running_var": torch.tensor([4.0, 9.0]),
                  "bn.num_batches_tracked": torch.tensor([7.0])})
    return state


def test_full_state_loads_by_value_with_scalars_reshaped_and_dtypes_kept() -> None:
    model = Toy()
    state = toy_state()
    state["old.num_batches_tracked"] = torch.tensor([1.0])  # a BatchNorm this model has no more
    load_method_state(model, state, FULL)
    for i in range(7):
        assert getattr(model, f"p{i}").tolist() == [float(i), -float(i)]
    assert model.scale.shape == () and model.scale.item() == 4.5
    assert model.one.shape == (1,) and model.one.tolist() == [2.5]
    assert model.stat.dtype == torch.float64 and model.stat.tolist() == [0.25, 0.75]
    assert model.bn.weight.tolist() == [2.0, 3.0] and model.bn.bias.tolist() == [-1.0, 1.0]
    assert model.bn.running_mean.tolist() == [0.5, 0.125] and model.bn.running_var.tolist() == [4.0, 9.0]
    assert model.bn.num_batches_tracked.dtype == torch.int64 and model.bn.num_batches_tracked.item() == 7


def test_method_state_of_a_full_model_is_its_live_state_dict() -> None:
    model = Toy()
    state = method_state(model, FULL)
    assert list(state) == list(model.state_dict())
    assert state["p3"] is model.p3 and state["scale"] is model.scale  # the parameters, not copies
    assert state["stat"] is model.stat


def _message(missing: list[str], unexpected: list[str], wrong: list[str]) -> str:
    def listed(keys: list[str]) -> str:
        return "[" + ", ".join(repr(k) for k in keys) + "]"
    return (f"checkpoint does not fit this Toy method config: missing {listed(missing[:5])}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {listed(unexpected[:5])}"
            f"{'...' if len(unexpected) > 5 else ''}, wrong shape {listed(wrong[:5])}")


@pytest.mark.parametrize("case", ["missing5", "missing6", "unexpected5", "unexpected6", "wrong6", "one_each",
                                  "missing1", "unexpected1", "wrong1"])
def test_a_state_that_does_not_fit_is_refused_naming_the_keys(case: str) -> None:
    state = toy_state()
    missing: list[str] = []
    unexpected: list[str] = []
    wrong: list[str] = []
    if case.startswith("missing"):
        missing = [f"p{i}" for i in range(int(case[-1]))]
    if case.startswith("unexpected"):
        unexpected = [f"q{i}" for i in range(int(case[-1]))]
    if case.startswith("wrong"):
        wrong = [f"p{i}" for i in range(int(case[-1]))]
    if case == "one_each":
        missing, unexpected, wrong = ["one"], ["zz"], ["p6"]
    for k in missing:
        del state[k]
    for k in unexpected:
        state[k] = torch.zeros(2)
    for k in wrong:
        state[k] = torch.zeros(3)
    # by hand, for two six-key cases (missing and unexpected list five, then "...")
    if case == "missing6":
        assert _message(missing, [], []).startswith(
            "checkpoint does not fit this Toy method config: missing ['p0', 'p1', 'p2', 'p3', 'p4']..., unexpected []")
    if case == "wrong6":
        assert _message([], [], wrong).endswith("wrong shape ['p0', 'p1', 'p2', 'p3', 'p4']")  # five, no "..."
    model = Toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as err:
        load_method_state(model, state, FULL)
    assert str(err.value) == _message(missing, unexpected, wrong)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing partly loaded


def test_spec_defaults_to_the_models_own_method() -> None:
    torch.manual_seed(0)
    block = {"method": "dferclip", "backbone": "custom", "pretrained": None, "model_cfg": TINY,
             "temporal_heads": 2, "temporal_head_dim": 16, "temporal_mlp_dim": 64, "max_frames": 4}
    model = build_model("dferclip", block, ["happiness", "sadness"])
    state = method_state(model)  # DFER-CLIP's policy is full: the whole state dict
    assert list(state) == list(model.state_dict()) and state["clip.logit_scale"] is model.clip.logit_scale
    other = build_model("dferclip", {**block, "init_seed": 1}, ["happiness", "sadness"])
    assert not torch.equal(other.clip.visual.conv1.weight, model.clip.visual.conv1.weight)
    load_method_state(other, {k: v.detach().clone() for k, v in state.items()})
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in other.state_dict().items())


# --- which config the model is built from ---------------------------------------------------------


@dataclasses.dataclass
class Cfg:
    backbone: str
    pretrained: str | None
    model_cfg: dict | None
    other: int = 5


@pytest.mark.parametrize(("cfg", "backbone"), [
    (Cfg("ViT-B-16", "/w/clip.pt", None), "ViT-B-16"),  # a named architecture stays named
    (Cfg("ViT-B-16", "/w/clip.pt", TINY), "custom"),  # model_cfg with a named backbone: custom
    (Cfg("tiny", "/w/clip.pt", TINY), "tiny"),
    (Cfg("custom", "/w/clip.pt", TINY), "custom"),
])
def test_without_weights_source_asks_for_a_random_backbone_of_the_same_shape(cfg: Cfg, backbone: str) -> None:
    out = _without_weights_source(cfg)
    assert out == Cfg(backbone, None, cfg.model_cfg, 5)
    assert cfg.pretrained == "/w/clip.pt"  # the given config is left as it was


def test_without_weights_source_leaves_a_random_backbone_as_it_is() -> None:
    cfg = Cfg("ViT-B-16", None, TINY)
    assert _without_weights_source(cfg) is cfg
    no_backbone = SimpleNamespace(hidden=8)  # a method config without backbone keys
    assert _without_weights_source(no_backbone) is no_backbone


class Stub(nn.Module):
    """What the recording build returns: one weight ``w`` (policy full) or a tunable state."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.tunable: dict[str, torch.Tensor] | None = None

    def load_tunable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.tunable = state


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, list[str]]]:
    """The (config, labels) every method's build is called with in load_checkpoint."""
    calls: list[tuple[Any, list[str]]] = []

    def record(cfg: Any, labels: list[str]) -> Stub:
        calls.append((cfg, labels))
        return Stub()

    real = ckpt.get_method
    monkeypatch.setattr(ckpt, "get_method", lambda name: dataclasses.replace(real(name), build=record))
    return calls


def write(path: Path, model: dict, *, method: str | None = None, schema: int = 3, params: Any = None,
          labels: tuple[str, ...] = ("a", "b")) -> Path:
    meta: dict[str, Any] = {"stage": "train", "schema_version": schema, "model": model, "labels": list(labels)}
    if method:
        meta["method"] = method
    if params is not None:
        meta["params"] = params
    save_file({"w": np.array([3.0], np.float32)}, str(path), metadata={META_KEY: json.dumps(meta)})
    return path


def test_tunable_checkpoint_builds_from_its_weights_source(tmp_path: Path, built: list) -> None:
    path = write(tmp_path / "f.safetensors", {"backbone": "custom", "pretrained": "/w/clip.pt", "model_cfg": TINY})
    model, meta = load_checkpoint(path)
    (cfg, labels), = built
    assert (cfg.backbone, cfg.pretrained, labels) == ("custom", "/w/clip.pt", ["a", "b"])
    assert model.tunable is not None and model.tunable["w"].tolist() == [3.0]  # through the tunable loader
    assert meta["method"] == "fineclipper"  # a file without a method is FineCLIPER's
    assert not model.training


def test_full_checkpoint_builds_without_its_weights_source(tmp_path: Path, built: list) -> None:
    path = write(tmp_path / "d.safetensors", {"backbone": "ViT-B-16", "pretrained": "/w/clip.pt", "model_cfg": TINY},
                 method="dferclip")
    model, meta = load_checkpoint(path)
    (cfg, _), = built
    assert (cfg.backbone, cfg.pretrained) == ("custom", None)
    assert (model.cfg.backbone, model.cfg.pretrained) == ("ViT-B-16", "/w/clip.pt")  # trained with
    assert model.w.tolist() == [3.0] and model.tunable is None and meta["method"] == "dferclip"
    # a weights file given explicitly is used
    load_checkpoint(path, overrides={"pretrained": "/w/other.pt"})
    assert (built[1][0].backbone, built[1][0].pretrained) == ("ViT-B-16", "/w/other.pt")


def test_a_method_that_cannot_transfer_takes_its_own_labels_only(tmp_path: Path, built: list) -> None:
    path = write(tmp_path / "d.safetensors", {"backbone": "custom", "pretrained": None, "model_cfg": TINY},
                 method="dferclip", labels=("a", "b"))
    load_checkpoint(path, labels=["a", "b"])  # the trained ones, named again: fine
    assert built[0][1] == ["a", "b"]
    with pytest.raises(ValueError) as err:
        load_checkpoint(path, labels=("b", "a"))
    assert str(err.value) == (f"{path}: DFER-CLIP cannot score classes it was not trained on (trained: ['a', 'b']; "
                              "asked: ['b', 'a']): its class text is learned per class")
    load_checkpoint(write(tmp_path / "f.safetensors", {"backbone": "custom", "pretrained": None, "model_cfg": TINY}),
                    labels=("c",))  # FineCLIPER scores any class names
    assert built[-1][1] == ["c"]


def test_only_schema_1_is_translated(tmp_path: Path, built: list) -> None:
    today = {"backbone": "custom", "pretrained": None, "model_cfg": TINY, "temporal": "none", "text_adapter": "none"}
    _, meta = load_checkpoint(write(tmp_path / "v2.safetensors", today, schema=2, params={"data": {}}))
    assert (built[0][0].temporal, built[0][0].text_adapter, built[0][0].max_frames) == (
        "none", "none", get_method("fineclipper").parse({}).max_frames)
    assert meta["params"] == {"data": {}}
    v1 = {"backbone": "custom", "pretrained": None, "model_cfg": TINY, "temporal_adapter": False}
    _, meta = load_checkpoint(write(tmp_path / "v1.safetensors", v1, schema=1, params={"data": {}}))
    assert (built[1][0].temporal, built[1][0].text_adapter, built[1][0].max_frames) == ("none", "output", 64)
    assert meta["params"] == {"data": {"landmarks_on_face": False}}
