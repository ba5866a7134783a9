"""DFER-CLIP (Zhao & Patras, BMVC 2023): class descriptors with learnable context, a fully tuned
CLIP image tower and a one-layer temporal transformer with a class token.

Written from the paper and a reading of the public code (``zengqunzhao/DFER-CLIP`` at
``d10d5a4``); equal to that code's ``GenerateModel`` to 1e-5 on the golden fixture
(``tests/fixtures/golden/dferclip``, ``tests/test_method_dferclip.py``)::

    frames [B,T,H,W,3] uint8 -> / 255 (no mean/std) -> CLIP ViT (tuned) -> f [B,T,E]
    f -> ClsTemporalTransformer (1 layer, CLS output) -> v [B,E]
    "X X X X X X X X " + descriptor_c -> token embeddings, rows 1..8 := ctx_c (learned, [C,8,D])
        -> frozen CLIP text transformer, read at the EOT, @ text_projection -> t_c [E]
    logits = normalize(v) @ normalize(t).T / 0.01          (fixed temperature)
    loss = CE(logits, y)

Classes are named, not numbered: the descriptors are looked up by canonical class name
(:mod:`dfer.manifests.labels`), so the class order is the dataset's (MAFW's differs from
DFER-CLIP's list). Weights from a public DFER-CLIP checkpoint load through
:meth:`DFERCLIP.load_public_state_dict`, which renames the keys and reorders the context rows by
class name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from dfer.core.strict_config import StrictConfig
from dfer.manifests.labels import canonical_label, class_labels
from dfer.methods.output import LogitsOutput
from dfer.model.backbone import Tokenizer, build_open_clip
from dfer.model.pixels import frames_to_images
from dfer.model.temporal import ClsTemporalTransformer
from dfer.model.text import encode_text_embeddings

#: DFER-CLIP's class descriptors (public ``models/Text.py:20-28`` and ``:57-69``), by class name.
DESCRIPTORS: dict[str, str] = {
    "happiness": "a smiling mouth, raised cheeks, wrinkled eyes, and arched eyebrows.",
    "sadness": "tears, a downward turned mouth, drooping upper eyelids, and a wrinkled forehead.",
    "neutral": "relaxed facial muscles, a straight mouth, a smooth forehead, and unremarkable eyebrows.",
    "anger": "furrowed eyebrows, narrow eyes, tightened lips, and flared nostrils.",
    "surprise": "widened eyes, an open mouth, raised eyebrows, and a frozen expression.",
    "disgust": "a wrinkled nose, lowered eyebrows, a tightened mouth, and narrow eyes.",
    "fear": "raised eyebrows, parted lips, a furrowed brow, and a retracted chin.",
    "contempt": "one side of its mouth raised, one eyebrow lower and one raised, narrowed eyes, and a raised chin.",
    "anxiety": "a tensed forehead, tightly pressed lips, pupil dilation, and tensed facial muscles.",
    "helplessness": "drooping eyebrows, a downward gaze, a downturned mouth, and lacking expression.",
    "disappointment": "a downturned mouth, lowered eyebrows, narrowed eyes, and a sighing face.",
}

#: The public code's class order: its 7-class list (DFEW, FERV39k) is the first seven of these,
#: its 11-class list (MAFW) all of them. Public checkpoints store context rows in this order.
PUBLIC_CLASS_ORDER: tuple[str, ...] = tuple(DESCRIPTORS)

#: ``text`` choices: the public ``--text-type`` values (the scripts use ``class_descriptor``)
TEXT_TYPES = ("descriptor", "class_name", "class_name_with_context")


@dataclass
class DFERCLIPConfig(StrictConfig):
    """Everything that defines a DFER-CLIP model; unknown keys are refused (:meth:`from_dict`)."""

    CONFIG_NOUN: ClassVar[str] = "dferclip config key"

    #: open_clip architecture of the CLIP backbone; the public code loads OpenAI's ViT-B/32
    #: (QuickGELU), which is open_clip's ``ViT-B-32-quickgelu`` with ``pretrained: openai``
    backbone: str = "ViT-B-32-quickgelu"
    #: open_clip tag or local checkpoint file (as ``model.pretrained``); null = random init
    pretrained: str | None = "openai"
    #: explicit open_clip config (tests, tiny demo models); see ``ModelConfig.model_cfg``
    model_cfg: dict[str, Any] | None = None
    init_seed: int = 0  #: seed of a random-init backbone (``pretrained: null``)
    #: class text: ``descriptor`` (public scripts), ``class_name`` ("happiness."),
    #: ``class_name_with_context`` ("an expression of happiness.")
    text: str = "descriptor"
    #: extra or replacement descriptors by class name, for classes DFER-CLIP has none for
    descriptors: dict[str, str] | None = None
    context_tokens: int = 8  #: learnable context tokens per prompt (scripts: 8)
    class_specific_context: bool = True  #: one context per class (scripts) or one shared
    context_init_std: float = 0.02  #: N(0, std) initialisation of the context
    temporal_layers: int = 1
    temporal_heads: int = 8
    temporal_head_dim: int = 64
    temporal_mlp_dim: int = 1024
    max_frames: int = 16  #: rows of the temporal position table minus the class token's
    temperature: float = 0.01  #: fixed: logits = cos / temperature

    def validate(self) -> None:
        if self.text not in TEXT_TYPES:
            raise ValueError(f"dferclip.text must be one of {list(TEXT_TYPES)}, got {self.text!r}")
        if self.context_tokens < 1:
            raise ValueError(f"dferclip.context_tokens must be >= 1, got {self.context_tokens}")
        if self.temperature <= 0:
            raise ValueError(f"dferclip.temperature must be > 0, got {self.temperature}")
        if self.max_frames < 1:
            raise ValueError(f"dferclip.max_frames must be >= 1, got {self.max_frames}")


def class_text(name: str, cfg: DFERCLIPConfig) -> str:
    """The text that follows the context tokens for class ``name`` (canonical name)."""
    if cfg.text == "class_name":
        return f"{name}."
    if cfg.text == "class_name_with_context":
        return f"an expression of {name}."
    extra = {canonical_label(k): v for k, v in (cfg.descriptors or {}).items()}
    table = {**DESCRIPTORS, **extra}
    if name not in table:
        raise ValueError(
            f"DFER-CLIP has no descriptor for class {name!r} (it has: {', '.join(table)}); "
            "give one with dferclip.descriptors"
        )
    return table[name]


@dataclass
class DFERCLIPOutput(LogitsOutput):
    """One forward pass. Features are unnormalised (the logits use their L2-normalised forms)."""

    logits: torch.Tensor  # [B, C]
    video_features: torch.Tensor  # [B, E], temporal transformer output
    frame_features: torch.Tensor  # [B, T, E], image tower output per frame
    text_features: torch.Tensor  # [C, E], at each prompt's EOT


class DFERCLIP(nn.Module):
    """DFER-CLIP for the classes ``labels`` (any alias; stored as canonical names, in order)."""

    def __init__(
        self,
        cfg: DFERCLIPConfig,
        labels: Sequence[str],
        clip: nn.Module | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.labels = class_labels(labels, "DFER-CLIP")
        if clip is None or tokenizer is None:
            clip, tokenizer = build_open_clip(cfg.backbone, cfg.pretrained, cfg.model_cfg, cfg.init_seed)
        self.clip = clip
        self.tokenizer = tokenizer
        # the image tower is fully tuned, everything else of CLIP stays frozen (public main.py)
        for p in clip.parameters():
            p.requires_grad_(False)
        for p in clip.visual.parameters():
            p.requires_grad_(True)
        self.image_size = int(clip.visual.image_size[0])
        embed_dim = int(clip.visual.output_dim)
        width = int(clip.token_embedding.weight.shape[1])

        n = cfg.context_tokens
        self.prompts = [" ".join(["X"] * n) + " " + class_text(name, cfg) for name in self.labels]
        tokens = tokenizer(self.prompts)
        x_id = int(tokenizer(["X"])[0, 1])
        if not bool((tokens[:, 1 : 1 + n] == x_id).all()):
            raise ValueError("the tokenizer did not give one token per context placeholder 'X'")
        # derived from the prompts at construction: not state (a checkpoint never holds them)
        self.register_buffer("prompt_tokens", tokens, persistent=False)
        self.register_buffer("eot_index", tokens.argmax(dim=-1), persistent=False)
        shape = (len(self.labels), n, width) if cfg.class_specific_context else (n, width)
        self.context = nn.Parameter(torch.randn(shape) * cfg.context_init_std)
        self.temporal = ClsTemporalTransformer(
            embed_dim, cfg.temporal_layers, cfg.temporal_heads, cfg.temporal_head_dim,
            cfg.temporal_mlp_dim, cfg.max_frames,
        )

    # ----------------------------------------------------------------------------- text side
    def prompt_embeddings(self) -> torch.Tensor:
        """``[C, L, D]``: the prompts' token embeddings with rows ``1..n`` replaced by the context."""
        n = self.cfg.context_tokens
        emb = self.clip.token_embedding(self.prompt_tokens)
        ctx = self.context if self.context.ndim == 3 else self.context.expand(len(self.labels), -1, -1)
        return torch.cat([emb[:, :1], ctx.to(emb.dtype), emb[:, 1 + n :]], dim=1)

    def text_features(self) -> torch.Tensor:
        """``[C, E]`` class text features (unnormalised), through the frozen text transformer."""
        return encode_text_embeddings(self.clip, self.prompt_embeddings(), self.eot_index)

    # ----------------------------------------------------------------------------- video side
    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """Per-frame image features ``[B, T, E]`` of pixels ``[B, T, 3, S, S]`` in [0, 1]."""
        b, t = pixels.shape[:2]
        feats = self.clip.visual(pixels.reshape(b * t, *pixels.shape[2:]))
        return feats.view(b, t, -1)

    def forward_pixels(self, pixels: torch.Tensor) -> DFERCLIPOutput:
        """The model on pixels ``[B, T, 3, S, S]`` in [0, 1], un-normalised (as the public code)."""
        if pixels.ndim != 5 or pixels.shape[2] != 3:
            raise ValueError(f"expected pixels [B, T, 3, H, W], got {tuple(pixels.shape)}")
        frames = self.encode_frames(pixels)
        video = self.temporal(frames)
        text = self.text_features()
        logits = F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).T / self.cfg.temperature
        return DFERCLIPOutput(logits=logits, video_features=video, frame_features=frames, text_features=text)

    def forward(self, frames: torch.Tensor) -> DFERCLIPOutput:
        """The model on decoded frames, uint8 (or 0..255) ``[B, T, H, W, 3]``, resized to the
        tower's size and divided by 255."""
        b, t = frames.shape[:2]
        images = frames_to_images(frames, self.image_size) / 255.0
        return self.forward_pixels(images.view(b, t, *images.shape[1:]))

    def losses(self, out: DFERCLIPOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy over the fixed-temperature logits (the public loss)."""
        ce = F.cross_entropy(out.logits, targets)
        return {"loss": ce, "ce": ce}

    # ----------------------------------------------------------------------------- parameters
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The public optimiser groups (SGD lr 1e-2 / 1e-5 / 1e-3 in ``main.py``)."""
        return {
            "temporal": list(self.temporal.parameters()),
            "image": list(self.clip.visual.parameters()),
            "prompts": [self.context],
        }

    def tunable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def load_public_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a public DFER-CLIP ``GenerateModel`` state dict (strictly: every weight of this
        model must be in it), see :func:`from_public_state_dict`."""
        mapped = from_public_state_dict(state, self.labels)
        own = self.state_dict()
        missing, unexpected = sorted(set(own) - set(mapped)), sorted(set(mapped) - set(own))
        wrong = sorted(k for k in set(own) & set(mapped) if own[k].shape != mapped[k].shape)
        if missing or unexpected or wrong:
            raise ValueError(
                f"public DFER-CLIP weights do not fit this model: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
            )
        self.load_state_dict(mapped, strict=True)


#: public temporal-net names -> ours (``Temporal_Transformer_Cls`` -> ClsTemporalTransformer)
_TEMPORAL_RENAMES = (
    (r"^temporal_net\.temporal_transformer\.layers\.(\d+)\.0\.fn\.norm\.", r"temporal.layers.\1.attn_norm."),
    (r"^temporal_net\.temporal_transformer\.layers\.(\d+)\.0\.fn\.fn\.to_qkv\.", r"temporal.layers.\1.qkv."),
    (r"^temporal_net\.temporal_transformer\.layers\.(\d+)\.0\.fn\.fn\.to_out\.0\.", r"temporal.layers.\1.proj."),
    (r"^temporal_net\.temporal_transformer\.layers\.(\d+)\.1\.fn\.norm\.", r"temporal.layers.\1.mlp_norm."),
    (r"^temporal_net\.temporal_transformer\.layers\.(\d+)\.1\.fn\.fn\.net\.0\.", r"temporal.layers.\1.fc1."),
    (r"^temporal_net\.temporal_transformer\.layers\.(\d+)\.1\.fn\.fn\.net\.3\.", r"temporal.layers.\1.fc2."),
    (r"^temporal_net\.(cls_token|pos_embedding)$", r"temporal.\1"),
)
#: the public text encoder re-uses these CLIP members under ``text_encoder.``
_TEXT_ENCODER_MEMBERS = ("transformer.", "positional_embedding", "ln_final.", "text_projection")


def from_public_state_dict(state: Mapping[str, torch.Tensor], labels: Sequence[str]) -> dict[str, torch.Tensor]:
    """A public DFER-CLIP ``GenerateModel.state_dict()`` in this module's names.

    Accepts what its ``main.py`` saves under ``state_dict`` (``module.`` prefixes from
    ``DataParallel``): ``clip_model_.*`` is the whole CLIP (``image_encoder.*`` and
    ``text_encoder.*`` are the same tensors again and must agree with it), ``temporal_net.*``
    is renamed, the derived ``prompt_learner.token_prefix`` / ``token_suffix`` buffers are
    dropped, and ``prompt_learner.ctx`` rows, in the public class order
    (:data:`PUBLIC_CLASS_ORDER`), are reordered to ``labels`` by class name.
    """
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("clip_model_."):
            out["clip." + key[len("clip_model_."):]] = value
        elif key.startswith("image_encoder."):
            aliases["clip.visual." + key[len("image_encoder."):]] = value
        elif key.startswith("text_encoder.") and key[len("text_encoder."):].startswith(_TEXT_ENCODER_MEMBERS):
            aliases["clip." + key[len("text_encoder."):]] = value
        elif key in ("prompt_learner.token_prefix", "prompt_learner.token_suffix"):
            continue
        elif key == "prompt_learner.ctx":
            out["context"] = _reorder_context(value, labels)
        elif key.startswith("temporal_net."):
            for pattern, repl in _TEMPORAL_RENAMES:
                if re.match(pattern, key):
                    out[re.sub(pattern, repl, key)] = value
                    break
            else:
                raise ValueError(f"unknown public DFER-CLIP temporal weight {key!r}")
        else:
            raise ValueError(f"unknown public DFER-CLIP weight {key!r}")
    for key, value in aliases.items():  # shared modules: the copies must be the same tensors
        if key in out and not torch.equal(out[key], value):
            raise ValueError(f"public DFER-CLIP weights disagree between clip_model_ and its alias for {key!r}")
        out.setdefault(key, value)
    return out


def _reorder_context(ctx: torch.Tensor, labels: Sequence[str]) -> torch.Tensor:
    """Public class-specific context rows (public class order) -> rows in ``labels`` order."""
    if ctx.ndim == 2:  # one generic context: no class order
        return ctx
    public = PUBLIC_CLASS_ORDER[: ctx.shape[0]]
    if ctx.shape[0] not in (7, 11):
        raise ValueError(f"public DFER-CLIP context has {ctx.shape[0]} classes; its code has 7 or 11")
    names = [canonical_label(x) for x in labels]
    absent = [n for n in names if n not in public]
    if absent:
        raise ValueError(f"classes {absent} have no context in the public {len(public)}-class weights")
    return ctx[[public.index(n) for n in names]]
