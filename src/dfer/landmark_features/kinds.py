"""The kinds of landmark feature map a run can store, and what each one is.

A method that reads landmark features is built for one kind: S2D's landmark prompters take
MobileFaceNet ``conv_4`` features (128 channels) in its public code, and 68 channels when fed
FAN heat maps. The kind is written into every shard's provenance and checked by the reader
(:func:`dfer.landmark_features.open_landmark_features`), so a run never feeds one kind to a
model configured for the other.
"""

from __future__ import annotations

from dataclasses import dataclass

#: side of the stored maps: the patch grid of a 224 px ViT-B/16 (S2D's), 112 px / 8 for
#: MobileFaceNet's ``conv_4``
GRID = 14


@dataclass(frozen=True)
class FeatureKind:
    """One kind of landmark feature map: ``[T, channels, GRID, GRID]`` per clip."""

    name: str
    backend: str  #: the ``landmark_features.backend`` that writes it
    channels: int
    input_size: int  #: side of the square image the network reads
    description: str


MOBILEFACENET_CONV4 = FeatureKind(
    "mobilefacenet_conv4", "mobilefacenet", 128, 112,
    "MobileFaceNet conv_4 output of the frame resized to 112 px (S2D's landmark input)",
)
FAN_HEATMAP_14 = FeatureKind(
    "fan_heatmap_14", "fan_heatmaps", 68, 256,
    "FAN 2D heat maps (68 landmarks) of the 256 px face crop, averaged over each cell of the "
    "frame's 14 x 14 grid",
)

FEATURE_KINDS: dict[str, FeatureKind] = {k.name: k for k in (MOBILEFACENET_CONV4, FAN_HEATMAP_14)}
KIND_OF_BACKEND: dict[str, FeatureKind] = {k.backend: k for k in FEATURE_KINDS.values()}


def feature_kind(name: str) -> FeatureKind:
    """The kind called ``name``; ``ValueError`` listing the known kinds otherwise."""
    if name not in FEATURE_KINDS:
        raise ValueError(f"unknown landmark feature kind {name!r}; known: {', '.join(FEATURE_KINDS)}")
    return FEATURE_KINDS[name]
