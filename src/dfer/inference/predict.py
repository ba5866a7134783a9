"""Predict the expression of video files with a trained checkpoint (``dfer predict``).

Runs the same preprocessing the model was trained on: the checkpoint stores the decode /
landmarks / parsing config sections its training artifacts were made with, and each video goes
through the stages' in-memory per-clip APIs (:func:`dfer.video.decode_clip`,
:func:`dfer.landmarks.detect_landmarks`, :func:`dfer.parsing.parse_clip`) and the dataloader's
:func:`dfer.train.data.prepare_clip`. Middle-level stages run only when the model uses them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfer.core.devices import resolve_device
from dfer.model.checkpoint import load_checkpoint
from dfer.model.fineclip import FineCLIPER
from dfer.train.data import DataConfig, default_renderers, prepare_clip
from dfer.train.module import model_inputs


@dataclass
class Prediction:
    """Class probabilities of one video (``error`` set instead when preprocessing failed)."""

    path: str
    labels: list[str]
    probs: np.ndarray | None  # [C]
    error: str | None = None

    def top(self, k: int) -> list[tuple[str, float]]:
        if self.probs is None:
            return []
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(self.labels[i], float(self.probs[i])) for i in order]


def preprocess_video(
    path: str | os.PathLike[str],
    model: FineCLIPER,
    preprocessing: Mapping[str, Any],
    data: DataConfig,
) -> dict[str, torch.Tensor]:
    """One video file (or frame folder) -> the model's uint8 inputs with a batch axis of 1."""
    from dfer.video import decode_clip

    kind = "frames" if Path(path).is_dir() else "video"
    frames = decode_clip(path, kind, preprocessing.get("decode")).frames
    points = maps = None
    if model.cfg.use_landmarks or model.cfg.use_parsing:
        from dfer.landmarks import detect_landmarks

        points = detect_landmarks(frames, preprocessing.get("landmarks")).points
    if model.cfg.use_parsing:
        from dfer.parsing import parse_clip

        maps = parse_clip(frames, points, preprocessing.get("parsing"))
    renderers = default_renderers() if points is not None else None
    item = prepare_clip(frames, points if model.cfg.use_landmarks else None, maps, data,
                        int(data.image_size or model.image_size), renderers)
    return {k: v.unsqueeze(0) for k, v in item.items()}


def predict_videos(
    checkpoint: str | os.PathLike[str],
    videos: Sequence[str | os.PathLike[str]],
    device: str = "auto",
    preprocessing: Mapping[str, Any] | None = None,
    labels: Sequence[str] | None = None,
    model_overrides: Mapping[str, Any] | None = None,
) -> list[Prediction]:
    """Probabilities over the checkpoint's classes (or ``labels``, zero-shot) per video.

    ``preprocessing`` overrides sections stored in the checkpoint (e.g. a GPU landmark backend).
    A video that cannot be processed yields a :class:`Prediction` with ``error`` set; the others
    are still predicted.
    """
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, overrides=model_overrides, labels=labels)
    model.to(dev).eval()
    pre = dict(meta.get("preprocessing") or {})
    for section, values in (preprocessing or {}).items():
        pre[section] = {**pre.get(section, {}), **dict(values)}
    run_data = dict((meta.get("params") or {}).get("data") or {})
    data = DataConfig.from_dict(run_data)
    out: list[Prediction] = []
    for video in videos:
        try:
            inputs = preprocess_video(video, model, pre, data)
        except Exception as exc:  # one bad file must not stop the others
            out.append(Prediction(str(video), model.labels, None, f"{type(exc).__name__}: {exc}"))
            continue
        batch = {k: v.to(dev) for k, v in inputs.items()}
        probs = model.predict_proba(**model_inputs(batch))[0].float().cpu().numpy()
        out.append(Prediction(str(video), model.labels, probs))
    return out
