"""A3lign-DFER (``dfer.methods.a3lign``): MAT prompts against open_clip's own text encoder, the
BAP stages' trainable sets (listed by hand), frame-order sensitivity, logits against a hand
computation with known dynamic-encoder weights, and full-size parameter counts."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

from dfer.methods.a3lign import BAP_STAGES, A3lign, A3lignConfig
from dfer.methods.a3lign_bap import bap_stage_of_groups
from dfer.model.temporal import ClsTemporalTransformer

TINY = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
LABELS = ["happiness", "helplessness", "disgust"]  # names of 1, 3 and 2 tokens: EOTs differ
S, L, T = 3, 4, 4  # sentences, MAT tokens, frames

#: the parameters of one ClsTemporalTransformer layer stack of depth 1 with heads * head_dim
#: != width (so it has an output projection), by hand
DYNAMIC_NAMES = {
    "cls_token", "pos_embedding",
    "layers.0.attn_norm.weight", "layers.0.attn_norm.bias", "layers.0.qkv.weight",
    "layers.0.proj.weight", "layers.0.proj.bias", "layers.0.mlp_norm.weight", "layers.0.mlp_norm.bias",
    "layers.0.fc1.weight", "layers.0.fc1.bias", "layers.0.fc2.weight", "layers.0.fc2.bias",
}


def _cfg(**kw) -> A3lignConfig:
    base = dict(backbone="custom", pretrained=None, model_cfg=TINY, sentences=S, mat_tokens=L,
                dynamic_heads=2, dynamic_head_dim=8, dynamic_mlp_dim=16, max_frames=T)
    base.update(kw)
    return A3lignConfig(**base)


@pytest.fixture(scope="module")
def clip_and_tokenizer():
    torch.manual_seed(0)
    clip, tok = open_clip.CLIP(**TINY), open_clip.tokenizer.SimpleTokenizer(context_length=77)
    for p in clip.parameters():
        p.requires_grad_(False)
    return clip.eval(), tok


@pytest.fixture
def model(clip_and_tokenizer) -> A3lign:
    torch.manual_seed(1)
    clip, tok = clip_and_tokenizer
    return A3lign(_cfg(), LABELS, clip=clip, tokenizer=tok)


def _frames(b: int = 2, seed: int = 2) -> torch.Tensor:
    return torch.randint(0, 256, (b, T, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_prompt_layout(model: A3lign) -> None:
    assert model.mat.shape == (3, S, L, 16)  # [C, S, L, D_text]
    # "X X X X happiness." -> SOS, 4 x "x", the class word, ".", EOT
    tok = open_clip.tokenizer.SimpleTokenizer(context_length=77)
    for c, name in enumerate(LABELS):
        ids = tok([f"x x x x {name}."])[0]
        assert torch.equal(model.prompt_tokens[c], ids)
        assert int(model.eot_index[c]) == int(ids.argmax())
    assert model.eot_index.tolist() == [7, 9, 8]  # SOS + 4 MAT + name (1, 3, 2 tokens) + "."
    emb = model.prompt_embeddings()
    assert emb.shape[0] == 3 * S
    assert torch.equal(emb.view(3, S, -1, 16)[:, :, 1 : 1 + L], model.mat.detach())  # class-major
    out = model(_frames())
    assert out.logits.shape == (2, 3) and out.video_features.shape == (2, 32)
    assert out.frame_features.shape == (2, T, 32)
    assert out.sentence_features.shape == (3, S, 32) and out.text_features.shape == (3, 32)
    assert torch.isfinite(out.logits).all() and out.logits.std() > 0
    assert set(model.losses(out, torch.tensor([0, 2]))) == {"loss", "ce"}


def test_mat_sentences_equal_open_clips_encode_text(model: A3lign) -> None:
    """MAT rows set to real token embeddings: every (class, sentence) feature is open_clip's own
    ``encode_text`` of the prompt with those token ids (12 different prompts)."""
    tok = open_clip.tokenizer.SimpleTokenizer(context_length=77)
    rng = np.random.default_rng(5)
    ids = torch.from_numpy(rng.integers(1000, 40000, (3, S, L)))
    with torch.no_grad():
        model.mat.copy_(model.clip.token_embedding(ids))
        got = model.sentence_features()
        for c, name in enumerate(LABELS):
            for s in range(S):
                tokens = tok([f"x x x x {name}."])
                tokens[0, 1 : 1 + L] = ids[c, s]
                expected = model.clip.encode_text(tokens)[0]
                torch.testing.assert_close(got[c, s], expected, atol=1e-5, rtol=1e-5)
    assert float((got[:, 0] - got[:, 1]).abs().max()) > 1e-3  # the sentences differ


def _trained_names(model: A3lign) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_each_stage_trains_exactly_its_parameters(model: A3lign) -> None:
    """Stage 1: MAT + text dynamic encoder; stage 2: video dynamic encoder; stage 3: all three.
    The CLIP towers never (by default). Checked on ``requires_grad`` and on which parameters a
    backward pass actually reaches."""
    text = {"mat"} | {f"text_dynamic.{n}" for n in DYNAMIC_NAMES}
    video = {f"video_dynamic.{n}" for n in DYNAMIC_NAMES}
    expected = {1: text, 2: video, 3: text | video}
    assert model.stage == 3  # built in its final stage
    frames, y = _frames(), torch.tensor([1, 0])
    for stage, names in expected.items():
        groups = model.set_stage(stage)
        assert _trained_names(model) == names
        assert set(model.tunable_parameters()) == names
        by_id = {id(p): n for n, p in model.named_parameters()}
        returned = [by_id[id(p)] for ps in groups.values() for p in ps]
        assert sorted(returned) == sorted(names)  # the groups cover them, each once
        model.zero_grad(set_to_none=True)
        model.losses(model(frames), y)["loss"].backward()
        reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        assert reached == names, stage
    assert set(model.set_stage(1)) == {"mat", "text_dynamic"}
    assert set(model.set_stage(2)) == {"video_dynamic"}
    with pytest.raises(ValueError, match=r"BAP stages \[1, 2, 3\], not 4"):
        model.set_stage(4)


def test_tuned_towers_join_the_stages_of_their_side(clip_and_tokenizer) -> None:
    clip, tok = clip_and_tokenizer
    try:
        model = A3lign(_cfg(tune_text_tower=True, tune_image_tower=True), LABELS, clip=clip, tokenizer=tok)
        clip_text = {f"clip.{n}" for n, _ in clip.named_parameters()
                     if not n.startswith("visual.") and n != "logit_scale"}
        clip_image = {f"clip.{n}" for n, _ in clip.named_parameters() if n.startswith("visual.")}
        assert "clip.transformer.resblocks.0.attn.in_proj_weight" in clip_text
        assert "clip.visual.conv1.weight" in clip_image
        text = {"mat"} | {f"text_dynamic.{n}" for n in DYNAMIC_NAMES} | clip_text
        video = {f"video_dynamic.{n}" for n in DYNAMIC_NAMES} | clip_image
        model.set_stage(1)
        assert _trained_names(model) == text
        model.set_stage(2)
        assert _trained_names(model) == video
        model.set_stage(3)
        assert _trained_names(model) == text | video
        assert "clip.logit_scale" not in _trained_names(model)
    finally:
        for p in clip.parameters():  # the shared tiny CLIP goes back to frozen
            p.requires_grad_(False)


def test_frame_order_matters_with_the_video_encoder_and_not_with_the_frame_mean(model: A3lign) -> None:
    frames = _frames(b=1)
    shuffled = frames[:, [2, 0, 3, 1]]
    with torch.no_grad():
        for stage in (2, 3):  # both read the video dynamic encoder
            model.set_stage(stage)
            a, b = model(frames), model(shuffled)
            assert float((a.video_features - b.video_features).abs().max()) > 1e-3, stage
            assert float((a.logits - b.logits).abs().max()) > 1e-3, stage
        model.set_stage(1)
        a, b = model(frames), model(shuffled)
        torch.testing.assert_close(a.video_features, b.video_features, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.video_features, a.frame_features.mean(1))


def _set_uniform_identity(net: ClsTemporalTransformer) -> None:
    """Known weights: q = k = 0 (uniform attention), v = identity, output projection identity,
    MLP zero, class token and positions zero. Then the output is the mean over all T + 1 tokens
    of LayerNorm(token), and the class token's LayerNorm is 0."""
    layer = net.layers[0]
    dim = net.cls_token.shape[-1]
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        layer.attn_norm.weight.fill_(1.0)
        layer.mlp_norm.weight.fill_(1.0)
        layer.qkv.weight[2 * dim :] = torch.eye(dim)
        layer.proj.weight.copy_(torch.eye(dim))


