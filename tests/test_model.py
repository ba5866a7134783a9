"""FineCLIPER model: identity at init, freezing, ablation switches, checkpoints, losses.

Paper-fidelity checks on the real ViT-B/16 layout (parameter counts, AIM arithmetic) live in
tests/test_model_fidelity.py; backbone weight loading in tests/test_pretrained_loading.py.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from dfer.core.artifacts import write_safetensors
from dfer.methods.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from dfer.methods.fineclipper import FineCLIPER, ModelConfig, count_parameters
from dfer.model.adapters import TextAdapter, TextAdapterStack
from dfer.model.text import encode_text

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
    # per-level scores: each fused level's own frozen feature against the same descriptors
    assert set(out.level_scores) == set(model.fused_levels)
    for level, feats in frozen.items():
        expected = feats @ t_pos.T - model.cfg.negative_weight * (feats @ t_neg.T)
        torch.testing.assert_close(out.level_scores[level], expected, atol=1e-5, rtol=1e-5)


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
    no_temporal = FineCLIPER(tiny(temporal="none"), LABELS, **shared)
    assert count_parameters(no_temporal)["tunable_total"] < base
    assert no_temporal.vision_adapters["video"].temporal_embedding is None
    attention = FineCLIPER(tiny(temporal="attention"), LABELS, **shared)
    assert count_parameters(attention)["tunable_total"] > base  # a new attention per block
    assert attention(frames=clips(), parsing=clips(), landmarks=clips()).logits.shape == (2, 3)
    video_only = FineCLIPER(tiny(use_parsing=False, use_landmarks=False, use_captions=False), LABELS, **shared)
    assert set(video_only.vision_adapters) == {"video"} and video_only.caption_adapter is None
    assert video_only(frames=clips()).logits.shape == (2, 3)
    assert set(model.vision_adapters) == {"video", "parsing", "landmarks"}  # paper: separate
    shared_mid = FineCLIPER(tiny(share_mid_adapters=True), LABELS, **shared)
    assert set(shared_mid.vision_adapters) == {"video", "mid"}
    assert shared_mid.adapter_set("parsing") is shared_mid.adapter_set("landmarks")
    output_text = FineCLIPER(tiny(text_adapter="output"), LABELS, **shared)
    assert all(isinstance(a, TextAdapter) for a in
               (output_text.pos_adapter, output_text.neg_adapter, output_text.caption_adapter))
    assert isinstance(model.pos_adapter, TextAdapterStack)
    no_text = FineCLIPER(tiny(text_adapter="none"), LABELS, **shared)
    assert no_text.pos_adapter is None and no_text.neg_adapter is None and no_text.caption_adapter is None
    for key, bad in (("temporal", "tsm"), ("text_adapter", "inside"), ("pn_loss", "sum")):
        with pytest.raises(ValueError, match=f"model.{key} must be one of"):
            tiny(**{key: bad}).validate()
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
    other = FineCLIPER(tiny(temporal="none"), LABELS, clip=model.clip, tokenizer=model.tokenizer)
    with pytest.raises(ValueError, match="does not fit this model config"):
        other.load_tunable_state_dict(state)
    reseeded, _ = load_checkpoint(path, overrides={"init_seed": 1})  # another random backbone
    assert not torch.equal(next(reseeded.clip.parameters()), next(m.clip.parameters()))
    (tmp_path / "x.safetensors").write_bytes(b"")
    with pytest.raises(Exception):  # noqa: B017 - not a safetensors file at all
        read_checkpoint(tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.safetensors")


def _perturb(module: torch.nn.Module, seed: int, std: float = 0.05) -> None:
    """Move every trainable weight of ``module`` off its init (zero up-projections included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * std)


