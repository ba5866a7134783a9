"""S2D (Chen et al., TAFFC 2024): a frozen static-FER ViT-B/16 turned into a video model by
landmark-aware Multi-View Complementary Prompters (MCPs) and Temporal-Modeling Adapters (TMAs),
plus the Emotion-Anchors self-distillation loss (SDL, :class:`SelfDistillation`).

Written from the paper and a reading of the public code (``MSA-LMC/S2D`` at ``e1b5e5d``,
``model_finetuning.py``, ``SDL.py``); equal to it to 1e-5 on the golden fixture
(``tests/fixtures/golden/s2d``, ``tests/test_method_s2d.py``). The frozen blocks are timm's own
``Block`` (timm 1.x; the public code used timm 0.6.13, same weights and arithmetic). Tokens are
frame-major ``[B*T, N, D]``; ``norm_i`` = ``prompt_norms[i]`` (LayerNorm, eps 1e-6)::

    x = patch_embed(frames)                      a = landmark_embed(landmark map)   # [BT, N, D]
    before block 0:   m = MCP_0(norm_0(x), norm_0(a));  x = x + TMA_0(norm_0(x)) + m;  a = m
                      x = [cls; x] + pos_embed;  x[frame t] += temporal_embedding[t]  (every token)
    before block i>0: n = norm_{i-1}(x)[patches];  m = MCP_i(n, norm_0(a))
                      x[patches] = x[patches] + TMA_i(n) + m;  a = m   (the previous MCP output)
    x = block_i(x)
    ... -> ln_post -> CLS per frame -> mean over frames -> dropout -> Linear      (logits)

    MCP(f, l) = W_out( fovea(W_f f) + W_l l )        W_f, W_l: D -> 8, W_out: 8 -> D
    fovea(z) = softmax_positions(z * sharpness) * z  per channel, sharpness learnable (init 10)
    TMA(x)   = S(LN(T(x)))                           LN eps 1e-5
    T: per patch across frames: W_2 MHSA_8heads(gelu(W_1 x)), D -> D/4 -> D, no skip
    S: W_2 gelu(W_1 x), D -> D/4 -> D, no skip

``prompt_norms[depth-1]`` is never used (the public loop reads ``prompt_norms[i-1]``) and still
counts as tunable, as in the public code. Every ``nn.Linear`` is initialised trunc-normal(0.02)
with zero bias (so the TMAs are not zero at step 0); the MCP projections (1x1 convolutions in
the public code) xavier-uniform with PyTorch's default bias; the landmark embedding PyTorch's
default. Public checkpoints (the AffectNet static model, fine-tuned video models) load through
:func:`load_static_checkpoint` / :func:`from_public_state_dict`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dfer.methods.output import LogitsOutput
from dfer.methods.specs.s2d import SDL_SCHEDULE, S2DConfig
from dfer.model.pixels import frames_to_images

log = logging.getLogger(__name__)

__all__ = ["SDL_SCHEDULE", "S2D", "S2DConfig", "S2DOutput", "SelfDistillation", "load_static_checkpoint"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _trunc_normal(linear: nn.Linear) -> nn.Linear:
    from timm.layers import trunc_normal_

    trunc_normal_(linear.weight, std=0.02)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


class MultiViewPrompter(nn.Module):
    """One MCP: frame tokens through a bottleneck with the Fovea, plus landmark tokens through
    their own bottleneck, summed and projected back to the width (public ``Prompt_block``
    without its TMA; its 1x1 convolutions are these token-wise Linears)."""

    def __init__(self, dim: int, hidden: int, sharpness: float) -> None:
        super().__init__()
        self.frame_proj = nn.Linear(dim, hidden)
        self.landmark_proj = nn.Linear(dim, hidden)
        self.out_proj = nn.Linear(hidden, dim)
        for lin in (self.frame_proj, self.landmark_proj, self.out_proj):
            nn.init.xavier_uniform_(lin.weight)  # bias: PyTorch's default, as the public conv's
        self.sharpness = nn.Parameter(torch.full((1,), float(sharpness)))

    def fovea(self, z: torch.Tensor) -> torch.Tensor:
        """``z * softmax(z * sharpness)`` with the softmax over positions, per channel."""
        return torch.softmax(z * self.sharpness, dim=1) * z

    def forward(self, frame_tokens: torch.Tensor, landmark_tokens: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.fovea(self.frame_proj(frame_tokens)) + self.landmark_proj(landmark_tokens))


class TemporalModelingAdapter(nn.Module):
    """TMA: attention across frames for every patch in a bottleneck, LayerNorm, then a spatial
    bottleneck; no skip connections (the caller adds the result to the tokens)."""

    def __init__(self, dim: int, hidden: int, heads: int) -> None:
        super().__init__()
        from timm.models.vision_transformer import Attention

        self.t_down = _trunc_normal(nn.Linear(dim, hidden))
        self.t_attn = Attention(hidden, num_heads=heads, qkv_bias=False)
        _trunc_normal(self.t_attn.qkv)
        _trunc_normal(self.t_attn.proj)
        self.t_up = _trunc_normal(nn.Linear(hidden, dim))
        self.norm = nn.LayerNorm(dim)  # eps 1e-5: a plain nn.LayerNorm in the public code
        self.s_down = _trunc_normal(nn.Linear(dim, hidden))
        self.s_up = _trunc_normal(nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        bt, n, d = x.shape
        b = bt // num_frames
        h = x.view(b, num_frames, n, d).transpose(1, 2).reshape(b * n, num_frames, d)
        h = self.t_up(self.t_attn(F.gelu(self.t_down(h))))
        h = h.view(b, n, num_frames, d).transpose(1, 2).reshape(bt, n, d)
        return self.s_up(F.gelu(self.s_down(self.norm(h))))


@dataclass
class S2DOutput(LogitsOutput):
    logits: torch.Tensor  # [B, K]
    #: the head's input: mean over frames of the CLS features, after the head dropout (what
    #: the public model returns as ``feat`` and feeds to SDL; equal to the mean in eval mode)
    features: torch.Tensor  # [B, D]
    frame_features: torch.Tensor  # [B, T, D], CLS per frame after ln_post


#: frozen backbone parameters (the static model); everything else is tunable
FROZEN_PREFIXES = ("patch_embed.", "cls_token", "pos_embed", "blocks.")


class S2D(nn.Module):
    """S2D video classifier over ``num_classes`` classes (``labels`` fixes their order)."""

    def __init__(self, cfg: S2DConfig, labels: Sequence[str]) -> None:
        super().__init__()
        from timm.layers import PatchEmbed, trunc_normal_
        from timm.models.vision_transformer import Block

        cfg.validate()
        if not labels:
            raise ValueError("S2D needs at least one class label")
        self.cfg = cfg
        self.labels = [str(x) for x in labels]
        d, g = cfg.embed_dim, cfg.grid
        norm = partial(nn.LayerNorm, eps=1e-6)
        # --- frozen static ViT (timm layout) -------------------------------------------------
        self.patch_embed = PatchEmbed(img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=3, embed_dim=d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, g * g + 1, d))
        self.blocks = nn.ModuleList(
            Block(d, cfg.num_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(cfg.depth)
        )
        for blk in self.blocks:
            for mod in blk.modules():
                if isinstance(mod, nn.Linear):
                    _trunc_normal(mod)
        # --- tuned ------------------------------------------------------------------------------
        self.landmark_embed = nn.Linear(cfg.landmark_channels, d)  # a 1x1 conv on the map
        self.prompt_norms = nn.ModuleList(norm(d) for _ in range(cfg.depth))
        self.prompters = nn.ModuleList(
            MultiViewPrompter(d, cfg.prompt_hidden, cfg.fovea_sharpness) for _ in range(cfg.depth)
        )
        # the static image model (temporal: false) has neither
        self.tmas = nn.ModuleList(
            TemporalModelingAdapter(d, cfg.adapter_hidden, cfg.adapter_heads) for _ in range(cfg.depth)
        ) if cfg.temporal else None
        self.temporal_embedding = nn.Parameter(torch.zeros(1, cfg.num_frames, d)) if cfg.temporal else None
        self.ln_post = norm(d)
        self.head_dropout = nn.Dropout(cfg.head_dropout)
        self.head = _trunc_normal(nn.Linear(d, len(self.labels)))
        for p in (self.cls_token, self.pos_embed, self.temporal_embedding):
            if p is not None:
                trunc_normal_(p, std=0.02)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        for name, p in self.named_parameters():
            p.requires_grad_(cfg.tune_backbone or not name.startswith(FROZEN_PREFIXES))
        #: the training epoch the SDL weight follows (set by the trainer: MethodSpec.on_epoch)
        self.sdl_epoch: int | None = None
        self.sdl = SelfDistillation(len(self.labels), d, cfg.sdl_top_k, cfg.sdl_queue_size) if cfg.sdl else None
        if cfg.pretrained is not None:
            load_static_checkpoint(self, cfg.pretrained)

    @property
    def image_size(self) -> int:
        """Side of the frames the model reads (the trainer resizes to it)."""
        return self.cfg.img_size

    def train(self, mode: bool = True) -> S2D:
        super().train(mode)
        if not self.cfg.tune_backbone:
            for mod in (self.patch_embed, self.blocks):  # frozen backbone: never in training mode
                mod.eval()
        return self

    # ----------------------------------------------------------------------------- forward
    def _add_positions(self, x: torch.Tensor, b: int, t: int) -> torch.Tensor:
        """CLS first, ``pos_embed`` on every token, then frame t's temporal embedding on every
        token (the CLS too) of frame t."""
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        if self.temporal_embedding is None:
            return x
        n, d = x.shape[1:]
        return (x.view(b, t, n, d) + self.temporal_embedding.view(1, t, 1, d)).view(b * t, n, d)

    def forward_pixels(self, pixels: torch.Tensor, landmarks: torch.Tensor) -> S2DOutput:
        """Logits of ImageNet-normalised pixels ``[B, T, 3, H, W]`` and landmark feature maps
        ``[B, T, C_l, G, G]`` (G = the patch grid, 14 for ViT-B/16 at 224 px)."""
        cfg = self.cfg
        if pixels.ndim != 5 or pixels.shape[2] != 3:
            raise ValueError(f"expected pixels [B, T, 3, H, W], got {tuple(pixels.shape)}")
        b, t = pixels.shape[:2]
        if t != cfg.num_frames:
            raise ValueError(f"S2D takes clips of s2d.num_frames={cfg.num_frames} frames, got {t}")
        want = (b, t, cfg.landmark_channels, cfg.grid, cfg.grid)
        if tuple(landmarks.shape) != want:
            raise ValueError(f"expected landmark features {list(want)} [B, T, C_l, G, G], got {list(landmarks.shape)}")
        x = self.patch_embed(pixels.reshape(b * t, *pixels.shape[2:]))
        a = self.landmark_embed(landmarks.reshape(b * t, cfg.landmark_channels, -1).transpose(1, 2))
        for i, blk in enumerate(self.blocks):
            if i == 0:
                xn = self.prompt_norms[0](x)
                m = self.prompters[0](xn, self.prompt_norms[0](a))
                x = x + (self.tmas[0](xn, t) if self.tmas is not None else 0) + m
                x = self._add_positions(x, b, t)
            else:
                xn = self.prompt_norms[i - 1](x)[:, 1:]
                m = self.prompters[i](xn, self.prompt_norms[0](a))
                tma = self.tmas[i](xn, t) if self.tmas is not None else 0
                x = torch.cat([x[:, :1], x[:, 1:] + tma + m], dim=1)
            a = m
            x = blk(x)
        cls = self.ln_post(x)[:, 0].reshape(b, t, -1)
        feat = self.head_dropout(cls.mean(dim=1))
        return S2DOutput(logits=self.head(feat), features=feat, frame_features=cls)

    def forward(self, frames: torch.Tensor, landmark_features: torch.Tensor) -> S2DOutput:
        """Logits of decoded frames, uint8 (or 0..255) ``[B, T, H, W, 3]``, and landmark feature
        maps ``[B, T, C_l, G, G]`` (the batch key ``landmark_features``)."""
        b, t = frames.shape[:2]
        images = (frames_to_images(frames, self.cfg.img_size) - self.pixel_mean) / self.pixel_std
        return self.forward_pixels(images.view(b, t, *images.shape[1:]), landmark_features.float())

    def losses(
        self, out: S2DOutput, targets: torch.Tensor, epoch: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Cross-entropy (class indices, or soft targets ``[B, K]`` after mixup: SoftTargetCE;
        ``label_smoothing``); plus ``sdl_weight(epoch) * BCE(logits, SDL soft targets)`` when SDL
        is on and the epoch known (``epoch``, else the trainer's ``sdl_epoch``). Soft targets come
        from the queues as they are; in training mode with ``sdl_update_queues`` the batch then
        enters them (``self.sdl.update``): under DDP ``out`` and ``targets`` are the global
        batch's (the registration's ``loss_fields``), so every process's queues stay equal."""
        ce = F.cross_entropy(out.logits, targets, label_smoothing=self.cfg.label_smoothing)
        result = {"loss": ce, "ce": ce}
        epoch = self.sdl_epoch if epoch is None else epoch
        if self.sdl is not None and epoch is not None:
            weight = sdl_weight(epoch, self.cfg.sdl_schedule)
            soft = self.sdl.soft_targets(out.features)
            sdl = weight * F.binary_cross_entropy_with_logits(out.logits, soft)
            result["sdl"] = sdl
            result["loss"] = ce + sdl
            if self.training and self.cfg.sdl_update_queues and targets.ndim == 1:
                self.sdl.update(out.features.detach(), out.logits.detach(), targets)
        return result

    def tunable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}


