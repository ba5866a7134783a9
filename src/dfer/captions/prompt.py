"""Versioned prompt templates for the captioning MLLM, and the hash that identifies a run.

FineCLIPER's high-level modality is an MLLM's account of *how the face moves* across a clip,
not of which emotion it shows (labels in the text would leak the answer into the features).
The prompt asks for exactly that evidence. Templates are never edited in place: a new wording
gets a new version, and ``prompt_hash`` (template text + model + sampling parameters) changes
with any of them, so an edit re-runs the captions stage and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: version -> template; ``{num_frames}`` is filled in by :func:`render_prompt`.
PROMPT_TEMPLATES: dict[str, str] = {
    "v1": (
        "You are a facial expression analyst. The {num_frames} frames show one person's face, "
        "in temporal order. Describe concisely, in two or three sentences, the detailed "
        "movements of the facial features across the frames: the mouth and lips (opening, "
        "corners rising or falling, pressing, stretching), the chin, the eyes and eyelids "
        "(widening, narrowing, closing, blinking) and the eyebrows (raising, lowering, "
        "drawing together), and the actions they imply, such as breathing, speaking or the "
        "direction of gaze. Report only what you observe. Do not name or guess an emotion."
    ),
    # FineCLIPER (Chen et al., ACM MM 2024), its MLLM prompt verbatim. It names no frame count and
    # does not forbid emotion words: the paper removes them afterwards (dfer.captions.refine).
    "fineclipper": (
        "You are a facial expression analyst. Identify emotions by analyzing the detailed "
        "movements of various facial features (mouth, chin, eyes, etc.) and implied actions "
        "(breathing rate, gaze direction) across a sequence. Provide a detailed description of "
        "the movements of various facial features and implied actions concisely."
    ),
}

#: The paper's prompt (config/paper/*.yaml pin it).
PAPER_PROMPT_VERSION = "fineclipper"

#: The version used when the config does not name one.
DEFAULT_PROMPT_VERSION = "v1"


def render_prompt(version: str, num_frames: int) -> str:
    """The question text of prompt ``version`` for a clip of ``num_frames`` frames."""
    try:
        template = PROMPT_TEMPLATES[version]
    except KeyError:
        known = ", ".join(sorted(PROMPT_TEMPLATES))
        raise ValueError(f"unknown prompt_version {version!r} (known: {known})") from None
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return template.format(num_frames=num_frames)


def prompt_hash(version: str, model: str, sampling: Mapping[str, Any], num_frames: int) -> str:
    """sha256 over the rendered prompt, the model and the sampling parameters.

    Anything that can change a caption's text is in the hash; anything that cannot (URLs,
    concurrency, timeouts) is not, so tuning the client does not invalidate captions.
    """
    payload = {
        "prompt": render_prompt(version, num_frames),
        "prompt_version": version,
        "model": model,
        "sampling": dict(sorted(sampling.items())),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
