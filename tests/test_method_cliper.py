"""CLIPER (``dfer.methods.cliper``): its loss against the public script's golden tensors, its METD
text path against open_clip, the video model's logits against a computation from open_clip's own
encoders, and its sizes."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
from support.golden import load_meta, load_tensors
from torch.nn import functional as F

from dfer.methods.cliper import CLIPER, CLIPERConfig, cliper_loss
from dfer.methods.dferclip import DFERCLIP, DFERCLIPConfig
from dfer.model.temporal import ClsTemporalTransformer

CASES = load_meta("cliper")["cases"]


def _close(got: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    """Within ``rel`` of the expected tensor's largest magnitude (the fixture README's advice:
    losses are 13-56, so compare relatively)."""
    scale = max(1.0, float(expected.abs().max()))
    err = float((got.detach().reshape(expected.shape) - expected).abs().max())
    assert err <= rel * scale, f"max error {err:.3g} > {rel} x {scale:.3g}"


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in load_tensors("cliper").items()}


@pytest.mark.parametrize("case", CASES)
def test_loss_matches_the_public_script(golden: dict[str, torch.Tensor], case: str) -> None:
    """Loss, its two parts, the count table, per-sample weights, both logit sets, the mean
    logits, predictions and d loss / d s equal the public script's (lines 226-258, 265)."""
    g = {k.split(".", 1)[1]: v for k, v in golden.items() if k.startswith(case + ".")}
    s = g["s"].clone().requires_grad_(True)
    parts = cliper_loss(s, g["y"])
    parts.loss.backward()
    _close(parts.loss, g["loss"])
    _close(parts.margin_ce, g["margin_ce"])
    _close(parts.fine, g["fine"])
    _close(parts.count_table, g["weight_t"])
    _close(parts.sample_weight, g["weight_sample"])
    _close(parts.margin_logits, g["outputs_margin"])
    _close(parts.fine_logits, g["outputs_fg"])
    _close(s.grad, g["grad_s"])
    _close(s.detach().mean(-1), g["outputs_mean"])
    assert torch.equal(s.detach().mean(-1).argmax(-1), g["predicts"])


def _prose_loss(s: np.ndarray, y: np.ndarray) -> float:
    """The loss as the fixture README's prose states it, in float64 loops (any C, K)."""
    b, c, k = s.shape
    chosen = [int(np.argmax(s[i, y[i]])) for i in range(b)]
    counts = np.zeros((c, k))
    for i in range(b):
        counts[y[i], chosen[i]] += 1
    counts[counts == 0] = -1 / 99

    def ce(logits: np.ndarray, target: int) -> float:
        return float(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[target])

    margin, fine = [], []
    for i in range(b):
        n = counts[y[i]]
        soft = np.exp(1 / n - (1 / n).max())
        soft /= soft.sum()
        w = n.sum() * soft[chosen[i]] / n[chosen[i]]
        m = np.array([s[i, cc].min() if cc == y[i] else s[i, cc].max() for cc in range(c)])
        f = np.concatenate([[s[i, y[i]].max()]] + [s[i, cc] for cc in range(c) if cc != y[i]])
        margin.append(ce(m, y[i]))
        fine.append(w * ce(f, 0))
    return float(np.mean(margin) + np.mean(fine))


def test_loss_generalises_to_other_class_and_descriptor_counts() -> None:
    """Three classes of two sub-descriptors (the public code hard-wires 7 x 5)."""
    rng = np.random.default_rng(11)
    s = rng.normal(0, 3, (6, 3, 2)).astype(np.float32)
    y = np.array([0, 2, 2, 1, 0, 2])
    parts = cliper_loss(torch.from_numpy(s), torch.from_numpy(y))
    assert parts.fine_logits.shape == (6, 1 + 2 * 2)
    assert abs(parts.loss.item() - _prose_loss(s.astype(np.float64), y)) < 1e-5 * max(1.0, parts.loss.item())


TINY = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
LABELS = ["happiness", "sadness", "neutral"]


def _cfg(**kw) -> CLIPERConfig:
    return CLIPERConfig(backbone="custom", pretrained=None, model_cfg=TINY, temporal_heads=2,
                        temporal_head_dim=8, temporal_mlp_dim=16, **kw)


@pytest.fixture(scope="module")
def tiny() -> CLIPER:
    torch.manual_seed(0)
    return CLIPER(_cfg(), LABELS)