def _layer_norm(x: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5)


def test_logits_against_a_hand_computation(clip_and_tokenizer) -> None:
    """Dynamic encoders with known weights (``_set_uniform_identity``): video feature =
    sum_t LN(f_t) / (T + 1), class feature = sum_s LN(u_s) / (S + 1); frame features from
    open_clip's ``encode_image`` of CLIP-normalised pixels, sentence features from its
    ``encode_text``; logits = cos / 0.01. Stage 1 uses the plain frame mean."""
    clip, tok = clip_and_tokenizer
    torch.manual_seed(3)
    # heads * head_dim == width so that V can be the identity
    model = A3lign(_cfg(dynamic_heads=2, dynamic_head_dim=16), LABELS, clip=clip, tokenizer=tok)
    _set_uniform_identity(model.video_dynamic)
    _set_uniform_identity(model.text_dynamic)
    ids = torch.from_numpy(np.random.default_rng(6).integers(1000, 40000, (3, S, L)))
    frames = _frames(b=2, seed=7)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        model.mat.copy_(clip.token_embedding(ids))
        px = (frames.reshape(2 * T, 16, 16, 3).permute(0, 3, 1, 2).float() / 255 - mean) / std
        f = clip.encode_image(px).view(2, T, -1).double().numpy()
        u = np.zeros((3, S, 32))
        for c, name in enumerate(LABELS):
            for s in range(S):
                tokens = tok([f"x x x x {name}."])
                tokens[0, 1 : 1 + L] = ids[c, s]
                u[c, s] = clip.encode_text(tokens)[0].double().numpy()
        model.set_stage(3)
        out3 = model(frames)
        model.set_stage(1)
        out1 = model(frames)

    def cos_logits(v: np.ndarray, t: np.ndarray) -> np.ndarray:
        v = v / np.linalg.norm(v, axis=-1, keepdims=True)
        t = t / np.linalg.norm(t, axis=-1, keepdims=True)
        return v @ t.T / 0.01

    text = _layer_norm(u).sum(1) / (S + 1)
    video = _layer_norm(f).sum(1) / (T + 1)
    np.testing.assert_allclose(out3.text_features.double().numpy(), text, atol=1e-5)
    np.testing.assert_allclose(out3.video_features.double().numpy(), video, atol=1e-5)
    np.testing.assert_allclose(out3.logits.double().numpy(), cos_logits(video, text), atol=2e-3, rtol=1e-4)
    np.testing.assert_allclose(out1.logits.double().numpy(), cos_logits(f.mean(1), text), atol=2e-3, rtol=1e-4)
    assert np.abs(cos_logits(video, text)).max() > 1.0  # not all near zero
    assert np.abs(cos_logits(video, text) - cos_logits(f.mean(1), text)).max() > 1e-2


