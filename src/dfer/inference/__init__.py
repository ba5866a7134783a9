"""Inference on new videos with a trained checkpoint (``dfer predict``).

Kept apart from :mod:`dfer.train`: predicting runs every preprocessing stage's per-clip API
(decode, landmarks, parsing) in memory, so this package sits above the stages and training
alike, and training never imports it.
"""

from dfer.inference.predict import Prediction, predict_videos, preprocess_video

__all__ = ["Prediction", "predict_videos", "preprocess_video"]
