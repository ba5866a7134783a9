"""Predict the expression of video files with a trained checkpoint (``dfer predict``).

Runs the same preprocessing the model was trained on: the checkpoint stores the decode /
landmarks / parsing / landmark_features config sections its training artifacts were made with,
and each video goes through the stages' in-memory per-clip APIs (:func:`dfer.video.decode_clip`,
:func:`dfer.landmarks.detect_landmarks`, :func:`dfer.parsing.parse_clip`,
:func:`dfer.landmark_features.extract_features`) and the dataloader's
:func:`dfer.train.data.prepare_clip`. The other stages run only when the model uses them.

:class:`Predictor` loads the model and the detectors once and is then applied to any number of
clips, a batch of ``batch_size`` clips per forward pass, whatever the checkpoint's method
(dfer.methods.registry). The forward pass computes what
:meth:`dfer.train.module.DFERModule.predict_step` computes (softmax of the float logits averaged
over the run's test views, eval mode, no autograd) without building a Lightning ``Trainer``: importing Lightning alone
costs seconds of start-up (it pulls in torchmetrics, torchvision and torch._dynamo), which is
most of what a one-clip invocation would pay; ``tests/test_predict.py`` checks that both give
the same probabilities.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dfer.core.devices import resolve_device
from dfer.inference.sources import Source, expand_sources
from dfer.methods import api
from dfer.methods.checkpoint import load_checkpoint
from dfer.methods.registry import spec_of_model
from dfer.train.config import DataConfig

if TYPE_CHECKING:
    from dfer.landmark_features.config import LandmarkFeaturesConfig

#: the batch keys a prepared clip may carry (each method's forward takes those it declares)
MODEL_INPUTS = ("frames", "parsing", "landmarks", "landmark_features")


@dataclass
class Prediction:
    """Class probabilities of one clip (``error`` set instead when it could not be predicted).

    ``num_frames`` is the number of frames the clip really has (None when it could not be
    read); ``crops`` / ``points`` / ``frame_indices`` (the decode crops uint8 [T, S, S, 3], their
    landmarks [T, 68, 2] in crop pixels or None, and which source frame each crop is) are kept
    only when the predictor was asked to (``keep_crops``, for ``--overlay``).
    """

    path: str
    labels: list[str]
    probs: np.ndarray | None  # [C]
    error: str | None = None
    error_type: str | None = None
    num_frames: int | None = None
    seconds: float = 0.0
    crops: np.ndarray | None = None
    points: np.ndarray | None = None
    frame_indices: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.probs is not None

    def top(self, k: int) -> list[tuple[str, float]]:
        if self.probs is None:
            return []
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(self.labels[i], float(self.probs[i])) for i in order]


class ClipError(Exception):
    """One clip that cannot be predicted: ``error_type`` (the failure vocabulary of
    :class:`dfer.core.shard_runner.ErrorType`) and a message without the clip's path."""

    def __init__(self, error_type: str, message: str, num_frames: int | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.num_frames = num_frames


def _frames_phrase(frame_indices: np.ndarray, num_source: int) -> str:
    """``its 1 frame`` / ``the 16 frames sampled from its 300``: the frames really examined."""
    distinct = len(np.unique(frame_indices))
    if distinct >= num_source:
        return f"its {num_source} frame{'s' if num_source != 1 else ''}"
    return f"the {distinct} frames sampled from its {num_source}"


def _strip_path(message: str, path: str) -> str:
    """Messages of the decode stage start with the file's path; the line already names it."""
    for prefix in (f"{path}: ", f"{Path(path)}: "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    return " ".join(message.split())  # one line


def _exception_line(exc: BaseException) -> str:
    """``TypeName: message`` on one line, for an error no stage put into words."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


@dataclass
class _Prepared:
    source: Source
    inputs: dict[str, torch.Tensor]
    num_frames: int
    seconds: float
    crops: np.ndarray | None
    points: np.ndarray | None
    frame_indices: np.ndarray | None


def landmark_features_config(section: Mapping[str, Any] | None, kind: str, title: str,
                             checkpoint: str | os.PathLike[str]) -> LandmarkFeaturesConfig:
    """The landmark-feature settings a checkpoint's maps were made with (its ``preprocessing``
    section, with any ``--preprocessing`` override merged in), checked to make maps of the
    ``kind`` the model reads: predicting with maps of another network would give numbers, not
    an error."""
    from dfer.landmark_features.config import LandmarkFeaturesConfig

    if not section:
        raise ValueError(
            f"{checkpoint}: {title} reads landmark feature maps ({kind}), and the checkpoint does not "
            "record the settings they were made with (it predates dfer storing them): give the "
            "run's landmark_features section, e.g. --preprocessing "
            "'{\"landmark_features\": {\"backend\": \"mobilefacenet\", \"weights\": \"PATH\"}}'")
    cfg = LandmarkFeaturesConfig.from_dict(section)
    if cfg.kind.name != kind:
        raise ValueError(f"{checkpoint}: {title} reads landmark feature maps of kind {kind!r}, but "
                         f"landmark_features.backend {cfg.backend!r} makes {cfg.kind.name!r} "
                         f"({cfg.kind.channels} channels)")
    return cfg


class Predictor:
    """A checkpoint with its preprocessing, loaded once, applied to clips.

    ``preprocessing`` overrides sections stored in the checkpoint (e.g. a GPU landmark backend);
    ``labels`` replaces the trained class names (zero-shot). ``batch_size`` clips go through
    the model together (the probabilities do not depend on it beyond float rounding).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str],
        device: str = "auto",
        preprocessing: Mapping[str, Any] | None = None,
        labels: Sequence[str] | None = None,
        model_overrides: Mapping[str, Any] | None = None,
        batch_size: int = 8,
    ) -> None:
        from dfer.video.config import DecodeConfig

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        model, meta = load_checkpoint(checkpoint, overrides=model_overrides, labels=labels)
        self.model: torch.nn.Module = model.to(self.device).eval()
        self.spec = spec_of_model(model)
        self.meta = meta
        pre = dict(meta.get("preprocessing") or {})
        for section, values in (preprocessing or {}).items():
            pre[section] = {**pre.get(section, {}), **dict(values)}
        self.preprocessing = pre
        self.data = DataConfig.for_method(self.spec, (meta.get("params") or {}).get("data"))
        self.image_size = int(self.data.image_size or self.model.image_size)
        self.decode_cfg = DecodeConfig.from_provenance(pre.get("decode"))
        from dfer.train.evaluate import prediction_needs

        self.needs = prediction_needs(self.model.cfg)[0]
        self.features_cfg = None
        if self.needs.landmark_features:
            from dfer.landmark_features.api import load_model

            self.features_cfg = landmark_features_config(pre.get("landmark_features"),
                                                         self.needs.landmark_features, self.spec.title, checkpoint)
            load_model(self.features_cfg)  # once, and missing weights stop here, not per clip
        self.landmarks_cfg = self.parsing_cfg = None
        self.renderers = None
        if self.needs.landmarks or self.needs.parsing:
            # resolved and loaded once: a per-clip call then neither re-decides ``auto`` nor
            # reloads a model (the dlib predictor alone is a 100 MB file)
            from dfer.landmarks import api as landmarks_api
            from dfer.landmarks.config import LandmarksConfig
            from dfer.train.data import default_renderers

            lm = LandmarksConfig.from_dict(pre.get("landmarks"))
            choice = landmarks_api.choose_backend(lm)
            self.landmarks_cfg = dataclasses.replace(lm, backend=choice.backend)
            landmarks_api.load_models(self.landmarks_cfg, choice)
            self.renderers = default_renderers()
        if self.needs.parsing:
            from dfer.parsing import api as parsing_api
            from dfer.parsing.config import ParsingConfig

            pc = ParsingConfig.from_dict(pre.get("parsing"))
            choice = parsing_api.choose_backend(pc)
            self.parsing_cfg = dataclasses.replace(pc, backend=choice.backend)
            parsing_api.load_models(self.parsing_cfg, choice)

    @property
    def labels(self) -> list[str]:
        return list(self.model.labels)

    # ------------------------------------------------------------------ one clip, CPU side
    def prepare(self, source: Source, keep_crops: bool = False) -> _Prepared:
        """Decode, landmarks, parsing and model inputs of one clip; raises :class:`ClipError`."""
        from dfer.train.data import prepare_clip
        from dfer.video import decode_clip
        from dfer.video.errors import DecodeError

        start = time.perf_counter()
        if source.error is not None:
            raise ClipError(source.error_type or "missing_file", source.error)
        try:
            decoded = decode_clip(source.path, source.kind, self.decode_cfg)
        except DecodeError as exc:
            raise ClipError(str(exc.error_type), _strip_path(str(exc), source.path)) from exc
        frames = decoded.frames
        num_source = int(decoded.num_source_frames)
        points = maps = None
        if self.landmarks_cfg is not None:
            from dfer.landmarks.api import NoFaceError, detect_landmarks

            try:
                points = detect_landmarks(frames, self.landmarks_cfg).points
            except NoFaceError:
                where = _frames_phrase(decoded.frame_indices, num_source)
                decode_found = decoded.face_found_frac > 0
                hint = ("the decode detector found one, the landmark detector did not: "
                        "--preprocessing '{\"landmarks\": {\"detector\": \"crop\"}}' fits the "
                        "points in the decode crop"
                        if decode_found else
                        "the decode detector found none either and kept a centre crop; for "
                        "small or turned faces raise decode.upsample or add 'mmod-up1' to "
                        "decode.escalate with --preprocessing")
                raise ClipError("no_face", f"no face found on {where} ({hint})",
                                num_source) from None
        if self.parsing_cfg is not None:
            from dfer.parsing.api import parse_clip

            maps = parse_clip(frames, points, self.parsing_cfg)
        features = None
        if self.features_cfg is not None:
            from dfer.core.shard_runner import ClipFailure
            from dfer.landmark_features.api import extract_features
            from dfer.landmark_features.shard import stored

            try:  # the values the stage would have stored, in its dtype, as training read them
                features = stored(extract_features(frames, self.features_cfg), self.features_cfg.dtype)
            except ClipFailure as exc:
                raise ClipError(str(exc.error_type), str(exc), num_source) from exc
        use_points = points if self.needs.landmarks else None
        item = prepare_clip(frames, use_points, maps, self.data, self.image_size, self.renderers,
                            features=features)
        return _Prepared(source, item, num_source, time.perf_counter() - start,
                         frames if keep_crops else None, points if keep_crops else None,
                         decoded.frame_indices if keep_crops else None)

    # ------------------------------------------------------------------ model side
    def probabilities(self, items: Sequence[Mapping[str, torch.Tensor]]) -> np.ndarray:
        """Class probabilities ``[B, C]`` of prepared clips (unbatched tensors), one forward.

        The computation of ``DFERModule.predict_step``: eval mode, no autograd, the output's
        ``probabilities()`` averaged over the run's test views.
        """
        batch = {k: torch.stack([it[k] for it in items]).to(self.device)
                 for k in MODEL_INPUTS if k in items[0]}
        with torch.inference_mode():
            probs, _ = api.view_outputs(self.model, self.spec, batch, self.data.test_views)
            return probs.cpu().numpy()

    def predict(self, sources: Iterable[Source], keep_crops: bool = False) -> Iterator[Prediction]:
        """One :class:`Prediction` per source, in order; a clip that fails yields its error and
        the others are still predicted."""
        pending: list[_Prepared] = []
        labels = self.labels

        def flush() -> Iterator[Prediction]:
            if not pending:
                return
            start = time.perf_counter()
            try:
                probs = self.probabilities([p.inputs for p in pending])
            except Exception as exc:  # noqa: BLE001 - reported per clip like any failure
                message = _exception_line(exc)
                for p in pending:
                    yield Prediction(p.source.path, labels, None, message, "backend_error",
                                     p.num_frames, p.seconds)
            else:
                share = (time.perf_counter() - start) / len(pending)
                for p, row in zip(pending, probs, strict=True):
                    yield Prediction(p.source.path, labels, row, None, None, p.num_frames,
                                     p.seconds + share, p.crops, p.points, p.frame_indices)
            pending.clear()

        for source in sources:
            start = time.perf_counter()
            try:
                pending.append(self.prepare(source, keep_crops))
            except ClipError as exc:
                yield from flush()  # keep the order of the sources
                yield Prediction(source.path, labels, None, str(exc), exc.error_type,
                                 exc.num_frames, time.perf_counter() - start)
                continue
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
                yield from flush()
                yield Prediction(source.path, labels, None,
                                 _strip_path(_exception_line(exc), source.path),
                                 "unexpected", None, time.perf_counter() - start)
                continue
            if len(pending) >= self.batch_size:
                yield from flush()
        yield from flush()


def predict_videos(
    checkpoint: str | os.PathLike[str],
    videos: Sequence[str | os.PathLike[str]],
    device: str = "auto",
    preprocessing: Mapping[str, Any] | None = None,
    labels: Sequence[str] | None = None,
    model_overrides: Mapping[str, Any] | None = None,
    batch_size: int = 8,
) -> list[Prediction]:
    """Probabilities over the checkpoint's classes (or ``labels``, zero-shot) per clip.

    ``videos`` are files, frame folders, folders of clips or glob patterns
    (:func:`dfer.inference.sources.expand_sources`). A clip that cannot be processed yields a
    :class:`Prediction` with ``error`` set; the others are still predicted.
    """
    predictor = Predictor(checkpoint, device=device, preprocessing=preprocessing, labels=labels,
                          model_overrides=model_overrides, batch_size=batch_size)
    return list(predictor.predict(expand_sources(videos)))
