"""S2D (``dfer.methods.s2d``) against the public code's golden tensors, timm's own ViT, and its sizes.

The golden fixture (``tests/fixtures/golden/s2d``) holds a tiny public ``VisionTransformer``'s
weights (S2D ``e1b5e5d``, timm 0.6.13) with its outputs and per-block intermediates, and the
public ``SDL`` queues before and after an update.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from support.golden import load_meta, load_tensors

from dfer.methods.s2d import (
    S2D,
    S2DConfig,
    SelfDistillation,
    from_public_state_dict,
    load_static_checkpoint,
    sdl_weight,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}
SEVEN = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]


@pytest.fixture(scope="module")
def golden() -> dict:
    meta = load_meta("s2d")
    return {
        "meta": meta,
        "t": {k: torch.from_numpy(v) for k, v in load_tensors("s2d").items()},
        "w": {k: torch.from_numpy(v) for k, v in load_tensors("s2d", "weights.safetensors").items()},
    }


def _tiny_cfg(meta: dict, **kw) -> S2DConfig:
    c = meta["constructor"]
    return S2DConfig(img_size=c["img_size"], patch_size=c["patch_size"], embed_dim=c["embed_dim"],
                     depth=c["depth"], num_heads=c["num_heads"], num_frames=c["num_frames"],
                     landmark_channels=c["in_chans_l"], landmark_kind=None, **kw)


def _weights(golden: dict, which: str) -> dict[str, torch.Tensor]:
    return {k[len(which) + 1:]: v for k, v in golden["w"].items() if k.startswith(which + ".")}


def _inputs(golden: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixture's [B,C,T,H,W] clip and [(B T),C_l,14,14] maps in our [B,T,...] layout."""
    t = golden["t"]
    return t["video"].permute(0, 2, 1, 3, 4), t["landmark_features"].view(2, 4, 8, 14, 14)


@pytest.mark.parametrize("which", ["init", "perturbed"])
def test_matches_public_model_with_intermediates(golden: dict, which: str) -> None:
    """Logits, head features and (perturbed weights) every block's MCP and TMA outputs, block
    inputs and outputs and the per-frame CLS features equal the public model's to 1e-5."""
    t = golden["t"]
    model = S2D(_tiny_cfg(golden["meta"]), SEVEN).eval()
    assert sum(p.numel() for p in model.parameters()) == golden["meta"]["params_total"]
    model.load_state_dict(from_public_state_dict(_weights(golden, which)), strict=True)
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str):
        return lambda mod, args, out: seen.__setitem__(name, out)

    hooks = []
    for i in range(2):
        hooks.append(model.prompters[i].register_forward_hook(keep(f"mcp{i}_out")))
        hooks.append(model.tmas[i].register_forward_hook(keep(f"tma{i}_out")))
        hooks.append(model.blocks[i].register_forward_hook(keep(f"block{i}_out")))
        hooks.append(model.blocks[i].register_forward_pre_hook(
            lambda mod, args, i=i: seen.__setitem__(f"block{i}_in", args[0])))
    with torch.no_grad():
        out = model.forward_pixels(*_inputs(golden))
    for h in hooks:
        h.remove()
    seen.update(logits=out.logits, head_features=out.features, cls_features=out.frame_features)
    names = [k[len(which) + 1:] for k in t if k.startswith(which + ".")]
    assert len(names) == (2 if which == "init" else 10)
    for name in names:
        torch.testing.assert_close(seen[name], t[f"{which}.{name}"], **TOL, msg=lambda m, n=name: f"{n}: {m}")


def test_public_checkpoint_file_loads_as_a_static_checkpoint(golden: dict, tmp_path) -> None:
    """The public layout, saved as its loader reads it (under ``model``), through ``pretrained``."""
    path = tmp_path / "s2d.pth"
    torch.save({"model": _weights(golden, "perturbed")}, path)
    model = S2D(_tiny_cfg(golden["meta"], pretrained=str(path)), SEVEN).eval()
    with torch.no_grad():
        out = model.forward_pixels(*_inputs(golden))
    torch.testing.assert_close(out.logits, golden["t"]["perturbed.logits"], **TOL)


def test_sdl_matches_public_queues_soft_targets_and_bce(golden: dict) -> None:
    t = golden["t"]
    sdl = SelfDistillation(**{k: v for k, v in golden["meta"]["sdl_constructor"].items() if k != "num_class"},
                           num_classes=7)
    sdl.queue.copy_(t["sdl.queue_before"])
    sdl.probe.copy_(t["sdl.probe_before"])
    soft = sdl.soft_targets(t["sdl.x"])
    torch.testing.assert_close(soft, t["sdl.soft_targets"], **TOL)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(t["sdl.logits"], soft)
    torch.testing.assert_close(bce.view(1), t["sdl.bce_w1"], **TOL)
    sdl.update(t["sdl.x"], t["sdl.logits"], t["sdl.labels"])
    assert torch.equal(sdl.queue, t["sdl.queue_after"]) and torch.equal(sdl.probe, t["sdl.probe_after"])
    torch.testing.assert_close(sdl.soft_targets(t["sdl.x"]), t["sdl.soft_targets_after_update"], **TOL)
    for epoch, weight in golden["meta"]["sdl_loss_weight_schedule"]:
        assert sdl_weight(epoch) == weight


