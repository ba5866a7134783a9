"""CLIPER (Li et al., ICME 2024) for video: multiple expression text descriptors (METD), a margin
loss plus a rarity-weighted fine-grained loss, and a CLIP image tower tuned in a second stage.

Written from the paper and a reading of the public static script (``muse1998/CLIPER`` at
``02a6713``, ``main_RAFDB_CLIPER.py``); the loss equals that script's on the golden fixture
(``tests/fixtures/golden/cliper``, ``tests/test_method_cliper.py``)::

    C x K prompts (K = 5 sub-descriptors per class), all "an ID photo of X X X X.";
    prompt k = K*c + j has its four "X" token embeddings replaced by learnable D[k] [4, D_text]
    (initialised randn / 1000) -> frozen CLIP text transformer, read at the EOT -> t_k
    frames -> CLIP ViT (CLIP mean/std) -> per-frame features -> aggregation -> v
    s[b, c, j] = cos(v_b, t_{K*c+j}) / 0.01
    prediction: argmax_c mean_j s[b, c, j]
    loss: see :func:`cliper_loss`

Only the static (RAF-DB) code is public. How the video version turns frame features into one
clip feature is not: ``aggregation: mean`` (default) averages the per-frame features,
``aggregation: temporal`` runs DFER-CLIP's class-token temporal transformer
(:class:`dfer.model.temporal.ClsTemporalTransformer`, the module DFER-CLIP uses). The published
video model has 88 M tunable parameters against 86.26 M static, which the temporal transformer
(2.11 M) would explain; which one CLIPER used is UNVERIFIED.

Training (public, static): stage 1, epochs 1-2, AdamW on the descriptors only; stage 2, a new
AdamW on the image tower only, the descriptors frozen (:meth:`CLIPER.parameter_groups`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from dfer.core.strict_config import StrictConfig
from dfer.manifests.labels import canonical_label
from dfer.methods.output import LogitsOutput
from dfer.model.backbone import Tokenizer, build_open_clip, image_mean_std
from dfer.model.pixels import frames_to_images
from dfer.model.temporal import ClsTemporalTransformer
from dfer.model.text import encode_text_embeddings

AGGREGATIONS = ("mean", "temporal")

#: the public script's value for a sub-descriptor no sample of the batch chose (``-1/99``)
ZERO_COUNT = -1.0 / 99.0


@dataclass
class CLIPERConfig(StrictConfig):
    """Everything that defines a CLIPER model; unknown keys are refused (:meth:`from_dict`)."""

    CONFIG_NOUN: ClassVar[str] = "cliper config key"

    #: open_clip architecture; the public script loads OpenAI's ViT-B/16 (QuickGELU)
    backbone: str = "ViT-B-16-quickgelu"
    pretrained: str | None = "openai"  #: open_clip tag or local file; null = random init
    model_cfg: dict[str, Any] | None = None  #: explicit open_clip config (tests, demo)
    init_seed: int = 0
    sub_descriptors: int = 5  #: K: learnable descriptors per class (public: 5)
    #: the prompt; each "X" is one learnable token (public: four)
    template: str = "an ID photo of X X X X."
    descriptor_init_std: float = 0.001  #: public: ``randn / 1000``
    temperature: float = 0.01  #: fixed: s = cos / temperature
    #: UNVERIFIED (video code not public): ``mean`` of the frame features, or ``temporal``:
    #: DFER-CLIP's class-token temporal transformer over them
    aggregation: str = "mean"
    temporal_layers: int = 1  #: ``aggregation: temporal`` only, as DFER-CLIP
    temporal_heads: int = 8
    temporal_head_dim: int = 64
    temporal_mlp_dim: int = 1024
    max_frames: int = 16

    def validate(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"cliper.aggregation must be one of {list(AGGREGATIONS)}, got {self.aggregation!r}")
        if self.sub_descriptors < 1:
            raise ValueError(f"cliper.sub_descriptors must be >= 1, got {self.sub_descriptors}")
        if self.temperature <= 0:
            raise ValueError(f"cliper.temperature must be > 0, got {self.temperature}")
        if "X" not in self.template:
            raise ValueError(f"cliper.template needs 'X' placeholders for the learnable tokens, got {self.template!r}")


@dataclass
class CLIPERLoss:
    """The loss of :func:`cliper_loss` and its parts (``margin_logits`` etc. for inspection)."""

    loss: torch.Tensor  # scalar
    margin_ce: torch.Tensor  # scalar, CE(margin_logits, y)
    fine: torch.Tensor  # scalar, mean(sample_weight * CE(fine_logits, 0))
    count_table: torch.Tensor  # [C, K] in-batch argmax counts, zeros -> -1/99
    sample_weight: torch.Tensor  # [B]
    margin_logits: torch.Tensor  # [B, C]
    fine_logits: torch.Tensor  # [B, 1 + (C-1) K], the positive first


def cliper_loss(s: torch.Tensor, y: torch.Tensor) -> CLIPERLoss:
    """CLIPER's training loss on similarities ``s`` ``[B, C, K]`` (already divided by the
    temperature) and labels ``y`` ``[B]`` (public ``main_RAFDB_CLIPER.py:226-258``, any C).

    - margin logits: ``max_j s[b, c, j]`` for every class except the true one, which gets
      ``min_j`` (its hardest sub-descriptor has to beat every other class's best one);
    - fine-grained logits, target 0: the true class's best sub-descriptor, then all K
      sub-descriptors of every other class (class-major, index order);
    - rarity weight of sample b with true class y and chosen sub-descriptor j* (its argmax):
      ``n = counts of j* over the batch's samples of class y`` with zeros set to -1/99,
      ``w_b = sum_j n[y, j] * softmax(1 / n[y, :])[j*] / n[y, j*]`` (no gradient: counts);
    - ``loss = CE(margin, y) + mean_b(w_b * CE(fine_b, 0))``.
    """
    if s.ndim != 3 or y.shape != s.shape[:1]:
        raise ValueError(f"expected s [B, C, K] and y [B], got {tuple(s.shape)} and {tuple(y.shape)}")
    b, c, k = s.shape
    rows = torch.arange(b, device=s.device)
    own = s[rows, y]  # [B, K], the true class's sub-descriptors
    own_max, chosen = own.max(dim=-1)
    with torch.no_grad():
        counts = torch.zeros(c, k, dtype=s.dtype, device=s.device)
        counts.index_put_((y, chosen), torch.ones_like(own_max), accumulate=True)
        table = torch.where(counts == 0, -1.0 / torch.full_like(counts, 99.0), counts)
        n_y = table[y]  # [B, K]
        pick = n_y.gather(1, chosen[:, None])[:, 0]
        weight = n_y.sum(dim=-1) * torch.softmax(1.0 / n_y, dim=-1).gather(1, chosen[:, None])[:, 0] / pick
    is_true = F.one_hot(y, c).bool()  # [B, C]
    margin = torch.where(is_true, s.min(dim=-1).values, s.max(dim=-1).values)
    others = s[~is_true].view(b, (c - 1) * k)  # boolean rows keep class order
    fine = torch.cat([own_max[:, None], others], dim=1)
    margin_ce = F.cross_entropy(margin, y)
    fine_ce = (weight * F.cross_entropy(fine, torch.zeros_like(y), reduction="none")).mean()
    return CLIPERLoss(
        loss=margin_ce + fine_ce, margin_ce=margin_ce, fine=fine_ce, count_table=table,
        sample_weight=weight, margin_logits=margin, fine_logits=fine,
    )


@dataclass
class CLIPEROutput(LogitsOutput):
    """One forward pass; ``logits`` (mean over sub-descriptors) is what predicts."""

    logits: torch.Tensor  # [B, C]
    similarities: torch.Tensor  # [B, C, K], cos / temperature
    video_features: torch.Tensor  # [B, E], aggregated, unnormalised
    frame_features: torch.Tensor  # [B, T, E]
    text_features: torch.Tensor  # [C*K, E], unnormalised


class CLIPER(nn.Module):
    """CLIPER for the classes ``labels`` (canonical names; the order is the caller's)."""

    def __init__(
        self,
        cfg: CLIPERConfig,
        labels: Sequence[str],
        clip: nn.Module | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        super().__init__()
        cfg.validate()
        if len(labels) < 2:
            raise ValueError("CLIPER needs at least two classes (its losses compare classes)")
        self.cfg = cfg
        self.labels = [canonical_label(x) for x in labels]
        if clip is None or tokenizer is None:
            clip, tokenizer = build_open_clip(cfg.backbone, cfg.pretrained, cfg.model_cfg, cfg.init_seed)
        self.clip = clip
        self.tokenizer = tokenizer
        for p in clip.parameters():
            p.requires_grad_(False)
        for p in clip.visual.parameters():  # stage 2 tunes the image tower; the text side never
            p.requires_grad_(True)
        self.image_size = int(clip.visual.image_size[0])
        embed_dim = int(clip.visual.output_dim)
        width = int(clip.token_embedding.weight.shape[1])

        tokens = tokenizer([cfg.template])
        x_id = int(tokenizer(["X"])[0, 1])
        slots = (tokens[0] == x_id).nonzero()[:, 0]
        n = int(slots.numel())
        if n == 0 or int(slots[-1] - slots[0]) != n - 1:
            raise ValueError(f"cliper.template {cfg.template!r} needs one run of adjacent 'X' tokens")
        self.slot_start, self.slot_count = int(slots[0]), n
        prompts = len(self.labels) * cfg.sub_descriptors
        self.register_buffer("prompt_tokens", tokens.expand(prompts, -1).clone(), persistent=False)
        self.register_buffer("eot_index", self.prompt_tokens.argmax(dim=-1), persistent=False)
        #: prompt k = K * class + j (class-major), as the public ``outputs.view(B, 7, 5)``
        self.descriptors = nn.Parameter(torch.randn(prompts, n, width) * cfg.descriptor_init_std)
        self.temporal = (
            ClsTemporalTransformer(embed_dim, cfg.temporal_layers, cfg.temporal_heads, cfg.temporal_head_dim,
                                   cfg.temporal_mlp_dim, cfg.max_frames)
            if cfg.aggregation == "temporal" else None
        )
        mean, std = image_mean_std(clip)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)

    # ----------------------------------------------------------------------------- text side
    def prompt_embeddings(self) -> torch.Tensor:
        """``[C*K, L, D]``: the template's token embeddings with the "X" slots replaced."""
        emb = self.clip.token_embedding(self.prompt_tokens)
        a, n = self.slot_start, self.slot_count
        return torch.cat([emb[:, :a], self.descriptors.to(emb.dtype), emb[:, a + n :]], dim=1)

    def text_features(self) -> torch.Tensor:
        """``[C*K, E]`` descriptor features (unnormalised), through the frozen text transformer."""
        return encode_text_embeddings(self.clip, self.prompt_embeddings(), self.eot_index)

    # ----------------------------------------------------------------------------- video side
    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """Per-frame features ``[B, T, E]`` of CLIP-normalised pixels ``[B, T, 3, S, S]``."""
        b, t = pixels.shape[:2]
        return self.clip.visual(pixels.reshape(b * t, *pixels.shape[2:])).view(b, t, -1)

    def aggregate(self, frames: torch.Tensor) -> torch.Tensor:
        """Clip feature ``[B, E]`` of frame features ``[B, T, E]`` (``aggregation``)."""
        return frames.mean(dim=1) if self.temporal is None else self.temporal(frames)

    def forward_pixels(self, pixels: torch.Tensor) -> CLIPEROutput:
        if pixels.ndim != 5 or pixels.shape[2] != 3:
            raise ValueError(f"expected pixels [B, T, 3, H, W], got {tuple(pixels.shape)}")
        frames = self.encode_frames(pixels)
        video = self.aggregate(frames)
        text = self.text_features()
        cos = F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).T
        s = (cos / self.cfg.temperature).view(video.shape[0], len(self.labels), self.cfg.sub_descriptors)
        return CLIPEROutput(logits=s.mean(dim=-1), similarities=s, video_features=video,
                            frame_features=frames, text_features=text)

    def forward(self, frames: torch.Tensor) -> CLIPEROutput:
        """The model on decoded frames, uint8 (or 0..255) ``[B, T, H, W, 3]``."""
        b, t = frames.shape[:2]
        images = (frames_to_images(frames, self.image_size) - self.pixel_mean) / self.pixel_std
        return self.forward_pixels(images.view(b, t, *images.shape[1:]))

    def losses(self, out: CLIPEROutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = cliper_loss(out.similarities, targets)
        return {"loss": parts.loss, "margin_ce": parts.margin_ce, "fine": parts.fine}

    # ----------------------------------------------------------------------------- parameters
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``descriptors`` (stage 1), ``image`` (stage 2) and, with ``aggregation: temporal``,
        ``temporal`` (trained with the image tower in stage 2: our choice, UNVERIFIED)."""
        groups = {"descriptors": [self.descriptors], "image": list(self.clip.visual.parameters())}
        if self.temporal is not None:
            groups["temporal"] = list(self.temporal.parameters())
        return groups

    def tunable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}
