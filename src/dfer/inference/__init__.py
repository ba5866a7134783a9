"""Inference on new videos with a trained checkpoint (``dfer predict``).

Kept apart from :mod:`dfer.train`: predicting runs every preprocessing stage's per-clip API
(decode, landmarks, parsing) in memory, so this package sits above the stages and training
alike, and training never imports it. ``sources`` says which clips a command line names,
``predict`` loads a checkpoint once and predicts clips, ``table`` and ``overlay`` write what
``dfer predict`` outputs.
"""

from dfer.inference.predict import Prediction, Predictor, predict_videos
from dfer.inference.sources import Source, expand_sources

__all__ = ["Prediction", "Predictor", "Source", "expand_sources", "predict_videos"]
