"""A3lign-DFER (Tao et al., 2024): a learnable Multi-Dimensional Alignment Token (MAT), matching
temporal "dynamic encoders" for video and text (JAS), and a three-stage training schedule (BAP).

No code is public. Written from the paper's abstract and third-party notes
(``../shared/METHODS.md`` section 4); **every** detail below is UNVERIFIED, and each choice is a
config key (:class:`A3lignConfig`) listed in ``docs/methods.md``::

    MAT [C, S, L, D]  (class x sentence x token), N(0, 0.02)
    prompt (c, s) = [SOS] + MAT[c, s] (L rows) + tokens of "{class name}." + [EOT]
        -> frozen CLIP text transformer, read at the EOT -> sentence features u [C, S, E]
    text dynamic encoder  (ClsTemporalTransformer over the S sentences, the sentence index as
        the text's "time" axis)                           -> t [C, E]
    frames [B, T, H, W, 3] -> frozen CLIP ViT -> f [B, T, E]
    video dynamic encoder (ClsTemporalTransformer over the T frames, same architecture as the
        text one, its own weights)                         -> v [B, E]   (stage 1: mean_t f)
    logits = normalize(v) @ normalize(t).T / temperature;  loss = CE(logits, y)

BAP (:data:`BAP_STAGES`, :meth:`A3lign.set_stage`): stage 1 tunes the MAT and the text dynamic
encoder with the frame mean as the video feature; stage 2 the video dynamic encoder only; stage
3 all of them jointly. The stages' groups and video features are defined once, torch-free, in
:mod:`dfer.methods.a3lign_bap`; their epochs and optimisers are the trainer's ``optim.stages``
(the registration, :mod:`dfer.methods.specs.a3lign`: 40 / 30 / 30 epochs by default), which
enters each stage through :meth:`A3lign.set_stage`. The stage is model state (the buffer
``stage_number``, saved in checkpoints), so a trained model predicts in the stage it ended in.

The two dynamic encoders are DFER-CLIP's class-token temporal transformer
(:class:`dfer.model.temporal.ClsTemporalTransformer`, shared with DFER-CLIP and CLIPER, not
copied); the prompts go through the shared embedding-input text encoder
(:func:`dfer.model.text.encode_text_embeddings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from dfer.core.strict_config import StrictConfig
from dfer.manifests.labels import class_labels
from dfer.methods.a3lign_bap import BAP_STAGES, GROUPS, BAPStage
from dfer.methods.output import LogitsOutput
from dfer.model.backbone import Tokenizer, build_open_clip, image_mean_std
from dfer.model.pixels import frames_to_images
from dfer.model.temporal import ClsTemporalTransformer
from dfer.model.text import encode_text_embeddings

CLASS_TEXTS = ("name", "none")
PIXEL_NORMALIZATIONS = ("clip", "none")

# BAP's stages and groups are defined once, torch-free, for the core and the registration alike
__all__ = ["BAP_STAGES", "GROUPS", "A3lign", "A3lignConfig", "A3lignOutput", "BAPStage"]


@dataclass
class A3lignConfig(StrictConfig):
    """Everything that defines an A3lign-DFER model; unknown keys are refused (:meth:`from_dict`).

    Every default is UNVERIFIED (no public code); ``docs/methods.md`` says where each comes from.
    """

    CONFIG_NOUN: ClassVar[str] = "a3lign config key"

    #: open_clip architecture: B/32 (default) or ``ViT-L-14-quickgelu`` (the notes name both)
    backbone: str = "ViT-B-32-quickgelu"
    pretrained: str | None = "openai"  #: open_clip tag or local file; null = random init
    model_cfg: dict[str, Any] | None = None  #: explicit open_clip config (tests, demo)
    init_seed: int = 0
    sentences: int = 16  #: S: MAT sentences per class
    mat_tokens: int = 64  #: L: learnable tokens per sentence
    mat_init_std: float = 0.02  #: N(0, std) init of the MAT (CoOp / DFER-CLIP's context init)
    #: what follows the MAT tokens in each prompt: ``name`` ("happiness.") or ``none``
    class_text: str = "name"
    text_dynamic: bool = True  #: false: the class feature is the mean of its sentence features
    dynamic_layers: int = 1  #: both dynamic encoders (same architecture), as DFER-CLIP's net
    dynamic_heads: int = 8
    dynamic_head_dim: int = 64
    dynamic_mlp_dim: int = 1024
    max_frames: int = 16  #: rows of the video encoder's position table (minus the class token)
    temperature: float = 0.01  #: fixed: logits = cos / temperature
    pixel_normalization: str = "clip"  #: ``clip`` mean/std, or ``none`` (DFER-CLIP's [0, 1])
    tune_text_tower: bool = False  #: the notes: both CLIP towers frozen
    tune_image_tower: bool = False

    def validate(self) -> None:
        if min(self.sentences, self.mat_tokens, self.max_frames) < 1:
            raise ValueError("a3lign.sentences, mat_tokens and max_frames must be >= 1")
        if self.class_text not in CLASS_TEXTS:
            raise ValueError(f"a3lign.class_text must be one of {list(CLASS_TEXTS)}, got {self.class_text!r}")
        if self.pixel_normalization not in PIXEL_NORMALIZATIONS:
            raise ValueError(f"a3lign.pixel_normalization must be one of {list(PIXEL_NORMALIZATIONS)}, "
                             f"got {self.pixel_normalization!r}")
        if self.temperature <= 0:
            raise ValueError(f"a3lign.temperature must be > 0, got {self.temperature}")


@dataclass
class A3lignOutput(LogitsOutput):
    """One forward pass. Features are unnormalised (the logits use their L2-normalised forms)."""

    logits: torch.Tensor  # [B, C]
    video_features: torch.Tensor  # [B, E]: video dynamic encoder, or the frame mean (stage 1)
    frame_features: torch.Tensor  # [B, T, E]
    text_features: torch.Tensor  # [C, E]: text dynamic encoder over the sentences
    sentence_features: torch.Tensor  # [C, S, E]


class A3lign(nn.Module):
    """A3lign-DFER for the classes ``labels`` (canonical names; the order is the caller's).

    Built in the last BAP stage (3); a trainer calls :meth:`set_stage` at each stage change,
    and the stage is saved with the weights (buffer ``stage_number``: a checkpoint of a run that
    ended in stage 1 predicts with the frame mean).
    """

    def __init__(
        self,
        cfg: A3lignConfig,
        labels: Sequence[str],
        clip: nn.Module | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.labels = class_labels(labels, "A3lign-DFER")
        if clip is None or tokenizer is None:
            clip, tokenizer = build_open_clip(cfg.backbone, cfg.pretrained, cfg.model_cfg, cfg.init_seed)
        self.clip = clip
        self.tokenizer = tokenizer
        self.image_size = int(clip.visual.image_size[0])
        embed_dim = int(clip.visual.output_dim)
        width = int(clip.token_embedding.weight.shape[1])

        n = cfg.mat_tokens
        texts = [" ".join(["X"] * n) + (f" {name}." if cfg.class_text == "name" else "") for name in self.labels]
        tokens = tokenizer(texts)
        x_id = int(tokenizer(["X"])[0, 1])
        eot = tokens.argmax(dim=-1)
        if not bool((tokens[:, 1 : 1 + n] == x_id).all()) or int(eot.min()) <= n:
            raise ValueError(
                f"a3lign.mat_tokens {n}: the prompts do not fit the text tower's context length "
                f"{tokens.shape[1]} (SOS + {n} MAT tokens + class text + EOT)"
            )
        # derived from the labels at construction, never state (a checkpoint does not hold them)
        self.register_buffer("prompt_tokens", tokens, persistent=False)  # [C, ctx]
        self.register_buffer("eot_index", eot, persistent=False)
        self.mat = nn.Parameter(torch.randn(len(self.labels), cfg.sentences, n, width) * cfg.mat_init_std)

        def dynamic(max_len: int) -> ClsTemporalTransformer:
            return ClsTemporalTransformer(embed_dim, cfg.dynamic_layers, cfg.dynamic_heads, cfg.dynamic_head_dim,
                                          cfg.dynamic_mlp_dim, max_len)

        self.video_dynamic = dynamic(cfg.max_frames)
        # JAS: the text encoder has the video encoder's architecture; its "time" axis is the
        # sentence index, so its position table has S rows (+ the class token)
        self.text_dynamic = dynamic(cfg.sentences) if cfg.text_dynamic else None
        if cfg.pixel_normalization == "clip":
            mean, std = image_mean_std(clip)
        else:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)
        # the current BAP stage is state: saved with the weights, restored with them
        self.register_buffer("stage_number", torch.tensor(BAP_STAGES[-1].number, dtype=torch.long))
        self.set_stage(BAP_STAGES[-1].number)

    # ----------------------------------------------------------------------------- parameters
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Every tunable group of :data:`GROUPS`, whatever the stage (empty groups included).

        ``text_tower`` is CLIP's text side (token and position embeddings, transformer, final
        LayerNorm, projection) and ``image_tower`` its ``visual``; both are empty unless the
        config tunes them. CLIP's ``logit_scale`` is never used (``temperature`` is fixed).
        """
        text_tower = [p for n, p in self.clip.named_parameters()
                      if not n.startswith("visual.") and n not in ("logit_scale", "logit_bias")]
        return {
            "mat": [self.mat],
            "text_dynamic": list(self.text_dynamic.parameters()) if self.text_dynamic is not None else [],
            "text_tower": text_tower if self.cfg.tune_text_tower else [],
            "video_dynamic": list(self.video_dynamic.parameters()),
            "image_tower": list(self.clip.visual.parameters()) if self.cfg.tune_image_tower else [],
        }

    def set_stage(self, number: int, freeze: bool = True) -> dict[str, list[nn.Parameter]]:
        """Enter BAP stage ``number`` (1-3): the forward uses the stage's video feature and, with
        ``freeze``, exactly its groups get ``requires_grad`` and every other parameter of the model
        is frozen. ``freeze=False`` leaves ``requires_grad`` alone: under DDP the trainer keeps
        gradients on for groups no stage optimiser holds (dfer.train.optim).

        Returns the stage's non-empty parameter groups, for a new optimiser.
        """
        stages = {s.number: s for s in BAP_STAGES}
        if number not in stages:
            raise ValueError(f"A3lign-DFER has BAP stages {sorted(stages)}, not {number!r}")
        groups = self.parameter_groups()
        trained = {g: groups[g] for g in stages[number].trains if groups[g]}
        if freeze:
            for p in self.parameters():
                p.requires_grad_(False)
            for params in trained.values():
                for p in params:
                    p.requires_grad_(True)
        self.stage_number.fill_(number)
        return trained

    @property
    def stage(self) -> int:
        """The current BAP stage (1-3)."""
        return int(self.stage_number)

    @property
    def bap_stage(self) -> BAPStage:
        return BAP_STAGES[self.stage - 1]

    def tunable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds (policy ``tunable``): every parameter some stage trains (the
        groups of :meth:`parameter_groups`, whatever the current stage, so a tuned tower too) and
        the stage. The frozen CLIP is re-created from ``pretrained`` / ``init_seed``."""
        by_id = {id(p): n for n, p in self.named_parameters()}
        state: dict[str, torch.Tensor] = {by_id[id(p)]: p for ps in self.parameter_groups().values() for p in ps}
        state["stage_number"] = self.stage_number
        return state

    def tunable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: t.detach().cpu().clone() for n, t in self.tunable_state().items()}

    def load_tunable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load :meth:`tunable_state`; the key sets and shapes must match exactly (a checkpoint of
        another config is an error naming the keys, never a partial load)."""
        own = self.tunable_state()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if own[k].numel() != state[k].numel()
                       or (own[k].ndim and tuple(own[k].shape) != tuple(state[k].shape)))
        if missing or unexpected or wrong:
            raise ValueError(f"checkpoint does not fit this A3lign-DFER config: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}")
        stage = int(round(float(state["stage_number"].reshape(()))))
        with torch.no_grad():
            for name, t in own.items():
                if name != "stage_number":
                    t.copy_(state[name].to(t.dtype))
        self.set_stage(stage)

    def tunable_parameters(self) -> dict[str, nn.Parameter]:
        """Parameters trained in the current stage, by name."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    # ----------------------------------------------------------------------------- text side
    def prompt_embeddings(self) -> torch.Tensor:
        """``[C*S, ctx, D]``: each class's prompt embeddings with rows ``1..L`` := ``MAT[c, s]``,
        prompt ``c * S + s`` (class-major)."""
        c, s, n, d = self.mat.shape
        emb = self.clip.token_embedding(self.prompt_tokens)  # [C, ctx, D]
        emb = emb[:, None].expand(c, s, -1, d)
        full = torch.cat([emb[:, :, :1], self.mat.to(emb.dtype), emb[:, :, 1 + n :]], dim=2)
        return full.reshape(c * s, -1, d)

    def sentence_features(self) -> torch.Tensor:
        """``[C, S, E]``: every (class, sentence) prompt through the frozen text transformer."""
        c, s = self.mat.shape[:2]
        eot = self.eot_index.repeat_interleave(s)
        return encode_text_embeddings(self.clip, self.prompt_embeddings(), eot).view(c, s, -1)

    def encode_sentences(self, sentences: torch.Tensor) -> torch.Tensor:
        """Class features ``[C, E]`` of sentence features ``[C, S, E]`` (the text dynamic encoder)."""
        return sentences.mean(dim=1) if self.text_dynamic is None else self.text_dynamic(sentences)

    def _text_side_trains(self) -> bool:
        groups = self.parameter_groups()
        return any(p.requires_grad for g in ("mat", "text_dynamic", "text_tower") for p in groups[g])

    # ----------------------------------------------------------------------------- video side
    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """Per-frame features ``[B, T, E]`` of normalised pixels ``[B, T, 3, S, S]``."""
        b, t = pixels.shape[:2]
        return self.clip.visual(pixels.reshape(b * t, *pixels.shape[2:])).view(b, t, -1)

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """Clip feature ``[B, E]`` of frame features ``[B, T, E]``: the mean in stage 1, else the
        video dynamic encoder (frame order matters)."""
        return frames.mean(dim=1) if self.bap_stage.video_feature == "mean" else self.video_dynamic(frames)

    def forward_pixels(self, pixels: torch.Tensor) -> A3lignOutput:
        if pixels.ndim != 5 or pixels.shape[2] != 3:
            raise ValueError(f"expected pixels [B, T, 3, H, W], got {tuple(pixels.shape)}")
        frames = self.encode_frames(pixels)
        video = self.encode_video(frames)
        # nothing on the text side trains (stage 2): no graph through C*S prompts
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._text_side_trains()):
            sentences = self.sentence_features()
            text = self.encode_sentences(sentences)
        logits = F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).T / self.cfg.temperature
        return A3lignOutput(logits=logits, video_features=video, frame_features=frames,
                            text_features=text, sentence_features=sentences)

    def forward(self, frames: torch.Tensor) -> A3lignOutput:
        """The model on decoded frames, uint8 (or 0..255) ``[B, T, H, W, 3]``, resized to the
        tower's size and normalised (``pixel_normalization``)."""
        b, t = frames.shape[:2]
        images = (frames_to_images(frames, self.image_size) - self.pixel_mean) / self.pixel_std
        return self.forward_pixels(images.view(b, t, *images.shape[1:]))

    def losses(self, out: A3lignOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy over the cosine logits."""
        ce = F.cross_entropy(out.logits, targets)
        return {"loss": ce, "ce": ce}