def test_text_side_builds_no_graph_when_it_does_not_train(model: A3lign) -> None:
    model.set_stage(2)
    out = model(_frames())
    assert not out.text_features.requires_grad and out.video_features.requires_grad
    model.set_stage(1)
    out = model(_frames())
    assert out.text_features.requires_grad and not out.video_features.requires_grad


def test_without_text_dynamic_encoder_the_class_feature_is_the_sentence_mean(clip_and_tokenizer) -> None:
    clip, tok = clip_and_tokenizer
    model = A3lign(_cfg(text_dynamic=False), LABELS, clip=clip, tokenizer=tok)
    assert model.text_dynamic is None
    with torch.no_grad():
        out = model(_frames())
    torch.testing.assert_close(out.text_features, out.sentence_features.mean(1))
    assert set(model.set_stage(1)) == {"mat"}


def test_bap_stage_of_an_optimiser_stages_groups_and_config_checks() -> None:
    """The trainer's optimiser stage -> BAP stage by its groups (the one definition both use);
    any other set of groups is refused. The schedule's epochs are the trainer's (registry)."""
    cfg = A3lignConfig.from_dict({})
    assert (cfg.sentences, cfg.mat_tokens) == (16, 64)
    assert [bap_stage_of_groups(g).number for g in (
        ["text_tower", "mat", "text_dynamic"], ["video_dynamic", "image_tower"],
        ["mat", "text_dynamic", "text_tower", "video_dynamic", "image_tower"], None)] == [1, 2, 3, 3]
    with pytest.raises(ValueError, match=r"must train the groups of one BAP stage, got \['mat'\]"):
        bap_stage_of_groups(["mat"])
    with pytest.raises(ValueError, match="one BAP stage"):  # the empty tower left out: not a stage
        bap_stage_of_groups(["mat", "text_dynamic"])
    assert [s.video_feature for s in BAP_STAGES] == ["mean", "dynamic", "dynamic"]
    with pytest.raises(ValueError, match=r"unknown a3lign config key\(s\) \['stage_epochs'\]"):
        A3lignConfig.from_dict({"stage_epochs": [40, 30, 30]})  # moved to optim.stages
    with pytest.raises(ValueError, match=r"unknown a3lign config key\(s\) \['sentence'\]"):
        A3lignConfig.from_dict({"sentence": 4})
    with pytest.raises(ValueError, match="class_text must be one of"):
        A3lignConfig.from_dict({"class_text": "descriptor"})


