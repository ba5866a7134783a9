"""What every CLIP-based method's config shares: the four backbone keys and their rules.

FineCLIPER, DFER-CLIP, CLIPER and A3lign-DFER all load an open_clip backbone from the same
keys (``backbone``, ``pretrained``, ``model_cfg``, ``init_seed``) through
:func:`dfer.model.backbone.build_clip`; :class:`BackboneConfig` holds those keys and the
rules that refuse a backbone that would silently come out random. Each method's own config
lives with the method (``dfer.methods``; FineCLIPER's :class:`ModelConfig` in
:mod:`dfer.methods.specs.fineclipper`).

Standard library only: the Snakefile reads the method configs while it is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def looks_like_path(value: str) -> bool:
    """A local checkpoint reference rather than an open_clip tag such as ``openai``."""
    return "/" in value or "\\" in value or value.endswith((".pt", ".pth", ".bin", ".safetensors"))


@dataclass
class BackboneConfig:
    """The backbone keys of a method's ``model`` block (see ``ModelConfig`` for their meaning)."""

    backbone: str = "ViT-B-16-quickgelu"
    pretrained: str | None = "openai"
    model_cfg: dict[str, Any] | None = None
    init_seed: int = 0

    def validate(self) -> None:
        """Refuse a backbone that would not be what the keys ask for, naming the key."""
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

    def open_clip_cfg(self) -> dict[str, Any] | None:
        """The explicit open_clip config to instantiate, or None for a named model."""
        if self.model_cfg is not None:
            return self.model_cfg
        if self.backbone == "tiny":
            return TINY_CLIP_CFG
        return None


def backbone_of(cfg: Any) -> BackboneConfig:
    """The backbone keys of any method config that has them."""
    return BackboneConfig(backbone=cfg.backbone, pretrained=cfg.pretrained, model_cfg=cfg.model_cfg,
                          init_seed=int(getattr(cfg, "init_seed", 0)))


def __getattr__(name: str) -> Any:
    """Compatibility: FineCLIPER's ``ModelConfig`` and ``migrate_v1`` lived here before the
    method registry; imported on first use (their module imports this one)."""
    if name in ("ModelConfig", "migrate_v1"):
        from dfer.methods.specs import fineclipper

        return getattr(fineclipper, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
