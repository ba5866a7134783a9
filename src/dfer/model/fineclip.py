"""FineCLIPER: frozen CLIP + adapters over three semantic levels, scored against PN descriptors.

Shapes: visual inputs are uint8 (or 0..255 float) ``[B, T, H, W, 3]``; every level is encoded
per frame by the shared frozen ViT with its own adapters and averaged over frames. The enabled
visual levels are fused with softmax-normalised learned weights; the fused feature is compared
with the Positive-adapted "expression of {label}" and Negative-adapted "expression of no
{label}" text features::

    logits = scale * (cos(v, P(t_pos)) - negative_weight * cos(v, N(t_neg)))

Captions go through the frozen text encoder and a caption adapter and are aligned with the
video feature by a symmetric InfoNCE loss (and optionally fused into the prediction).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dfer.model.adapters import TextAdapter
from dfer.model.backbone import Tokenizer, build_clip, image_mean_std
from dfer.model.config import ModelConfig
from dfer.model.vision import AdapterStack, encode_frames


@dataclass
class FineCLIPEROutput:
    """What one forward pass produces (features are L2-normalised)."""

    logits: torch.Tensor  # [B, C]
    sim_pos: torch.Tensor  # [B, C]
    sim_neg: torch.Tensor | None  # [B, C]
    fused: torch.Tensor  # [B, E]
    level_features: dict[str, torch.Tensor]  # level -> [B, E]
    modality_weights: torch.Tensor  # [L] softmax weights over fused levels
    caption: torch.Tensor | None  # [B, E]


class FineCLIPER(nn.Module):
    """The FineCLIPER classifier; only adapters, fusion weights and the scale are trainable."""

    def __init__(
        self,
        cfg: ModelConfig,
        labels: Sequence[str],
        clip: nn.Module | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        if clip is None or tokenizer is None:
            clip, tokenizer = build_clip(cfg)
        for p in clip.parameters():
            p.requires_grad_(False)
        self.clip = clip.eval()
        self.tokenizer = tokenizer
        visual = clip.visual
        width = visual.transformer.width
        layers = len(visual.transformer.resblocks)
        self.image_size = int(visual.image_size[0])
        embed_dim = int(visual.output_dim)

        def stack(temporal: bool) -> AdapterStack:
            return AdapterStack(
                width, layers, cfg.adapter_ratio, cfg.spatial_adapter, cfg.mlp_adapter,
                temporal, cfg.temporal_heads, cfg.max_frames,
            )

        self.vision_adapters = nn.ModuleDict()
        if cfg.use_video:
            self.vision_adapters["video"] = stack(cfg.temporal_adapter)
        if cfg.share_mid_adapters and (cfg.use_parsing or cfg.use_landmarks):
            self.vision_adapters["mid"] = stack(cfg.mid_temporal_adapter)
        else:
            if cfg.use_parsing:
                self.vision_adapters["parsing"] = stack(cfg.mid_temporal_adapter)
            if cfg.use_landmarks:
                self.vision_adapters["landmarks"] = stack(cfg.mid_temporal_adapter)

        hidden = max(1, round(embed_dim * cfg.text_adapter_ratio))
        self.pos_adapter = TextAdapter(embed_dim, hidden) if cfg.text_adapters else None
        self.neg_adapter = (
            TextAdapter(embed_dim, hidden) if cfg.text_adapters and cfg.use_negative else None
        )
        self.caption_adapter = (
            TextAdapter(embed_dim, hidden) if cfg.text_adapters and cfg.use_captions else None
        )

        # running statistics are state, not weights: kept in buffers and saved with the adapters
        self.feature_norms = nn.ModuleDict(
            {lv: nn.BatchNorm1d(embed_dim, affine=False) for lv in cfg.visual_levels}
            if cfg.standardize_features else {}
        )
        self.fused_levels = list(cfg.visual_levels)
        if cfg.use_captions and cfg.caption_in_fusion:
            self.fused_levels.append("caption")
        self.fusion_logits = nn.Parameter(
            torch.zeros(len(self.fused_levels)), requires_grad=cfg.learned_fusion
        )
        self.log_logit_scale = nn.Parameter(
            torch.full((1,), math.log(cfg.logit_scale)), requires_grad=cfg.learn_logit_scale
        )
        mean, std = image_mean_std(clip)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.labels: list[str] = []
        self._text_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.set_labels(labels)

    # ----------------------------------------------------------------------------- setup
    def set_labels(self, labels: Sequence[str]) -> None:
        """Classes to score, by name (zero-shot evaluation swaps in the target dataset's)."""
        if not labels:
            raise ValueError("FineCLIPER needs at least one class label")
        self.labels = [str(x) for x in labels]
        self._text_cache.clear()

    def train(self, mode: bool = True) -> FineCLIPER:
        super().train(mode)
        self.clip.eval()  # frozen backbone: never in training mode
        return self

    def tunable_parameters(self) -> dict[str, nn.Parameter]:
        """Trainable parameters by name (what checkpoints hold)."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def tunable_state(self) -> dict[str, torch.Tensor]:
        """Trainable parameters plus the learned feature statistics (what checkpoints hold)."""
        state: dict[str, torch.Tensor] = dict(self.tunable_parameters())
        for name, buf in self.feature_norms.named_buffers(prefix="feature_norms"):
            if not name.endswith("num_batches_tracked"):  # a counter, unused with a momentum
                state[name] = buf
        return state

    def tunable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().clone() for n, p in self.tunable_state().items()}

    def load_tunable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load adapter weights; the key sets must match exactly (catches config drift)."""
        own = self.tunable_state()
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"checkpoint does not fit this model config: missing {missing[:5]}"
                f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                f"{'...' if len(unexpected) > 5 else ''}"
            )
        with torch.no_grad():
            for name, p in own.items():
                if p.shape != state[name].shape:
                    raise ValueError(f"shape mismatch for {name}: {tuple(state[name].shape)} vs {tuple(p.shape)}")
                p.copy_(state[name].to(p.dtype))

    # ----------------------------------------------------------------------------- encoders
    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, H, W, 3]`` 0..255 -> normalised ``[B*T, 3, S, S]`` at the backbone size."""
        if x.ndim != 5 or x.shape[-1] != 3:
            raise ValueError(f"expected images [B, T, H, W, 3], got {tuple(x.shape)}")
        b, t, h, w, _ = x.shape
        x = x.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float()
        if (h, w) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              antialias=True, align_corners=False)
        return (x - self.pixel_mean) / self.pixel_std

    def adapter_set(self, level: str) -> AdapterStack | None:
        if level in self.vision_adapters:
            return self.vision_adapters[level]
        if level in ("parsing", "landmarks") and "mid" in self.vision_adapters:
            return self.vision_adapters["mid"]
        return None

    def encode_level(self, images: torch.Tensor, level: str) -> torch.Tensor:
        """Per-frame features ``[B, T, E]`` of one visual level (unnormalised, like CLIP)."""
        b, t = images.shape[:2]
        pixels = self.to_pixels(images).to(self.clip.visual.conv1.weight.dtype)
        feats = encode_frames(
            self.clip.visual, pixels, t, self.adapter_set(level), self.cfg.adapter_scale,
            grad_checkpointing=self.cfg.grad_checkpointing,
        )
        return feats.view(b, t, -1)

    @torch.no_grad()
    def _frozen_text(self, texts: list[str], device: torch.device) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(device)
        return self.clip.encode_text(tokens).float()

    def class_text_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen features of the positive / negative descriptors, cached per label set."""
        device = self.log_logit_scale.device
        key = (tuple(self.labels), str(device))
        if key not in self._text_cache:
            pos = [self.cfg.positive_template.format(label=lab) for lab in self.labels]
            neg = [self.cfg.negative_template.format(label=lab) for lab in self.labels]
            self._text_cache[key] = (self._frozen_text(pos, device), self._frozen_text(neg, device))
        return self._text_cache[key]

    def encode_captions(self, captions: Sequence[str]) -> torch.Tensor:
        """Caption features ``[B, E]`` (frozen text encoder + caption adapter), normalised."""
        feats = self._frozen_text([str(c) for c in captions], self.log_logit_scale.device)
        if self.caption_adapter is not None:
            feats = self.caption_adapter(feats)
        return F.normalize(feats, dim=-1)

    # ----------------------------------------------------------------------------- forward
    def forward(
        self,
        frames: torch.Tensor | None = None,
        parsing: torch.Tensor | None = None,
        landmarks: torch.Tensor | None = None,
        captions: Sequence[str] | None = None,
    ) -> FineCLIPEROutput:
        inputs = {"video": frames, "parsing": parsing, "landmarks": landmarks}
        level_feats: dict[str, torch.Tensor] = {}
        for level in self.cfg.visual_levels:
            images = inputs[level]
            if images is None:
                raise ValueError(f"the model config enables the {level!r} level but no {level} input was given")
            feats = self.encode_level(images, level).float().mean(1)
            if level in self.feature_norms:
                feats = self._standardize(level, feats)
            level_feats[level] = F.normalize(feats, dim=-1)
        caption = None
        if self.cfg.use_captions and captions is not None:
            caption = self.encode_captions(captions)
        elif self.cfg.use_captions and self.cfg.caption_in_fusion:
            raise ValueError("caption_in_fusion is on but no captions were given")

        stacked = [level_feats[lv] if lv != "caption" else caption for lv in self.fused_levels]
        weights = torch.softmax(self.fusion_logits.float(), dim=0)
        fused = F.normalize(sum(w * f for w, f in zip(weights, stacked, strict=True)), dim=-1)

        t_pos, t_neg = self.class_text_features()
        if self.pos_adapter is not None:
            t_pos = self.pos_adapter(t_pos)
        sim_pos = fused @ F.normalize(t_pos, dim=-1).T
        sim_neg = None
        scale = self.log_logit_scale.float().exp().clamp(max=self.cfg.max_logit_scale)[0]
        score = sim_pos
        if self.cfg.use_negative:
            if self.neg_adapter is not None:
                t_neg = self.neg_adapter(t_neg)
            sim_neg = fused @ F.normalize(t_neg, dim=-1).T
            score = sim_pos - self.cfg.negative_weight * sim_neg
        return FineCLIPEROutput(
            logits=scale * score, sim_pos=sim_pos, sim_neg=sim_neg, fused=fused,
            level_features=level_feats, modality_weights=weights, caption=caption,
        )

    def _standardize(self, level: str, feats: torch.Tensor) -> torch.Tensor:
        """BatchNorm of one level's clip features; a 1-clip training batch uses running stats."""
        norm = self.feature_norms[level]
        if self.training and feats.shape[0] < 2:  # no batch variance to normalise with
            return F.batch_norm(feats, norm.running_mean, norm.running_var, training=False, eps=norm.eps)
        return norm(feats)

    def losses(self, out: FineCLIPEROutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy over the scaled PN scores plus the caption-video alignment loss."""
        ce = F.cross_entropy(out.logits, targets, label_smoothing=self.cfg.label_smoothing)
        result = {"ce": ce, "loss": ce}
        if out.caption is not None and self.cfg.align_weight > 0 and out.caption.shape[0] > 1:
            video = out.level_features.get("video", out.fused)
            sims = video @ out.caption.T / self.cfg.align_temperature
            idx = torch.arange(sims.shape[0], device=sims.device)
            align = 0.5 * (F.cross_entropy(sims, idx) + F.cross_entropy(sims.T, idx))
            result["align"] = align
            result["loss"] = ce + self.cfg.align_weight * align
        return result

    @torch.no_grad()
    def predict_proba(self, **inputs: torch.Tensor | Sequence[str] | None) -> torch.Tensor:
        """Class probabilities ``[B, C]`` in eval mode."""
        was_training = self.training
        self.eval()
        try:
            return torch.softmax(self(**inputs).logits.float(), dim=-1)
        finally:
            self.train(was_training)


def count_parameters(model: FineCLIPER) -> dict[str, int]:
    """Tunable parameter counts per part, plus the frozen backbone total."""
    counts: dict[str, int] = {}
    for name, p in model.tunable_parameters().items():
        part = name.split(".")[0]
        if part == "vision_adapters":
            part = "vision_adapters." + name.split(".")[1]
        counts[part] = counts.get(part, 0) + p.numel()
    counts["tunable_total"] = sum(p.numel() for p in model.tunable_parameters().values())
    counts["frozen_backbone"] = sum(p.numel() for p in model.clip.parameters())
    return counts