def test_losses_add_sdl_with_its_epoch_weight(golden: dict) -> None:
    """CE alone before epoch 30; at epoch 85 plus 1.0 x BCE(logits, soft targets), the BCE by hand."""
    torch.manual_seed(0)
    model = S2D(_tiny_cfg(golden["meta"], sdl=True, head_dropout=0.0), SEVEN)
    model.load_state_dict(from_public_state_dict(_weights(golden, "perturbed")), strict=False)
    y = torch.tensor([3, 5])
    out = model.forward_pixels(*_inputs(golden))
    model.eval()  # evaluation mode: the queues are read, never updated
    early, late = model.losses(out, y, epoch=10), model.losses(out, y, epoch=85)
    assert early["sdl"].item() == 0 and torch.equal(early["loss"], early["ce"])
    z = out.logits.detach().double().numpy()
    p = model.sdl.soft_targets(out.features).double().numpy()
    bce = np.mean(np.maximum(z, 0) - z * p + np.log1p(np.exp(-np.abs(z))))
    assert abs(late["sdl"].item() - bce) < 1e-6 and abs(late["loss"].item() - late["ce"].item() - bce) < 1e-5
    assert "sdl" not in model.losses(out, y)  # no epoch, no SDL term
    model.sdl_epoch = 85  # the trainer's epoch (MethodSpec.on_epoch) stands in for the argument
    assert model.losses(out, y)["sdl"].item() == pytest.approx(bce, abs=1e-6)


@pytest.mark.parametrize("update", [True, False])
def test_training_batches_enter_the_class_queues(golden: dict, update: bool) -> None:
    """In training mode each clip enters its true class's queue (newest last) with its
    probabilities, after the loss read the queues; sdl_update_queues: false keeps them."""
    torch.manual_seed(0)
    model = S2D(_tiny_cfg(golden["meta"], sdl=True, head_dropout=0.0, sdl_update_queues=update), SEVEN)
    out = model.forward_pixels(*_inputs(golden))
    before = model.sdl.queue.clone(), model.sdl.probe.clone()
    soft = model.sdl.soft_targets(out.features)
    loss = model.train().losses(out, torch.tensor([3, 5]), epoch=85)["sdl"]
    z = out.logits.detach()
    assert loss.item() == pytest.approx(torch.nn.functional.binary_cross_entropy_with_logits(z, soft).item(), abs=1e-6)
    if not update:
        assert torch.equal(model.sdl.queue, before[0]) and torch.equal(model.sdl.probe, before[1])
        return
    prob = torch.softmax(z, -1)
    for row, c in enumerate((3, 5)):
        assert torch.allclose(model.sdl.queue[c, -1], out.features[row].detach())
        assert torch.allclose(model.sdl.probe[c, -1], prob[row])
        assert torch.equal(model.sdl.queue[c, :-1], before[0][c, 1:])  # the oldest left
    others = [c for c in range(7) if c not in (3, 5)]
    assert torch.equal(model.sdl.queue[others], before[0][others])


def test_only_prompts_adapters_and_head_train(golden: dict) -> None:
    model = S2D(_tiny_cfg(golden["meta"]), SEVEN).train()
    assert not model.blocks.training and model.head_dropout.training
    out = model.forward_pixels(*_inputs(golden))
    model.losses(out, torch.tensor([0, 6]))["loss"].backward()
    for name, p in model.named_parameters():
        frozen = name.startswith(("patch_embed.", "cls_token", "pos_embed", "blocks."))
        assert p.requires_grad is not frozen, name
        if frozen:
            assert p.grad is None, name
    # the last prompt norm is never read (the public loop uses prompt_norms[i-1]) yet tunable
    assert model.prompt_norms[1].weight.grad is None
    assert model.prompt_norms[0].weight.grad.abs().sum() > 0 and model.tmas[1].t_attn.qkv.weight.grad.abs().sum() > 0


def _timm_vit(num_classes: int = 5):
    import timm.models.vision_transformer as tv

    torch.manual_seed(1)
    vit = tv.VisionTransformer(img_size=28, patch_size=2, embed_dim=32, depth=2, num_heads=4,
                               num_classes=num_classes)
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # LayerNorms and biases off their init
    return vit.eval()


