"""FineCLIPER model configuration: one flat, JSON-friendly dataclass.

Every switch an ablation needs (each semantic level, each adapter kind, the negative
descriptors, the adapter scale) is a field here, so a training run is fully described by the
``model`` block of its config and the same block is stored inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dfer.strict_config import from_mapping

#: A tiny random-init open_clip config for tests, the demo and CPU benchmarks. The text tower
#: keeps CLIP's vocabulary and context length so the standard BPE tokenizer works unchanged.
TINY_CLIP_CFG: dict[str, Any] = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@dataclass
class ModelConfig:
    """Architecture and ablation switches of :class:`dfer.model.FineCLIPER`."""

    # --- backbone (frozen) -------------------------------------------------------------------
    #: open_clip model name (``ViT-B-16-quickgelu``, ``ViT-B-32-quickgelu``, ``ViT-L-14-quickgelu``,
    #: ``local-dir:/path``) or ``"tiny"`` for :data:`TINY_CLIP_CFG`.
    backbone: str = "ViT-B-16-quickgelu"
    #: open_clip pretrained tag (``openai``) or a local checkpoint file; None = random init.
    pretrained: str | None = "openai"
    #: explicit open_clip model config (embed_dim/vision_cfg/text_cfg); overrides ``backbone``.
    model_cfg: dict[str, Any] | None = None
    #: seed of the random-init backbone (``pretrained`` null): checkpoints hold only adapters,
    #: so the frozen random weights must be re-created bit for bit when a checkpoint is loaded.
    init_seed: int = 0
    #: run the frozen backbone blocks under activation checkpointing (saves GPU memory).
    grad_checkpointing: bool = False

    # --- vision adapters (AIM style) ---------------------------------------------------------
    adapter_ratio: float = 0.25  # bottleneck width = ratio * transformer width
    adapter_scale: float = 0.5  # s: weight of the MLP-parallel adapter
    spatial_adapter: bool = True  # after self-attention (with its own skip connection)
    mlp_adapter: bool = True  # parallel to the MLP, scaled by adapter_scale
    temporal_adapter: bool = True  # attention over frames, at the start of each block
    temporal_heads: int = 4
    max_frames: int = 64  # size of the temporal adapter's frame-position table

    # --- semantic levels ---------------------------------------------------------------------
    use_video: bool = True  # low level: face frames
    use_parsing: bool = True  # middle level: rendered parsing maps
    use_landmarks: bool = True  # middle level: rendered landmark images
    use_captions: bool = True  # high level: MLLM descriptions (alignment loss)
    share_mid_adapters: bool = True  # parsing and landmarks share one adapter set
    mid_temporal_adapter: bool = False  # temporal adapters in the middle-level encoders too
    caption_in_fusion: bool = False  # also fuse the caption feature into the prediction

    # --- label side (PN descriptors) ---------------------------------------------------------
    positive_template: str = "A person with an expression of {label}."
    negative_template: str = "A person with an expression of no {label}."
    text_adapters: bool = True  # Positive / Negative / caption adapters on text features
    text_adapter_ratio: float = 0.25
    use_negative: bool = True  # include the negative descriptors in the prediction
    negative_weight: float = 1.0  # lambda in logits = scale * (sim_pos - lambda * sim_neg)

    # --- fusion and losses -------------------------------------------------------------------
    learned_fusion: bool = True  # softmax modality weights; False = plain mean
    #: standardise each visual level's clip feature (BatchNorm without affine: batch statistics
    #: in training, running statistics in evaluation, stored in the checkpoint) before the L2
    #: norm. A random-init backbone maps every clip to nearly the same direction (cosine
    #: ~0.996 between clips on the demo), which leaves cosine scores nothing to separate;
    #: pretrained CLIP does not need it (off by default, so step 0 is exactly frozen CLIP).
    standardize_features: bool = False
    logit_scale: float = 50.0  # initial temperature scale of the similarities
    learn_logit_scale: bool = True
    max_logit_scale: float = 100.0
    align_weight: float = 0.5  # weight of the caption-video alignment loss
    align_temperature: float = 0.07
    label_smoothing: float = 0.0

    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept with the config

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ModelConfig:
        """Build from a config mapping; unknown keys are an error naming the key."""
        cfg = from_mapping(cls, data, "model config key")
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        if not (self.use_video or self.use_parsing or self.use_landmarks):
            raise ValueError("at least one visual level (use_video/use_parsing/use_landmarks) is needed")
        if self.adapter_ratio <= 0 or self.text_adapter_ratio <= 0:
            raise ValueError("adapter ratios must be > 0")
        if "{label}" not in self.positive_template or "{label}" not in self.negative_template:
            raise ValueError("descriptor templates must contain '{label}'")

    def open_clip_cfg(self) -> dict[str, Any] | None:
        """The explicit open_clip config to instantiate, or None for a named model."""
        if self.model_cfg is not None:
            return self.model_cfg
        if self.backbone == "tiny":
            return TINY_CLIP_CFG
        return None

    @property
    def visual_levels(self) -> list[str]:
        """Enabled visual modalities, in the fixed fusion order."""
        levels = []
        if self.use_video:
            levels.append("video")
        if self.use_parsing:
            levels.append("parsing")
        if self.use_landmarks:
            levels.append("landmarks")
        return levels
