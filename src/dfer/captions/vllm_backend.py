"""The ``vllm`` backend: an in-process ``vllm.LLM`` describing a shard's clips in batches.

Runs inside the separate vLLM environment (``envs/vllm.yaml`` or ``scripts/setup_vllm_env.sh``;
vLLM pins its own torch), with ``src/`` on ``PYTHONPATH``. Each clip becomes one prompt:
the model's chat template applied to a user turn holding the clip's frames (as one video, or
as ``num_frames`` images) and the question, with the frames passed as ``multi_modal_data``.
A whole batch goes to one ``LLM.generate`` call, which lets vLLM schedule it continuously.

Determinism: temperature 0, fixed ``max_tokens`` and a fixed per-request ``seed``.
Qwen-VL models merge pairs of frames (temporal patch size 2), so the frame count is even
(``CaptionsConfig.num_frames`` rounds up).

Failures: a clip whose inputs cannot be built, or whose answer is empty, gets a failure
Description. If ``generate`` rejects a batch (e.g. one over-long prompt), the batch is retried
clip by clip so that only the offending clip fails. An engine that cannot start (no weights,
no memory) is a configuration error and raises before any clip is processed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dfer.captions.base import ClipInput, Description, sample_frames

#: Frame rate assumed for the sampled frames (Qwen2.5-VL's own sampling rate). The frames
#: index knows the true duration, but the rate only sets the temporal position ids, and a
#: fixed value keeps prompts of clips with different lengths alike.
VIDEO_FPS = 2.0


def video_metadata(num_frames: int, fps: float = VIDEO_FPS) -> dict[str, Any]:
    """The metadata vLLM's Qwen-VL processors require next to a video given as an array.

    ``do_sample_frames`` is False: the frames are already the sampled ones, the processor
    must not sample again.
    """
    return {
        "total_num_frames": int(num_frames), "fps": float(fps),
        "duration": num_frames / fps, "video_backend": "dfer",
        "frames_indices": list(range(num_frames)), "do_sample_frames": False,
    }


class VLLMDescriber:
    """Describe clips with a multimodal model loaded in this process by ``vllm.LLM``.

    ``settings`` is the ``captions.vllm`` config section; ``sampling`` carries
    ``temperature``, ``top_p``, ``max_tokens``, ``seed`` and ``num_frames``.
    """

    name = "vllm"
    needs_frames = True
    needs_landmarks = False

    def __init__(self, settings: Mapping[str, Any], sampling: Mapping[str, Any]) -> None:
        # The engine core runs in this process: no spawn of a second python that would
        # re-import the caller's __main__ (and double the memory on a CPU node).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM, SamplingParams

        self.model = str(settings["model"])
        self.input_mode = str(settings.get("input", "video"))
        self.num_frames = int(sampling["num_frames"])
        limit = {"video": 1, "image": 0} if self.input_mode == "video" else {
            "image": self.num_frames, "video": 0}
        engine: dict[str, Any] = {
            "model": self.model,
            "seed": int(sampling["seed"]),
            "dtype": settings.get("dtype", "auto"),
            "max_model_len": int(settings.get("max_model_len", 8192)),
            "tensor_parallel_size": int(settings.get("tensor_parallel_size", 1)),
            "enforce_eager": bool(settings.get("enforce_eager", False)),
            "limit_mm_per_prompt": limit,
        }
        if settings.get("gpu_memory_utilization") is not None:
            engine["gpu_memory_utilization"] = float(settings["gpu_memory_utilization"])
        engine.update(dict(settings.get("engine_args") or {}))
        self.llm = LLM(**engine)
        self.sampling_params = SamplingParams(
            temperature=float(sampling["temperature"]), top_p=float(sampling["top_p"]),
            max_tokens=int(sampling["max_tokens"]), seed=int(sampling["seed"]),
        )
        self._tokenizer = self.llm.get_tokenizer()

    def chat_prompt(self, prompt: str) -> str:
        """The model's chat template over one user turn: the frames, then the question."""
        if self.input_mode == "video":
            media = [{"type": "video"}]
        else:
            media = [{"type": "image"} for _ in range(self.num_frames)]
        messages = [{"role": "user", "content": [*media, {"type": "text", "text": prompt}]}]
        return self._tokenizer.apply_chat_template(messages, tokenize=False,
                                                   add_generation_prompt=True)

    def request(self, clip: ClipInput, text_prompt: str) -> dict[str, Any]:
        """The ``generate`` input of one clip (raises ValueError for unusable frames)."""
        if clip.frames is None:
            raise ValueError("no decoded frames")
        frames = sample_frames(clip.frames, self.num_frames)
        if self.input_mode == "video":
            data: dict[str, Any] = {
                "video": (np.ascontiguousarray(frames), video_metadata(len(frames)))}
        else:
            from PIL import Image

            data = {"image": [Image.fromarray(f) for f in frames]}
        return {"prompt": text_prompt, "multi_modal_data": data}

    def _generate(self, requests: list[dict[str, Any]]) -> list[Any]:
        return self.llm.generate(requests, self.sampling_params, use_tqdm=False)

    @staticmethod
    def _to_description(clip_id: str, output: Any, seconds: float) -> Description:
        completion = output.outputs[0] if output.outputs else None
        text = (completion.text if completion is not None else "").strip()
        if not text:
            reason = getattr(completion, "finish_reason", None)
            return Description(clip_id, error_type="EmptyAnswer",
                               message=f"clip {clip_id}: the model returned an empty answer "
                                       f"(finish_reason={reason})")
        return Description(clip_id, text=text, num_tokens=len(completion.token_ids),
                           seconds=seconds)

    def describe(self, clips: Sequence[ClipInput], prompt: str) -> list[Description]:
        """One Description per clip, in order; per-clip failures never raise."""
        text_prompt = self.chat_prompt(prompt)
        results: dict[int, Description] = {}
        todo: list[tuple[int, dict[str, Any]]] = []
        for i, clip in enumerate(clips):
            try:
                todo.append((i, self.request(clip, text_prompt)))
            except ValueError as exc:
                results[i] = Description(clip.clip_id, error_type="BadFrames",
                                         message=f"clip {clip.clip_id}: {exc}")
        if todo:
            t0 = time.perf_counter()
            try:
                outputs = self._generate([r for _, r in todo])
                per_clip = (time.perf_counter() - t0) / len(todo)
                for (i, _), out in zip(todo, outputs, strict=True):
                    results[i] = self._to_description(clips[i].clip_id, out, per_clip)
            except Exception:  # noqa: BLE001 - isolate the failing clip(s) one by one
                for i, req in todo:
                    t1 = time.perf_counter()
                    try:
                        out = self._generate([req])[0]
                        results[i] = self._to_description(clips[i].clip_id, out,
                                                          time.perf_counter() - t1)
                    except Exception as exc:  # noqa: BLE001
                        results[i] = Description(clips[i].clip_id, error_type=type(exc).__name__,
                                                 message=f"clip {clips[i].clip_id}: {exc}")
        return [results[i] for i in range(len(clips))]

    def close(self) -> None:
        """Drop the engine so its memory (KV cache, weights) can be freed."""
        self.llm = None