@pytest.mark.parametrize("fmt", ["torch", "safetensors"])
def test_static_timm_checkpoint_loads_into_the_frozen_backbone(golden: dict, tmp_path, fmt: str) -> None:
    """A timm ViT state dict (saved by timm's own model) fills the backbone and ``ln_post``; with
    MCPs, TMAs and the temporal embedding at zero our per-frame CLS equals timm's features."""
    vit = _timm_vit()
    path = tmp_path / ("vit.pth" if fmt == "torch" else "vit.safetensors")
    if fmt == "torch":
        torch.save({"state_dict": {"module." + k: v for k, v in vit.state_dict().items()}}, path)
    else:
        save_file(vit.state_dict(), str(path))
    model = S2D(_tiny_cfg(golden["meta"]), SEVEN).eval()
    report = load_static_checkpoint(model, path)
    assert report["skipped"] == ["head.bias", "head.weight"]  # timm's 5-class classifier
    assert "prompters.0.frame_proj.weight" in report["initialised"] and "blocks.1.mlp.fc2.bias" in report["loaded"]
    assert torch.equal(model.ln_post.weight, vit.norm.weight) and torch.equal(model.pos_embed, vit.pos_embed)
    with torch.no_grad():
        for part in (*model.prompters, *model.tmas):
            last = part.out_proj if hasattr(part, "out_proj") else part.s_up
            last.weight.zero_()
            last.bias.zero_()
        model.temporal_embedding.zero_()
        video, landmarks = _inputs(golden)
        out = model.forward_pixels(video, landmarks)
        expected = vit.forward_features(video.reshape(8, 3, 28, 28))[:, 0].view(2, 4, 32)
    torch.testing.assert_close(out.frame_features, expected, **TOL)


def test_static_checkpoint_that_does_not_fit_is_refused(golden: dict, tmp_path) -> None:
    state = _timm_vit().state_dict()
    cfg = _tiny_cfg(golden["meta"])
    for name, bad, match in [
        ("missing", {k: v for k, v in state.items() if k != "blocks.1.attn.qkv.weight"},
         r"missing backbone weights \['blocks.1.attn.qkv.weight'\]"),
        ("extra", {**state, "fc_norm.weight": torch.ones(32)}, r"unexpected \['fc_norm.weight'\]"),
        ("shape", {**state, "pos_embed": torch.zeros(1, 50, 32)}, r"wrong shape \['pos_embed'\]"),
    ]:
        path = tmp_path / f"{name}.pth"
        torch.save(bad, path)
        with pytest.raises(ValueError, match=match):
            S2D(S2DConfig(**{**cfg.to_dict(), "pretrained": str(path)}), SEVEN)
    with pytest.raises(FileNotFoundError, match="s2d.pretrained"):
        S2D(S2DConfig(**{**cfg.to_dict(), "pretrained": str(tmp_path / "nope.pth")}), SEVEN)
    # another landmark source (68 FAN heat-map channels): the landmark embedding stays at init
    public = _weights(golden, "perturbed")
    public["patch_embed_prompt.proj.weight"] = torch.zeros(32, 68, 1, 1)
    public["landmark.backbone.conv.weight"] = torch.zeros(1)  # the public loader drops these
    path = tmp_path / "s2d68.pth"
    torch.save({"model_state_dict": public}, path)
    model = S2D(_tiny_cfg(golden["meta"]), SEVEN)
    report = load_static_checkpoint(model, path)
    assert report["skipped"] == ["landmark_embed.weight"]
    assert torch.equal(model.landmark_embed.bias, public["patch_embed_prompt.proj.bias"])


def test_inputs_are_checked(golden: dict) -> None:
    model = S2D(_tiny_cfg(golden["meta"]), SEVEN)
    video, landmarks = _inputs(golden)
    with pytest.raises(ValueError, match=r"landmark features \[2, 4, 8, 14, 14\]"):
        model.forward_pixels(video, landmarks[:, :, :4])
    with pytest.raises(ValueError, match="s2d.num_frames=4 frames, got 3"):
        model.forward_pixels(video[:, :3], landmarks[:, :3])
    with pytest.raises(ValueError, match=r"unknown s2d config key\(s\) \['in_chans_l'\]"):
        S2DConfig.from_dict({"in_chans_l": 68})


@pytest.mark.parametrize("labels, total", [(SEVEN, 9_258_451), (SEVEN + ["contempt", "anxiety", "helplessness",
                                                                          "disappointment"], 9_261_527)])
def test_full_size_tunable_parameters_match_the_public_count(labels, total) -> None:
    """ViT-B/16, 16 frames, 128 landmark channels, built on the meta device (shapes only)."""
    with torch.device("meta"):
        model = S2D(S2DConfig(), labels)
    tunable = model.tunable_parameters()
    assert sum(p.numel() for p in tunable.values()) == total
    groups: dict[str, int] = {}
    for name, p in tunable.items():
        parts = name.split(".")
        key = ".".join((parts[0], parts[2])) if parts[0] == "prompters" else parts[0]
        groups[key] = groups.get(key, 0) + p.numel()
    assert groups == {
        "tmas": 8_891_136, "prompters.frame_proj": 73_824, "prompters.landmark_proj": 73_824,
        "prompters.out_proj": 82_944, "prompters.sharpness": 12, "landmark_embed": 99_072,
        "prompt_norms": 18_432, "temporal_embedding": 12_288, "ln_post": 1_536, "head": 768 * len(labels) + len(labels),
    }
    frozen = {n: p.numel() for n, p in model.named_parameters() if not p.requires_grad}
    assert sum(v for n, v in frozen.items() if n.startswith("blocks.")) == 85_054_464
    assert sum(frozen.values()) == 85_054_464 + 590_592 + 151_296 + 768
