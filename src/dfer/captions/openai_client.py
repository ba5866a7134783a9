"""The ``openai`` backend: a client of an OpenAI-compatible chat-completions server.

Meant for ``vllm serve <model>`` running elsewhere (a GPU node, a shared server): the captions
stage then needs no GPU and no vLLM install, only ``httpx``. Frames go as JPEG data URLs,
either one ``image_url`` item per frame (``input: images``, any multi-image chat model) or one
``video_url`` item whose data URL holds the JPEG frames comma-separated (``input: video``,
vLLM's ``data:video/jpeg;base64,...`` form, which Qwen-VL models read as a video).

Robustness is the point of this module. Requests run with bounded concurrency (an asyncio
semaphore over one ``httpx.AsyncClient``), each with a timeout; connection errors, timeouts,
HTTP 429 and 5xx are retried with exponential backoff; anything else (a 4xx, a malformed
reply, an empty answer) is final. Every outcome becomes a :class:`Description`, so a server
that is down yields one failure row per clip, never an exception that loses the shard.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx
import numpy as np

from dfer.captions.base import ClipInput, Description, sample_frames

#: HTTP statuses worth retrying: the server is overloaded or failed transiently.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    """A transient failure; ``error_type`` names it in the failures table if retries run out."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class _Final(Exception):
    """A failure that retrying cannot fix (bad request, empty or malformed answer)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def jpeg_data(frame: np.ndarray, quality: int = 90) -> str:
    """Base64 of one RGB uint8 frame ``[H, W, 3]`` encoded as JPEG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), "RGB").save(
        buf, format="JPEG", quality=int(quality))
    return base64.b64encode(buf.getvalue()).decode("ascii")


def build_messages(prompt: str, frames: np.ndarray, input_mode: str,
                   quality: int = 90) -> list[dict[str, Any]]:
    """The chat ``messages`` of one clip: its frames first, then the question."""
    encoded = [jpeg_data(f, quality) for f in frames]
    if input_mode == "video":
        media: list[dict[str, Any]] = [{
            "type": "video_url",
            "video_url": {"url": "data:video/jpeg;base64," + ",".join(encoded)},
        }]
    elif input_mode == "images":
        media = [{"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{e}"}}
                 for e in encoded]
    else:
        raise ValueError(f"input must be 'video' or 'images', got {input_mode!r}")
    return [{"role": "user", "content": [*media, {"type": "text", "text": prompt}]}]


