"""The text encoder's embedding entry point (prompt learners): token embeddings + EOT positions.

Expected values come from open_clip's own ``encode_text`` (an independent implementation) and,
for a learnable context, from a float64 numpy transformer written out in this file.
"""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

from dfer.model.adapters import TextAdapterStack
from dfer.model.config import TINY_CLIP_CFG
from dfer.model.text import encode_text, encode_text_embeddings

TEXTS = ["an ID photo of x x x x.", "a smiling mouth, raised cheeks, wrinkled eyes, and arched eyebrows.", "x"]


def _perturb(module: torch.nn.Module, seed: int, std: float = 0.05) -> None:
    """Move every weight off its init (unit LayerNorm gains and zero biases hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


@pytest.fixture(scope="module")
def tiny_clip() -> tuple[torch.nn.Module, open_clip.tokenizer.SimpleTokenizer]:
    torch.manual_seed(0)
    clip = open_clip.CLIP(**TINY_CLIP_CFG).eval()
    _perturb(clip, seed=1, std=0.02)
    return clip, open_clip.tokenizer.SimpleTokenizer(context_length=77)


def test_embedding_path_equals_open_clip_encode_text(tiny_clip) -> None:
    """``clip.token_embedding(tokens)`` with ``tokens.argmax(-1)`` gives open_clip's features,
    whether the caller passes all 77 positions or only those up to the last EOT."""
    clip, tok = tiny_clip
    tokens = tok(TEXTS)
    with torch.no_grad():
        expected = clip.encode_text(tokens)
        emb = clip.token_embedding(tokens)
        eot = tokens.argmax(-1)
        full = encode_text_embeddings(clip, emb, eot)
        short = encode_text_embeddings(clip, emb[:, : int(eot.max()) + 1], eot)
        by_tokens = encode_text(clip, tokens, None, 0.0)
    assert full.shape == (3, TINY_CLIP_CFG["embed_dim"])
    for got in (full, short, by_tokens):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert expected.std(0).min() > 1e-3  # the three texts give different features


def test_embedding_path_runs_the_same_adapters_as_the_token_path(tiny_clip) -> None:
    """Adapters inside the blocks act the same through both entry points (one block loop)."""
    clip, tok = tiny_clip
    tokens = tok(TEXTS)
    for position in ("attn", "mlp"):
        stack = TextAdapterStack(64, 2, 8, position)
        _perturb(stack, seed=3)
        with torch.no_grad():
            a = encode_text(clip, tokens, stack, 0.5)
            b = encode_text_embeddings(clip, clip.token_embedding(tokens), tokens.argmax(-1), stack, 0.5)
            frozen = clip.encode_text(tokens)
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
        assert (a - frozen).abs().max() > 1e-3


# ------------------------------------------------------------------------------ by hand

ONE_LAYER = {
    "embed_dim": 4,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 8, "layers": 1, "width": 8, "patch_size": 4, "head_width": 4},
    "text_cfg": {"context_length": 6, "vocab_size": 10, "width": 8, "heads": 2, "layers": 1},
}


def _numpy_text_features(sd: dict[str, np.ndarray], x: np.ndarray, eot: int, heads: int) -> np.ndarray:
    """CLIP's text tower written out in float64: pre-norm block with a causal mask, QuickGELU,
    final LayerNorm, the row at ``eot`` times the projection."""

    def ln(v: np.ndarray, pre: str) -> np.ndarray:
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-5) * sd[pre + ".weight"] + sd[pre + ".bias"]

    n, w = x.shape
    x = x + sd["positional_embedding"][:n]
    b = "transformer.resblocks.0."
    h = ln(x, b + "ln_1")
    qkv = h @ sd[b + "attn.in_proj_weight"].T + sd[b + "attn.in_proj_bias"]
    q, k, v = qkv[:, :w], qkv[:, w : 2 * w], qkv[:, 2 * w :]
    hd = w // heads
    out = np.zeros_like(h)
    for i in range(heads):
        s = slice(i * hd, (i + 1) * hd)
        scores = q[:, s] @ k[:, s].T / np.sqrt(hd)
        scores = scores + np.triu(np.full((n, n), -np.inf), 1)
        att = np.exp(scores - scores.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        out[:, s] = att @ v[:, s]
    x = x + out @ sd[b + "attn.out_proj.weight"].T + sd[b + "attn.out_proj.bias"]
    h = ln(x, b + "ln_2")
    f = h @ sd[b + "mlp.c_fc.weight"].T + sd[b + "mlp.c_fc.bias"]
    f = f / (1 + np.exp(-1.702 * f))
    x = x + f @ sd[b + "mlp.c_proj.weight"].T + sd[b + "mlp.c_proj.bias"]
    return ln(x, "ln_final")[eot] @ sd["text_projection"]


def test_learnable_context_changes_the_features_as_computed_by_hand() -> None:
    """A 2-token context replacing positions 1-2 of ``<sot> a b <eot>``: our features equal the
    numpy transformer's for two different contexts (which give different features), and the
    gradient reaches the context rows but not the padding after the EOT."""
    torch.manual_seed(0)
    clip = open_clip.CLIP(**ONE_LAYER).eval()
    _perturb(clip, seed=5, std=0.3)
    sd = {k: v.double().numpy() for k, v in clip.state_dict().items()}
    tokens = torch.tensor([[8, 3, 4, 9, 0, 0], [8, 5, 9, 0, 0, 0]])  # EOT (9) at 3 and 2
    eot = torch.tensor([3, 2])
    rng = np.random.default_rng(7)
    feats = []
    for _ in range(2):
        ctx = torch.tensor(rng.normal(0, 0.5, (2, 2, 8)), dtype=torch.float32, requires_grad=True)
        emb = clip.token_embedding(tokens).detach().requires_grad_(True)
        x = torch.cat([emb[:, :1], ctx, emb[:, 3:]], dim=1)
        got = encode_text_embeddings(clip, x, eot)
        x_np = x.detach().double().numpy()
        expected = np.stack([_numpy_text_features(sd, x_np[i], int(eot[i]), heads=2) for i in range(2)])
        np.testing.assert_allclose(got.detach().double().numpy(), expected, atol=1e-5, rtol=1e-5)
        got.sum().backward()
        assert ctx.grad is not None and ctx.grad.abs().min() > 0
        assert emb.grad[0, 4:].abs().max() == 0 and emb.grad[1, 3:].abs().max() == 0  # after the EOT
        feats.append(got.detach())
    assert (feats[0] - feats[1]).abs().max() > 1e-2


def test_embedding_path_refuses_bad_positions(tiny_clip) -> None:
    clip, tok = tiny_clip
    emb = clip.token_embedding(tok(["a"]))
    with pytest.raises(ValueError, match="EOT positions must lie in"):
        encode_text_embeddings(clip, emb, torch.tensor([77]))
    with pytest.raises(ValueError, match="one EOT position per sequence"):
        encode_text_embeddings(clip, emb, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"token embeddings \[N, L, D\]"):
        encode_text_embeddings(clip, emb[0], torch.tensor([1]))
