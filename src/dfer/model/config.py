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

from dfer.core.strict_config import from_mapping

#: A tiny random-init open_clip config for tests, the demo and CPU benchmarks. The text tower
#: keeps CLIP's vocabulary and context length so the standard BPE tokenizer works unchanged.
TINY_CLIP_CFG: dict[str, Any] = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


#: ``backbone`` values that mean "a random backbone from ``model_cfg`` / :data:`TINY_CLIP_CFG`"
#: rather than a named open_clip architecture whose weights the run presumably wants.
RANDOM_BACKBONES = frozenset({"tiny", "custom"})

_CHOICES: dict[str, frozenset[str]] = {
    "temporal": frozenset({"aim", "attention", "none"}),
    "mid_temporal": frozenset({"aim", "attention", "none"}),
    "text_adapter": frozenset({"inner", "output", "none"}),
    "text_adapter_position": frozenset({"attn", "mlp"}),
    "pn_loss": frozenset({"combined", "two_term"}),
}


def looks_like_path(value: str) -> bool:
    """A local checkpoint reference rather than an open_clip tag such as ``openai``."""
    return "/" in value or "\\" in value or value.endswith((".pt", ".pth", ".bin", ".safetensors"))


def migrate_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """A model config stored by a schema-1 checkpoint, in today's keys, meaning the same model.

    Schema 1 had boolean ``temporal_adapter`` / ``mid_temporal_adapter`` (our attention module)
    and ``text_adapters`` (output-level), one adapter ratio for all vision encoders, and its
    defaults were the shared middle-level adapter set; missing keys take those old defaults so
    an old checkpoint rebuilds the model it was trained with.
    """
    d = dict(data)
    d.setdefault("share_mid_adapters", True)
    d.setdefault("max_frames", 64)
    d.setdefault("mid_adapter_ratio", d.get("adapter_ratio", 0.25))
    d.setdefault("text_adapter_ratio", 0.25)
    d["temporal"] = "attention" if d.pop("temporal_adapter", True) else "none"
    d["mid_temporal"] = "attention" if d.pop("mid_temporal_adapter", False) else "none"
    d["text_adapter"] = "output" if d.pop("text_adapters", True) else "none"
    return d


