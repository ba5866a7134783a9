"""FineCLIPER (the ``fineclipper`` method): frozen CLIP + adapters over three semantic levels, scored against PN descriptors.

Shapes: visual inputs are uint8 (or 0..255 float) ``[B, T, H, W, 3]``; every level is encoded
per frame by the shared frozen ViT with its own adapters (video: AIM's temporal, spatial and
joint adapters; parsing and landmarks: a separate encoder each, two adapters per block) and
averaged over frames. The enabled visual levels are fused with softmax-normalised learned
weights; the fused feature is compared with the "expression of {label}" descriptors encoded
with the Positive adapters and the "expression of no {label}" descriptors encoded with the
Negative adapters (inside the frozen text transformer, ``text_adapter: inner``)::

    logits = scale * (cos(v, P(t_pos)) - negative_weight * cos(v, N(t_neg)))

Captions go through the frozen text encoder with the caption adapters and are aligned with the
video feature by a symmetric InfoNCE loss. By default that is all they do: they never change a
test prediction. ``caption_in_fusion`` fuses them as one more level (a clip without a caption,
``None`` in ``captions``, is scored on its visual levels: its caption feature is zero, so its
weight drops out of the normalised sum); with every visual level off they are the only level
(the paper's "High only" ablation), and every clip needs one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dfer.methods.output import LogitsOutput
from dfer.methods.specs.fineclipper import FineCLIPERConfig, ModelConfig
from dfer.model.adapters import TextAdapter, TextAdapterStack
from dfer.model.backbone import Tokenizer, build_clip, image_mean_std
from dfer.model.batch_share import BatchShare
from dfer.model.pixels import frames_to_images
from dfer.model.text import check_text_supported, encode_text, text_width_layers
from dfer.model.vision import AdapterStack, Stream, encode_frames, encode_streams

__all__ = ["FineCLIPER", "FineCLIPERConfig", "FineCLIPEROutput", "ModelConfig", "count_parameters"]


@dataclass
class FineCLIPEROutput(LogitsOutput):
    """What one forward pass produces (features are L2-normalised)."""

    logits: torch.Tensor  # [B, C]
    sim_pos: torch.Tensor  # [B, C]
    sim_neg: torch.Tensor | None  # [B, C]
    fused: torch.Tensor  # [B, E]
    level_features: dict[str, torch.Tensor]  # level -> [B, E]
    modality_weights: torch.Tensor  # [L] softmax weights over fused levels
    caption: torch.Tensor | None  # [B, E]
    scale: torch.Tensor | None = None  # the (clamped) temperature scale the logits used
    #: fused level -> [B, C]: that level's own feature scored against the same descriptors
    #: (``sim_pos - negative_weight * sim_neg``), to show which level drove a prediction
    level_scores: dict[str, torch.Tensor] | None = None


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
        self.embed_dim = embed_dim

        def stack(ratio: float, temporal: str) -> AdapterStack:
            return AdapterStack(
                width, layers, ratio, cfg.spatial_adapter, cfg.mlp_adapter,
                temporal, cfg.temporal_heads, cfg.max_frames,
            )

        # the video encoder and (paper) one Parsing Encoder and one Landmark Encoder: the same
        # frozen ViT weights, each with its own adapters
        self.vision_adapters = nn.ModuleDict()
        if cfg.use_video:
            self.vision_adapters["video"] = stack(cfg.adapter_ratio, cfg.temporal)
        if cfg.share_mid_adapters and (cfg.use_parsing or cfg.use_landmarks):
            self.vision_adapters["mid"] = stack(cfg.mid_adapter_ratio, cfg.mid_temporal)
        else:
            if cfg.use_parsing:
                self.vision_adapters["parsing"] = stack(cfg.mid_adapter_ratio, cfg.mid_temporal)
            if cfg.use_landmarks:
                self.vision_adapters["landmarks"] = stack(cfg.mid_adapter_ratio, cfg.mid_temporal)

        self.pos_adapter = self._text_adapter(clip, embed_dim, True)
        self.neg_adapter = self._text_adapter(clip, embed_dim, cfg.use_negative)
        self.caption_adapter = self._text_adapter(clip, embed_dim, cfg.use_captions)

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
        self._token_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.set_labels(labels)

    def _text_adapter(self, clip: nn.Module, embed_dim: int, wanted: bool) -> nn.Module | None:
        """One text branch's adapters: inside the text transformer (paper) or on its output."""
        mode = self.cfg.text_adapter
        if not wanted or mode == "none":
            return None
        if mode == "output":
            return TextAdapter(embed_dim, max(1, round(embed_dim * self.cfg.text_adapter_ratio)))
        check_text_supported(clip)
        width, layers = text_width_layers(clip)
        hidden = max(1, round(width * self.cfg.text_adapter_ratio))
        return TextAdapterStack(width, layers, hidden, self.cfg.text_adapter_position)

    # ----------------------------------------------------------------------------- setup
    def set_labels(self, labels: Sequence[str]) -> None:
        """Classes to score, by name (zero-shot evaluation swaps in the target dataset's)."""
        if not labels:
            raise ValueError("FineCLIPER needs at least one class label")
        self.labels = [str(x) for x in labels]
        self._text_cache.clear()
        self._token_cache.clear()

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
        return (frames_to_images(x, self.image_size) - self.pixel_mean) / self.pixel_std

    def adapter_set(self, level: str) -> AdapterStack | None:
        if level in self.vision_adapters:
            return self.vision_adapters[level]
        if level in ("parsing", "landmarks") and "mid" in self.vision_adapters:
            return self.vision_adapters["mid"]
        return None

    def encode_level(self, images: torch.Tensor, level: str) -> torch.Tensor:
        """Per-frame features ``[B, T, E]`` of one visual level (unnormalised, like CLIP)."""
        return self.encode_levels({level: images})[level]

    def encode_levels(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-frame features ``[B, T, E]`` of each given visual level (level -> images).

        ``batch_levels: true``: all levels in one batched forward through the frozen ViT
        (:func:`dfer.model.vision.encode_streams`); false: one level after the other
        (:func:`dfer.model.vision.encode_frames`, the first implementation).
        """
        dtype = self.clip.visual.conv1.weight.dtype
        shapes = {lv: images.shape[:2] for lv, images in inputs.items()}
        pixels = {lv: self.to_pixels(images).to(dtype) for lv, images in inputs.items()}
        if self.cfg.batch_levels:
            streams = [Stream(pixels[lv], shapes[lv][1], self.adapter_set(lv)) for lv in inputs]
            feats = encode_streams(self.clip.visual, streams, self.cfg.adapter_scale,
                                   grad_checkpointing=self.cfg.grad_checkpointing)
            per_level = dict(zip(inputs, feats, strict=True))
        else:
            per_level = {
                lv: encode_frames(self.clip.visual, pixels[lv], shapes[lv][1], self.adapter_set(lv),
                                  self.cfg.adapter_scale, grad_checkpointing=self.cfg.grad_checkpointing)
                for lv in inputs
            }
        return {lv: f.view(*shapes[lv], -1) for lv, f in per_level.items()}

    def _inner(self, adapter: nn.Module | None) -> bool:
        return isinstance(adapter, TextAdapterStack)

    def _encode_with(self, tokens: torch.Tensor, adapter: nn.Module | None) -> torch.Tensor:
        """Text features of ``tokens``: through the adapted text transformer (inner adapters),
        else frozen ``encode_text`` followed by the output-level adapter, if any."""
        if self._inner(adapter):
            return encode_text(self.clip, tokens, adapter, self.cfg.adapter_scale).float()
        with torch.no_grad():
            feats = self.clip.encode_text(tokens).float()
        return adapter(feats) if adapter is not None else feats

    def class_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens of the positive / negative descriptors, cached per label set and device."""
        device = self.log_logit_scale.device
        key = (tuple(self.labels), str(device))
        if key not in self._token_cache:
            pos = [self.cfg.positive_template.format(label=lab) for lab in self.labels]
            neg = [self.cfg.negative_template.format(label=lab) for lab in self.labels]
            self._token_cache[key] = (self.tokenizer(pos).to(device), self.tokenizer(neg).to(device))
        return self._token_cache[key]

    def class_text_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen (unadapted) features of the positive / negative descriptors, cached."""
        device = self.log_logit_scale.device
        key = (tuple(self.labels), str(device))
        if key not in self._text_cache:
            pos, neg = self.class_tokens()
            with torch.no_grad():
                self._text_cache[key] = (self.clip.encode_text(pos).float(), self.clip.encode_text(neg).float())
        return self._text_cache[key]

    def descriptor_features(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Adapted features ``[C, E]`` of the positive and (if used) negative descriptors.

        With inner adapters these are recomputed every call (the adapters change each step);
        the frozen-only parts are cached.
        """
        pos_tok, neg_tok = self.class_tokens()
        t_pos_frozen, t_neg_frozen = (None, None)
        if not self._inner(self.pos_adapter) or not self._inner(self.neg_adapter):
            t_pos_frozen, t_neg_frozen = self.class_text_features()
        if self._inner(self.pos_adapter):
            t_pos = self._encode_with(pos_tok, self.pos_adapter)
        else:
            t_pos = self.pos_adapter(t_pos_frozen) if self.pos_adapter is not None else t_pos_frozen
        if not self.cfg.use_negative:
            return t_pos, None
        if self._inner(self.neg_adapter):
            t_neg = self._encode_with(neg_tok, self.neg_adapter)
        else:
            t_neg = self.neg_adapter(t_neg_frozen) if self.neg_adapter is not None else t_neg_frozen
        return t_pos, t_neg

    def encode_captions(self, captions: Sequence[str]) -> torch.Tensor:
        """Caption features ``[B, E]`` (text encoder with the caption adapters), normalised."""
        tokens = self.tokenizer([str(c) for c in captions]).to(self.log_logit_scale.device)
        return F.normalize(self._encode_with(tokens, self.caption_adapter), dim=-1)

    # ----------------------------------------------------------------------------- forward
    def forward(
        self,
        frames: torch.Tensor | None = None,
        parsing: torch.Tensor | None = None,
        landmarks: torch.Tensor | None = None,
        captions: Sequence[str | None] | None = None,
        share: BatchShare | None = None,
    ) -> FineCLIPEROutput:
        """Score a batch. ``share``: this process's part of a global batch split over several
        training processes (the batch statistics of ``standardize_features`` are then those of
        the global batch); None = the batch is all there is."""
        inputs = {"video": frames, "parsing": parsing, "landmarks": landmarks}
        for level in self.cfg.visual_levels:
            if inputs[level] is None:
                raise ValueError(f"the model config enables the {level!r} level but no {level} input was given")
        level_feats: dict[str, torch.Tensor] = {}
        if self.cfg.visual_levels:
            per_frame = self.encode_levels({lv: inputs[lv] for lv in self.cfg.visual_levels})
            for level in self.cfg.visual_levels:
                feats = per_frame[level].float().mean(1)
                if level in self.feature_norms:
                    feats = self._standardize(level, feats, share)
                level_feats[level] = F.normalize(feats, dim=-1)
        caption = self._caption_features(captions)
        fused_caption = caption
        if "caption" in self.fused_levels and fused_caption is None:  # no captions given at all
            batch = next(iter(level_feats.values())).shape[0]
            fused_caption = torch.zeros(batch, self.embed_dim, device=self.log_logit_scale.device)
        stacked = [level_feats[lv] if lv != "caption" else fused_caption for lv in self.fused_levels]
        weights = torch.softmax(self.fusion_logits.float(), dim=0)
        fused = F.normalize(sum(w * f for w, f in zip(weights, stacked, strict=True)), dim=-1)

        t_pos, t_neg = self.descriptor_features()
        t_pos = F.normalize(t_pos, dim=-1)
        t_neg = F.normalize(t_neg, dim=-1) if t_neg is not None else None
        scale = self.log_logit_scale.float().exp().clamp(max=self.cfg.max_logit_scale)[0]
        sim_pos, sim_neg, score = self._pn_score(fused, t_pos, t_neg)
        level_scores = {lv: self._pn_score(f, t_pos, t_neg)[2]
                        for lv, f in zip(self.fused_levels, stacked, strict=True)}
        return FineCLIPEROutput(
            logits=scale * score, sim_pos=sim_pos, sim_neg=sim_neg, fused=fused,
            level_features=level_feats, modality_weights=weights, caption=caption, scale=scale,
            level_scores=level_scores,
        )

    def _caption_features(self, captions: Sequence[str | None] | None) -> torch.Tensor | None:
        """Normalised caption features ``[B, E]``; a clip without a caption (``None`` or blank)
        gets a zero row, which the fused sum ignores. None when the model reads no captions or
        none are given."""
        if not self.cfg.use_captions or captions is None:
            if self.cfg.high_only:
                raise ValueError("a high-only model (captions as the only level) needs captions")
            return None
        present = [i for i, c in enumerate(captions) if c is not None and str(c).strip()]
        if self.cfg.high_only and len(present) < len(captions):
            raise ValueError(f"a high-only model cannot score a clip without a caption "
                             f"({len(captions) - len(present)} in this batch); evaluation counts "
                             "such clips as not scored")
        if len(present) == len(captions):
            return self.encode_captions([str(c) for c in captions])
        out = torch.zeros(len(captions), self.embed_dim, device=self.log_logit_scale.device)
        if present:
            feats = self.encode_captions([str(captions[i]) for i in present])
            out = out.to(feats.dtype)
            out[present] = feats
        return out

    def _pn_score(self, feats: torch.Tensor, t_pos: torch.Tensor, t_neg: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(positive, negative similarities, combined score) of features against the
        normalised descriptors: ``sim_pos - negative_weight * sim_neg`` (positive only
        without negative descriptors)."""
        sim_pos = feats @ t_pos.T
        if t_neg is None:
            return sim_pos, None, sim_pos
        sim_neg = feats @ t_neg.T
        return sim_pos, sim_neg, sim_pos - self.cfg.negative_weight * sim_neg

    def _standardize(self, level: str, feats: torch.Tensor, share: BatchShare | None = None) -> torch.Tensor:
        """BatchNorm of one level's clip features; a 1-clip training batch uses running stats.

        With a ``share`` (training on several processes) the batch statistics are the global
        batch's, padding rows left out, and the running statistics are updated with them as
        BatchNorm would on the whole batch (biased variance to normalise, unbiased to track).
        """
        norm = self.feature_norms[level]
        n = feats.shape[0] if share is None else share.n_global
        if self.training and n < 2:  # no batch variance to normalise with
            return F.batch_norm(feats, norm.running_mean, norm.running_var, training=False, eps=norm.eps)
        if share is None or not self.training:
            return norm(feats)
        rows = feats[share.valid]
        mean = share.total(rows.sum(0)) / n
        var = share.total(((rows - mean) ** 2).sum(0)) / n  # two passes: features share one direction
        assert norm.running_mean is not None and norm.running_var is not None
        with torch.no_grad():
            assert norm.num_batches_tracked is not None
            norm.num_batches_tracked.add_(1)
            factor = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
            norm.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
            norm.running_var.mul_(1 - factor).add_(var.detach() * (n / (n - 1)), alpha=factor)
        return (feats - mean) / torch.sqrt(var + norm.eps)

    def class_loss_terms(self, out: FineCLIPEROutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The PN classification loss of every clip ``[B]`` (``ce``; with ``two_term`` also
        ``ce_pos`` / ``ce_neg``): the batch mean of each is what :meth:`losses` reports.

        ``pn_loss: combined``: cross-entropy over the logits, i.e. ``scale * (sim_pos - lambda *
        sim_neg)``. ``two_term``: ``CE(scale * sim_pos) + lambda * CE(-scale * sim_neg)``, one
        term pulling the true class's positive descriptor closest, one pushing its negative
        descriptor furthest.
        """
        smoothing = self.cfg.label_smoothing
        if self.cfg.pn_loss == "two_term" and out.sim_neg is not None:
            scale = out.scale if out.scale is not None else self.log_logit_scale.float().exp()[0]
            ce_pos = F.cross_entropy(scale * out.sim_pos, targets, label_smoothing=smoothing, reduction="none")
            ce_neg = F.cross_entropy(-scale * out.sim_neg, targets, label_smoothing=smoothing, reduction="none")
            return {"ce": ce_pos + self.cfg.negative_weight * ce_neg, "ce_pos": ce_pos, "ce_neg": ce_neg}
        return {"ce": F.cross_entropy(out.logits, targets, label_smoothing=smoothing, reduction="none")}

    def losses(self, out: FineCLIPEROutput, targets: torch.Tensor,
               share: BatchShare | None = None) -> dict[str, torch.Tensor]:
        """PN classification loss plus the caption-video alignment loss.

        ``pn_loss: combined``: cross-entropy over the logits, i.e. ``scale * (sim_pos - lambda *
        sim_neg)``. ``two_term``: ``CE(scale * sim_pos) + lambda * CE(-scale * sim_neg)``, one
        term pulling the true class's positive descriptor closest, one pushing its negative
        descriptor furthest; ``ce`` is then the sum, logged with ``ce_pos`` / ``ce_neg``.

        With a ``share`` (one of several training processes) the per-clip terms are this
        process's share of the global mean (:meth:`BatchShare.mean_share`) and the alignment
        loss is computed over the global batch's clips on every process, so that the mean of
        each value over processes, and DDP's gradient average, are the global batch's.
        """
        if share is not None:
            return self._shared_losses(out, targets, share)
        smoothing = self.cfg.label_smoothing
        result: dict[str, torch.Tensor] = {}
        if self.cfg.pn_loss == "two_term" and out.sim_neg is not None:
            scale = out.scale if out.scale is not None else self.log_logit_scale.float().exp()[0]
            ce_pos = F.cross_entropy(scale * out.sim_pos, targets, label_smoothing=smoothing)
            ce_neg = F.cross_entropy(-scale * out.sim_neg, targets, label_smoothing=smoothing)
            ce = ce_pos + self.cfg.negative_weight * ce_neg
            result.update(ce_pos=ce_pos, ce_neg=ce_neg)
        else:
            ce = F.cross_entropy(out.logits, targets, label_smoothing=smoothing)
        result.update(ce=ce, loss=ce)
        # alignment: captioned clips only (a clip without one has a zero row), and not for a
        # high-only model, whose fused feature is the caption itself
        has = (out.caption.abs().sum(-1) > 0) if out.caption is not None else None
        if (has is not None and self.cfg.align_weight > 0 and int(has.sum()) > 1
                and not self.cfg.high_only):
            video = out.level_features.get("video", out.fused)
            align = self._align(video[has], out.caption[has])
            result["align"] = align
            result["loss"] = ce + self.cfg.align_weight * align
        return result

    def _align(self, video: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE between the clips' video and caption features (the batch's other
        clips are each clip's negatives)."""
        sims = video @ caption.T / self.cfg.align_temperature
        idx = torch.arange(sims.shape[0], device=sims.device)
        return 0.5 * (F.cross_entropy(sims, idx) + F.cross_entropy(sims.T, idx))

    def _shared_losses(self, out: FineCLIPEROutput, targets: torch.Tensor,
                       share: BatchShare) -> dict[str, torch.Tensor]:
        """:meth:`losses` for one process's share of a global batch (see there)."""
        result = {name: share.mean_share(per_clip) for name, per_clip in self.class_loss_terms(out, targets).items()}
        result["loss"] = result["ce"]
        if out.caption is not None and self.cfg.align_weight > 0 and not self.cfg.high_only:
            video = share.gather(out.level_features.get("video", out.fused))
            caption = share.gather(out.caption)
            has = caption.abs().sum(-1) > 0  # captioned clips of the global batch, as in losses
            if int(has.sum()) < 2:
                return result
            align = self._align(video[has], caption[has])
            result["align"] = align
            result["loss"] = result["ce"] + self.cfg.align_weight * align
        return result

    @torch.no_grad()
    def predict_proba(self, **inputs: torch.Tensor | Sequence[str] | None) -> torch.Tensor:
        """Class probabilities ``[B, C]`` in eval mode."""
        was_training = self.training
        self.eval()
        try:
            return self(**inputs).probabilities()
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