def test_the_stage_is_saved_with_the_weights(clip_and_tokenizer) -> None:
    """A model that ended in stage 1 predicts with the frame mean once its state is loaded into
    a fresh model (built in stage 3); a state of another shape is refused, naming the key."""
    clip, tok = clip_and_tokenizer
    torch.manual_seed(4)
    trained = A3lign(_cfg(), LABELS, clip=clip, tokenizer=tok)
    with torch.no_grad():
        trained.mat.add_(1.0)
    trained.set_stage(1)
    state = trained.tunable_state_dict()
    assert set(state) == {"mat", "stage_number"} | {f"{side}_dynamic.{n}" for side in ("text", "video")
                                                    for n in DYNAMIC_NAMES}
    fresh = A3lign(_cfg(), LABELS, clip=clip, tokenizer=tok)
    assert fresh.stage == 3
    fresh.load_tunable_state_dict({k: v.float() for k, v in state.items()})  # as a safetensors file holds it
    assert fresh.stage == 1 and torch.equal(fresh.mat, trained.mat)
    assert {n for n, p in fresh.named_parameters() if p.requires_grad} == {"mat"} | {
        f"text_dynamic.{n}" for n in DYNAMIC_NAMES}
    with torch.no_grad():
        out = fresh(_frames())
    torch.testing.assert_close(out.video_features, out.frame_features.mean(1))
    bad = dict(state, mat=state["mat"][:, :2])
    with pytest.raises(ValueError, match=r"wrong shape \['mat'\]"):
        fresh.load_tunable_state_dict(bad)


def test_prompts_longer_than_the_context_are_refused(clip_and_tokenizer) -> None:
    clip, tok = clip_and_tokenizer
    with pytest.raises(ValueError, match=r"mat_tokens 76: the prompts do not fit .* context length 77"):
        A3lign(_cfg(mat_tokens=76), LABELS, clip=clip, tokenizer=tok)


