"""The captions stage's configuration: defaults, validation and the run identity.

Only the standard library is imported here, so the Snakefile can compute ``prompt_hash`` at
parse time (it goes into the rule's params: a new template, model or sampling setting re-runs
the captions stage and nothing else) without loading numpy or vLLM.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dfer.captions.prompt import DEFAULT_PROMPT_VERSION, PROMPT_TEMPLATES, prompt_hash

BACKENDS = ("offline", "vllm", "openai")

#: Name and version of the landmark-dynamics describer (its "model" in the output table).
OFFLINE_MODEL = "landmark-dynamics-v1"

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"

DEFAULTS: dict[str, Any] = {
    "backend": "offline",
    "prompt_version": DEFAULT_PROMPT_VERSION,
    "num_frames": 8,          # frames of the clip shown to the MLLM (made even for Qwen)
    "max_tokens": 128,
    "temperature": 0.0,
    "top_p": 1.0,
    "seed": 0,
    "batch_size": 16,         # clips per engine call / per concurrent wave
    "device": "auto",         # auto | cpu | cuda: `cpu` keeps Snakemake from reserving a GPU
    "vllm": {
        "model": DEFAULT_MODEL,   # hub id or local directory
        "input": "video",         # video | images
        "dtype": "auto",
        "max_model_len": 8192,
        "gpu_memory_utilization": 0.85,
        "tensor_parallel_size": 1,
        "enforce_eager": False,
        "python": None,           # interpreter of the separate vLLM env (None: see vllm_python)
        "engine_args": {},        # passed to vllm.LLM(**engine_args) as is
    },
    "openai": {
        "base_url": "http://127.0.0.1:8000/v1",  # one URL, or a list: clips spread, fail-over
        "model": DEFAULT_MODEL,
        "input": "images",        # images | video (vLLM's video/jpeg data URL)
        "api_key_env": "DFER_OPENAI_API_KEY",
        "max_concurrency": 8,     # requests in flight per server
        "timeout_s": 120.0,       # deadline of one whole request (connect to last byte)
        "max_retries": 3,         # retries of a clip per server
        "backoff_s": 1.0,
        "dead_after": 3,          # transport failures in a row that mark a server dead
        "max_answer_chars": None,  # answers longer fail as AnswerTooLarge (None: 32 x max_tokens)
        "jpeg_quality": 90,
    },
}

#: Characters per token an answer may average before it counts as too large when
#: ``openai.max_answer_chars`` is unset: far above any tokenizer's average (~4 for English
#: BPE), so only a server that ignored ``max_tokens`` (or is not the model asked for) hits it.
CHARS_PER_TOKEN_CAP = 32


#: Keys that only decide where or how fast captions are made, not their text
#: (``dfer.core.execution_keys``): changing them re-runs no captions job. What changes the text
#: is the prompt, the model and the sampling (``prompt_hash``) and the frames shown.
EXECUTION_KEYS: tuple[str, ...] = (
    "batch_size", "device",
    "vllm.gpu_memory_utilization", "vllm.tensor_parallel_size", "vllm.python",
    "openai.base_url", "openai.api_key_env", "openai.max_concurrency", "openai.timeout_s",
    "openai.max_retries", "openai.backoff_s",
)


def _merge(base: dict[str, Any], override: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base:
            raise ValueError(f"unknown key {where}{key!r} (known: {', '.join(sorted(base))})")
        if isinstance(base[key], dict) and key != "engine_args":
            if not isinstance(value, Mapping):
                raise ValueError(f"{where}{key} must be a mapping, got {value!r}")
            out[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class CaptionsConfig:
    """Validated captions section; ``raw`` keeps every key with defaults filled in."""

    raw: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULTS))

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> CaptionsConfig:
        merged = _merge(DEFAULTS, params or {}, "captions.")
        if merged["backend"] not in BACKENDS:
            raise ValueError(f"captions.backend must be one of {BACKENDS}, got {merged['backend']!r}")
        if merged["prompt_version"] not in PROMPT_TEMPLATES:
            raise ValueError(f"unknown captions.prompt_version {merged['prompt_version']!r} "
                             f"(known: {', '.join(sorted(PROMPT_TEMPLATES))})")
        if int(merged["num_frames"]) < 1 or int(merged["max_tokens"]) < 1:
            raise ValueError("captions.num_frames and captions.max_tokens must be >= 1")
        if merged["device"] not in ("auto", "cpu", "cuda"):
            raise ValueError(f"captions.device must be auto, cpu or cuda, got {merged['device']!r}")
        for mode in ("vllm", "openai"):
            if merged[mode]["input"] not in ("video", "images"):
                raise ValueError(f"captions.{mode}.input must be 'video' or 'images'")
        server_urls(merged["openai"]["base_url"])  # raises on a bad URL list
        openai = merged["openai"]
        for key, low in (("max_concurrency", 1), ("dead_after", 1), ("max_retries", 0)):
            if not isinstance(openai[key], int) or isinstance(openai[key], bool) or openai[key] < low:
                raise ValueError(f"captions.openai.{key} must be an integer >= {low}, got {openai[key]!r}")
        if float(openai["timeout_s"]) <= 0:
            raise ValueError(f"captions.openai.timeout_s must be > 0, got {openai['timeout_s']!r}")
        cap = openai["max_answer_chars"]
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
            raise ValueError(f"captions.openai.max_answer_chars must be an integer >= 1 or null, got {cap!r}")
        return cls(merged)

    @property
    def max_answer_chars(self) -> int:
        """The answer size cap of the openai backend (``openai.max_answer_chars``, else
        :data:`CHARS_PER_TOKEN_CAP` x ``max_tokens``)."""
        cap = self.raw["openai"]["max_answer_chars"]
        return int(cap) if cap is not None else CHARS_PER_TOKEN_CAP * int(self.raw["max_tokens"])

    @property
    def backend(self) -> str:
        return str(self.raw["backend"])

    @property
    def prompt_version(self) -> str:
        return str(self.raw["prompt_version"])

    @property
    def num_frames(self) -> int:
        """Frames shown to the MLLM, rounded up to even (Qwen-VL merges frame pairs)."""
        n = int(self.raw["num_frames"])
        return n + (n % 2)

    @property
    def model(self) -> str:
        if self.backend == "offline":
            return OFFLINE_MODEL
        return str(self.raw[self.backend]["model"])

    def sampling(self) -> dict[str, Any]:
        """Everything besides prompt and model that changes the text of a caption."""
        if self.backend == "offline":
            return {}
        return {
            "temperature": float(self.raw["temperature"]),
            "top_p": float(self.raw["top_p"]),
            "max_tokens": int(self.raw["max_tokens"]),
            "seed": int(self.raw["seed"]),
            "num_frames": self.num_frames,
            "input": self.raw[self.backend]["input"],
        }

    def prompt_hash(self) -> str:
        return prompt_hash(self.prompt_version, self.model, self.sampling(), self.num_frames)

    def result_section(self, section: Mapping[str, Any] | None) -> dict[str, Any]:
        """The keys of a captions ``section`` (as configured) that change what it writes.

        ``EXECUTION_KEYS`` are left out, and so are the sub-sections of the backends not in
        use: the ``openai`` settings cannot change captions made with ``vllm``.
        """
        from dfer.core.execution_keys import result_part

        result = result_part(section, EXECUTION_KEYS)
        for mode in ("vllm", "openai"):
            if mode != self.backend:
                result.pop(mode, None)
        return result


def server_urls(base_url: str | list[str] | tuple[str, ...]) -> list[str]:
    """``captions.openai.base_url`` as a list of URLs without trailing slashes.

    One string is one server (the form every config so far uses); a list spreads the clips
    over several servers with fail-over (docs/captions.md, "Many servers"). Raises a one-line
    ``ValueError`` naming the key for an empty list, a duplicate or a URL that is not http(s).
    """
    urls = [base_url] if isinstance(base_url, str) else list(base_url or [])
    if not urls:
        raise ValueError("captions.openai.base_url is an empty list: give at least one URL")
    out: list[str] = []
    for i, url in enumerate(urls):
        where = "captions.openai.base_url" + ("" if isinstance(base_url, str) else f"[{i}]")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"{where} must be an http:// or https:// URL, got {url!r}")
        url = url.rstrip("/")
        if url in out:
            raise ValueError(f"{where} repeats {url!r}: list each server once")
        out.append(url)
    return out


#: Where scripts/setup_vllm_env.sh builds the vLLM environment by default.
DEFAULT_VLLM_VENV = os.path.join(os.path.expanduser("~"), ".cache", "dfer", "venv-vllm")


def vllm_python(params: Mapping[str, Any] | None = None) -> str | None:
    """The interpreter of the separate vLLM environment, or None when there is none.

    In order: ``captions.vllm.python`` in the config, ``$DFER_VLLM_PYTHON``, the venv that
    ``scripts/setup_vllm_env.sh`` builds (``$DFER_VLLM_VENV``, else ``~/.cache/dfer/venv-vllm``;
    only once complete: its ``.installed`` marker is written last, after
    ``scripts/check_vllm_env.py`` ran the captions stage's imports and a tiny generate there).
    """
    configured = ((params or {}).get("vllm") or {}).get("python")
    if configured:
        return str(configured)
    if os.environ.get("DFER_VLLM_PYTHON"):
        return os.environ["DFER_VLLM_PYTHON"]
    venv = os.environ.get("DFER_VLLM_VENV", DEFAULT_VLLM_VENV)
    python = os.path.join(venv, "bin", "python")
    if os.path.exists(os.path.join(venv, ".installed")) and os.path.exists(python):
        return python
    return None