def parse_completion(body: Any) -> tuple[str, int]:
    """(answer text, completion tokens) of a chat-completions reply; raises ``_Final``."""
    try:
        choice = body["choices"][0]
        text = choice["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise _Final("BadResponse", f"reply has no choices[0].message.content: {exc!r}") from None
    text = (text or "").strip()
    if not text:
        reason = choice.get("finish_reason") if isinstance(choice, Mapping) else None
        raise _Final("EmptyAnswer", f"the model returned an empty answer (finish_reason={reason})")
    usage = body.get("usage") or {}
    tokens = usage.get("completion_tokens")
    return text, int(tokens) if isinstance(tokens, int) else len(text.split())


class OpenAIDescriber:
    """Describe clips through ``POST {base_url}/chat/completions``.

    ``settings`` is the ``captions.openai`` config section; ``sampling`` carries
    ``temperature``, ``top_p``, ``max_tokens``, ``seed`` (sent with every request, so that a
    vLLM server answers deterministically) and ``num_frames``.
    """

    name = "openai"
    needs_frames = True
    needs_landmarks = False

    def __init__(self, settings: Mapping[str, Any], sampling: Mapping[str, Any],
                 transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[object]] | None = None) -> None:
        self.model = str(settings["model"])
        self.base_url = str(settings["base_url"]).rstrip("/")
        self.input_mode = str(settings.get("input", "images"))
        self.max_concurrency = max(1, int(settings.get("max_concurrency", 8)))
        self.timeout_s = float(settings.get("timeout_s", 120.0))
        self.max_retries = max(0, int(settings.get("max_retries", 3)))
        self.backoff_s = float(settings.get("backoff_s", 1.0))
        self.jpeg_quality = int(settings.get("jpeg_quality", 90))
        self.num_frames = int(sampling["num_frames"])
        self.sampling = {k: sampling[k] for k in ("temperature", "top_p", "max_tokens", "seed")}
        key = os.environ.get(str(settings.get("api_key_env") or ""), "")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._transport = transport
        #: awaited between retries with the backoff in seconds (tests pass a recorder)
        self._sleep = sleep if sleep is not None else asyncio.sleep

    # -- one request -------------------------------------------------------------------
    def payload(self, clip: ClipInput, prompt: str) -> dict[str, Any]:
        """The JSON body for one clip (public so tests and benchmarks can inspect it)."""
        if clip.frames is None:
            raise _Final("MissingFrames", f"clip {clip.clip_id}: no decoded frames")
        frames = sample_frames(clip.frames, self.num_frames)
        return {
            "model": self.model,
            "messages": build_messages(prompt, frames, self.input_mode, self.jpeg_quality),
            **self.sampling,
        }

    async def _post_once(self, client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[str, int]:
        try:
            resp = await client.post(f"{self.base_url}/chat/completions", json=body,
                                     headers=self.headers)
        except httpx.TimeoutException as exc:
            raise _Retryable("Timeout", f"no reply within {self.timeout_s:g} s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _Retryable("ConnectionError", f"{type(exc).__name__}: {exc}") from None
        if resp.status_code in RETRY_STATUSES:
            raise _Retryable(f"HTTP{resp.status_code}", f"HTTP {resp.status_code}: {resp.text[:200]}")
        if resp.status_code >= 400:
            raise _Final(f"HTTP{resp.status_code}", f"HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            body_json = resp.json()
        except ValueError:
            raise _Final("BadResponse", f"reply is not JSON: {resp.text[:200]!r}") from None
        return parse_completion(body_json)

    async def _describe_one(self, client: httpx.AsyncClient, sem: asyncio.Semaphore,
                            clip: ClipInput, prompt: str) -> Description:
        t0 = time.perf_counter()
        async with sem:
            try:
                # JPEG encoding is CPU work (PIL releases the GIL): off the event loop, so
                # that it overlaps with the requests in flight instead of stalling them.
                body = await asyncio.to_thread(self.payload, clip, prompt)
            except _Final as exc:
                return Description(clip.clip_id, error_type=exc.error_type, message=str(exc))
            except ValueError as exc:
                return Description(clip.clip_id, error_type="BadFrames",
                                   message=f"clip {clip.clip_id}: {exc}")
            for attempt in range(self.max_retries + 1):
                try:
                    text, tokens = await self._post_once(client, body)
                    return Description(clip.clip_id, text=text, num_tokens=tokens,
                                       seconds=time.perf_counter() - t0)
                except _Final as exc:
                    return Description(clip.clip_id, error_type=exc.error_type,
                                       message=f"clip {clip.clip_id}: {exc}")
                except _Retryable as exc:
                    if attempt == self.max_retries:
                        return Description(
                            clip.clip_id, error_type=exc.error_type,
                            message=f"clip {clip.clip_id}: {exc} (after {attempt + 1} attempts)")
                    await self._sleep(self.backoff_s * (2 ** attempt))
        raise AssertionError("unreachable")

    async def _describe_all(self, clips: Sequence[ClipInput], prompt: str) -> list[Description]:
        sem = asyncio.Semaphore(self.max_concurrency)
        limits = httpx.Limits(max_connections=self.max_concurrency,
                              max_keepalive_connections=self.max_concurrency)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits,
                                     transport=self._transport) as client:
            tasks = [self._describe_one(client, sem, clip, prompt) for clip in clips]
            return list(await asyncio.gather(*tasks))

    def describe(self, clips: Sequence[ClipInput], prompt: str) -> list[Description]:
        """One Description per clip, in order; never raises for a clip's failure."""
        if not clips:
            return []
        return asyncio.run(self._describe_all(clips, prompt))

    def close(self) -> None:
        """Clients are opened per :meth:`describe` call; nothing stays open."""
