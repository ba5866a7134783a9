"""``model.pretrained: <file>``: backbone weights from local files, in OpenAI's and open_clip's
layouts, through our config; and a backbone that would silently come out random is an error.

A tiny CLIP with ViT-B/16's layout (same module names, smaller widths) stands in for the real
one: writing ViT-B/16's ~600 MB in each format would dominate the test time while exercising
the same code.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from dfer.methods.fineclipper import FineCLIPER, ModelConfig
from dfer.model.backbone import OPENAI_EXTRA_KEYS
from dfer.model.config import TINY_CLIP_CFG

NAME = "dfer-test-tiny-vit"  # registered through open_clip's add_model_config
LABELS = ["happiness", "sadness"]


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("open_clip_cfg")
    (folder / f"{NAME}.json").write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(folder / f"{NAME}.json")
    return NAME


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """Weights of a CLIP that differs from every seeded random init the loader could make."""
    torch.manual_seed(1234)
    model = open_clip.CLIP(**TINY_CLIP_CFG)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)  # not a fresh init: a load that silently failed cannot match
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _openai_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI's checkpoint layout: the same key names, weights of linear / conv / attention /
    projection layers in float16, and the model settings as extra integer entries."""
    model = open_clip.CLIP(**TINY_CLIP_CFG)
    model.load_state_dict(state)
    open_clip.model.convert_weights_to_lp(model, torch.float16)
    out = dict(model.state_dict())
    out["input_resolution"] = torch.tensor(TINY_CLIP_CFG["vision_cfg"]["image_size"])
    out["context_length"] = torch.tensor(TINY_CLIP_CFG["text_cfg"]["context_length"])
    out["vocab_size"] = torch.tensor(TINY_CLIP_CFG["text_cfg"]["vocab_size"])
    return out


def _configs(path: Path, backbone: str) -> list[ModelConfig]:
    """The two ways a run names the architecture: a registered name, or an explicit model_cfg."""
    return [
        ModelConfig(backbone=backbone, pretrained=str(path)),
        ModelConfig(backbone="custom", model_cfg=TINY_CLIP_CFG, pretrained=str(path)),
    ]


def _assert_loaded(cfg: ModelConfig, expected: dict[str, torch.Tensor]) -> None:
    loaded = FineCLIPER(cfg, LABELS).clip.state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key


def test_open_clip_layout_files_load_exactly(tmp_path: Path, registered: str, source: dict) -> None:
    plain = tmp_path / "open_clip.safetensors"
    save_file({k: v.contiguous() for k, v in source.items()}, str(plain))
    wrapped = tmp_path / "open_clip_epoch_3.pt"  # a training checkpoint: DDP prefix, state_dict key
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.items()}}, wrapped)
    for path in (plain, wrapped):
        for cfg in _configs(path, registered):
            _assert_loaded(cfg, source)


def test_openai_state_dict_layout_loads_exactly(tmp_path: Path, registered: str, source: dict) -> None:
    saved = _openai_layout(source)
    path = tmp_path / "ViT-tiny-openai.pt"
    torch.save(saved, path)
    # it is OpenAI's layout: open_clip's own OpenAI reader builds the same architecture from it
    rebuilt = open_clip.model.build_model_from_openai_state_dict(torch.load(path), cast_dtype=torch.float32)
    assert rebuilt.visual.transformer.width == TINY_CLIP_CFG["vision_cfg"]["width"]
    assert saved["visual.conv1.weight"].dtype == torch.float16
    expected = {k: v for k, v in saved.items() if k not in OPENAI_EXTRA_KEYS}
    for cfg in _configs(path, registered):
        _assert_loaded(cfg, expected)  # float16 weights arrive upcast, bit for bit


def test_openai_torchscript_archive_loads_exactly(tmp_path: Path, registered: str, source: dict) -> None:
    """OpenAI released TorchScript archives; their state dict is read like open_clip does."""
    model = open_clip.CLIP(**TINY_CLIP_CFG)
    model.load_state_dict(source)
    size = TINY_CLIP_CFG["vision_cfg"]["image_size"]
    traced = torch.jit.trace_module(model.eval(), {
        "encode_image": (torch.ones(1, 3, size, size),),
        "encode_text": (torch.zeros(1, 77, dtype=torch.long),),
    }, check_trace=False)
    path = tmp_path / "ViT-tiny-openai-jit.pt"
    torch.jit.save(traced, str(path))
    for cfg in _configs(path, registered):
        _assert_loaded(cfg, source)


def test_weights_that_do_not_fit_are_errors_naming_the_key(tmp_path: Path, registered: str, source: dict) -> None:
    nothing = tmp_path / "nothing.pt"
    torch.save({"encoder.weight": torch.zeros(3)}, nothing)
    with pytest.raises(ValueError, match=r"model.pretrained: .* loads nothing"):
        FineCLIPER(ModelConfig(backbone=registered, pretrained=str(nothing)), LABELS)
    partial = tmp_path / "partial.pt"
    torch.save({k: v for k, v in source.items() if not k.startswith("visual.")}, partial)
    with pytest.raises(ValueError, match=r"model.pretrained: .* does not fit .* missing \['visual"):
        FineCLIPER(ModelConfig(backbone=registered, pretrained=str(partial)), LABELS)
    other = dict(source)
    other["visual.proj"] = torch.zeros(8, 8)
    misshapen = tmp_path / "misshapen.pt"
    torch.save(other, misshapen)
    with pytest.raises(ValueError, match=r"wrong shape \['visual.proj'\]"):
        FineCLIPER(ModelConfig(backbone="custom", model_cfg=TINY_CLIP_CFG, pretrained=str(misshapen)), LABELS)
    with pytest.raises(FileNotFoundError, match=r"model.pretrained: checkpoint file .*missing.pt does not exist"):
        FineCLIPER(ModelConfig(backbone=registered, pretrained=str(tmp_path / "missing.pt")), LABELS)


def test_a_backbone_that_would_come_out_random_is_an_error() -> None:
    # a named pretrained architecture with an explicit model_cfg and no weights: random
    with pytest.raises(ValueError, match=r"model.model_cfg is given with model.pretrained: null .*ViT-B-16"):
        ModelConfig.from_dict({"backbone": "ViT-B-16-quickgelu", "model_cfg": TINY_CLIP_CFG, "pretrained": None})
    # an open_clip tag cannot name weights for an explicit config
    with pytest.raises(ValueError, match=r"model.pretrained 'openai' is an open_clip tag"):
        ModelConfig.from_dict({"backbone": "custom", "model_cfg": TINY_CLIP_CFG})
    with pytest.raises(ValueError, match=r"model.pretrained 'openai': the tiny backbone has no open_clip weights"):
        ModelConfig.from_dict({"backbone": "tiny"})
    with pytest.raises(ValueError, match=r"model.backbone 'custom' needs model.model_cfg"):
        ModelConfig.from_dict({"backbone": "custom", "pretrained": None})
    # asking for a random backbone explicitly stays possible (tests, demo, parameter counting)
    for ok in ({"backbone": "tiny", "pretrained": None},
               {"backbone": "custom", "model_cfg": TINY_CLIP_CFG, "pretrained": None},
               {"backbone": "ViT-B-16-quickgelu", "pretrained": None}):
        ModelConfig.from_dict(ok)
