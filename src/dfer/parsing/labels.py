"""The canonical face-parsing label set, and the mapping of each parser's labels onto it.

Every parsing map dfer stores uses these uint8 values, whatever produced it:

====  ============  =========================================================
 id   name          region
====  ============  =========================================================
  0   background    everything else
  1   skin          facial skin (lapa/celebm ``face``; polygon: jaw + brow hull)
  2   l_brow        subject's left eyebrow
  3   r_brow        subject's right eyebrow
  4   l_eye         subject's left eye
  5   r_eye         subject's right eye
  6   nose          nose
  7   upper_lip     upper lip
  8   inner_mouth   mouth opening (teeth, tongue)
  9   lower_lip     lower lip
 10   hair          hair
 11   l_ear         subject's left ear (celebm only)
 12   r_ear         subject's right ear (celebm only)
 13   neck          neck (celebm only)
 14   cloth         clothes (celebm only)
 15   eyeglasses    glasses (celebm only)
 16   hat           hat (celebm only)
 17   earring       earring (celebm only)
 18   necklace      necklace (celebm only)
====  ============  =========================================================

"Left"/"right" are the subject's sides, as in the 68-point annotation (points 17-21 are the
subject's right brow). The facer models are mapped by their *label names*: the lapa and
celebm models order their classes differently, so mapping by index would silently swap
regions. facer's own short names are taken at face value (``rb`` -> ``r_brow``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

LABELS: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "upper_lip",
    "inner_mouth", "lower_lip", "hair", "l_ear", "r_ear", "neck", "cloth", "eyeglasses", "hat",
    "earring", "necklace",
)
LABEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(LABELS)}

#: facer (FaRL lapa / celebm) label name -> canonical label name.
FACER_NAMES: dict[str, str] = {
    "background": "background", "face": "skin", "rb": "r_brow", "lb": "l_brow",
    "re": "r_eye", "le": "l_eye", "nose": "nose", "ulip": "upper_lip", "imouth": "inner_mouth",
    "llip": "lower_lip", "hair": "hair", "neck": "neck", "cloth": "cloth", "rr": "r_ear",
    "lr": "l_ear", "eyeg": "eyeglasses", "hat": "hat", "earr": "earring", "neck_l": "necklace",
}


def label_lut(model_names: Sequence[str], aliases: Mapping[str, str] = FACER_NAMES) -> np.ndarray:
    """uint8 lookup table: a model's class index -> canonical label id, built by name."""
    lut = np.zeros(len(model_names), dtype=np.uint8)
    for i, name in enumerate(model_names):
        canonical = aliases.get(name, name)
        if canonical not in LABEL_INDEX:
            raise ValueError(
                f"parser label {name!r} (class {i}) has no canonical label; known names: "
                f"{sorted(aliases)}"
            )
        lut[i] = LABEL_INDEX[canonical]
    return lut


def seg_to_canonical(seg: Mapping[str, Any]) -> np.ndarray:
    """facer's ``data['seg']`` (``logits`` [N, C, H, W], ``label_names``) -> uint8 [N, H, W]."""
    logits = seg["logits"]
    names = list(seg["label_names"])
    if logits.shape[1] != len(names):
        raise ValueError(f"parser returned {logits.shape[1]} classes but {len(names)} label names")
    classes = logits.argmax(dim=1).cpu().numpy() if hasattr(logits, "cpu") else np.argmax(logits, 1)
    return label_lut(names)[classes]


def area_fractions(label_map: np.ndarray) -> np.ndarray:
    """Fraction of pixels per canonical label: [..., H, W] uint8 -> [..., len(LABELS)] float32."""
    lead = label_map.shape[:-2]
    flat = label_map.reshape(-1, label_map.shape[-2] * label_map.shape[-1])
    counts = np.stack([np.bincount(row, minlength=len(LABELS))[: len(LABELS)] for row in flat]) \
        if len(flat) else np.zeros((0, len(LABELS)))
    return (counts / max(1, flat.shape[1])).astype(np.float32).reshape(*lead, len(LABELS))
