"""S2D's registration (Chen et al., TAFFC 2024; public code ``MSA-LMC/S2D`` at ``e1b5e5d``): its
config, what it reads and its training defaults. The model core is :class:`dfer.methods.s2d.S2D`.

Torch-free, as every registration: the Snakefile asks :func:`_needs` which landmark feature
kind a run reads while it is parsed, so :class:`S2DConfig` lives here (``dfer.methods.s2d``
re-exports it). Defaults, from the public fine-tuning scripts (``../shared/METHODS.md``
section 3) where the trainer can do what they do, and our choice (docs/methods.md) where not:

- frames plus landmark feature maps of one kind (``landmark_kind``; a shard of another kind is
  refused when read), ImageNet mean/std;
- 16 consecutive frames, a random window start in training (``window_random``); at test one
  centred window (``window_centre``). The public 2 segments x 2 crops are four copies of the
  whole clip on DFEW's 16 square frames (the same input); on FERV39k / MAFW's full frame
  folders they are the first and last windows, which one window per clip cannot repeat
  (docs/methods.md, S2D);
- augmentation: RandAugment m7-n4, random erasing, mixup and cutmix are not among the trainer's
  options; their colour part is approximated by a per-clip colour jitter of RandAugment's
  magnitude-7 enhance range (factors 1 +- 0.63). Flips, crops and rotations are off: cached
  landmark maps cannot follow a geometric change of the frames (the public code recomputes
  them on the augmented clip), and the data loader refuses them for a run that reads maps;
- AdamW (weight decay 0.05, none on biases and norms), lr 1e-5 x 16 / 8 = 2e-5 at the public
  global batch of 16, per-step cosine after 2 warm-up epochs of 100 (``warmup_fraction``
  0.02); 100 epochs; no gradient clipping;
- checkpoint ``full``: the static backbone (ours from a static run, or a local file) is not
  needed again to evaluate or predict;
- SDL through the trainer: ``loss_fields`` gathers the logits and the head features of the
  global batch under DDP, so every process updates the same class queues; the epoch reaches
  the loss weight through ``on_epoch``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dfer.core.strict_config import StrictConfig
from dfer.methods.registry import register_method

#: the public SDL weight schedule (``utils/loss.py: update_weight``): [first epoch, weight]
SDL_SCHEDULE: tuple[tuple[int, float], ...] = ((0, 0.0), (30, 0.01), (50, 0.1), (60, 0.5), (80, 1.0))

#: the feature map of the public code: MobileFaceNet ``conv_4`` (dfer.landmark_features.kinds)
DEFAULT_LANDMARK_KIND = "mobilefacenet_conv4"


@dataclass
class S2DConfig(StrictConfig):
    """Everything that defines an S2D model; unknown keys are refused (:meth:`from_dict`).
    Defaults are the public ``s2d_base_patch16_224`` as the scripts build it."""

    CONFIG_NOUN: ClassVar[str] = "s2d config key"

    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    num_frames: int = 16
    #: the kind of landmark feature map the run reads (dfer.landmark_features.FEATURE_KINDS:
    #: ``mobilefacenet_conv4``, 128 channels, the public input; ``fan_heatmap_14``, 68); null:
    #: maps given directly (the golden fixture's 8 channels), no run can read them
    landmark_kind: str | None = DEFAULT_LANDMARK_KIND
    #: channels of the landmark feature map (MobileFaceNet ``conv_4``: 128); must be the kind's.
    #: The map must have the patch grid's size (14 x 14 for 224 px / 16)
    landmark_channels: int = 128
    prompt_hidden: int = 8  #: MCP bottleneck (public ``hidden_dim``)
    adapter_ratio: float = 0.25  #: TMA bottleneck = ratio * embed_dim (public ``adapter_scale``)
    adapter_heads: int = 8  #: heads of the TMA's frame attention
    fovea_sharpness: float = 10.0  #: initial Fovea sharpness (public ``smooth``)
    head_dropout: float = 0.5  #: public: 0.5 (DFEW, MAFW); FERV39k scripts use 0
    #: TMAs and the temporal embedding (the video model); false: the static image model of the
    #: first stage (MCPs only), whose checkpoint a video run starts from (``static_from``)
    temporal: bool = True
    #: train the ViT too (our static stage: the public static model's training is not public);
    #: false: the backbone is frozen (the video stage, as public)
    tune_backbone: bool = False
    #: local static checkpoint (timm ViT-B/16 layout, a public S2D one, or a dfer S2D checkpoint),
    #: loaded into the backbone (and the MCPs and a head of the same classes where it has them);
    #: null = random backbone (tests). With ``static_from`` the workflow sets it.
    pretrained: str | None = None
    #: ``{run: <static run>, dataset: <static dataset>, fold: 1}``: start from that run's fold
    #: checkpoint, made by the workflow before this run trains (declared as the train job's input)
    static_from: dict[str, Any] | None = None
    #: cross-entropy label smoothing (public DFEW / MAFW: 0.1, inside its mixup SoftTargetCE)
    label_smoothing: float = 0.0
    #: self-distillation (SDL); the public scripts enable it for FERV39k only
    sdl: bool = False
    sdl_top_k: int = 2
    sdl_queue_size: int = 16
    #: update the class queues with every training batch (the paper's emotion anchors); false:
    #: the queues stay at their random start, as the public FERV39k script's update interval
    #: (100, never reached) leaves them
    sdl_update_queues: bool = True
    #: ``[first epoch, weight]`` pairs: an epoch takes the weight of the last pair it reached
    sdl_schedule: list[list[float]] = field(default_factory=lambda: [list(p) for p in SDL_SCHEDULE])

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def adapter_hidden(self) -> int:
        return int(self.embed_dim * self.adapter_ratio)

    def validate(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(f"s2d.img_size {self.img_size} is not a multiple of s2d.patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"s2d.embed_dim {self.embed_dim} is not divisible by s2d.num_heads {self.num_heads}")
        if self.adapter_hidden < 1 or self.adapter_hidden % self.adapter_heads:
            raise ValueError(
                f"the TMA width embed_dim * adapter_ratio = {self.adapter_hidden} must be a positive "
                f"multiple of s2d.adapter_heads {self.adapter_heads}"
            )
        if min(self.depth, self.num_frames, self.landmark_channels, self.prompt_hidden) < 1:
            raise ValueError("s2d.depth, num_frames, landmark_channels and prompt_hidden must be >= 1")
        if not 0 <= self.head_dropout < 1:
            raise ValueError(f"s2d.head_dropout must be in [0, 1), got {self.head_dropout}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"s2d.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.sdl_top_k < 1 or self.sdl_queue_size < self.sdl_top_k:
            raise ValueError("s2d.sdl_top_k must be >= 1 and <= s2d.sdl_queue_size")
        starts = [p[0] for p in self.sdl_schedule]
        if not self.sdl_schedule or any(len(p) != 2 for p in self.sdl_schedule) or starts != sorted(starts) or starts[0] != 0:
            raise ValueError(f"s2d.sdl_schedule must be [first epoch, weight] pairs from epoch 0, ascending; got {self.sdl_schedule}")
        if self.landmark_kind is not None:
            from dfer.landmark_features.kinds import GRID, feature_kind

            kind = feature_kind(self.landmark_kind)
            if kind.channels != self.landmark_channels:
                raise ValueError(f"s2d.landmark_kind {kind.name!r} has {kind.channels} channels but "
                                 f"s2d.landmark_channels is {self.landmark_channels}: set landmark_channels: "
                                 f"{kind.channels}")
            if self.grid != GRID:
                raise ValueError(f"s2d: landmark feature maps are {GRID} x {GRID}, but img_size / patch_size "
                                 f"= {self.img_size} / {self.patch_size} gives a {self.grid} x {self.grid} patch grid")
        if self.static_from is not None:
            self._check_static_from()

    def _check_static_from(self) -> None:
        src = self.static_from
        if not isinstance(src, Mapping) or set(src) - {"run", "dataset", "fold"} or not {"run", "dataset"} <= set(src):
            raise ValueError(f"s2d.static_from must be {{run: <static run>, dataset: <static dataset>, fold: 1}}, "
                             f"got {src!r}")
        if not isinstance(src.get("fold", 1), int) or src.get("fold", 1) < 1:
            raise ValueError(f"s2d.static_from.fold must be a fold number >= 1, got {src.get('fold')!r}")
        if not self.temporal:
            raise ValueError("s2d.static_from is for the video stage (temporal: true), not a static run")

    @property
    def static_fold(self) -> int:
        return int((self.static_from or {}).get("fold", 1))


def _needs(block: Mapping[str, Any]) -> Any:
    """Frames and the landmark feature maps of the configured kind (parsed with the config's own
    defaults, so the rules and the trainer cannot disagree about the kind)."""
    from dfer.train.inputs import Needs

    cfg = S2DConfig.from_dict(dict(block))
    if cfg.landmark_kind is None:
        raise ValueError("model.landmark_kind: a run reads stored landmark features, so it must name their "
                         "kind (mobilefacenet_conv4 or fan_heatmap_14)")
    return Needs(landmark_features=cfg.landmark_kind)


def _groups(model: Any) -> dict[str, list[Any]]:
    """What trains: the landmark prompters (embedding, norms, MCPs), the temporal adapters with
    the temporal embedding, the head (with its final norm), and the backbone when tuned."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    parts = {"prompts": ("landmark_embed.", "prompt_norms.", "prompters."),
             "adapters": ("tmas.", "temporal_embedding"), "head": ("head.", "ln_post.")}
    groups: dict[str, list[Any]] = {name: [] for name in (*parts, "backbone")}
    for n, p in named:
        part = next((k for k, prefixes in parts.items() if n.startswith(prefixes)), "backbone")
        groups[part].append(p)
    return groups


