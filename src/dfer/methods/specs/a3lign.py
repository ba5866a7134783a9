"""A3lign-DFER's registration (Tao et al., 2024; **no public code**): what it reads and its
training defaults, every one UNVERIFIED (``../shared/METHODS.md`` section 4; the list with each
config key: docs/methods.md, "A3lign-DFER").

The model core is :class:`dfer.methods.a3lign.A3lign` (MAT prompts, the JAS dynamic encoders,
the BAP stages). Defaults:

- frames only (16), CLIP mean/std; frames picked as FineCLIPER's (``uniform``: the sampler is
  not described, our choice); augmentation: the notes' "resize to 120, crop 112" as a random
  square crop of (112/120)^2 of the frame's area, resized to the tower's size, plus a
  horizontal flip (our choice); test frames uncropped;
- BAP as three optimiser ``stages`` whose groups are :data:`dfer.methods.a3lign_bap.BAP_STAGES`'
  own (one definition): 40 / 30 / 30 epochs, each with a **new** SGD (the notes: SGD, batch 64;
  momentum 0.9, weight decay 1e-4 and the rates are DFER-CLIP's, our choice: MAT 1e-3 as its
  prompts, dynamic encoders 1e-2 as its temporal net, a tuned tower 1e-5 as its image tower),
  each stage a cosine decay over its epochs (our choice);
- at each stage's start the trainer calls :func:`enter_stage`, which puts the model into the
  BAP stage whose groups the optimiser stage trains (the frame mean in stage 1): the optimiser
  and the model cannot disagree on what a stage trains, and an ``optim.stages`` entry with any
  other set of groups is refused by the config check (:func:`check_run`), before any job runs;
- checkpoint ``tunable``: the MAT, both dynamic encoders (and a tuned tower) and the BAP stage
  the run ended in; the frozen CLIP is re-created from ``pretrained`` / ``init_seed``;
- no zero-shot: the class names do enter the prompts, but each class's MAT rows are learned
  for that class, so an unseen class has no prompt to score with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dfer.methods.a3lign_bap import BAP_EPOCHS, BAP_STAGES, bap_stage_of_groups
from dfer.methods.registry import register_method

#: per-group learning rates (UNVERIFIED: DFER-CLIP's prompts / temporal / image rates)
GROUP_LR: dict[str, float] = {"mat": 1e-3, "text_dynamic": 1e-2, "video_dynamic": 1e-2,
                              "text_tower": 1e-5, "image_tower": 1e-5}
#: the three BAP stages as optimiser stages: groups from BAP_STAGES, a new SGD each (UNVERIFIED)
OPTIM: dict[str, Any] = {
    "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4, "decay_1d": True,
    "lr": 1e-3, "group_lr": GROUP_LR,
    "schedule": "warmup_cosine", "warmup_fraction": 0.0, "min_lr_ratio": 0.0,
    "stages": [{"epochs": epochs, "groups": list(stage.trains)}
               for stage, epochs in zip(BAP_STAGES, BAP_EPOCHS, strict=True)],
}
#: (112 / 120)^2: the notes' 112 px crop of a 120 px frame, as an area share
CROP_AREA = (112 / 120) ** 2
DATA: dict[str, Any] = {
    "num_frames": 16, "batch_size": 64,
    "train_sampler": "uniform", "test_sampler": "uniform",
    "flip": True, "crop_scale": [CROP_AREA, CROP_AREA], "crop_ratio": [1.0, 1.0], "crop_rule": "torchvision",
}
TRAINER: dict[str, Any] = {"max_epochs": sum(BAP_EPOCHS), "precision": "auto", "gradient_clip_val": None}


def enter_stage(model: Any, stage: Any, alone: bool) -> None:
    """Put ``model`` into the BAP stage whose groups the optimiser stage ``stage`` trains (its
    video feature; with one process also exactly its ``requires_grad``, as the trainer set them)."""
    model.set_stage(bap_stage_of_groups(stage.groups).number, freeze=alone)


def check_run(run: Any) -> None:
    """Every optimiser stage of the run must train exactly one BAP stage's groups (before any job
    runs; :func:`enter_stage` could not put the model into a stage otherwise)."""
    for i, stage in enumerate(run.optim.resolved_stages()):
        try:
            bap_stage_of_groups(stage.groups)
        except ValueError as exc:
            where = f"optim.stages[{i}].groups" if run.optim.stages else "optim.groups"
            raise ValueError(f"{where}: {exc}") from None


@register_method(
    name="a3lign",
    title="A3lign-DFER",
    source="Tao et al., 2024; no public code: abstract and third-party notes, every detail UNVERIFIED",
    config="dfer.methods.a3lign:A3lignConfig",
    model="dfer.methods.a3lign:A3lign",
    inputs=("frames",),
    pixels="clip",
    data=DATA,
    optim=OPTIM,
    trainer=TRAINER,
    checkpoint="tunable",
    zero_shot=False,
    enter_stage=enter_stage,
    check_run=check_run,
    loss_fields=("logits",),
)
def build(cfg: Any, labels: Sequence[str], **parts: Any) -> Any:
    from dfer.methods.a3lign import A3lign

    return A3lign(cfg, labels, **parts)
