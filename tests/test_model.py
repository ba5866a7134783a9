"""FineCLIPER model: identity at init, freezing, ablation switches, checkpoints, param count."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from dfer.model import FineCLIPER, ModelConfig, count_parameters, load_checkpoint, save_checkpoint
from dfer.model.checkpoint import read_checkpoint

LABELS = ["happiness", "sadness", "neutral"]


def tiny(**kw) -> ModelConfig:
    return ModelConfig(backbone="tiny", pretrained=None, **kw)


@pytest.fixture(scope="module")
def model() -> FineCLIPER:
    torch.manual_seed(0)
    return FineCLIPER(tiny(), LABELS)


def clips(b: int = 2, t: int = 4, size: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, size, size, 3), generator=g, dtype=torch.uint8)


def test_step_zero_computes_frozen_clip_features(model: FineCLIPER) -> None:
    x, p, lm = clips(seed=0), clips(seed=1), clips(seed=2)
    with torch.no_grad():
        out = model(frames=x, parsing=p, landmarks=lm, captions=["a smile", "a frown"])
        frozen = {}
        for level, imgs in (("video", x), ("parsing", p), ("landmarks", lm)):
            per_frame = model.clip.encode_image(model.to_pixels(imgs)).view(2, 4, -1)
            frozen[level] = F.normalize(per_frame.mean(1), dim=-1)
            torch.testing.assert_close(out.level_features[level], frozen[level], atol=1e-5, rtol=1e-5)
        tokens = model.tokenizer([f"A person with an expression of {lab}." for lab in LABELS])
        t_pos = F.normalize(model.clip.encode_text(tokens), dim=-1)
        tokens = model.tokenizer([f"A person with an expression of no {lab}." for lab in LABELS])
        t_neg = F.normalize(model.clip.encode_text(tokens), dim=-1)
        fused = F.normalize(sum(frozen.values()) / 3, dim=-1)  # equal weights at init
        caption = F.normalize(model.clip.encode_text(model.tokenizer(["a smile", "a frown"])), dim=-1)
    torch.testing.assert_close(out.modality_weights, torch.full((3,), 1 / 3))
    torch.testing.assert_close(out.fused, fused, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.sim_pos, fused @ t_pos.T, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.sim_neg, fused @ t_neg.T, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.caption, caption, atol=1e-5, rtol=1e-5)
    # PN rule: logits = scale * (cos(v, P(t_pos)) - lambda * cos(v, N(t_neg))), scale 50 at init
    torch.testing.assert_close(out.logits, 50.0 * (out.sim_pos - out.sim_neg), atol=1e-4, rtol=1e-4)


def test_only_adapters_receive_gradients(model: FineCLIPER) -> None:
    model.zero_grad(set_to_none=True)
    out = model(frames=clips(), parsing=clips(seed=1), landmarks=clips(seed=2), captions=["x", "y"])
    model.losses(out, torch.tensor([0, 2]))["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in model.clip.parameters())
    tunable = model.tunable_parameters()
    assert tunable and all(not n.startswith("clip.") for n in tunable)
    prefixes = {n.split(".")[0] for n in tunable}
    assert prefixes == {"vision_adapters", "pos_adapter", "neg_adapter", "caption_adapter",
                        "fusion_logits", "log_logit_scale"}
    # the zero-initialised up-projections get the first gradient (down ones follow after a step)
    ups = [n for n in tunable if n.endswith("up.weight")]
    assert ups and all(tunable[n].grad is not None and tunable[n].grad.abs().sum() > 0 for n in ups)
    model.train()
    assert not model.clip.training  # the frozen backbone never switches to training mode
    model.eval()


def test_one_optimizer_step_changes_the_output(model: FineCLIPER) -> None:
    m = FineCLIPER(tiny(), LABELS, clip=model.clip, tokenizer=model.tokenizer)
    x = clips()
    inputs = dict(frames=x, parsing=x, landmarks=x)
    before = m(**inputs).logits.detach()
    frozen_before = [p.clone() for p in m.clip.parameters()]
    opt = torch.optim.SGD(m.tunable_parameters().values(), lr=0.1)
    m.losses(m(**inputs), torch.tensor([0, 1]))["loss"].backward()
    opt.step()
    assert not torch.allclose(m(**inputs).logits.detach(), before)
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, m.clip.parameters(), strict=True))


def test_ablation_switches(model: FineCLIPER) -> None:
    shared = dict(clip=model.clip, tokenizer=model.tokenizer)
    base = count_parameters(model)["tunable_total"]
    no_neg = FineCLIPER(tiny(use_negative=False), LABELS, **shared)
    out = no_neg(frames=clips(), parsing=clips(), landmarks=clips())
    assert out.sim_neg is None and no_neg.neg_adapter is None
    torch.testing.assert_close(out.logits, 50.0 * out.sim_pos)
    no_temporal = FineCLIPER(tiny(temporal_adapter=False), LABELS, **shared)
    assert count_parameters(no_temporal)["tunable_total"] < base
    video_only = FineCLIPER(tiny(use_parsing=False, use_landmarks=False, use_captions=False), LABELS, **shared)
    assert set(video_only.vision_adapters) == {"video"} and video_only.caption_adapter is None
    assert video_only(frames=clips()).logits.shape == (2, 3)
    separate = FineCLIPER(tiny(share_mid_adapters=False), LABELS, **shared)
    assert set(separate.vision_adapters) == {"video", "parsing", "landmarks"}
    with pytest.raises(ValueError, match="'parsing' level"):
        model(frames=clips(), landmarks=clips())
    with pytest.raises(ValueError, match="at least one visual level"):
        tiny(use_video=False, use_parsing=False, use_landmarks=False).validate()
    with pytest.raises(ValueError, match="unknown model config key"):
        ModelConfig.from_dict({"backbone": "tiny", "adaptor_ratio": 0.5})
    negword = FineCLIPER(tiny(negative_template="A person without {label}."), LABELS, **shared)
    assert not torch.allclose(negword.class_text_features()[1], model.class_text_features()[1])


def test_label_swap_scores_new_classes(model: FineCLIPER) -> None:
    m = FineCLIPER(tiny(), LABELS, clip=model.clip, tokenizer=model.tokenizer)
    x = clips()
    assert m(frames=x, parsing=x, landmarks=x).logits.shape == (2, 3)
    m.set_labels(["anger", "surprise", "fear", "disgust", "contempt"])
    assert m(frames=x, parsing=x, landmarks=x).logits.shape == (2, 5)
    with pytest.raises(ValueError):
        m.set_labels([])


def test_checkpoint_round_trip(tmp_path, model: FineCLIPER) -> None:
    m = FineCLIPER(tiny(), LABELS, clip=model.clip, tokenizer=model.tokenizer)
    with torch.no_grad():
        for p in m.tunable_parameters().values():
            p.add_(torch.randn_like(p) * 0.05)
    path = save_checkpoint(tmp_path / "ckpt.safetensors", m, dataset="demo", run="r")
    state, meta = read_checkpoint(path)
    assert set(state) == set(m.tunable_parameters())  # only tunable weights are stored
    assert sum(t.numel() for t in state.values()) == count_parameters(m)["tunable_total"]
    assert meta["labels"] == LABELS and meta["dataset"] == "demo" and meta["model"]["backbone"] == "tiny"
    torch.manual_seed(123)  # the global seed must not matter: the backbone comes from init_seed
    loaded, _ = load_checkpoint(path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.clip.parameters(), m.clip.parameters(), strict=True))
    x = clips()
    with torch.no_grad():
        torch.testing.assert_close(loaded(frames=x, parsing=x, landmarks=x).logits,
                                   m.eval()(frames=x, parsing=x, landmarks=x).logits)
    other = FineCLIPER(tiny(temporal_adapter=False), LABELS, clip=model.clip, tokenizer=model.tokenizer)
    with pytest.raises(ValueError, match="does not fit this model config"):
        other.load_tunable_state_dict(state)
    reseeded, _ = load_checkpoint(path, overrides={"init_seed": 1})  # another random backbone
    assert not torch.equal(next(reseeded.clip.parameters()), next(m.clip.parameters()))
    (tmp_path / "x.safetensors").write_bytes(b"")
    with pytest.raises(Exception):  # noqa: B017 - not a safetensors file at all
        read_checkpoint(tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.safetensors")


def _adapter_params(width: int, hidden: int, frames: int) -> tuple[int, int]:
    """Per-block (bottleneck, temporal) parameter counts, from the layer shapes."""
    bottleneck = width * hidden + hidden + hidden * width + width
    attn = 3 * hidden * hidden + 3 * hidden + hidden * hidden + hidden
    temporal = width * hidden + hidden + frames * hidden + attn + hidden * width + width
    return bottleneck, temporal


def test_vit_b16_tunable_parameter_count() -> None:
    """The real ViT-B-16-quickgelu architecture (random init, no download): 13-20 M tunable."""
    m = FineCLIPER(ModelConfig(backbone="ViT-B-16-quickgelu", pretrained=None), LABELS)
    counts = count_parameters(m)
    bottleneck, temporal = _adapter_params(768, 192, 64)
    text = 512 * 128 + 128 + 128 * 512 + 512
    assert counts["vision_adapters.video"] == 12 * (2 * bottleneck + temporal)
    assert counts["vision_adapters.mid"] == 12 * 2 * bottleneck
    assert counts["pos_adapter"] == counts["neg_adapter"] == counts["caption_adapter"] == text
    assert counts["tunable_total"] == 12 * (4 * bottleneck + temporal) + 3 * text + 3 + 1
    assert 13e6 <= counts["tunable_total"] <= 21e6
    assert 149e6 < counts["frozen_backbone"] < 151e6
