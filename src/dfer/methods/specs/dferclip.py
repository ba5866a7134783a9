"""DFER-CLIP's registration (Zhao & Patras, BMVC 2023; public code ``zengqunzhao/DFER-CLIP`` at
``d10d5a4``): what it reads and its public training defaults.

The model core is :class:`dfer.methods.dferclip.DFERCLIP` (class descriptors with learnable
class-specific context, a fully tuned CLIP ViT-B/32, a one-layer temporal transformer with a
class token, cosine / 0.01). Defaults, from the public ``main.py`` and
``dataloader/video_dataloader.py`` (``../shared/METHODS.md`` section 1):

- frames only, un-normalised pixels in [0, 1];
- training frames: one random frame per segment (``segment_random``); test: segment centres;
- augmentation: ``GroupRandomSizedCrop`` (area 0.08-1, ratio 3/4-4/3) and a horizontal flip;
  the dataset-specific ones (DFEW: brightness 0.5; FERV39k: rotation 4 degrees) are set by the
  presets (``config/methods/dferclip/``), being per dataset;
- SGD, momentum 0.9, weight decay 1e-4 (on every parameter), learning rates temporal 1e-2 /
  image 1e-5 / prompts 1e-3, MultiStepLR at epochs 30 and 40 (x 0.1), 50 epochs, batch 48,
  float32 (no clipping: the public loop has none).

Not copied: the public code keeps the epoch that scores best **on the test fold**; dfer keeps
the last epoch (docs/methods.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dfer.methods.registry import register_method

#: the public optimiser, one stage (``main.py:163-173``)
OPTIM: dict[str, Any] = {
    "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4, "decay_1d": True,
    "lr": 1e-2, "group_lr": {"temporal": 1e-2, "image": 1e-5, "prompts": 1e-3},
    "schedule": "multistep", "milestones": [30, 40], "gamma": 0.1,
}
#: the public frames and augmentation shared by its three datasets
DATA: dict[str, Any] = {
    "num_frames": 16, "batch_size": 48,
    "train_sampler": "segment_random", "test_sampler": "segment_centre",
    "flip": True, "crop_scale": [0.08, 1.0], "crop_ratio": [3 / 4, 4 / 3], "crop_rule": "group",
}
TRAINER: dict[str, Any] = {"max_epochs": 50, "precision": "32-true", "gradient_clip_val": None}


@register_method(
    name="dferclip",
    title="DFER-CLIP",
    source="Zhao & Patras, BMVC 2023; public code zengqunzhao/DFER-CLIP (d10d5a4)",
    config="dfer.methods.dferclip:DFERCLIPConfig",
    model="dfer.methods.dferclip:DFERCLIP",
    inputs=("frames",),
    pixels="unit",
    data=DATA,
    optim=OPTIM,
    trainer=TRAINER,
    checkpoint="full",
    zero_shot=False,
    loss_fields=("logits",),
)
def build(cfg: Any, labels: Sequence[str], **parts: Any) -> Any:
    from dfer.methods.dferclip import DFERCLIP

    return DFERCLIP(cfg, labels, **parts)
