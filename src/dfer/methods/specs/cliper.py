"""CLIPER's registration, video version (Li et al., ICME 2024; only the static RAF-DB script is
public: ``muse1998/CLIPER`` at ``02a6713``): what it reads and its training defaults.

The model core is :class:`dfer.methods.cliper.CLIPER` (5 learnable sub-descriptors per class,
the margin loss plus the rarity-weighted fine-grained loss, prediction by the mean over the
sub-descriptors). Defaults, from ``main_RAFDB_CLIPER.py`` (``../shared/METHODS.md`` section 2):

- frames only, CLIP mean/std; frames picked as FineCLIPER's (``uniform``: the video sampler is
  not public, our choice);
- augmentation (the static script's, per clip): ColorJitter(brightness 0.4, hue 0.3), a
  horizontal flip, RandomResizedCrop(scale 0.15-1, ratio 0.3-3.3, torchvision's rule);
- two stages, each with a **new** AdamW (eps 1e-4, weight decay on every parameter): epochs 1-2
  the descriptors only (lr 1e-2, weight decay 0, constant rate); epochs 3-59 the image tower
  only (lr 5e-6, weight decay 0.1, CosineAnnealingWarmRestarts(T0 10) stepped per epoch), the
  descriptors frozen; with ``aggregation: temporal`` the temporal net trains with the image
  tower (our choice, UNVERIFIED);
- batch 128; 59 epochs (``range(1, 60)``); mixed precision (``precision: auto``) instead of the
  script's float16 weights; no gradient clipping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dfer.methods.registry import register_method

#: the static script's two stages (``main_RAFDB_CLIPER.py:178-197``)
OPTIM: dict[str, Any] = {
    "optimizer": "adamw", "eps": 1e-4, "decay_1d": True,
    "stages": [
        {"epochs": 2, "groups": ["descriptors"], "lr": 1e-2, "weight_decay": 0.0, "schedule": "constant"},
        {"groups": ["image", "temporal"], "lr": 5e-6, "weight_decay": 0.1, "schedule": "cosine_restarts",
         "t0": 10, "t_mult": 1, "eta_min": 0.0},
    ],
}
DATA: dict[str, Any] = {
    "num_frames": 16, "batch_size": 128,
    "train_sampler": "uniform", "test_sampler": "uniform",
    "flip": True, "brightness": 0.4, "hue": 0.3,
    "crop_scale": [0.15, 1.0], "crop_ratio": [0.3, 3.3], "crop_rule": "torchvision",
}
TRAINER: dict[str, Any] = {"max_epochs": 59, "gradient_clip_val": None}


def _groups(model: Any) -> dict[str, list[Any]]:
    """The core's groups, with ``temporal`` always named (empty with ``aggregation: mean``), so
    that one stage list serves both aggregations."""
    groups = dict(model.parameter_groups())
    groups.setdefault("temporal", [])
    return groups


@register_method(
    name="cliper",
    title="CLIPER",
    source="Li et al., ICME 2024; public static script muse1998/CLIPER (02a6713); video details UNVERIFIED",
    config="dfer.methods.cliper:CLIPERConfig",
    model="dfer.methods.cliper:CLIPER",
    inputs=("frames",),
    pixels="clip",
    data=DATA,
    optim=OPTIM,
    trainer=TRAINER,
    checkpoint="full",
    zero_shot=False,
    groups=_groups,
    loss_fields=("similarities",),
)
def build(cfg: Any, labels: Sequence[str], **parts: Any) -> Any:
    from dfer.methods.cliper import CLIPER

    return CLIPER(cfg, labels, **parts)
