"""FineCLIPER's registration: its config (:class:`ModelConfig`), what it reads and its defaults.

FineCLIPER (Chen et al., ACM MM 2024): frozen CLIP with adapters over three semantic levels
(frames; rendered parsing maps and landmarks; MLLM captions) scored against positive / negative
descriptors. The model is :class:`dfer.methods.fineclipper.FineCLIPER`; this module is the
torch-free part the Snakefile reads while it is parsed: every switch an ablation needs (each
semantic level, each adapter kind, the negative descriptors, the adapter scale) is a field of
one flat, JSON-friendly dataclass, so a training run is fully described by the ``model`` block
of its config and the same block is stored inside every checkpoint. Its data and optimiser
defaults are the dataclasses' own (``DataConfig``, ``OptimConfig``): FineCLIPER is what they
were written for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dfer.core.strict_config import from_mapping
from dfer.methods.registry import register_method
from dfer.model.config import RANDOM_BACKBONES, TINY_CLIP_CFG, backbone_of, looks_like_path

__all__ = ["RANDOM_BACKBONES", "TINY_CLIP_CFG", "ModelConfig", "looks_like_path", "migrate_v1"]

_CHOICES: dict[str, frozenset[str]] = {
    "temporal": frozenset({"aim", "attention", "none"}),
    "mid_temporal": frozenset({"aim", "attention", "none"}),
    "text_adapter": frozenset({"inner", "output", "none"}),
    "text_adapter_position": frozenset({"attn", "mlp"}),
    "pn_loss": frozenset({"combined", "two_term"}),
}


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
    """Architecture and ablation switches of :class:`dfer.methods.fineclipper.FineCLIPER`."""

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
        backbone_of(self).validate()  # the rules every CLIP-based method shares
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
        return backbone_of(self).open_clip_cfg()

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


#: FineCLIPER's config by the name the other methods' configs follow
FineCLIPERConfig = ModelConfig


def _needs(block: Mapping[str, Any]) -> Any:
    """The levels a model block reads (parsed with the config's own defaults, so the rules and
    the trainer cannot disagree about a level that is left unset)."""
    from dfer.train.inputs import Needs

    cfg = ModelConfig.from_dict(dict(block))
    return Needs(parsing=bool(cfg.use_parsing), landmarks=bool(cfg.use_landmarks),
                 captions=bool(cfg.use_captions))


def _prediction_needs(cfg: ModelConfig) -> tuple[Any, bool]:
    """The visual levels, and captions only where they change a prediction
    (``caption_in_fusion``): optional when visual levels are fused too, required for a
    high-only model. A model that uses captions only in its training loss (the default) is
    evaluated without reading them."""
    from dfer.train.inputs import Needs

    mode = cfg.captions_at_prediction
    return (Needs(parsing=cfg.use_parsing, landmarks=cfg.use_landmarks, captions=mode != "unused"),
            mode == "optional")


def _clip_loss(model: Any, out: Any, targets: Any) -> Any:
    """The PN classification loss of every clip (label smoothing and ``two_term`` included)."""
    return model.class_loss_terms(out, targets)["ce"]


def _extras(model: Any, out: Any) -> dict[str, Any]:
    """The learned temperature scale and each fused level's weight."""
    values = {"logit_scale": model.log_logit_scale.exp()}
    for level, w in zip(model.fused_levels, out.modality_weights, strict=True):
        values[f"weight_{level}"] = w
    return values


def _counts(model: Any) -> dict[str, int]:
    from dfer.methods.fineclipper import count_parameters

    return count_parameters(model)


def _groups(model: Any) -> dict[str, list[Any]]:
    """One group: every tunable parameter (adapters, fusion weights, the scale)."""
    return {"tunable": list(model.tunable_parameters().values())}


@register_method(
    name="fineclipper",
    title="FineCLIPER",
    source="Chen et al., ACM MM 2024 (arXiv 2407.02157); no public code: this implementation",
    config="dfer.methods.specs.fineclipper:ModelConfig",
    model="dfer.methods.fineclipper:FineCLIPER",
    needs=_needs,
    prediction_needs=_prediction_needs,
    inputs=("frames", "parsing", "landmarks", "captions"),
    pixels="clip",
    checkpoint="tunable",
    zero_shot=True,
    groups=_groups,
    shares_batch=True,
    clip_loss=_clip_loss,
    extras=_extras,
    counts=_counts,
)
def build(cfg: ModelConfig, labels: Sequence[str], **parts: Any) -> Any:
    from dfer.methods.fineclipper import FineCLIPER

    return FineCLIPER(cfg, labels, **parts)
