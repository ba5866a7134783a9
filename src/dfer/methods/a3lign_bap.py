"""A3lign-DFER's three-stage Bidirectional Alignment Paradigm (BAP), torch-free.

The one definition of which parameter groups each BAP stage trains and which video feature it
uses. Both the model core (:meth:`dfer.methods.a3lign.A3lign.set_stage`) and the registration
(:mod:`dfer.methods.specs.a3lign`: the trainer's ``optim.stages``) read it, so the trainer's
optimiser stages and the core's ``requires_grad`` / video feature cannot disagree. It is its own
torch-free module because the registration is imported while the Snakefile is parsed.

The stages (``../shared/METHODS.md`` 4(e), UNVERIFIED): stage 1 the MAT and the text dynamic
encoder with the frame mean as the video feature; stage 2 the video dynamic encoder only; stage
3 all jointly. "Text encoder" of stage 1 is read as the text-side dynamic encoder (the CLIP
towers are frozen by default); a tuned CLIP text / image tower joins the stages of its side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

#: parameter groups (:meth:`dfer.methods.a3lign.A3lign.parameter_groups`); the towers' groups
#: are empty unless ``tune_text_tower`` / ``tune_image_tower``
GROUPS = ("mat", "text_dynamic", "text_tower", "video_dynamic", "image_tower")


@dataclass(frozen=True)
class BAPStage:
    """One stage of the Bidirectional Alignment Paradigm: which groups train, which video feature."""

    number: int
    name: str
    trains: tuple[str, ...]  #: parameter groups tuned in this stage (of :data:`GROUPS`)
    video_feature: Literal["mean", "dynamic"]  #: mean of the frame features, or the video encoder


#: the three BAP stages (METHODS.md 4(e), UNVERIFIED)
BAP_STAGES: tuple[BAPStage, ...] = (
    BAPStage(1, "text alignment", ("mat", "text_dynamic", "text_tower"), "mean"),
    BAPStage(2, "video alignment", ("video_dynamic", "image_tower"), "dynamic"),
    BAPStage(3, "joint", ("mat", "text_dynamic", "text_tower", "video_dynamic", "image_tower"), "dynamic"),
)

#: the notes' epochs per stage (40 / 30 / 30; METHODS.md 4(e), UNVERIFIED)
BAP_EPOCHS = (40, 30, 30)


def bap_stage_of_groups(groups: Iterable[str] | None) -> BAPStage:
    """The BAP stage an optimiser stage training ``groups`` is (None: every group, stage 3).

    An optimiser stage of A3lign-DFER must train exactly one BAP stage's groups (in any order):
    any other set would leave the model's video feature (frame mean or dynamic encoder)
    undefined for it, so it is refused, naming the three allowed sets.
    """
    wanted = set(GROUPS) if groups is None else set(groups)
    for stage in BAP_STAGES:
        if wanted == set(stage.trains):
            return stage
    allowed = "; ".join(f"stage {s.number} ({s.name}): {list(s.trains)}" for s in BAP_STAGES)
    raise ValueError(f"an A3lign-DFER optim stage must train the groups of one BAP stage, got "
                     f"{sorted(wanted)}; allowed: {allowed}")
