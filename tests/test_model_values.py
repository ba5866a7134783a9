"""FineCLIPER's arithmetic pinned to values computed here, never by the code under test.

The other model tests compare the model with itself (batched against per-level, step 0 against
frozen CLIP) or check that something changed. Here every expected value comes from a hand
computation on a few numbers or from a small independent implementation written in this file:
one multi-head attention (:func:`ref_mha`, per sequence and per head, explicit softmax), AIM's
block as the paper writes it (:func:`ref_block`, loops over clips and token positions instead
of reshapes), the text transformer (:func:`ref_text`, its own causal mask) and the PN head.

The backbone is a random 2-block open_clip CLIP of width 8 (8x8 images of four 4-px patches, a
vocabulary of 20 tokens) whose every weight, layer norms and layer scales included, is drawn at
random, so that swapping two sub-layers changes the numbers; every adapter weight is set to a
non-zero value (the zero-initialised up-projections included). A stand-in tokenizer maps words
to ids, so no BPE vocabulary is loaded. Each test runs in milliseconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from dfer.methods.fineclipper import FineCLIPER, FineCLIPEROutput, ModelConfig
from dfer.model.adapters import (
    BlockAdapters,
    Bottleneck,
    TemporalAdapter,
    TextAdapter,
    TextAdapterStack,
)
from dfer.model.text import encode_text
from dfer.model.vision import AdapterStack, Stream, encode_frames, encode_streams

VOCAB, CTX, WIDTH, EMBED = 20, 11, 8, 6
TINY = {
    "embed_dim": EMBED,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 8, "layers": 2, "width": WIDTH, "patch_size": 4, "head_width": 4,
                   "ls_init_value": 0.5},
    "text_cfg": {"context_length": CTX, "vocab_size": VOCAB, "width": WIDTH, "heads": 2, "layers": 2,
                 "ls_init_value": 0.5},
}
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]) * 255  # OpenAI's, open_clip's default
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]) * 255
LABELS = ["joy", "calm", "fear"]  # word ids 12, 2, 3 before the full stop (tokenizer)
POS = "A person with an expression of {label}."  # ModelConfig's documented default templates
NEG = "A person with an expression of no {label}."


def tokenizer(texts: list[str]) -> torch.Tensor:
    """Stand-in for CLIP's tokenizer: start token 1, one id in 2..18 per word, end token 19
    (the largest id, where CLIP's arg-max pooling reads), zero padding."""
    out = torch.zeros(len(texts), CTX, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [1] + [2 + sum(map(ord, w)) % (VOCAB - 3) for w in text.split()][: CTX - 2] + [VOCAB - 1]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def randomise(module: torch.nn.Module, seed: int, std: float = 0.4) -> None:
    """Every parameter of ``module`` to a seeded random value (norm weights around 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g) * std
            p.copy_(1 + noise if name.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight",
                                                "ln_post.weight", "ln_final.weight")) else noise)


@pytest.fixture(scope="module")
def clip() -> torch.nn.Module:
    import open_clip

    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY).eval()
    randomise(model, seed=1)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def build(clip: torch.nn.Module, labels: list[str] = LABELS, seed: int = 2, **kw: object) -> FineCLIPER:
    """A FineCLIPER on ``clip`` with every adapter weight (and AIM's temporal embedding) at a
    seeded non-zero value; fusion logits and temperature keep their init unless a test sets them."""
    cfg = ModelConfig(backbone="tiny", pretrained=None, max_frames=4, **kw)
    m = FineCLIPER(cfg, labels, clip=clip, tokenizer=tokenizer)
    for name in ("vision_adapters", "pos_adapter", "neg_adapter", "caption_adapter"):
        if getattr(m, name) is not None:
            randomise_tunable(getattr(m, name), seed)
            seed += 1
    return m


def randomise_tunable(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


# ------------------------------------------------------------------ independent implementation
def lin(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    return x @ layer.weight.T + layer.bias


def bottleneck(ad: Bottleneck, x: torch.Tensor, skip: bool) -> torch.Tensor:
    """FC-down, exact GELU, FC-up; ``skip`` says whether the adapter adds its input (decided
    here from the adapter's role, not read from the module)."""
    h = lin(F.gelu(lin(x, ad.down)), ad.up)
    return x + h if skip else h


def ref_mha(x: torch.Tensor, attn: torch.nn.MultiheadAttention, heads: int, causal: bool = False) -> torch.Tensor:
    """Multi-head self-attention of one sequence ``[L, D]``: explicit per-head softmax."""
    length, d = x.shape
    w, b = attn.in_proj_weight, attn.in_proj_bias
    q, k, v = (x @ w[i * d:(i + 1) * d].T + b[i * d:(i + 1) * d] for i in range(3))
    dh = d // heads
    out = torch.zeros(length, d)
    for h in range(heads):
        cols = slice(h * dh, (h + 1) * dh)
        scores = q[:, cols] @ k[:, cols].T / math.sqrt(dh)
        if causal:  # position i sees positions <= i
            scores = scores.masked_fill(torch.ones(length, length).triu(1).bool(), float("-inf"))
        out[:, cols] = scores.softmax(dim=-1) @ v[:, cols]
    return lin(out, attn.out_proj)


def ref_block(blk: torch.nn.Module, x: torch.Tensor, ad: BlockAdapters | None, t: int, scale: float,
              temporal: str, temporal_heads: int = 0) -> torch.Tensor:
    """One ViT block with AIM's adapters, clip by clip and token by token (``x``: ``[B*T, N, D]``,
    frame-major): the temporal branch attends over the ``t`` frames of one token position."""
    bt, n, _ = x.shape
    heads = blk.attn.num_heads
    if ad is not None and temporal != "none":
        delta = torch.zeros_like(x)
        if temporal == "attention":
            ta = ad.temporal
            low = lin(blk.ln_1(x), ta.down)
        for c in range(bt // t):
            frames = slice(c * t, (c + 1) * t)
            for tok in range(n):
                if temporal == "aim":  # frozen attention along the frames, skip-less adapter
                    seq = ref_mha(blk.ln_1(x[frames, tok]), blk.attn, heads)
                    delta[frames, tok] = bottleneck(ad.temporal, seq, skip=False)
                else:  # our attention module over the frames, with its frame-position table
                    seq = low[frames, tok] + ta.frame_pos[:t]
                    delta[frames, tok] = lin(F.gelu(ref_mha(seq, ta.attn, temporal_heads)), ta.up)
        x = x + delta
    a = torch.stack([ref_mha(blk.ln_1(x[i]), blk.attn, heads) for i in range(bt)])
    if ad is not None and ad.spatial is not None:
        a = bottleneck(ad.spatial, a, skip=True)
    x = x + blk.ls_1(a)
    h = blk.ln_2(x)
    m = blk.ls_2(blk.mlp(h))
    if ad is not None and ad.mlp is not None:
        m = m + scale * bottleneck(ad.mlp, h, skip=False)
    return x + m


def ref_visual(visual: torch.nn.Module, pixels: torch.Tensor, t: int, stack: AdapterStack | None,
               scale: float, temporal: str = "aim", temporal_heads: int = 0) -> torch.Tensor:
    """Per-image embeddings ``[B*T, E]``: patches, CLS, positions, AIM's temporal embedding of
    each image's frame index, ``ln_pre``, the blocks, ``ln_post`` of the CLS token, projection."""
    x = visual.conv1(pixels).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + visual.positional_embedding
    if stack is not None and stack.temporal_embedding is not None:
        frame_of = torch.arange(x.shape[0]) % t
        x = x + stack.temporal_embedding[frame_of][:, None, :]
    x = visual.ln_pre(x)
    for i, blk in enumerate(visual.transformer.resblocks):
        x = ref_block(blk, x, stack.blocks[i] if stack is not None else None, t, scale,
                      temporal if stack is not None else "none", temporal_heads)
    return visual.ln_post(x[:, 0]) @ visual.proj


def ref_text(clip: torch.nn.Module, tokens: torch.Tensor, stack: TextAdapterStack | None,
             position: str, scale: float) -> torch.Tensor:
    """The text transformer with one adapter per block: on the attention output with its own
    skip (``attn``) or parallel to the MLP, times ``scale`` (``mlp``); then the tower's pooling
    (EOT = arg-max token, last position, first end-of-text id) and projection."""
    causal = clip.attn_mask is not None
    x = clip.token_embedding.weight[tokens] + clip.positional_embedding
    for i, blk in enumerate(clip.transformer.resblocks):
        a = torch.stack([ref_mha(blk.ln_1(s), blk.attn, blk.attn.num_heads, causal=causal) for s in x])
        if stack is not None and position == "attn":
            a = bottleneck(stack.blocks[i], a, skip=True)
        x = x + blk.ls_1(a)
        h = blk.ln_2(x)
        m = blk.ls_2(blk.mlp(h))
        if stack is not None and position == "mlp":
            m = m + scale * bottleneck(stack.blocks[i], h, skip=False)
        x = x + m
    x = clip.ln_final(x)
    where = {"argmax": tokens.argmax(dim=-1), "last": torch.full((len(tokens),), tokens.shape[1] - 1),
             "eos": (tokens == clip.text_eos_id).int().argmax(dim=-1)}[clip.text_pool_type]
    x = x[torch.arange(len(tokens)), where]
    if isinstance(clip.text_projection, torch.nn.Linear):
        return x @ clip.text_projection.weight.T + clip.text_projection.bias
    return x if clip.text_projection is None else x @ clip.text_projection


def pixels_of(images: torch.Tensor) -> torch.Tensor:
    """``[B, T, H, W, 3]`` 0..255 -> ``[B*T, 3, H, W]`` normalised with OpenAI's mean and std."""
    b, t, h, w, _ = images.shape
    x = (images.float() - MEAN) / STD
    return x.reshape(b * t, h, w, 3).permute(0, 3, 1, 2)


def images(b: int, t: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 8, 8, 3), generator=g, dtype=torch.uint8)


# ------------------------------------------------------------------------------ adapters
def test_bottleneck_by_hand() -> None:
    """dim 2, one hidden unit: down (1, -1) + 0.5, up (2, -1) + (0.1, 0.2)."""
    for skip in (True, False):
        ad = Bottleneck(2, 1, skip=skip)
        with torch.no_grad():
            ad.down.weight.copy_(torch.tensor([[1.0, -1.0]]))
            ad.down.bias.fill_(0.5)
            ad.up.weight.copy_(torch.tensor([[2.0], [-1.0]]))
            ad.up.bias.copy_(torch.tensor([0.1, 0.2]))
        x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        expected = []
        for row, z in zip(x.tolist(), (1.5, -1.5), strict=True):  # down: 1 - 0 + .5, 0 - 2 + .5
            g = z * 0.5 * (1 + math.erf(z / math.sqrt(2)))  # exact GELU
            delta = [2 * g + 0.1, -g + 0.2]
            expected.append([r + d for r, d in zip(row, delta, strict=True)] if skip else delta)
        torch.testing.assert_close(ad(x), torch.tensor(expected))


def test_adapters_start_as_identity_or_zero_and_have_the_documented_shapes() -> None:
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(Bottleneck(8, 2, skip=True)(x), x)  # AIM's spatial adapter
    assert torch.equal(Bottleneck(8, 2, skip=False)(x), torch.zeros_like(x))  # MLP-parallel
    assert torch.equal(TextAdapter(8, 3)(x), x)  # output-level text adapter: residual
    temporal = TemporalAdapter(8, 6, heads=4, max_frames=5)
    assert torch.equal(temporal(x[:2].reshape(2, 5, 8).repeat(2, 1, 1), 2), torch.zeros(4, 5, 8))
    for ad in (Bottleneck(8, 2, True), temporal):
        assert ad.down.weight.abs().sum() > 0  # only the up-projection is zero
        assert not ad.up.weight.any() and not ad.up.bias.any()
    assert temporal.attn.num_heads == 3  # 4 heads do not divide 6 units: the next that does
    assert TemporalAdapter(8, 2, heads=4, max_frames=5).attn.num_heads == 2  # at most one per unit
    assert TemporalAdapter(8, 5, heads=0, max_frames=5).attn.num_heads == 1
    assert TemporalAdapter(8, 4, heads=1, max_frames=5).attn.num_heads == 1  # as asked
    assert TemporalAdapter(8, 2, 1, max_frames=3)(torch.zeros(3, 1, 8), 3).shape == (3, 1, 8)  # 3 of 3 frames
    assert temporal.frame_pos.shape == (5, 6) and 0.005 < float(temporal.frame_pos.detach().std()) < 0.05
    assert TemporalAdapter(8, 4, heads=2, max_frames=64).frame_pos.shape == (64, 4)
    with pytest.raises(ValueError, match="3 frames exceed the temporal adapter's max_frames=2"):
        TemporalAdapter(8, 2, 1, max_frames=2)(torch.zeros(3, 1, 8), 3)
    stack = AdapterStack(WIDTH, 3, 0.25, spatial=True, mlp=False, temporal="aim", temporal_heads=2, max_frames=5)
    assert len(stack.blocks) == 3 and stack.max_frames == 5 and stack.temporal == "aim"
    assert stack.blocks[0].spatial.down.out_features == 2 and stack.blocks[0].mlp is None  # 0.25 x 8
    assert stack.blocks[0].temporal.skip is False and stack.blocks[0].spatial.skip is True
    assert stack.temporal_embedding.shape == (5, WIDTH) and not stack.temporal_embedding.any()
    narrow = AdapterStack(WIDTH, 1, 0.01, spatial=False, mlp=True, temporal="none", temporal_heads=2, max_frames=5)
    assert narrow.blocks[0].mlp.down.out_features == 1  # never below one unit
    assert narrow.blocks[0].spatial is None and narrow.blocks[0].temporal is None
    assert narrow.temporal_embedding is None and narrow.blocks[0].mlp.skip is False
    attention = BlockAdapters(WIDTH, 4, True, True, "attention", temporal_heads=2, max_frames=3)
    assert isinstance(attention.temporal, TemporalAdapter) and attention.temporal_kind == "attention"
    assert attention.temporal.attn.num_heads == 2 and attention.temporal.max_frames == 3
    with pytest.raises(ValueError, match="unknown temporal adaptation 'tsm'; expected aim, attention or none"):
        BlockAdapters(WIDTH, 2, True, True, "tsm", 2, 4)
    for position, skip in (("attn", True), ("mlp", False)):
        text = TextAdapterStack(WIDTH, 2, 3, position)
        assert text.position == position and len(text.blocks) == 2
        assert all(b.skip is skip and b.down.out_features == 3 for b in text.blocks)
    with pytest.raises(ValueError, match="unknown text adapter position 'ffn'; expected attn or mlp"):
        TextAdapterStack(WIDTH, 2, 3, "ffn")


def test_temporal_attention_adapter_values_and_which_outputs_one_input_reaches() -> None:
    """``temporal: attention`` on ``[B*T, N, D]``: the value against the loop implementation,
    and a change of frame k of token n of one clip reaches token n of every frame of that clip
    and nothing else."""
    b, t, n, d = 2, 3, 4, WIDTH
    ad = TemporalAdapter(d, 4, heads=2, max_frames=4)
    randomise_tunable(ad, seed=3)
    x = torch.randn(b * t, n, d, generator=torch.Generator().manual_seed(4))
    out = ad(x, t)
    expected = torch.zeros_like(x)
    low = lin(x, ad.down)
    for c in range(b):
        for tok in range(n):
            seq = low[c * t:(c + 1) * t, tok] + ad.frame_pos[:t]
            expected[c * t:(c + 1) * t, tok] = lin(F.gelu(ref_mha(seq, ad.attn, 2)), ad.up)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)

    k, tok = 2, 1  # frame 2 of token 1 of clip 0
    bumped = x.clone()
    bumped[k, tok] += torch.linspace(-1, 2, d)
    changed = (ad(bumped, t) - out).abs().amax(dim=-1) > 1e-6  # [B*T, N]
    reach = torch.zeros(b * t, n, dtype=torch.bool)
    reach[0:t, tok] = True
    assert torch.equal(changed, reach), changed


# ------------------------------------------------------------------------------ vision
def test_aim_temporal_branch_reaches_exactly_the_token_position_across_frames(clip: torch.nn.Module) -> None:
    """AIM's temporal branch ``x + T(attn(ln_1(x^T)))^T`` of one block: a change of frame k of
    token n of clip 0 changes token n of every frame of clip 0, no other token, no other clip;
    its value is the loop implementation's."""
    from dfer.model.vision import _with_temporal

    m = build(clip)
    blk = clip.visual.transformer.resblocks[0]
    ad = m.vision_adapters["video"].blocks[0]
    b, t, n = 2, 4, 5
    x = torch.randn(b * t, n, WIDTH, generator=torch.Generator().manual_seed(5))

    def branch(y: torch.Tensor) -> torch.Tensor:
        return _with_temporal(blk, y, ad, t, lambda z: blk.attention(q_x=z))

    with torch.no_grad():
        out = branch(x)
        expected = x.clone()
        for c in range(b):
            for tok in range(n):
                rows = slice(c * t, (c + 1) * t)
                seq = ref_mha(blk.ln_1(x[rows, tok]), blk.attn, 2)
                expected[rows, tok] += bottleneck(ad.temporal, seq, skip=False)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        for k, tok in ((0, 0), (3, 2), (1, 4)):
            bumped = x.clone()
            bumped[k, tok] += torch.linspace(-1, 2, WIDTH)  # not constant: ln_1 removes a constant
            changed = (branch(bumped) - out).abs().amax(dim=-1) > 1e-6
            reach = torch.zeros(b * t, n, dtype=torch.bool)
            reach[0:t, tok] = True  # clip 0 holds rows 0..3
            assert torch.equal(changed, reach), (k, tok, changed)
        assert torch.equal(_with_temporal(blk, x, None, t, blk.attention), x)  # no adapters


def test_visual_encoders_equal_the_independent_aim_implementation(clip: torch.nn.Module) -> None:
    """``encode_frames`` (one level) and ``encode_streams`` (levels batched: AIM adapters, our
    attention ablation, no adapters) against :func:`ref_visual`, adapters and AIM's temporal
    embedding at non-zero values; a frame change of clip 0 reaches every frame of clip 0 only."""
    m = build(clip)
    visual = clip.visual
    video = m.vision_adapters["video"]
    attention = AdapterStack(WIDTH, 2, 0.5, spatial=True, mlp=True, temporal="attention",
                             temporal_heads=4, max_frames=4)  # 4 units, 4 heads
    randomise_tunable(attention, seed=6)
    assert video.temporal_embedding.abs().min() > 0
    px = [pixels_of(images(2, 3, seed=s)) for s in (7, 8, 9)]
    with torch.no_grad():
        ref = [ref_visual(visual, px[0], 3, video, 0.5),
               ref_visual(visual, px[1], 3, attention, 0.5, "attention", 4),
               ref_visual(visual, px[2], 3, None, 0.5)]
        torch.testing.assert_close(encode_frames(visual, px[0], 3, video, 0.5), ref[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(encode_frames(visual, px[1], 3, attention, 0.5), ref[1], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(encode_frames(visual, px[2], 3, None, 0.5), ref[2], atol=1e-5, rtol=1e-4)
        streams = [Stream(px[0], 3, video), Stream(px[1], 3, attention), Stream(px[2], 3, None)]
        for got, want in zip(encode_streams(visual, streams, 0.5), ref, strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        # another adapter scale: the joint adapter's weight s
        torch.testing.assert_close(encode_streams(visual, streams[:1], 2.0)[0],
                                   ref_visual(visual, px[0], 3, video, 2.0), atol=1e-5, rtol=1e-4)
        # frames mix within a clip only: change frame 2 of clip 0
        bumped = px[0].clone()
        bumped[2] = px[2][0]
        changed = (encode_streams(visual, [Stream(bumped, 3, video)], 0.5)[0] - ref[0]).abs().amax(-1) > 1e-5
        assert changed.tolist() == [True, True, True, False, False, False]
        with pytest.raises(ValueError, match="5 images are not a whole number of 3-frame clips"):
            encode_streams(visual, [Stream(px[0][:5], 3, video)], 0.5)
        with pytest.raises(ValueError, match="5 frames exceed model.max_frames=4"):
            encode_frames(visual, px[0][:5], 5, video, 0.5)


def test_parsing_and_landmark_levels_run_through_their_adapters(clip: torch.nn.Module) -> None:
    """Shared middle adapters (``share_mid_adapters``): parsing and landmark images both go
    through the one ``mid`` stack, the video through its own; a level with no adapters of its
    own and no shared stack gets none. Checked on the features, against :func:`ref_visual`."""
    shared = build(clip, share_mid_adapters=True)
    mid, video = shared.vision_adapters["mid"], shared.vision_adapters["video"]
    assert shared.adapter_set("parsing") is mid and shared.adapter_set("landmarks") is mid
    assert shared.adapter_set("video") is video and shared.adapter_set("captions") is None
    own = build(clip, share_mid_adapters=False)
    assert own.adapter_set("parsing") is own.vision_adapters["parsing"]
    assert own.adapter_set("landmarks") is own.vision_adapters["landmarks"]
    assert build(clip, share_mid_adapters=False, use_parsing=False).adapter_set("parsing") is None
    x = images(2, 3, seed=11)
    with torch.no_grad():
        for level in ("parsing", "landmarks"):
            torch.testing.assert_close(shared.encode_level(x, level).reshape(6, -1),
                                       ref_visual(clip.visual, pixels_of(x), 3, mid, shared.cfg.adapter_scale,
                                                  shared.cfg.mid_temporal),
                                       atol=1e-5, rtol=1e-4)


def test_gradient_checkpointing_gives_the_same_values_and_adapter_gradients(clip: torch.nn.Module) -> None:
    """Under activation checkpointing (training with gradients) both encoders compute the
    reference values and hand the adapters the same gradients as without it."""
    m = build(clip)
    px = pixels_of(images(1, 2, seed=10))
    # the video stack (AIM temporal embedding: the tokens require grad from the start) and a
    # middle-level stack (no temporal part: the first block's input does not require grad)
    for stack, temporal in ((m.vision_adapters["video"], "aim"), (m.vision_adapters["parsing"], "none")):
        with torch.no_grad():
            want = ref_visual(clip.visual, px, 2, stack, 0.5, temporal)
        grads = {}
        for name, encode in (
            ("frames", lambda ckpt, st=stack: encode_frames(clip.visual, px, 2, st, 0.5, grad_checkpointing=ckpt)),
            ("streams", lambda ckpt, st=stack: encode_streams(clip.visual, [Stream(px, 2, st)], 0.5,
                                                              grad_checkpointing=ckpt)[0]),
        ):
            for ckpt in (False, True):
                stack.zero_grad(set_to_none=True)
                out = encode(ckpt)
                torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-4)
                out.square().sum().backward()
                grads[name, ckpt] = {n: p.grad.clone() for n, p in stack.named_parameters() if p.grad is not None}
            assert set(grads[name, True]) == set(grads[name, False]) == {n for n, _ in stack.named_parameters()}
            for n, g in grads[name, False].items():
                torch.testing.assert_close(grads[name, True][n], g, atol=1e-5, rtol=1e-4, msg=n)


def test_fast_attention_path_is_taken_only_where_it_is_exact(clip: torch.nn.Module) -> None:
    """The batched path computes the frozen attention itself only for a plain batch-first
    ``nn.MultiheadAttention``; with learned extra keys, a zero key or dropout in training it
    falls back on open_clip's own forward (and still gives open_clip's values); CLS pooling
    lets the last block compute the CLS token only."""
    import copy

    from dfer.model.vision import _cls_pool, _plain_mha

    blk = clip.visual.transformer.resblocks[0]
    assert _plain_mha(blk) is blk.attn
    assert _cls_pool(clip.visual)
    for change in ({"add_bias_kv": True}, {"add_zero_attn": True}):
        odd = copy.deepcopy(blk)
        odd.attn = torch.nn.MultiheadAttention(WIDTH, 2, batch_first=True, **change)
        randomise_tunable(odd.attn, seed=11)
        assert _plain_mha(odd) is None
        visual = copy.deepcopy(clip.visual)
        visual.transformer.resblocks[0] = odd
        px = pixels_of(images(1, 2, seed=12))
        with torch.no_grad():
            torch.testing.assert_close(encode_streams(visual, [Stream(px, 2, None)], 0.5)[0],
                                       visual(px), atol=1e-5, rtol=1e-4)
    drop = copy.deepcopy(blk)
    drop.attn.dropout = 0.1
    assert _plain_mha(drop) is drop.attn  # dropout does nothing in eval mode
    drop.attn.train()
    assert _plain_mha(drop) is None
    drop.attn.dropout = 0.0
    assert _plain_mha(drop) is drop.attn
    unbatched = copy.deepcopy(blk)
    unbatched.attn.batch_first = False
    assert _plain_mha(unbatched) is None
    separate = copy.deepcopy(blk)
    separate.attn._qkv_same_embed_dim = False
    assert _plain_mha(separate) is None
    packed_none = copy.deepcopy(blk)
    packed_none.attn.in_proj_weight = None
    assert _plain_mha(packed_none) is None
    cross = copy.deepcopy(blk)
    cross.ln_1_kv = torch.nn.LayerNorm(WIDTH)
    assert _plain_mha(cross) is None
    avg = copy.deepcopy(clip.visual)
    avg.pool_type = "avg"
    assert not _cls_pool(avg)
    avg.pool_type, avg.attn_pool = "tok", torch.nn.Identity()
    assert not _cls_pool(avg)
    from types import SimpleNamespace

    assert _plain_mha(SimpleNamespace()) is None  # a block without an attention module


def test_batched_path_attends_itself_and_only_for_the_cls_token_at_the_end(
        clip: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    """With plain attention the batched path runs the queries through
    ``scaled_dot_product_attention`` itself (5 tokens: CLS + 4 patches); under CLS pooling the
    last block has one query, under average pooling all 5; AIM's temporal branch attends over
    the 3 frames of each token position. Also exact without in-projection biases, without a
    projection, and at max_frames frames."""
    import copy

    from torch.nn import functional as tf

    queries: list[int] = []
    real = tf.scaled_dot_product_attention

    def recording(q, k, v, *args, **kwargs):
        queries.append(q.shape[-2])
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(tf, "scaled_dot_product_attention", recording)
    px = pixels_of(images(1, 3, seed=13))
    with torch.no_grad():
        encode_streams(clip.visual, [Stream(px, 3, None)], 0.5)
        assert queries == [5, 1]  # block 0: every token; last block: the CLS token only
        queries.clear()
        video = build(clip).vision_adapters["video"]
        encode_streams(clip.visual, [Stream(px, 3, video)], 0.5)
        assert queries == [3, 5, 3, 1]  # temporal (3 frames), spatial, per block
        queries.clear()
        with torch.enable_grad():  # under activation checkpointing too
            encode_streams(clip.visual, [Stream(px, 3, None)], 0.5, grad_checkpointing=True)
        assert queries == [5, 1]
        queries.clear()
        avg = copy.deepcopy(clip.visual)
        avg.pool_type = "avg"
        encode_streams(avg, [Stream(px, 3, None)], 0.5)
        assert queries == [5, 5]
        queries.clear()
        # no biases in the in-projection, no output projection: still open_clip's features
        odd = copy.deepcopy(clip.visual)
        for blk in odd.transformer.resblocks:
            blk.attn.in_proj_bias = None
        odd.proj = None
        got = encode_streams(odd, [Stream(px, 3, None)], 0.5)[0]
        assert queries == [5, 1]
        torch.testing.assert_close(got, odd(px), atol=1e-5, rtol=1e-4)
        px4 = pixels_of(images(1, 4, seed=14))  # max_frames=4 frames are allowed
        torch.testing.assert_close(encode_frames(clip.visual, px4, 4, video, 0.5),
                                   ref_visual(clip.visual, px4, 4, video, 0.5), atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------ text
@pytest.mark.parametrize("position", ["attn", "mlp"])
def test_text_adapters_read_their_sublayer(clip: torch.nn.Module, position: str) -> None:
    """Inner text adapters: ``attn`` transforms the attention output (with its own skip),
    ``mlp`` reads ``ln_2(x)`` beside the MLP, times the adapter scale; the positive, negative
    and caption branches each use their own adapter on their own texts."""
    m = build(clip, text_adapter_position=position, adapter_scale=0.7)
    pos = tokenizer([POS.format(label=lab) for lab in LABELS])
    neg = tokenizer([NEG.format(label=lab) for lab in LABELS])
    assert not torch.equal(pos, neg)
    with torch.no_grad():
        for stack in (m.pos_adapter, m.neg_adapter, m.caption_adapter):
            torch.testing.assert_close(encode_text(clip, pos, stack, 0.7), ref_text(clip, pos, stack, position, 0.7),
                                       atol=1e-5, rtol=1e-4)
        other = "mlp" if position == "attn" else "attn"  # the test tells the positions apart
        assert not torch.allclose(ref_text(clip, pos, m.pos_adapter, other, 0.7),
                                  ref_text(clip, pos, m.pos_adapter, position, 0.7), atol=1e-3)
        t_pos, t_neg = m.descriptor_features()
        torch.testing.assert_close(t_pos, ref_text(clip, pos, m.pos_adapter, position, 0.7), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(t_neg, ref_text(clip, neg, m.neg_adapter, position, 0.7), atol=1e-5, rtol=1e-4)
        captions = ["brows rise", "the mouth opens wide"]
        want = F.normalize(ref_text(clip, tokenizer(captions), m.caption_adapter, position, 0.7), dim=-1)
        torch.testing.assert_close(m.encode_captions(captions), want, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(encode_text(clip, pos, None, 0.7), ref_text(clip, pos, None, position, 0.7),
                                   atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("text_cfg", "cut"), [
    ({}, True),  # causal mask + arg-max pooling: positions after the last EOT cannot matter
    ({"no_causal_mask": True}, False),  # every position reaches the EOT
    ({"pool_type": "last"}, False),
    ({"pool_type": "eos", "eos_id": VOCAB - 1}, False),
    ({"proj_bias": True}, True),  # the projection as an nn.Linear
    ({"proj_type": "none"}, True),  # no projection at all
])
def test_text_towers_of_other_layouts_and_the_positions_they_run_on(text_cfg: dict, cut: bool) -> None:
    """``encode_text`` against :func:`ref_text` on open_clip text towers of other layouts; the
    blocks run on the positions up to the batch's last EOT only where that is exact."""
    import open_clip

    cfg = {**TINY, "text_cfg": {**TINY["text_cfg"], **text_cfg}}
    torch.manual_seed(0)
    tower = open_clip.CLIP(**cfg).eval()
    randomise(tower, seed=7)
    stack = TextAdapterStack(WIDTH, 2, 3, "mlp")
    randomise_tunable(stack, seed=8)
    tokens = tokenizer(["brows rise", "the mouth opens and the brows rise"])
    assert int(tokens.argmax(-1).max()) == 8 < CTX - 1
    lengths: list[int] = []
    hook = tower.transformer.resblocks[0].ln_1.register_forward_hook(lambda m, i, o: lengths.append(i[0].shape[1]))
    with torch.no_grad():
        got = encode_text(tower, tokens, stack, 0.5)
        hook.remove()
        torch.testing.assert_close(got, ref_text(tower, tokens, stack, "mlp", 0.5), atol=1e-5, rtol=1e-4)
    assert lengths == [9 if cut else CTX]


def test_in_encoder_adapters_refuse_other_text_towers() -> None:
    from types import SimpleNamespace

    from dfer.model.text import check_text_supported

    with pytest.raises(ValueError, match=r"inner needs open_clip's built-in CLIP text transformer; "
                                         r"SimpleNamespace has none \(use text_adapter: output\)"):
        check_text_supported(SimpleNamespace(token_embedding=None))
    with pytest.raises(ValueError, match="SimpleNamespace has none"):  # blocks but no token embedding
        check_text_supported(SimpleNamespace(transformer=SimpleNamespace(resblocks=[])))
    odd = SimpleNamespace(transformer=SimpleNamespace(resblocks=[torch.nn.Linear(2, 2)]), token_embedding=None)
    with pytest.raises(ValueError, match="unsupported text block Linear for model.text_adapter: inner"):
        check_text_supported(odd)


def test_output_level_and_absent_text_adapters(clip: torch.nn.Module) -> None:
    """``text_adapter: output``: each branch's residual bottleneck on the frozen text
    embedding; ``none``: the frozen embedding itself; ``use_negative: false``: no negatives."""
    pos = tokenizer([POS.format(label=lab) for lab in LABELS])
    neg = tokenizer([NEG.format(label=lab) for lab in LABELS])
    with torch.no_grad():
        frozen_pos, frozen_neg = ref_text(clip, pos, None, "attn", 0.5), ref_text(clip, neg, None, "attn", 0.5)
        m = build(clip, text_adapter="output")
        t_pos, t_neg = m.descriptor_features()
        torch.testing.assert_close(t_pos, bottleneck(m.pos_adapter, frozen_pos, skip=True), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(t_neg, bottleneck(m.neg_adapter, frozen_neg, skip=True), atol=1e-5, rtol=1e-4)
        caps = tokenizer(["lips part"])
        want = F.normalize(bottleneck(m.caption_adapter, ref_text(clip, caps, None, "attn", 0.5), skip=True), dim=-1)
        torch.testing.assert_close(m.encode_captions(["lips part"]), want, atol=1e-5, rtol=1e-4)
        plain = build(clip, text_adapter="none")
        torch.testing.assert_close(plain.encode_captions(["lips part"]),
                                   F.normalize(ref_text(clip, caps, None, "attn", 0.5), dim=-1), atol=1e-5, rtol=1e-4)
        t_pos, t_neg = plain.descriptor_features()
        torch.testing.assert_close(t_pos, frozen_pos, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(t_neg, frozen_neg, atol=1e-5, rtol=1e-4)
        single = build(clip, use_negative=False)
        t_pos, t_neg = single.descriptor_features()
        assert t_neg is None
        torch.testing.assert_close(t_pos, ref_text(clip, pos, single.pos_adapter, "attn", 0.5), atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------ PN head, fusion
def test_pn_logits_fusion_weights_and_level_scores_by_hand(clip: torch.nn.Module) -> None:
    """Two levels of 2-d features with the encoders replaced by known numbers:

    video frames (3, 4), (3, 4) -> mean (3, 4) -> unit (0.6, 0.8); parsing (5, 0) -> (1, 0).
    fusion logits (0, ln 3) -> weights (1/4, 3/4); fused = unit((0.9, 0.2)) = (0.9, 0.2)/sqrt(0.85).
    positive descriptors (1, 0), (0, 2) -> units (1, 0), (0, 1); negatives (0, 1), (-3, 0) ->
    (0, 1), (-1, 0). With scale 20 and lambda 0.5: logits = 20 (sim_pos - 0.5 sim_neg).
    """
    m = build(clip, labels=["a", "b"], use_landmarks=False, use_captions=False, negative_weight=0.5,
              logit_scale=20.0)
    with torch.no_grad():
        m.fusion_logits.copy_(torch.tensor([0.0, math.log(3.0)]))
    levels = {"video": torch.tensor([[[3.0, 4.0], [3.0, 4.0]]]), "parsing": torch.tensor([[[5.0, 0.0], [5.0, 0.0]]])}
    m.encode_levels = lambda inputs: {lv: levels[lv] for lv in inputs}
    m.descriptor_features = lambda: (torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 1.0], [-3.0, 0.0]]))
    dummy = torch.zeros(1, 2, 8, 8, 3)
    out = m(frames=dummy, parsing=dummy)
    r = math.sqrt(0.85)
    torch.testing.assert_close(out.modality_weights, torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(out.level_features["video"], torch.tensor([[0.6, 0.8]]))
    torch.testing.assert_close(out.level_features["parsing"], torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(out.fused, torch.tensor([[0.9 / r, 0.2 / r]]))
    torch.testing.assert_close(out.sim_pos, torch.tensor([[0.9 / r, 0.2 / r]]))
    torch.testing.assert_close(out.sim_neg, torch.tensor([[0.2 / r, -0.9 / r]]))
    torch.testing.assert_close(out.scale, torch.tensor(20.0))
    torch.testing.assert_close(out.logits, torch.tensor([[20 * (0.9 - 0.1) / r, 20 * (0.2 + 0.45) / r]]))
    # each level's own score against the same descriptors: video (0.6, 0.8), parsing (1, 0)
    torch.testing.assert_close(out.level_scores["video"], torch.tensor([[0.6 - 0.4, 0.8 + 0.3]]))
    torch.testing.assert_close(out.level_scores["parsing"], torch.tensor([[1.0, 0.5]]))
    torch.testing.assert_close(out.probabilities(), torch.softmax(out.logits, dim=-1))
    assert out.caption is None  # no caption level
    # the temperature scale is clamped at max_logit_scale
    m.cfg.max_logit_scale = 10.0
    torch.testing.assert_close(m(frames=dummy, parsing=dummy).logits, out.logits / 2)
    # without negatives the score is the positive similarity alone
    m.cfg.use_negative = False
    m.descriptor_features = lambda: (torch.tensor([[1.0, 0.0], [0.0, 2.0]]), None)
    alone = m(frames=dummy, parsing=dummy)
    assert alone.sim_neg is None
    torch.testing.assert_close(alone.logits, torch.tensor([[10 * 0.9 / r, 10 * 0.2 / r]]))
    torch.testing.assert_close(alone.level_scores["video"], torch.tensor([[0.6, 0.8]]))


def test_plain_mean_fusion_and_caption_in_fusion_by_hand(clip: torch.nn.Module) -> None:
    """``learned_fusion: false`` keeps equal weights; ``caption_in_fusion`` fuses the caption
    feature as one more level: video (1, 0), caption (0, 1) -> fused unit((1, 1))."""
    m = build(clip, labels=["a", "b"], use_parsing=False, use_landmarks=False, caption_in_fusion=True,
              learned_fusion=False)
    assert m.fused_levels == ["video", "caption"] and not m.fusion_logits.requires_grad
    m.encode_levels = lambda inputs: {"video": torch.tensor([[[2.0, 0.0]]])}
    m.encode_captions = lambda caps: torch.tensor([[0.0, 1.0]])
    m.descriptor_features = lambda: (torch.eye(2), torch.eye(2).flip(0))
    dummy = torch.zeros(1, 1, 8, 8, 3)
    out = m(frames=dummy, captions=["x"])
    h = 1 / math.sqrt(2)
    torch.testing.assert_close(out.modality_weights, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(out.fused, torch.tensor([[h, h]]))
    torch.testing.assert_close(out.caption, torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(out.level_scores["caption"], torch.tensor([[-1.0, 1.0]]))
    # no captions at all (issue 22: a clip is scored on its video): the caption level is a zero
    # row, so the fused feature is the video's alone, and the caption level scores 0 everywhere
    m.embed_dim = 2  # the stand-in features above are 2-d
    out = m(frames=dummy)
    assert out.caption is None
    torch.testing.assert_close(out.fused, torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(out.level_scores["caption"], torch.tensor([[0.0, 0.0]]))
    torch.testing.assert_close(out.level_scores["video"], torch.tensor([[1.0, -1.0]]))


def _ce(logits: list[float], target: int, smoothing: float = 0.0) -> float:
    """Cross-entropy of one row, by hand: -sum_j q_j log softmax_j with q the smoothed target."""
    lse = math.log(sum(math.exp(v) for v in logits))
    c = len(logits)
    q = [(1 - smoothing) * (j == target) + smoothing / c for j in range(c)]
    return -sum(qj * (v - lse) for qj, v in zip(q, logits, strict=True))


def _output(sim_pos: list[list[float]], sim_neg: list[list[float]] | None, scale: float, lam: float,
            caption: torch.Tensor | None = None, video: torch.Tensor | None = None,
            fused: torch.Tensor | None = None) -> FineCLIPEROutput:
    sp = torch.tensor(sim_pos)
    sn = torch.tensor(sim_neg) if sim_neg is not None else None
    logits = scale * (sp - lam * sn) if sn is not None else scale * sp
    fused = torch.eye(len(sim_pos), 3).flip(1) if fused is None else fused  # not the video rows
    feats = {"video": video} if video is not None else {}
    return FineCLIPEROutput(logits=logits, sim_pos=sp, sim_neg=sn, fused=fused, level_features=feats,
                            modality_weights=torch.ones(1), caption=caption, scale=torch.tensor(scale))


def test_two_term_and_combined_pn_losses_by_hand(clip: torch.nn.Module) -> None:
    """``two_term``: CE(s sim_pos) + lambda CE(-s sim_neg); ``combined``: CE(s (sim_pos -
    lambda sim_neg)); both with label smoothing, computed row by row here."""
    sp, sn, s, lam, targets = [[0.5, -0.2, 0.1], [0.0, 0.3, 0.4]], [[0.1, 0.6, -0.3], [0.2, 0.2, -0.5]], 4.0, 0.5, [0, 2]
    for smoothing in (0.0, 0.1):
        two = build(clip, pn_loss="two_term", negative_weight=lam, label_smoothing=smoothing, use_captions=False)
        losses = two.losses(_output(sp, sn, s, lam), torch.tensor(targets))
        ce_pos = sum(_ce([s * v for v in row], y, smoothing) for row, y in zip(sp, targets, strict=True)) / 2
        ce_neg = sum(_ce([-s * v for v in row], y, smoothing) for row, y in zip(sn, targets, strict=True)) / 2
        torch.testing.assert_close(losses["ce_pos"], torch.tensor(ce_pos))
        torch.testing.assert_close(losses["ce_neg"], torch.tensor(ce_neg))
        torch.testing.assert_close(losses["ce"], torch.tensor(ce_pos + lam * ce_neg))
        torch.testing.assert_close(losses["loss"], torch.tensor(ce_pos + lam * ce_neg))
        combined = build(clip, negative_weight=lam, label_smoothing=smoothing, use_captions=False)
        losses = combined.losses(_output(sp, sn, s, lam), torch.tensor(targets))
        ce = sum(_ce([s * (p - lam * q) for p, q in zip(rp, rn, strict=True)], y, smoothing)
                 for rp, rn, y in zip(sp, sn, targets, strict=True)) / 2
        assert set(losses) == {"ce", "loss"}
        torch.testing.assert_close(losses["ce"], torch.tensor(ce))
        torch.testing.assert_close(losses["loss"], torch.tensor(ce))
    # two_term without negative descriptors is the combined loss over the positive scores
    alone = build(clip, pn_loss="two_term", use_negative=False, use_captions=False).losses(
        _output(sp, None, s, lam), torch.tensor(targets))
    ce = sum(_ce([s * v for v in row], y) for row, y in zip(sp, targets, strict=True)) / 2
    assert set(alone) == {"ce", "loss"}
    torch.testing.assert_close(alone["loss"], torch.tensor(ce))
    # a two_term output without its scale falls back on the model's own (exp of log scale 50)
    out = _output(sp, sn, 50.0, lam)
    out.scale = None
    losses = build(clip, pn_loss="two_term", negative_weight=lam, use_captions=False).losses(out, torch.tensor(targets))
    ce_pos = sum(_ce([50 * v for v in row], y) for row, y in zip(sp, targets, strict=True)) / 2
    torch.testing.assert_close(losses["ce_pos"], torch.tensor(ce_pos), rtol=1e-5, atol=1e-5)


def test_caption_alignment_infonce_on_a_3x3_similarity_matrix_by_hand(clip: torch.nn.Module) -> None:
    """Video features e1, e2, e3; captions e1, (e1 + e2)/sqrt 2, e3; temperature 0.5, so the
    similarity matrix is S = 2 [[1, h, 0], [0, h, 0], [0, 0, 1]] with h = 1/sqrt 2 (row i:
    video i against every caption). align = (mean_i CE(S[i], i) + mean_j CE(S[:, j], j)) / 2;
    loss = ce + align_weight * align."""
    h = 1 / math.sqrt(2)
    video = torch.eye(3)
    caption = torch.tensor([[1.0, 0.0, 0.0], [h, h, 0.0], [0.0, 0.0, 1.0]])
    s = [[2.0, 2 * h, 0.0], [0.0, 2 * h, 0.0], [0.0, 0.0, 2.0]]
    rows = (math.log(math.exp(2) + math.exp(2 * h) + 1) - 2  # row 0: target 2
            + math.log(2 + math.exp(2 * h)) - 2 * h  # row 1: 0, 2h, 0, target 2h
            + math.log(2 + math.exp(2)) - 2) / 3  # row 2
    cols = (math.log(math.exp(2) + 2) - 2  # column 0: 2, 0, 0
            + math.log(2 * math.exp(2 * h) + 1) - 2 * h  # column 1: 2h, 2h, 0
            + math.log(2 + math.exp(2)) - 2) / 3  # column 2: 0, 0, 2
    assert abs(rows - sum(_ce(r, i) for i, r in enumerate(s)) / 3) < 1e-12  # the two readings agree
    align = (rows + cols) / 2
    m = build(clip, align_temperature=0.5, align_weight=0.25)
    sp = [[0.1, 0.2, 0.3]] * 3
    out = _output(sp, sp, 10.0, 1.0, caption=caption, video=video)
    losses = m.losses(out, torch.tensor([0, 1, 2]))
    ce = sum(_ce([0.0, 0.0, 0.0], y) for y in range(3)) / 3  # sim_pos - sim_neg = 0
    torch.testing.assert_close(losses["align"], torch.tensor(align))
    torch.testing.assert_close(losses["loss"], torch.tensor(ce + 0.25 * align))
    # without a video level the fused feature is aligned (here given the same rows)
    out = _output(sp, sp, 10.0, 1.0, caption=caption, fused=video)
    torch.testing.assert_close(m.losses(out, torch.tensor([0, 1, 2]))["align"], torch.tensor(align))
    # two clips are enough to contrast: video e1, e2 against captions e1, e2 -> S = 2 I,
    # align = log(e^2 + 1) - 2 both ways
    two = m.losses(_output(sp[:2], sp[:2], 10.0, 1.0, caption=caption[[0, 2]][:, [0, 2, 1]], video=video[:2]),
                   torch.tensor([0, 1]))
    torch.testing.assert_close(two["align"], torch.tensor(math.log(math.exp(2) + 1) - 2))
    # one clip has no other caption to contrast with; a zero weight switches the term off
    assert "align" not in m.losses(_output(sp[:1], sp[:1], 10.0, 1.0, caption=caption[:1], video=video[:1]),
                                   torch.tensor([0]))
    off = build(clip, align_weight=0.0)
    assert "align" not in off.losses(_output(sp, sp, 10.0, 1.0, caption=caption, video=video), torch.tensor([0, 1, 2]))


# ------------------------------------------------------------------------------ end to end
def reference_logits(m: FineCLIPER, clip: torch.nn.Module, x: dict[str, torch.Tensor], labels: list[str]) -> torch.Tensor:
    """The whole PN head from :func:`ref_visual` / :func:`ref_text`: per-level features averaged
    over frames, softmax-weighted fusion, cosine against each label's descriptors."""
    feats = []
    for level, stack in (("video", m.vision_adapters["video"]), ("parsing", m.vision_adapters["parsing"]),
                         ("landmarks", m.vision_adapters["landmarks"])):
        b, t = x[level].shape[:2]
        temporal = "aim" if level == "video" else "none"
        per_frame = ref_visual(clip.visual, pixels_of(x[level]), t, stack, m.cfg.adapter_scale, temporal)
        feats.append(F.normalize(per_frame.view(b, t, -1).mean(1), dim=-1))
    w = torch.softmax(m.fusion_logits, dim=0)
    fused = F.normalize(w[0] * feats[0] + w[1] * feats[1] + w[2] * feats[2], dim=-1)
    t_pos = F.normalize(ref_text(clip, tokenizer([POS.format(label=lab) for lab in labels]), m.pos_adapter, "attn",
                                 m.cfg.adapter_scale), dim=-1)
    t_neg = F.normalize(ref_text(clip, tokenizer([NEG.format(label=lab) for lab in labels]), m.neg_adapter, "attn",
                                 m.cfg.adapter_scale), dim=-1)
    return m.log_logit_scale.exp() * (fused @ t_pos.T - m.cfg.negative_weight * (fused @ t_neg.T))


def test_forward_and_label_swap_score_the_new_classes_texts(clip: torch.nn.Module) -> None:
    """The full forward equals the reference PN head, batched or per level; after
    ``set_labels`` (zero-shot transfer) the logits are those of the new classes' descriptors,
    not cached ones of the old classes (same number of classes, so shapes cannot tell)."""
    m = build(clip, negative_weight=0.8)
    with torch.no_grad():
        m.fusion_logits.copy_(torch.tensor([0.3, -0.5, 1.1]))
        m.log_logit_scale.fill_(math.log(7.0))
    x = {"video": images(2, 3, seed=20), "parsing": images(2, 2, seed=21), "landmarks": images(2, 2, seed=22)}
    new = ["awe", "worry", "surprise"]  # ids 8, 15, 6
    assert len({tuple(tokenizer([POS.format(label=lab)])[0].tolist()) for lab in LABELS + new}) == 6
    m.eval()
    with torch.no_grad():
        for batch_levels in (True, False):
            m.cfg.batch_levels = batch_levels
            m.set_labels(LABELS)
            out = m(frames=x["video"], parsing=x["parsing"], landmarks=x["landmarks"], captions=["brows rise", "x"])
            torch.testing.assert_close(out.logits, reference_logits(m, clip, x, LABELS), atol=1e-4, rtol=1e-4)
            caps = F.normalize(ref_text(clip, tokenizer(["brows rise", "x"]), m.caption_adapter, "attn", 0.5), dim=-1)
            torch.testing.assert_close(out.caption, caps, atol=1e-5, rtol=1e-4)  # aligned, not fused
            assert m(frames=x["video"], parsing=x["parsing"], landmarks=x["landmarks"]).caption is None
            m.set_labels(new)
            swapped = m(frames=x["video"], parsing=x["parsing"], landmarks=x["landmarks"])
            torch.testing.assert_close(swapped.logits, reference_logits(m, clip, x, new), atol=1e-4, rtol=1e-4)
            assert not torch.allclose(swapped.logits, out.logits, atol=1e-3)
        torch.testing.assert_close(m.predict_proba(frames=x["video"], parsing=x["parsing"], landmarks=x["landmarks"]),
                                   torch.softmax(reference_logits(m, clip, x, new), dim=-1), atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------ bookkeeping
def test_pixels_are_normalised_with_openai_constants_and_resized(clip: torch.nn.Module) -> None:
    """A constant image of grey 128 becomes (128 - 255 mean) / (255 std) per channel; other
    sizes are resized to the backbone's 8 px (a constant stays constant)."""
    m = build(clip)
    x = torch.full((2, 3, 8, 8, 3), 128, dtype=torch.uint8)
    px = m.to_pixels(x)
    assert px.shape == (6, 3, 8, 8)
    want = [(128 - 255 * mu) / (255 * sd) for mu, sd in zip((0.48145466, 0.4578275, 0.40821073),
                                                             (0.26862954, 0.26130258, 0.27577711), strict=True)]
    torch.testing.assert_close(px[:, :, 3, 5], torch.tensor([want] * 6))
    big = m.to_pixels(torch.full((1, 2, 20, 20, 3), 128, dtype=torch.uint8))
    assert big.shape == (2, 3, 8, 8)
    torch.testing.assert_close(big, px[:2])
    # 16 -> 8 px is antialiased bilinear, as PIL's BILINEAR resize (an independent
    # implementation): stripes 0 0 255 255 ... come out 36 191 64 191 64 191 64 219, where
    # plain bilinear sampling would give 0 255 0 255 ...
    from PIL import Image

    stripes = np.tile(np.array([0, 0, 255, 255], np.uint8), (16, 4))
    pil = np.asarray(Image.fromarray(stripes).resize((8, 8), Image.BILINEAR)).astype(np.float32)
    half = m.to_pixels(torch.from_numpy(stripes)[None, None, :, :, None].expand(1, 1, 16, 16, 3).float())
    half = half[0, 0] * STD[0] + MEAN[0]
    assert half.shape == (8, 8) and pil[0].tolist() == [36, 191, 64, 191, 64, 191, 64, 219]
    assert float((half - torch.from_numpy(pil)).abs().max()) < 0.6
    # the backbone's own normalisation constants, where its preprocess config gives them
    import copy

    own = copy.deepcopy(clip)
    own.visual.preprocess_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    px_own = FineCLIPER(ModelConfig(backbone="tiny", pretrained=None), LABELS, clip=own, tokenizer=tokenizer).to_pixels(x)
    torch.testing.assert_close(px_own[0, :, 0, 0], torch.full((3,), (128 - 127.5) / 63.75))
    for bad in (torch.zeros(2, 8, 8, 3), torch.zeros(1, 2, 8, 8, 4)):
        with pytest.raises(ValueError, match=r"expected images \[B, T, H, W, 3\], got"):
            m.to_pixels(bad)


def test_feature_standardisation_by_hand(clip: torch.nn.Module) -> None:
    """``standardize_features`` on 6-d features (the embedding width) that are zero but for
    the first two: clips (1, 2) and (3, 6) -> batch mean (2, 4), variance (1, 4) -> (-1, -1),
    (1, 1) before the L2 norm; running mean 0.1 x (2, 4), running variance 0.9 + 0.1 x (2, 8)
    (unbiased); a 1-clip training batch and evaluation use those running statistics."""
    m = build(clip, labels=["a", "b"], use_parsing=False, use_landmarks=False, use_captions=False,
              standardize_features=True)

    def pad(rows: list[list[float]]) -> torch.Tensor:
        return F.pad(torch.tensor(rows), (0, EMBED - 2))[:, None, :]

    feats = {"video": pad([[1.0, 2.0], [3.0, 6.0]])}
    m.encode_levels = lambda inputs: feats
    m.descriptor_features = lambda: (torch.eye(2, EMBED), torch.eye(2, EMBED))
    dummy = torch.zeros(2, 1, 8, 8, 3)
    m.train()
    out = m(frames=dummy)
    h = 1 / math.sqrt(2)
    torch.testing.assert_close(out.level_features["video"][:, :2], torch.tensor([[-h, -h], [h, h]]),
                               atol=1e-5, rtol=0)
    assert not out.level_features["video"][:, 2:].any()
    norm = m.feature_norms["video"]
    torch.testing.assert_close(norm.running_mean[:2], torch.tensor([0.2, 0.4]))
    torch.testing.assert_close(norm.running_var, torch.tensor([1.1, 1.7, 0.9, 0.9, 0.9, 0.9]))
    expect = torch.tensor([(1 - 0.2) / math.sqrt(1.1 + 1e-5), (2 - 0.4) / math.sqrt(1.7 + 1e-5)])
    feats["video"] = pad([[1.0, 2.0]])
    one = m(frames=dummy[:1]).level_features["video"]
    torch.testing.assert_close(one[:, :2], F.normalize(expect, dim=0)[None])
    torch.testing.assert_close(norm.running_mean[:2], torch.tensor([0.2, 0.4]))  # not updated by it
    m.eval()
    torch.testing.assert_close(m(frames=dummy[:1]).level_features["video"], one)
    state = m.tunable_state()
    assert state["feature_norms.video.running_mean"] is norm.running_mean
    assert state["feature_norms.video.running_var"] is norm.running_var
    assert not any(k.endswith(("num_batches_tracked", ".weight", ".bias")) and k.startswith("feature_norms")
                   for k in state)  # statistics only: no affine weights


def test_parameter_counts_and_checkpoint_state_by_hand(clip: torch.nn.Module) -> None:
    """Width 8, 2 blocks: a bottleneck of h units has 8 h + h + 8 h + 8 weights. Video: h = 2
    (0.25 x 8), three per block, and the 4 x 8 temporal embedding: 2 x 3 x 42 + 32 = 284.
    Parsing / landmarks: h = 1 (0.104 x 8 rounded), two per block: 2 x 2 x 25 = 100. Text
    branches: h = 1 (0.156 x 8), one per text block: 2 x 25 = 50."""
    from dfer.methods.fineclipper import count_parameters

    m = build(clip)
    counts = count_parameters(m)
    frozen = sum(p.numel() for p in clip.parameters())
    assert counts == {"vision_adapters.video": 284, "vision_adapters.parsing": 100, "vision_adapters.landmarks": 100,
                      "pos_adapter": 50, "neg_adapter": 50, "caption_adapter": 50, "fusion_logits": 3,
                      "log_logit_scale": 1, "tunable_total": 638, "frozen_backbone": frozen}
    assert not m.clip.training and all(not p.requires_grad for p in m.clip.parameters())
    torch.testing.assert_close(m.log_logit_scale, torch.tensor([math.log(50.0)]))
    assert m.fusion_logits.tolist() == [0.0, 0.0, 0.0] and m.fusion_logits.requires_grad
    # one of the two per-block vision adapters off: video 2 x 2 x 42 + 32, middle 2 x 1 x 25
    for off in ("spatial_adapter", "mlp_adapter"):
        part = build(clip, **{off: False})
        c = count_parameters(part)
        assert (c["vision_adapters.video"], c["vision_adapters.parsing"], c["vision_adapters.landmarks"]) == (200, 50, 50)
        block = part.vision_adapters["video"].blocks[0]
        assert (block.spatial is None) is (off == "spatial_adapter") and (block.mlp is None) is (off == "mlp_adapter")
    # shared middle adapters; our attention temporal module (4 heads of 2 units: at most 2)
    shared_model = build(clip, share_mid_adapters=True, temporal="attention", temporal_heads=4)
    shared = count_parameters(shared_model)
    assert shared["vision_adapters.mid"] == 100 and "vision_adapters.parsing" not in shared
    mid = shared_model.vision_adapters["mid"]
    assert shared_model.adapter_set("parsing") is mid and shared_model.adapter_set("landmarks") is mid
    assert shared_model.adapter_set("video") is shared_model.vision_adapters["video"]
    assert build(clip).adapter_set("parsing") is not build(clip).adapter_set("landmarks")
    one_mid = build(clip, share_mid_adapters=True, use_landmarks=False)
    assert set(one_mid.vision_adapters) == {"video", "mid"}  # shared even when one level is on
    assert one_mid.adapter_set("parsing") is one_mid.vision_adapters["mid"]
    # 2 x (3 bottlenecks of 2 units: 126) + per block: down 8x2+2, frame table 4 x 2, attention 2 x 6 + 6 +
    # 2 x 2 + 2, up 2 x 8 + 8 -> 2 x (84 + 18 + 8 + 24 + 24) = 316; no AIM temporal embedding
    assert shared["vision_adapters.video"] == 2 * (2 * 42) + 2 * (18 + 8 + 24 + 24)
    # output-level text adapters: one bottleneck on the 6-d embedding (1 unit): 6 + 1 + 6 + 6
    out = count_parameters(build(clip, text_adapter="output"))
    assert (out["pos_adapter"], out["neg_adapter"], out["caption_adapter"]) == (19, 19, 19)
    assert "pixel_mean" not in m.state_dict() and "pixel_std" not in m.state_dict()  # not weights
    torch.testing.assert_close(m.pixel_mean.view(3), MEAN)
    torch.testing.assert_close(m.pixel_std.view(3), STD)
    fixed = build(clip, learn_logit_scale=False, learned_fusion=False)
    assert "log_logit_scale" not in fixed.tunable_parameters() and "fusion_logits" not in fixed.tunable_parameters()
    # a checkpoint's state loads into a fresh model, cast to the model's dtype
    state = {k: v.detach().clone().double() for k, v in m.tunable_state().items()}
    fresh = build(clip, seed=40)
    fresh.load_tunable_state_dict(state)
    for k, v in fresh.tunable_state().items():
        assert v.dtype == torch.float32 and torch.equal(v, m.tunable_state()[k]), k
    extra = {**state, **{f"x.{i}": torch.zeros(1) for i in range(6)}}
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['x.0', 'x.1', 'x.2', 'x.3', 'x.4'\]\.\.\.$"):
        fresh.load_tunable_state_dict(extra)
    five = {**state, **{f"x.{i}": torch.zeros(1) for i in range(5)}}  # five are listed whole
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['x.0', 'x.1', 'x.2', 'x.3', 'x.4'\]$"):
        fresh.load_tunable_state_dict(five)
    names = sorted(state)
    for n_missing, tail in ((5, ""), (6, "...")):
        partial = {k: v for k, v in state.items() if k not in names[:n_missing]}
        want = "missing " + str(names[:5]) + tail + ", unexpected []"
        with pytest.raises(ValueError) as err:
            fresh.load_tunable_state_dict(partial)
        assert str(err.value) == "checkpoint does not fit this model config: " + want
    fewer = dict(state)
    del fewer["fusion_logits"]
    with pytest.raises(ValueError, match=r"missing \['fusion_logits'\], unexpected \[\]$"):
        fresh.load_tunable_state_dict(fewer)
    wrong = {**state, "fusion_logits": torch.zeros(4)}
    with pytest.raises(ValueError, match=r"shape mismatch for fusion_logits: \(4,\) vs \(3,\)"):
        fresh.load_tunable_state_dict(wrong)
    counted = {**state, "feature_norms.video.num_batches_tracked": torch.tensor(3)}
    fresh.load_tunable_state_dict(counted)  # the BatchNorm counter is ignored
    sd = fresh.tunable_state_dict()
    assert set(sd) == set(state) and all(not v.requires_grad and v.device.type == "cpu" for v in sd.values())
    with pytest.raises(ValueError, match="^FineCLIPER needs at least one class label$"):
        fresh.set_labels([])


def test_encode_level_gives_the_per_frame_features_of_one_level(clip: torch.nn.Module) -> None:
    m = build(clip)
    x = images(2, 3, seed=31)
    with torch.no_grad():
        for level, temporal in (("video", "aim"), ("landmarks", "none")):
            got = m.encode_level(x, level)
            want = ref_visual(clip.visual, pixels_of(x), 3, m.vision_adapters[level], m.cfg.adapter_scale, temporal)
            assert got.shape == (2, 3, EMBED)
            torch.testing.assert_close(got, want.view(2, 3, EMBED), atol=1e-5, rtol=1e-4)


def test_a_backbone_without_its_tokenizer_is_not_used(clip: torch.nn.Module) -> None:
    """Given a backbone but no tokenizer, the model builds both from its config (tiny CLIP)."""
    own = FineCLIPER(ModelConfig(backbone="tiny", pretrained=None), LABELS, clip=clip)
    assert own.clip is not clip and own.clip.visual.transformer.width == 64
    assert own.tokenizer(["a"]).shape == (1, 77)


def test_predict_proba_restores_the_training_mode(clip: torch.nn.Module) -> None:
    m = build(clip, use_captions=False)
    x = images(1, 2, seed=30)
    m.train()
    probs = m.predict_proba(frames=x, parsing=x, landmarks=x)
    assert m.training and not m.clip.training
    m.eval()
    torch.testing.assert_close(probs, torch.softmax(m(frames=x, parsing=x, landmarks=x).logits, dim=-1))
    assert not m.training
    m.predict_proba(frames=x, parsing=x, landmarks=x)
    assert not m.training