SEVEN = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
ELEVEN = SEVEN + ["contempt", "anxiety", "helplessness", "disappointment"]


@pytest.mark.parametrize(("backbone", "labels", "mat", "dynamic"), [
    # MAT = C x 16 x 64 x D_text; each dynamic encoder = DFER-CLIP's temporal net at width E
    ("ViT-B-32-quickgelu", SEVEN, 7 * 16 * 64 * 512, 2_110_464),
    ("ViT-B-32-quickgelu", ELEVEN, 11 * 16 * 64 * 512, 2_110_464),
    ("ViT-L-14-quickgelu", SEVEN, 7 * 16 * 64 * 768, 3_165_184),  # MAT 5,505,024: the notes' 5.5 M
    ("ViT-L-14-quickgelu", ELEVEN, 11 * 16 * 64 * 768, 3_165_184),
])
def test_full_size_parameter_counts(backbone: str, labels: list[str], mat: int, dynamic: int) -> None:
    with torch.device("meta"):
        clip = open_clip.CLIP(**open_clip.get_model_config(backbone))
    model = A3lign(A3lignConfig(backbone=backbone, pretrained=None), labels, clip=clip,
                   tokenizer=open_clip.get_tokenizer(backbone))
    counts = {g: sum(p.numel() for p in ps) for g, ps in model.set_stage(3).items()}
    assert counts == {"mat": mat, "text_dynamic": dynamic, "video_dynamic": dynamic}
    assert sum(p.numel() for p in model.tunable_parameters().values()) == mat + 2 * dynamic
    model.set_stage(1)
    assert sum(p.numel() for p in model.tunable_parameters().values()) == mat + dynamic
    model.set_stage(2)
    assert sum(p.numel() for p in model.tunable_parameters().values()) == dynamic


def _dynamic_encoder_count(width: int, positions: int, heads: int = 8, head_dim: int = 64, mlp: int = 1024) -> int:
    """One dynamic encoder from its shapes (1 layer): class token W, position table (n + 1) W,
    two LayerNorms 2 x 2W, bias-free qkv 3 x (h d) x W, output projection (h d) x W + W,
    MLP W x m + m + m x W + W."""
    inner = heads * head_dim
    return width + (positions + 1) * width + 4 * width + 3 * inner * width + inner * width + width \
        + width * mlp + mlp + mlp * width + width


@pytest.mark.parametrize("labels", [SEVEN, ELEVEN])
def test_vit_b16_tunable_parameters_by_formula(labels: list[str]) -> None:
    """The ViT-B/16 configuration (CLIP embedding width 512, text width 512), as train.json counts
    it through the registry: MAT C x 16 x 64 x 512, two dynamic encoders at width 512 (the text one
    over 16 sentences, the video one over 16 frames); nothing of CLIP. Expected by the formula above."""
    from dfer.methods import api
    from dfer.methods.registry import build_model, get_method

    spec = get_method("a3lign")
    with torch.device("meta"):
        clip = open_clip.CLIP(**open_clip.get_model_config("ViT-B-16-quickgelu"))
    model = build_model(spec, {"backbone": "ViT-B-16-quickgelu", "pretrained": None}, labels, clip=clip,
                        tokenizer=open_clip.get_tokenizer("ViT-B-16-quickgelu"))
    mat = len(labels) * 16 * 64 * 512
    dynamic = _dynamic_encoder_count(512, 16)
    assert dynamic == 2_110_464
    counts = api.count_parameters(model, spec)
    clip_total = sum(p.numel() for p in clip.parameters())
    assert counts == {"mat": mat, "text_dynamic": dynamic, "text_tower": 0, "video_dynamic": dynamic,
                      "image_tower": 0, "tunable_total": mat + 2 * dynamic, "frozen": clip_total}
    assert counts["tunable_total"] == {7: 7_890_944, 11: 9_988_096}[len(labels)]
    assert 149_000_000 < clip_total < 150_000_000  # CLIP ViT-B/16: 149.6 M, all frozen
