"""A small transformer over per-frame features that returns a learned class token: a clip feature.

DFER-CLIP's temporal model (Zhao & Patras, BMVC 2023; public ``models/Temporal_Model.py``,
``Temporal_Transformer_Cls``), written here from its description. CLIPER's ``aggregation:
temporal`` uses the same module. For frame features ``f`` ``[B, T, D]``::

    x = [cls; f_1 .. f_T] + pos[:T+1]               # cls [1,1,D], pos [1, max_frames+1, D], both N(0,1)
    for each layer:
        x = x + W_o MHA(LN(x))                      # pre-norm; q,k,v from one bias-free Linear,
                                                    # heads x head_dim (8 x 64), softmax(q k^T / sqrt(64))
        x = x + W_2 gelu_tanh(W_1 LN(x))            # D -> mlp_dim -> D, tanh-approximate GELU
    return x[:, 0]                                  # the class token, no final LayerNorm

The output projection ``W_o`` exists whenever the heads do not already give back ``D`` in a
single head of width ``D`` (the public code's ``project_out`` rule); no dropout (public rate 0).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TemporalLayer(nn.Module):
    """One pre-norm transformer layer: multi-head self-attention, then the tanh-GELU MLP."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_dim: int) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj: nn.Module = nn.Identity() if heads == 1 and head_dim == dim else nn.Linear(inner, dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        # q, k, v are consecutive thirds of the qkv output, each laid out head-major (h, d)
        qkv = self.qkv(self.attn_norm(x)).view(b, n, 3, self.heads, self.head_dim)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # [B, H, N, d]
        a = F.scaled_dot_product_attention(q, k, v)  # scale 1 / sqrt(head_dim)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_norm(x)), approximate="tanh"))


class ClsTemporalTransformer(nn.Module):
    """Frame features ``[B, T, D]`` -> clip feature ``[B, D]`` (the class token's output)."""

    def __init__(
        self, dim: int, depth: int = 1, heads: int = 8, head_dim: int = 64, mlp_dim: int = 1024,
        max_frames: int = 16,
    ) -> None:
        super().__init__()
        if depth < 1 or heads < 1 or head_dim < 1 or mlp_dim < 1 or max_frames < 1:
            raise ValueError(
                f"temporal transformer sizes must be >= 1 (depth {depth}, heads {heads}, "
                f"head_dim {head_dim}, mlp_dim {mlp_dim}, max_frames {max_frames})"
            )
        self.max_frames = max_frames
        # N(0, 1) like the public ``torch.randn``: the class token and the position table
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, max_frames + 1, dim))
        self.layers = nn.ModuleList(TemporalLayer(dim, heads, head_dim, mlp_dim) for _ in range(depth))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 3:
            raise ValueError(f"expected frame features [B, T, D], got {tuple(frames.shape)}")
        b, t, _ = frames.shape
        if t > self.max_frames:
            raise ValueError(f"{t} frames exceed the temporal transformer's max_frames={self.max_frames}")
        x = torch.cat([self.cls_token.expand(b, -1, -1).to(frames.dtype), frames], dim=1)
        x = x + self.pos_embedding[:, : t + 1].to(frames.dtype)
        for layer in self.layers:
            x = layer(x)
        return x[:, 0]
