"""The backbone loader by value, on a CLIP small enough to build in milliseconds: what a random
backbone is (seeded, frozen, eval, the caller's random state untouched), which files are read
and how (layouts, prefixes, extra entries, TorchScript), the exact error messages, the
architecture checks and the normalisation constants.

tests/test_pretrained_loading.py loads whole files through FineCLIPER's config; here each
function of dfer.model.backbone is called directly, with expected values written out.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import open_clip
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from dfer.model import backbone as bb

NAME = "dfer-test-backbone-values"
TINY = {
    "embed_dim": 16, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("open_clip_cfg")
    (folder / f"{NAME}.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder / f"{NAME}.json")
    return NAME


def _weights(seed: int = 7) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY)
    return {k: v.detach().clone() + 0.01 for k, v in model.state_dict().items()}


def test_random_backbone_is_seeded_frozen_in_eval_and_leaves_the_callers_rng() -> None:
    torch.manual_seed(99)
    expected_next = torch.rand(3)
    torch.manual_seed(99)
    model, tokenizer = bb.build_open_clip("custom", None, TINY, init_seed=3)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream is where it was
    again, _ = bb.build_open_clip("custom", None, TINY, init_seed=3)
    other, _ = bb.build_open_clip("custom", None, TINY, init_seed=4)
    torch.manual_seed(3)
    by_hand = open_clip.CLIP(**TINY)  # what seed 3 draws
    assert torch.equal(model.visual.conv1.weight, by_hand.visual.conv1.weight)
    assert torch.equal(again.visual.conv1.weight, model.visual.conv1.weight)
    assert not torch.equal(other.visual.conv1.weight, model.visual.conv1.weight)
    assert not model.training and not model.visual.training
    assert not any(p.requires_grad for p in model.parameters())
    assert tokenizer(["a face"]).shape == (1, 16)  # the config's context length, not 77
    assert TINY["text_cfg"]["context_length"] == 16  # the config given was not changed


def test_named_architecture_and_an_unknown_tag(registered: str) -> None:
    model, tokenizer = bb.build_open_clip(registered, None, None, init_seed=5)
    torch.manual_seed(5)
    assert torch.equal(model.visual.conv1.weight, open_clip.CLIP(**TINY).visual.conv1.weight)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    with pytest.raises(RuntimeError) as err:
        bb.build_open_clip(registered, "openai", None)
    assert str(err.value) == (
        f"could not build CLIP backbone model.backbone={registered!r} with model.pretrained='openai': "
        "Pretrained value 'openai' is not a known tag or valid file path. Without network access set "
        "model.pretrained to a local checkpoint file (or null for random init).")


def test_weights_file_is_loaded_for_an_explicit_and_a_named_config(tmp_path: Path, registered: str) -> None:
    source = _weights()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    for name, cfg in ((registered, None), ("custom", TINY)):
        model, _ = bb.build_open_clip(name, str(path), cfg)
        state = model.state_dict()
        assert set(state) == set(source) and all(torch.equal(state[k], source[k]) for k in source)
        assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_file_refs() -> None:
    assert bb._is_file_ref(bb.__file__)  # an existing file, whatever its name
    assert bb._is_file_ref("weights/clip.bin") and not bb._is_file_ref("openai")


def test_read_state_dict_layouts(tmp_path: Path) -> None:
    w = {"a.weight": torch.ones(2), "b": torch.zeros(1)}
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in w.items()}}, tmp_path / "ddp.pt")
    got = bb.read_backbone_state_dict(tmp_path / "ddp.pt")
    assert sorted(got) == ["a.weight", "b"] and torch.equal(got["a.weight"], torch.ones(2))
    extra = {**w, "input_resolution": torch.tensor(224), "context_length": torch.tensor(77),
             "vocab_size": torch.tensor(49408), "module_x": torch.ones(1)}
    torch.save(extra, tmp_path / "openai.pt")
    assert sorted(bb.read_backbone_state_dict(tmp_path / "openai.pt")) == ["a.weight", "b", "module_x"]
    save_file(w, str(tmp_path / "w.safetensors"))
    assert sorted(bb.read_backbone_state_dict(tmp_path / "w.safetensors")) == ["a.weight", "b"]
    torch.jit.save(torch.jit.script(nn.Linear(2, 3)), str(tmp_path / "jit.pt"))
    jit = bb.read_backbone_state_dict(tmp_path / "jit.pt")
    assert sorted(jit) == ["bias", "weight"] and jit["weight"].shape == (3, 2)
    assert bb._torchscript_state(tmp_path / "ddp.pt") is None  # a zip, but no TorchScript
    assert bb._torchscript_state(tmp_path / "w.safetensors") is None  # not a zip
    with pytest.raises(FileNotFoundError) as err:
        bb.read_backbone_state_dict(tmp_path / "none.pt")
    assert str(err.value) == f"model.pretrained: checkpoint file {tmp_path / 'none.pt'} does not exist"
    for name, value, kind in (("empty.pt", {}, "dict"), ("list.pt", [1, 2], "list"),
                              ("nested.pt", {"state_dict": {}}, "dict")):
        torch.save(value, tmp_path / name)
        with pytest.raises(ValueError) as err:
            bb.read_backbone_state_dict(tmp_path / name)
        assert str(err.value) == f"model.pretrained: {tmp_path / name} holds no state dict (got {kind})"


def test_load_weights_reshapes_the_scale_and_drops_derived_buffers(tmp_path: Path) -> None:
    source = _weights()
    source["logit_scale"] = source["logit_scale"].reshape(1)  # as OpenAI's files hold it
    source["attn_mask"] = torch.zeros(16, 16)  # a TorchScript archive's derived buffer
    torch.save(source, tmp_path / "w.pt")
    model = open_clip.CLIP(**TINY)
    bb.load_backbone_weights(model, tmp_path / "w.pt")
    assert model.logit_scale.shape == () and model.logit_scale.item() == source["logit_scale"].item()
    assert torch.equal(model.visual.conv1.weight, source["visual.conv1.weight"])
    assert model.attn_mask[0, 1].item() == float("-inf")  # its own causal mask, not the zeros


def test_load_weights_refuses_what_does_not_fit_naming_the_keys(tmp_path: Path) -> None:
    source = _weights()
    torch.save({"encoder.b": torch.zeros(1), "encoder.a": torch.zeros(1), "x": torch.zeros(1), "y": torch.zeros(1)},
               tmp_path / "nothing.pt")
    with pytest.raises(ValueError) as err:
        bb.load_backbone_weights(open_clip.CLIP(**TINY), tmp_path / "nothing.pt")
    assert str(err.value) == (f"model.pretrained: {tmp_path / 'nothing.pt'} loads nothing into CLIP (none of its 4 "
                              "keys, e.g. ['encoder.a', 'encoder.b', 'x'], is a weight of this architecture)")
    own = sorted(source)
    broken = {k: v for k, v in source.items() if k not in own[:6]}
    broken.update({f"extra{i}": torch.zeros(1) for i in range(6)})
    broken["visual.proj"] = torch.zeros(2, 2)
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(ValueError) as err:
        bb.load_backbone_weights(open_clip.CLIP(**TINY), tmp_path / "broken.pt")
    assert str(err.value) == (
        f"model.pretrained: {tmp_path / 'broken.pt'} does not fit the configured architecture (model.backbone / "
        f"model.model_cfg): missing {own[:5]}, unexpected {[f'extra{i}' for i in range(5)]}, "
        "wrong shape ['visual.proj']")
    for only in ("missing", "unexpected", "wrong"):
        part = dict(source)
        if only == "missing":
            del part["visual.proj"]
        elif only == "unexpected":
            part["zz"] = torch.zeros(1)
        else:
            part["visual.proj"] = torch.zeros(2, 2)
        torch.save(part, tmp_path / f"{only}.pt")
        with pytest.raises(ValueError, match="does not fit the configured architecture"):
            bb.load_backbone_weights(open_clip.CLIP(**TINY), tmp_path / f"{only}.pt")


def test_only_standard_vit_towers_are_supported() -> None:
    model = open_clip.CLIP(**TINY)
    bb.check_supported(model)  # the standard tower passes
    with pytest.raises(ValueError) as err:
        bb.check_supported(SimpleNamespace(visual=nn.Linear(2, 2)))
    assert str(err.value) == "the CLIP-based methods need an open_clip VisionTransformer image tower, got Linear"
    with pytest.raises(ValueError, match="^the CLIP-based methods need .* got NoneType$"):
        bb.check_supported(nn.Module())
    model.visual.attn_pool = nn.Identity()
    with pytest.raises(ValueError, match="^image towers with attentional pooling are not supported$"):
        bb.check_supported(model)
    model = open_clip.CLIP(**TINY)

    class Block(type(model.visual.transformer.resblocks[0])):  # a subclass is not the standard block
        pass

    model.visual.transformer.resblocks[0].__class__ = Block
    with pytest.raises(ValueError) as err:
        bb.check_supported(model)
    assert str(err.value) == "unsupported vision block Block; only standard ViT blocks take adapters"
    model = open_clip.CLIP(**TINY)
    model.visual.transformer.batch_first = False
    with pytest.raises(ValueError, match="^only batch-first open_clip transformers are supported$"):
        bb.check_supported(model)
    del model.visual.transformer.batch_first  # an older open_clip without the attribute: batch-first
    bb.check_supported(model)


def test_mean_and_std_from_the_preprocess_config_or_openais() -> None:
    model = open_clip.CLIP(**TINY)
    model.visual.preprocess_cfg = {"mean": [0.5, 0.25, 0.125], "std": [0.1, 0.2, 0.3]}
    assert bb.image_mean_std(model) == ((0.5, 0.25, 0.125), (0.1, 0.2, 0.3))
    model.visual.preprocess_cfg = {}
    assert bb.image_mean_std(model) == (OPENAI_MEAN, OPENAI_STD)
    assert bb.image_mean_std(nn.Module()) == (OPENAI_MEAN, OPENAI_STD)


def test_load_weights_into_a_custom_text_clip_and_its_logit_bias(tmp_path: Path) -> None:
    """A CLIP-layout file (text tower at the top level) loads into open_clip's CustomTextCLIP
    (text tower under ``text.``), and a [1]-shaped logit_bias into the model's 0-d one."""
    cfg = {**TINY, "init_logit_bias": -10.0}
    torch.manual_seed(11)
    source = {k: v.detach().clone() + 0.01 for k, v in open_clip.CLIP(**cfg).state_dict().items()}
    source["logit_bias"] = torch.tensor([-3.5])
    torch.save(source, tmp_path / "clip.pt")
    model = open_clip.CustomTextCLIP(**cfg)
    assert not hasattr(model, "positional_embedding") and model.logit_bias.shape == ()
    bb.load_backbone_weights(model, tmp_path / "clip.pt")
    assert torch.equal(model.text.positional_embedding, source["positional_embedding"])
    assert torch.equal(model.text.token_embedding.weight, source["token_embedding.weight"])
    assert torch.equal(model.visual.conv1.weight, source["visual.conv1.weight"])
    assert model.logit_bias.shape == () and model.logit_bias.item() == -3.5


