"""Training and evaluation of FineCLIPER (Lightning), and the DFER metrics."""

from dfer.train.metrics import compute_metrics, confusion_matrix, mean_over_folds, uar, war

__all__ = ["compute_metrics", "confusion_matrix", "mean_over_folds", "uar", "war"]