def test_metd_prompts_replace_the_x_tokens_and_read_at_the_eot(tiny: CLIPER) -> None:
    """Descriptors equal to the embedding of "x" give open_clip's own ``encode_text`` of the
    template; learned descriptors give each of the C x K prompts its own feature."""
    assert tiny.prompt_tokens.shape[0] == 3 * 5 and tiny.descriptors.shape == (15, 4, 16)
    assert tiny.prompt_tokens[0, :11].tolist() == [49406, 550, 1014, 1125, 539, 343, 343, 343, 343, 269, 49407]
    assert (tiny.slot_start, tiny.slot_count) == (5, 4) and set(tiny.eot_index.tolist()) == {10}
    saved = tiny.descriptors.detach().clone()
    with torch.no_grad():
        tiny.descriptors.copy_(tiny.clip.token_embedding.weight[343].expand(15, 4, -1))
        plain = tiny.text_features()
        expected = tiny.clip.encode_text(tiny.prompt_tokens[:1])
        tiny.descriptors.copy_(saved)
        learned = tiny.text_features()
        emb = tiny.prompt_embeddings()
    torch.testing.assert_close(plain, expected.expand(15, -1), atol=1e-5, rtol=1e-5)
    assert torch.equal(emb[:, 5:9], saved)
    assert torch.equal(emb[:, :5], tiny.clip.token_embedding(tiny.prompt_tokens[:, :5]))
    assert float(torch.cdist(learned, learned).topk(15, largest=False).values[:, 1].min()) > 0
    with pytest.raises(ValueError, match="one run of adjacent 'X' tokens"):
        CLIPER(_cfg(template="X marks an ID photo of X."), LABELS, clip=tiny.clip, tokenizer=tiny.tokenizer)


def test_video_logits_equal_a_computation_from_open_clip(tiny: CLIPER) -> None:
    """s = cos(mean of open_clip's frame features, text) / 0.01 from CLIP-normalised pixels;
    the logits are the mean over sub-descriptors."""
    frames = torch.randint(0, 256, (2, 3, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        out = tiny(frames)
        px = (frames.reshape(6, 16, 16, 3).permute(0, 3, 1, 2).float() / 255 - mean) / std
        video = tiny.clip.encode_image(px).view(2, 3, -1).mean(1)
        text = tiny.text_features()
    expected = (F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).T / 0.01).view(2, 3, 5)
    torch.testing.assert_close(out.similarities, expected, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out.logits, expected.mean(-1), atol=1e-4, rtol=1e-5)
    assert out.similarities.std() > 0.1


def test_temporal_aggregation_is_dferclips_module_and_sees_frame_order(tiny: CLIPER) -> None:
    torch.manual_seed(3)
    model = CLIPER(_cfg(aggregation="temporal"), LABELS, clip=tiny.clip, tokenizer=tiny.tokenizer)
    dc = DFERCLIP(DFERCLIPConfig(backbone="custom", pretrained=None, model_cfg=TINY), ["happy"],
                  clip=tiny.clip, tokenizer=tiny.tokenizer)
    assert type(model.temporal) is type(dc.temporal) is ClsTemporalTransformer
    f = torch.randn(2, 4, 32)
    with torch.no_grad():
        assert (model.aggregate(f) - model.aggregate(f.flip(1))).abs().max() > 1e-3
        torch.testing.assert_close(tiny.aggregate(f), tiny.aggregate(f.flip(1)))
        torch.testing.assert_close(tiny.aggregate(f), f.mean(1))


def test_loss_trains_descriptors_and_image_tower_never_the_text_tower(tiny: CLIPER) -> None:
    tiny.zero_grad()
    frames = torch.randint(0, 256, (4, 2, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    out = tiny(frames)
    losses = tiny.losses(out, torch.tensor([0, 1, 2, 1]))
    assert set(losses) == {"loss", "margin_ce", "fine"}
    losses["loss"].backward()
    assert tiny.descriptors.grad.abs().sum() > 0 and tiny.clip.visual.proj.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in tiny.clip.named_parameters() if not n.startswith("visual."))
    groups = tiny.parameter_groups()
    assert groups["descriptors"] == [tiny.descriptors] and "temporal" not in groups


def test_full_size_parameter_counts() -> None:
    """Static (mean aggregation): ViT-B/16 tower 86,192,640 + METD 35 x 4 x 512 = 86,264,320,
    the published 86.26 M; the temporal aggregation adds DFER-CLIP's 2,110,464 (88.37 M; the
    published video model: 88 M)."""
    with torch.device("meta"):
        clip = open_clip.CLIP(**open_clip.get_model_config("ViT-B-16-quickgelu"))
    tok = open_clip.get_tokenizer("ViT-B-16-quickgelu")
    seven = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
    counts = {}
    for agg in ("mean", "temporal"):
        model = CLIPER(CLIPERConfig(pretrained=None, aggregation=agg), seven, clip=clip, tokenizer=tok)
        groups = {k: sum(p.numel() for p in v) for k, v in model.parameter_groups().items()}
        counts[agg] = sum(p.numel() for p in model.tunable_parameters().values())
        assert groups["image"] == 86_192_640 and groups["descriptors"] == 71_680
    assert counts == {"mean": 86_264_320, "temporal": 86_264_320 + 2_110_464}


def test_config_refuses_unknown_keys_and_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown cliper config key\(s\) \['aggregate'\]"):
        CLIPERConfig.from_dict({"aggregate": "mean"})
    with pytest.raises(ValueError, match="cliper.aggregation must be one of"):
        CLIPERConfig.from_dict({"aggregation": "lstm"})
    assert CLIPERConfig.from_dict({"aggregation": "temporal"}).aggregation == "temporal"