def test_defaults_seed_0_and_the_clip_context_length() -> None:
    model, _ = bb.build_open_clip("custom", None, TINY)  # no init_seed: seed 0
    torch.manual_seed(0)
    assert torch.equal(model.visual.conv1.weight, open_clip.CLIP(**TINY).visual.conv1.weight)
    no_context = {**TINY, "text_cfg": {k: v for k, v in TINY["text_cfg"].items() if k != "context_length"}}
    _, tokenizer = bb.build_open_clip("custom", None, no_context)
    assert tokenizer(["a face"]).shape == (1, 77)  # open_clip's default context length


def test_a_named_architecture_brings_its_tokenizer(registered: str) -> None:
    _, tokenizer = bb.build_open_clip(registered, None, None)
    assert tokenizer(["a face"]).shape == (1, 16)


def test_a_pickled_object_in_a_weights_file_is_refused(tmp_path: Path) -> None:
    import datetime
    import pickle

    torch.save({"w": torch.zeros(1), "when": datetime.date(2024, 1, 1)}, tmp_path / "obj.pt")
    with pytest.raises(pickle.UnpicklingError):  # weights only: no code runs from the file
        bb.read_backbone_state_dict(tmp_path / "obj.pt")


def test_load_weights_lists_five_misshapen_keys_and_logs_the_count(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    source = _weights()
    wrong = sorted(k for k, v in source.items() if v.ndim == 2)[:6]
    torch.save({**source, **{k: torch.zeros(1, 1) for k in wrong}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError) as err:
        bb.load_backbone_weights(open_clip.CLIP(**TINY), tmp_path / "bad.pt")
    assert str(err.value).endswith(f"missing [], unexpected [], wrong shape {wrong[:5]}")
    torch.save(source, tmp_path / "ok.pt")
    with caplog.at_level("INFO", logger="dfer.model.backbone"):
        bb.load_backbone_weights(open_clip.CLIP(**TINY), tmp_path / "ok.pt")
    assert [r.getMessage() for r in caplog.records if r.name == "dfer.model.backbone"] == [
        f"loaded {len(source)} backbone tensors from {tmp_path / 'ok.pt'}"]


def test_a_named_architecture_reads_its_weights_file_through_dfer_only(tmp_path: Path, registered: str) -> None:
    """OpenAI's layout (model settings as extra entries) is read by dfer's loader, which drops
    them; handed to open_clip as a pretrained tag it would be refused."""
    source = _weights(3)
    torch.save({**source, "input_resolution": torch.tensor(32), "context_length": torch.tensor(16),
                "vocab_size": torch.tensor(49408)}, tmp_path / "openai.pt")
    model, _ = bb.build_open_clip(registered, str(tmp_path / "openai.pt"), None)
    assert torch.equal(model.visual.conv1.weight, source["visual.conv1.weight"])