# --------------------------------------------------------------------------------------- SDL


def sdl_weight(epoch: int, schedule: Sequence[Sequence[float]] = SDL_SCHEDULE) -> float:
    """SDL loss weight at ``epoch``: the weight of the last ``[first epoch, weight]`` reached
    (public: 0 / 0.01 / 0.1 / 0.5 / 1 at epochs < 30 / < 50 / < 60 / < 80 / >= 80)."""
    weight = 0.0
    for start, w in schedule:
        if epoch >= start:
            weight = float(w)
    return weight


class SelfDistillation(nn.Module):
    """Emotion anchors (public ``SDL.py``): per-class queues of ``size`` features with the
    class probabilities the model gave them; a sample's soft target is the probabilities of
    its ``k`` most similar queue entries of every class, weighted by cosine similarity::

        p = sum_{c, k} s_{c,k} P[c, idx_{c,k}] / sum_{c, k} s_{c,k}

    Queues start as ``torch.rand`` (as public) and are buffers (saved with the model).
    """

    def __init__(self, num_classes: int, dim: int = 768, k: int = 2, size: int = 16) -> None:
        super().__init__()
        self.k = k
        self.register_buffer("queue", torch.rand(num_classes, size, dim))
        self.register_buffer("probe", torch.rand(num_classes, size, num_classes))

    @torch.no_grad()
    def soft_targets(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` soft targets of features ``x`` ``[B, dim]``."""
        sims = torch.einsum("bd,csd->bcs", F.normalize(x.float(), dim=-1), F.normalize(self.queue, dim=-1))
        top, idx = sims.topk(self.k, dim=-1)  # [B, C, k]
        classes = torch.arange(self.queue.shape[0], device=x.device)[None, :, None]
        stored = self.probe[classes, idx]  # [B, C, k, C]
        return (top[..., None] * stored).sum(dim=(1, 2)) / top.sum(dim=(1, 2))[:, None]

    @torch.no_grad()
    def update(self, x: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """First in, first out: each sample (in batch order) enters its true class's queue with
        ``softmax(logits)``, the oldest entry leaves."""
        prob = torch.softmax(logits.float(), dim=-1)
        size = self.queue.shape[1]
        for c in labels.unique().tolist():
            sel = labels == c
            self.queue[c] = torch.cat([self.queue[c], x[sel].float()])[-size:]
            self.probe[c] = torch.cat([self.probe[c], prob[sel]])[-size:]


# ------------------------------------------------------------------------- public checkpoints

#: public S2D names -> ours, applied in order to each key (``(\d+)`` = block index)
_PUBLIC_RENAMES = (
    (r"^patch_embed_prompt\.proj\.", "landmark_embed."),
    (r"^prompt_blocks\.(\d+)\.conv0_0\.", r"prompters.\1.frame_proj."),
    (r"^prompt_blocks\.(\d+)\.conv0_1\.", r"prompters.\1.landmark_proj."),
    (r"^prompt_blocks\.(\d+)\.conv1x1\.", r"prompters.\1.out_proj."),
    (r"^prompt_blocks\.(\d+)\.fovea\.smooth$", r"prompters.\1.sharpness"),
    (r"^prompt_blocks\.(\d+)\.TMA\.T_Adapter\.D_fc1\.", r"tmas.\1.t_down."),
    (r"^prompt_blocks\.(\d+)\.TMA\.T_Adapter\.attn\.", r"tmas.\1.t_attn."),
    (r"^prompt_blocks\.(\d+)\.TMA\.T_Adapter\.D_fc2\.", r"tmas.\1.t_up."),
    (r"^prompt_blocks\.(\d+)\.TMA\.norm\.", r"tmas.\1.norm."),
    (r"^prompt_blocks\.(\d+)\.TMA\.S_Adapter\.D_fc1\.", r"tmas.\1.s_down."),
    (r"^prompt_blocks\.(\d+)\.TMA\.S_Adapter\.D_fc2\.", r"tmas.\1.s_up."),
    (r"^head\.fc_cls\.", "head."),
    (r"^norm\.", "ln_post."),  # timm's final norm (and the static S2D's, renamed by its loader)
)


def from_public_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Public S2D (or timm ViT) weights in this module's names; the 1x1 convolution weights
    ``[out, in, 1, 1]`` become Linear weights ``[out, in]``. Keys already in our names pass."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        for pattern, repl in _PUBLIC_RENAMES:
            if re.match(pattern, new):
                new = re.sub(pattern, repl, new)
                break
        if new.endswith(".weight") and value.ndim == 4 and new.startswith(("landmark_embed.", "prompters.")):
            value = value.reshape(value.shape[0], value.shape[1])
        out[new] = value
    return out


def _read_state(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    """``(state dict, class labels)`` of a checkpoint file; the labels only from a dfer
    checkpoint (its metadata names them), None otherwise."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"s2d.pretrained: checkpoint file {p} does not exist")
    labels = None
    if p.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        from dfer.core.artifacts import META_KEY

        with safe_open(str(p), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(META_KEY)
        if raw:
            import json

            meta = json.loads(raw)
            if meta.get("method") not in (None, "s2d"):
                raise ValueError(f"s2d.pretrained: {p} is a checkpoint of method {meta.get('method')!r}, not S2D")
            labels = list(meta["labels"]) if isinstance(meta.get("labels"), list) else None
        state: Any = load_file(str(p), device="cpu")
    else:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    for key in ("model_state_dict", "model", "state_dict"):  # public loader's keys, then timm's
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state:
        raise ValueError(f"s2d.pretrained: {p} holds no state dict (got {type(state).__name__})")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}, labels


def load_static_checkpoint(model: S2D, path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Load a static ViT-B/16 checkpoint file into ``model``: timm's layout (``patch_embed``,
    ``cls_token``, ``pos_embed``, ``blocks.*``, ``norm`` -> ``ln_post``) or a public S2D one
    (also MCPs, prompt norms, maybe TMAs and a head), as safetensors or ``torch.save``
    (bare, or under ``model`` / ``model_state_dict`` / ``state_dict``, ``module.`` prefixes),
    or a dfer S2D checkpoint (a static run's: ``static_from``), whose SDL queues are dropped
    and whose head rows are put in this model's class order by name (left at its
    initialisation when the class names differ: a head never scores one class as another).

    Every frozen backbone weight must be there with its shape (a run must never train on a
    backbone that came out random); tunable weights present are loaded, absent ones keep their
    initialisation. As the public loader: ``landmark*`` keys (its landmark network) are dropped,
    and a landmark embedding of another channel count (another landmark source) or a head of
    another class count is left at its initialisation. Timm's classifier (``head.weight`` of
    another width) too. Anything else unknown or misshapen is an error naming the file.
    Returns ``{"loaded": [...], "skipped": [...], "initialised": [...]}``.
    """
    raw, labels = _read_state(path)
    state = from_public_state_dict({k: v for k, v in raw.items() if "landmark" not in k or labels is not None})
    state = {k: v for k, v in state.items() if not k.startswith("sdl.")}  # a dfer checkpoint's queues
    own = model.state_dict()
    skipped = []
    if labels is not None and "head.weight" in state:
        if sorted(labels) == sorted(model.labels) and len(labels) == len(model.labels):
            order = torch.tensor([labels.index(c) for c in model.labels])
            state["head.weight"], state["head.bias"] = state["head.weight"][order], state["head.bias"][order]
        else:
            skipped += ["head.bias", "head.weight"]
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
    for key in list(state):
        if key in own and state[key].shape != own[key].shape and key.startswith(
                ("landmark_embed.weight", "head.", "temporal_embedding")):
            skipped.append(key)
            del state[key]
    missing_backbone = sorted(k for k in own if k.startswith(FROZEN_PREFIXES) and k not in state)
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if missing_backbone or unexpected or wrong:
        raise ValueError(
            f"s2d.pretrained: {path} does not fit the configured ViT (s2d.img_size / patch_size / "
            f"embed_dim / depth): missing backbone weights {missing_backbone[:5]}, unexpected "
            f"{unexpected[:5]}, wrong shape {wrong[:5]}"
        )
    model.load_state_dict(state, strict=False)
    report = {"loaded": sorted(state), "skipped": sorted(skipped),
              "initialised": sorted(k for k in own if k not in state)}
    log.info("s2d: loaded %d tensors from %s (%d left at init, %d skipped)", len(state), path,
             len(report["initialised"]), len(skipped))
    return report
