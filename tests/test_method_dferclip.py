"""DFER-CLIP (``dfer.methods.dferclip``) against the public code's golden tensors, and its sizes.

The golden fixture (``tests/fixtures/golden/dferclip``) holds what the public ``GenerateModel``
(DFER-CLIP ``d10d5a4``) computed from generated weights; here those weights are put into our
module in the layout a public checkpoint has, through :meth:`DFERCLIP.load_public_state_dict`.
"""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
from support.golden import dferclip_weights, load_meta, load_tensors

from dfer.manifests.labels import DATASET_LABELS
from dfer.methods.dferclip import (
    DESCRIPTORS,
    DFERCLIP,
    PUBLIC_CLASS_ORDER,
    DFERCLIPConfig,
    from_public_state_dict,
)
from dfer.model.temporal import ClsTemporalTransformer

TOL = {"atol": 1e-5, "rtol": 1e-5}


@pytest.fixture(scope="module")
def golden() -> dict:
    meta = load_meta("dferclip")
    return {
        "meta": meta,
        "t": {k: torch.from_numpy(v) for k, v in load_tensors("dferclip").items()},
        "w": {k: torch.from_numpy(v) for k, v in dferclip_weights(meta).items()},
    }


def _fixture_config(meta: dict) -> DFERCLIPConfig:
    """Our config for the fixture's tiny CLIP (the public constructor's dims in open_clip terms)."""
    c = meta["clip_constructor"]
    model_cfg = {
        "embed_dim": c["embed_dim"],
        "quick_gelu": True,  # OpenAI CLIP's activation
        "vision_cfg": {"image_size": c["image_resolution"], "layers": c["vision_layers"],
                       "width": c["vision_width"], "patch_size": c["vision_patch_size"], "head_width": 64},
        "text_cfg": {"context_length": c["context_length"], "vocab_size": c["vocab_size"],
                     "width": c["transformer_width"], "heads": c["transformer_heads"],
                     "layers": c["transformer_layers"]},
    }
    assert meta["args"]["contexts_number"] == 8 and meta["args"]["temporal_layers"] == 1
    return DFERCLIPConfig(backbone="custom", pretrained=None, model_cfg=model_cfg)


def _public_checkpoint(weights: dict[str, torch.Tensor], ctx: torch.Tensor) -> dict[str, torch.Tensor]:
    """The fixture weights as a public ``DataParallel(GenerateModel).state_dict()`` holds them:
    the CLIP under ``clip_model_.`` and its visual again under ``image_encoder.``."""
    state = {}
    for key, value in weights.items():
        if key.startswith("temporal_net."):
            state["module." + key] = value
        elif key != "prompt_learner.ctx":
            state["module.clip_model_." + key] = value
            if key.startswith("visual."):
                state["module.image_encoder." + key[len("visual."):]] = value
    state["module.prompt_learner.ctx"] = ctx
    return state


def _uint8_frames(pixels: torch.Tensor) -> torch.Tensor:
    """The fixture's [0,1] pixels [B,T,3,H,W] back as the uint8 frames [B,T,H,W,3] they came from."""
    u8 = (pixels * 255).round().to(torch.uint8)
    assert torch.equal(u8.float() / 255, pixels)  # exactly what the fixture fed
    return u8.permute(0, 1, 3, 4, 2).contiguous()


@pytest.mark.parametrize("dataset, n", [("dfew", 7), ("mafw", 11)])
def test_matches_public_generate_model(golden: dict, dataset: str, n: int) -> None:
    """Per-frame, video and text features and logits equal the public model's to 1e-5, with the
    classes in dfer's order (MAFW's differs from DFER-CLIP's: mapped by name)."""
    meta, t, w = golden["meta"], golden["t"], golden["w"]
    labels = DATASET_LABELS[dataset]
    torch.manual_seed(0)
    model = DFERCLIP(_fixture_config(meta), labels).eval()
    ctx = w["prompt_learner.ctx"] if n == 7 else t["ctx_11"]
    model.load_public_state_dict(_public_checkpoint(w, ctx))
    order = [PUBLIC_CLASS_ORDER.index(name) for name in labels]  # public row of each of our classes
    if dataset == "mafw":
        assert order != list(range(11))  # the mapping matters here

    assert torch.equal(model.prompt_tokens, t[f"tokenized_prompts_{n}"].long()[order])
    assert torch.equal(model.eot_index, t[f"eot_index_{n}"][order])
    assert model.prompts == [meta[f"prompts_{n}"][i] for i in order]
    with torch.no_grad():
        if n == 7:
            assert torch.equal(model.prompt_embeddings(), t["prompts_7"][order])
        out = model(_uint8_frames(t["pixels"]))
    torch.testing.assert_close(out.frame_features, t["image_features"], **TOL)
    torch.testing.assert_close(out.video_features, t["video_features"], **TOL)
    torch.testing.assert_close(out.text_features, t[f"text_features_{n}"][order], **TOL)
    torch.testing.assert_close(out.logits, t[f"logits_{n}"][:, order], **TOL)


