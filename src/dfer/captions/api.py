"""Captions of clips in memory (no files): the backend named by the config, and each answer
refined into a captions row or the clip's failure. The shard job and the benchmarks use it.

Imports no backend at module level (vLLM only when asked for), so it runs in the project
venv and in the separate vLLM environment alike.
"""

from __future__ import annotations

from typing import Any

from dfer.captions.base import ClipInput, Describer, Description
from dfer.captions.config import CaptionsConfig
from dfer.captions.refine import refine_caption
from dfer.core.shard_runner import ClipFailure, ErrorType


def make_describer(cfg: CaptionsConfig) -> Describer:
    """The backend named by ``cfg.backend`` (vLLM is imported only when asked for)."""
    if cfg.backend == "offline":
        from dfer.captions.offline import OfflineDescriber

        return OfflineDescriber(cfg.model)
    if cfg.backend == "openai":
        from dfer.captions.openai_client import OpenAIDescriber

        return OpenAIDescriber(cfg.raw["openai"], cfg.sampling())
    if cfg.backend == "vllm":
        from dfer.captions.vllm_backend import VLLMDescriber

        return VLLMDescriber(cfg.raw["vllm"], cfg.sampling())
    raise ValueError(f"unknown captions backend {cfg.backend!r}")


def caption_row(d: Description, cfg: CaptionsConfig, describer_name: str,
                prompt_hash: str) -> dict[str, Any]:
    """The captions row of a backend's answer (refined), or ``ClipFailure`` when there is none.

    A failed answer keeps its ``error_type`` (already in the vocabulary: see
    ``dfer.captions.base``); an answer that is nothing but an emotion judgement fails with
    ``empty_after_refinement``, its raw text quoted in the message.
    """
    if not d.ok:
        raise ClipFailure(str(d.error_type), str(d.message))
    caption = refine_caption(d.text)
    if not caption:
        raise ClipFailure(ErrorType.EMPTY_AFTER_REFINEMENT,
                          f"nothing but emotion words in {d.text[:200]!r}")
    return {
        "clip_id": d.clip_id, "caption": caption, "raw_text": d.text,
        "backend": describer_name, "model": cfg.model,
        "prompt_version": cfg.prompt_version, "prompt_hash": prompt_hash,
        "num_tokens": int(d.num_tokens), "seconds": float(d.seconds),
    }


def describe_clips(describer: Describer, clips: list[ClipInput], prompt: str, cfg: CaptionsConfig,
                   prompt_hash: str) -> list[dict[str, Any] | BaseException]:
    """One batch through the backend: per clip, in order, its captions row or its failure."""
    answers = describer.describe(clips, prompt)
    outcomes: list[dict[str, Any] | BaseException] = []
    for d in answers:
        try:
            outcomes.append(caption_row(d, cfg, describer.name, prompt_hash))
        except ClipFailure as exc:
            outcomes.append(exc)
    return outcomes