@pytest.mark.parametrize("position", ["attn", "mlp"])
def test_text_adapters_inside_the_encoder_start_as_frozen_clip(model: FineCLIPER, position: str) -> None:
    """Step 0 of the in-encoder PN / caption adapters is exactly CLIP's ``encode_text``."""
    m = FineCLIPER(tiny(text_adapter_position=position), LABELS, clip=model.clip, tokenizer=model.tokenizer)
    texts = ["A person with an expression of happiness.", "the brows rise and the mouth opens " * 6, "x"]
    tokens = m.tokenizer(texts)
    with torch.no_grad():
        frozen = m.clip.encode_text(tokens)
        for adapter in (m.pos_adapter, m.neg_adapter, m.caption_adapter):
            assert isinstance(adapter, TextAdapterStack) and adapter.position == position
            torch.testing.assert_close(encode_text(m.clip, tokens, adapter, 0.5), frozen, atol=1e-5, rtol=1e-5)
        t_pos, t_neg = m.descriptor_features()
        torch.testing.assert_close(t_pos, m.class_text_features()[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(t_neg, m.class_text_features()[1], atol=1e-5, rtol=1e-5)
        _perturb(m.pos_adapter, seed=1)
        moved = encode_text(m.clip, tokens, m.pos_adapter, 0.5)
    assert not torch.allclose(moved, frozen, atol=1e-3)  # trained adapters do change the text


def test_text_sequences_are_cut_after_the_last_eot_without_changing_features(
    model: FineCLIPER, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Causal mask + arg-max pooling: positions after the EOT cannot matter, adapters or not."""
    import dfer.model.text as text_mod

    m = FineCLIPER(tiny(), LABELS, clip=model.clip, tokenizer=model.tokenizer)
    _perturb(m.caption_adapter, seed=2)
    tokens = m.tokenizer(["a smile", "the left lip corner rises slowly while the brows stay still"])
    assert text_mod._used_length(m.clip, tokens) == int(tokens.argmax(-1).max()) + 1 < tokens.shape[1]
    with torch.no_grad():
        cut = encode_text(m.clip, tokens, m.caption_adapter, 0.5)
        monkeypatch.setattr(text_mod, "_used_length", lambda clip, tok: tok.shape[1])
        full = encode_text(m.clip, tokens, m.caption_adapter, 0.5)
    torch.testing.assert_close(cut, full, atol=1e-5, rtol=1e-5)


def test_aim_temporal_adaptation_mixes_frames_only_when_trained(model: FineCLIPER) -> None:
    """AIM re-uses the frozen attention along time: zero at init, frame-mixing once trained."""
    from dfer.model.vision import encode_frames

    m = FineCLIPER(tiny(), LABELS, clip=model.clip, tokenizer=model.tokenizer)
    stack = m.vision_adapters["video"]
    assert stack.temporal == "aim" and all(b.temporal.skip is False for b in stack.blocks)
    a, b = clips(b=1, t=4, seed=3), clips(b=1, t=4, seed=3)
    b[0, 3] = clips(b=1, t=1, seed=4)[0, 0]  # only the last frame differs
    with torch.no_grad():
        def first_frame(x: torch.Tensor) -> torch.Tensor:
            return encode_frames(m.clip.visual, m.to_pixels(x), 4, stack, 0.5)[0]

        torch.testing.assert_close(first_frame(a), first_frame(b))  # at init: per-frame CLIP
        for blk in stack.blocks:
            _perturb(blk.temporal, seed=5)
        assert not torch.allclose(first_frame(a), first_frame(b), atol=1e-4)  # frame 3 reaches frame 0
        for blk in stack.blocks:
            blk.temporal = None  # spatial + joint adapters only: frames stay independent
        torch.testing.assert_close(first_frame(a), first_frame(b))
    with pytest.raises(ValueError, match="exceed model.max_frames"):
        encode_frames(m.clip.visual, m.to_pixels(clips(b=1, t=17)), 17, m.vision_adapters["video"], 0.5)


def test_pn_loss_combined_and_two_term(model: FineCLIPER) -> None:
    x = clips()
    targets = torch.tensor([2, 0])
    combined = FineCLIPER(tiny(), LABELS, clip=model.clip, tokenizer=model.tokenizer)
    two = FineCLIPER(tiny(pn_loss="two_term", negative_weight=0.5), LABELS,
                     clip=model.clip, tokenizer=model.tokenizer)
    with torch.no_grad():
        out = combined(frames=x, parsing=x, landmarks=x)
        torch.testing.assert_close(combined.losses(out, targets)["ce"], F.cross_entropy(out.logits, targets))
        out2 = two(frames=x, parsing=x, landmarks=x)
        losses = two.losses(out2, targets)
    expected_pos = F.cross_entropy(50.0 * out2.sim_pos, targets)
    expected_neg = F.cross_entropy(-50.0 * out2.sim_neg, targets)
    torch.testing.assert_close(losses["ce_pos"], expected_pos, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(losses["ce_neg"], expected_neg, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(losses["loss"], expected_pos + 0.5 * expected_neg, atol=1e-4, rtol=1e-4)
    # prediction keeps the combined PN score
    torch.testing.assert_close(out2.logits, 50.0 * (out2.sim_pos - 0.5 * out2.sim_neg), atol=1e-4, rtol=1e-4)


def test_schema1_checkpoint_rebuilds_the_model_it_was_trained_with(tmp_path, model: FineCLIPER) -> None:
    """Checkpoints written before the paper defaults (boolean adapter keys) still load."""
    legacy_cfg = tiny(temporal="attention", max_frames=64, share_mid_adapters=True, mid_adapter_ratio=0.25,
                      text_adapter="output", text_adapter_ratio=0.25)
    m = FineCLIPER(legacy_cfg, LABELS, clip=model.clip, tokenizer=model.tokenizer)
    _perturb(m, seed=6)
    path = save_checkpoint(tmp_path / "new.safetensors", m)
    state, meta = read_checkpoint(path)
    old = dict(meta["model"])
    for key in ("temporal", "mid_temporal", "text_adapter", "mid_adapter_ratio", "text_adapter_position",
                "pn_loss", "share_mid_adapters", "max_frames"):
        old.pop(key)
    old.update(temporal_adapter=True, mid_temporal_adapter=False, text_adapters=True)
    meta.update(schema_version=1, model=old, params={"data": {"num_frames": 4}})
    write_safetensors(tmp_path / "v1.safetensors", {k: v.numpy() for k, v in state.items()}, meta)
    loaded, loaded_meta = load_checkpoint(tmp_path / "v1.safetensors")
    assert loaded_meta["params"]["data"] == {"num_frames": 4, "landmarks_on_face": False}  # drawn on black
    assert loaded.cfg.temporal == "attention" and loaded.cfg.text_adapter == "output"
    assert loaded.cfg.share_mid_adapters and loaded.cfg.max_frames == 64
    x = clips()
    with torch.no_grad():
        torch.testing.assert_close(loaded(frames=x, parsing=x, landmarks=x).logits,
                                   m.eval()(frames=x, parsing=x, landmarks=x).logits)