def _on_epoch(model: Any, epoch: int) -> None:
    model.sdl_epoch = int(epoch)


#: 16 consecutive frames (window_random / window_centre), colour-only augmentation (module doc)
DATA: dict[str, Any] = {
    "num_frames": 16, "batch_size": 16,
    "train_sampler": "window_random", "test_sampler": "window_centre",
    "flip": False, "brightness": 0.63, "contrast": 0.63, "saturation": 0.63,
}
OPTIM: dict[str, Any] = {"optimizer": "adamw", "lr": 2e-5, "weight_decay": 0.05, "decay_1d": False,
                         "schedule": "warmup_cosine", "warmup_fraction": 0.02, "min_lr_ratio": 0.0}
TRAINER: dict[str, Any] = {"max_epochs": 100, "gradient_clip_val": None}


@register_method(
    name="s2d",
    title="S2D",
    source="Chen et al., TAFFC 2024; public code MSA-LMC/S2D (e1b5e5d)",
    config="dfer.methods.specs.s2d:S2DConfig",
    model="dfer.methods.s2d:S2D",
    needs=_needs,
    inputs=("frames", "landmark_features"),
    pixels="imagenet",
    data=DATA,
    optim=OPTIM,
    trainer=TRAINER,
    checkpoint="full",
    zero_shot=False,
    groups=_groups,
    loss_fields=("logits", "features"),
    on_epoch=_on_epoch,
)
def build(cfg: S2DConfig, labels: Sequence[str], **parts: Any) -> Any:
    from dfer.methods.s2d import S2D

    return S2D(cfg, labels, **parts)