def test_public_weights_that_do_not_fit_are_refused(golden: dict) -> None:
    w = golden["w"]
    labels = DATASET_LABELS["dfew"]
    state = _public_checkpoint(w, w["prompt_learner.ctx"])
    with pytest.raises(ValueError, match="unknown public DFER-CLIP weight 'extra'"):
        from_public_state_dict({**state, "extra": torch.zeros(1)}, labels)
    bad = dict(state)
    bad["module.image_encoder.ln_post.bias"] = state["module.image_encoder.ln_post.bias"] + 1
    with pytest.raises(ValueError, match="disagree between clip_model_ and its alias"):
        from_public_state_dict(bad, labels)
    with pytest.raises(ValueError, match=r"classes \['contempt'\] have no context in the public 7-class"):
        from_public_state_dict(state, ["happiness", "contempt"])
    # a demo subset of the 7 classes takes its rows by name
    mapped = from_public_state_dict(state, ["fear", "happiness"])
    assert torch.equal(mapped["context"], w["prompt_learner.ctx"][[6, 0]])
    assert mapped["temporal.layers.0.fc2.bias"] is w["temporal_net.temporal_transformer.layers.0.1.fn.fn.net.3.bias"]


@pytest.fixture(scope="module")
def full_size_clip() -> tuple[torch.nn.Module, object]:
    """open_clip's real ViT-B-32 config, random init, on the meta device (shapes only: fast)."""
    with torch.device("meta"):
        clip = open_clip.CLIP(**open_clip.get_model_config("ViT-B-32-quickgelu"))
    return clip, open_clip.get_tokenizer("ViT-B-32-quickgelu")


@pytest.mark.parametrize("dataset, tunable, prompts", [("dfew", 89_988_352, 28_672), ("mafw", 90_004_736, 45_056)])
def test_full_size_tunable_parameters_match_the_public_count(full_size_clip, dataset, tunable, prompts) -> None:
    """ViT-B/32 image tower 87,849,216 + temporal net 2,110,464 + context C x 8 x 512
    (the fixture README's count of the public modules)."""
    clip, tok = full_size_clip
    model = DFERCLIP(DFERCLIPConfig(pretrained=None), DATASET_LABELS[dataset], clip=clip, tokenizer=tok)
    groups = {k: sum(p.numel() for p in v) for k, v in model.parameter_groups().items()}
    assert groups == {"temporal": 2_110_464, "image": 87_849_216, "prompts": prompts}
    assert sum(p.numel() for p in model.tunable_parameters().values()) == tunable
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == 38_131_200 + 25_296_897  # text tower + token table and logit scale
    assert isinstance(model.temporal, ClsTemporalTransformer)
    assert tuple(model.temporal.pos_embedding.shape) == (1, 17, 512)


TINY = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_model() -> DFERCLIP:
    torch.manual_seed(0)
    cfg = DFERCLIPConfig(backbone="custom", pretrained=None, model_cfg=TINY, temporal_heads=2,
                         temporal_head_dim=8, temporal_mlp_dim=16)
    return DFERCLIP(cfg, ["happy", "sad", "angry"])


def test_one_step_trains_image_tower_context_and_temporal_net_only(tiny_model: DFERCLIP) -> None:
    """The loss is CE over cos / 0.01; its gradient reaches the image tower, the temporal net
    and the context, never the frozen text tower."""
    model = tiny_model
    model.zero_grad()
    frames = torch.randint(0, 256, (2, 4, 20, 20, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([2, 0])
    out = model(frames)
    loss = model.losses(out, y)["loss"]
    loss.backward()
    cos = (torch.nn.functional.normalize(out.video_features, dim=-1)
           @ torch.nn.functional.normalize(out.text_features, dim=-1).T).detach().double().numpy()
    logits = cos / 0.01
    expected = np.mean([np.log(np.exp(r).sum()) - r[c] for r, c in zip(logits, y.tolist(), strict=True)])
    assert abs(loss.item() - expected) < 1e-4 * max(1.0, abs(expected))
    assert out.logits.shape == (2, 3) and out.frame_features.shape == (2, 4, 32)
    assert model.context.shape == (3, 8, 16) and model.context.grad.abs().min() > 0
    assert model.clip.visual.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.temporal.parameters())
    assert all(p.grad is None for n, p in model.clip.named_parameters() if not n.startswith("visual."))


def test_prompt_texts_and_config(tiny_model: DFERCLIP) -> None:
    assert tiny_model.prompts[0] == "X X X X X X X X " + DESCRIPTORS["happiness"]
    assert tiny_model.labels == ["happiness", "sadness", "anger"]
    with pytest.raises(ValueError, match=r"unknown dferclip config key\(s\) \['contexts'\]"):
        DFERCLIPConfig.from_dict({"contexts": 4})
    with pytest.raises(ValueError, match="dferclip.text must be one of"):
        DFERCLIPConfig.from_dict({"text": "names"})
    cfg = DFERCLIPConfig(backbone="custom", pretrained=None, model_cfg=TINY, text="class_name_with_context",
                         context_tokens=4, class_specific_context=False)
    m = DFERCLIP(cfg, ["neutral"], clip=tiny_model.clip, tokenizer=tiny_model.tokenizer)
    assert m.prompts == ["X X X X an expression of neutral."] and m.context.shape == (4, 16)
    custom = DFERCLIPConfig(backbone="custom", pretrained=None, model_cfg=TINY,
                            descriptors={"Happy": "a wide grin."})
    m = DFERCLIP(custom, ["sad", "happiness"], clip=tiny_model.clip, tokenizer=tiny_model.tokenizer)
    assert m.prompts == ["X X X X X X X X " + DESCRIPTORS["sadness"], "X X X X X X X X a wide grin."]
    with pytest.raises(ValueError, match="unknown expression label 'smirk'"):
        DFERCLIP(custom, ["smirk"], clip=tiny_model.clip, tokenizer=tiny_model.tokenizer)