@dataclass
class ModelConfig:
    """Architecture and ablation switches of :class:`dfer.model.FineCLIPER`."""

    # --- backbone (frozen) -------------------------------------------------------------------
    #: open_clip model name (``ViT-B-16-quickgelu``, ``ViT-B-32-quickgelu``, ``ViT-L-14-quickgelu``,
    #: ``local-dir:/path``), ``"tiny"`` for :data:`TINY_CLIP_CFG` (or ``model_cfg``), or
    #: ``"custom"`` for ``model_cfg``. With ``model_cfg`` and no ``pretrained`` file the backbone
    #: must be ``tiny`` / ``custom``: a named one would silently come out random.
    backbone: str = "ViT-B-16-quickgelu"
    #: open_clip pretrained tag (``openai``) or a local checkpoint file in open_clip's or OpenAI's
    #: layout (state dict or OpenAI JIT archive; loaded strictly); None = random init.
    pretrained: str | None = "openai"
    #: explicit open_clip model config (embed_dim/vision_cfg/text_cfg); overrides ``backbone``.
    model_cfg: dict[str, Any] | None = None
    #: seed of the random-init backbone (``pretrained`` null): checkpoints hold only adapters,
    #: so the frozen random weights must be re-created bit for bit when a checkpoint is loaded.
    init_seed: int = 0
    #: run the frozen backbone blocks under activation checkpointing: saves activation memory
    #: for about a third more compute; turn it on only when a batch does not fit otherwise.
    grad_checkpointing: bool = False
    #: run every enabled visual level in one batched forward through the frozen ViT (each
    #: level's adapters on its own slice), the frozen attention as one in-projection +
    #: ``scaled_dot_product_attention``, and only the CLS token in the last block (CLS
    #: pooling). Same features as ``false`` (one level at a time through open_clip's attention,
    #: the first implementation) up to float rounding; an execution choice, not an ablation.
    batch_levels: bool = True

    # --- vision adapters (AIM style) ---------------------------------------------------------
    #: bottleneck width of the video encoder's adapters = ratio * ViT width; AIM's 0.25 (the
    #: paper follows AIM and does not state its own)
    adapter_ratio: float = 0.25
    adapter_scale: float = 0.5  # s: weight of the MLP-parallel (joint) adapter, paper: 0.5
    spatial_adapter: bool = True  # after the (spatial) self-attention, with its own skip
    mlp_adapter: bool = True  # parallel to the MLP, scaled by adapter_scale
    #: temporal adaptation of the video encoder: ``aim`` (paper, AIM: the frozen self-attention
    #: re-used along the frame axis, then an adapter without its own skip, plus AIM's zero-init
    #: temporal embedding), ``attention`` (ablation, our first design: a new trainable attention
    #: over frames with a frame-position table), ``none``
    temporal: str = "aim"
    temporal_heads: int = 4  # heads of the ``attention`` temporal module
    max_frames: int = 16  # frame-position table size (AIM temporal embedding / attention table)

    # --- semantic levels ---------------------------------------------------------------------
    use_video: bool = True  # low level: face frames
    use_parsing: bool = True  # middle level: rendered parsing maps
    use_landmarks: bool = True  # middle level: rendered landmark images
    use_captions: bool = True  # high level: MLLM descriptions (alignment loss)
    #: paper: a separate Parsing Encoder and Landmark Encoder (false); true = one shared adapter
    #: set for both (ablation, fewer parameters)
    share_mid_adapters: bool = False
    #: bottleneck ratio of the middle-level encoders' two adapters (spatial + joint) per block.
    #: The paper is silent; 0.104 (80 units on ViT-B/16) makes the +parsing+landmarks variant
    #: add the paper's ~6 M (docs/paper_fidelity.md).
    mid_adapter_ratio: float = 0.104
    mid_temporal: str = "none"  # temporal adaptation in the middle-level encoders (aim | attention | none)
    #: fuse the caption feature into the prediction as one more level (ablation; the paper's
    #: default uses captions only through the alignment loss, so they never change a test
    #: prediction). With every visual level off, captions are the only level: the paper's
    #: Table 4 "High only" row. A clip without a caption is scored on its visual levels alone
    #: (the caption's weight drops out); a high-only model cannot score it.
    caption_in_fusion: bool = False

    # --- label side (PN descriptors) ---------------------------------------------------------
    positive_template: str = "A person with an expression of {label}."
    negative_template: str = "A person with an expression of no {label}."
    #: where the Positive / Negative / caption adapters sit: ``inner`` (paper, Fig. 2: inside
    #: the frozen text transformer, one bottleneck per block), ``output`` (ablation, our first
    #: design: one residual bottleneck on the text embedding), ``none``
    text_adapter: str = "inner"
    #: bottleneck ratio of the text adapters. The paper is silent; 0.156 (80 units on the
    #: 512-wide text transformer) makes the caption branch add the paper's ~1 M.
    text_adapter_ratio: float = 0.156
    #: position of the ``inner`` text adapter in each block: ``attn`` (after self-attention,
    #: own skip) or ``mlp`` (parallel to the MLP, scaled by adapter_scale)
    text_adapter_position: str = "attn"
    use_negative: bool = True  # include the negative descriptors in the prediction
    negative_weight: float = 1.0  # lambda in logits = scale * (sim_pos - lambda * sim_neg)
    #: PN training loss: ``combined`` = CE over scale * (sim_pos - lambda * sim_neg);
    #: ``two_term`` = CE over scale * sim_pos + lambda * CE over -scale * sim_neg (the true
    #: class's positive text most similar, its negative text least similar). Prediction uses
    #: the combined score in both cases.
    pn_loss: str = "combined"

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
        """Reject contradictory settings with a message naming the config key."""
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"model.{key} must be one of {sorted(allowed)}, got {getattr(self, key)!r}")
        if self.model_cfg is not None and self.pretrained is None and self.backbone not in RANDOM_BACKBONES:
            raise ValueError(
                f"model.model_cfg is given with model.pretrained: null while model.backbone is the "
                f"named architecture {self.backbone!r}: the backbone would be random, not "
                f"{self.backbone}'s weights. Set model.pretrained to a local checkpoint file, or "
                f"model.backbone to one of {sorted(RANDOM_BACKBONES)} to ask for a random backbone."
            )
        if self.model_cfg is not None and self.pretrained is not None and not looks_like_path(self.pretrained):
            raise ValueError(
                f"model.pretrained {self.pretrained!r} is an open_clip tag, which only names weights "
                "of a named architecture; with model.model_cfg give a local checkpoint file"
            )
        if self.backbone in RANDOM_BACKBONES and self.model_cfg is None and self.backbone != "tiny":
            raise ValueError(f"model.backbone {self.backbone!r} needs model.model_cfg")
        if self.backbone == "tiny" and self.model_cfg is None and self.pretrained is not None and not looks_like_path(self.pretrained):
            raise ValueError(
                f"model.pretrained {self.pretrained!r}: the tiny backbone has no open_clip weights; "
                "set model.pretrained: null (random) or a local checkpoint file"
            )
        if self.max_frames < 1:
            raise ValueError("model.max_frames must be >= 1")
        if not (self.use_video or self.use_parsing or self.use_landmarks) and not self.high_only:
            raise ValueError("at least one visual level (use_video/use_parsing/use_landmarks) is needed, "
                             "or captions as the only level (use_captions and caption_in_fusion: the "
                             "paper's \"High only\" ablation)")
        if min(self.adapter_ratio, self.mid_adapter_ratio, self.text_adapter_ratio) <= 0:
            raise ValueError("adapter ratios (adapter_ratio, mid_adapter_ratio, text_adapter_ratio) must be > 0")
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
    def high_only(self) -> bool:
        """Captions are the only level (every visual level off, captions fused)."""
        return (self.use_captions and self.caption_in_fusion
                and not (self.use_video or self.use_parsing or self.use_landmarks))

    @property
    def captions_at_prediction(self) -> str:
        """What a prediction needs of a clip's caption: ``unused`` (the default: captions feed
        only the training alignment loss), ``optional`` (fused when present) or ``required``
        (high only)."""
        if not (self.use_captions and self.caption_in_fusion):
            return "unused"
        return "required" if self.high_only else "optional"

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
