"""Compatibility: FineCLIPER moved to :mod:`dfer.methods.fineclipper` (the method registry)."""

from dfer.methods.fineclipper import FineCLIPER, FineCLIPEROutput, count_parameters

__all__ = ["FineCLIPER", "FineCLIPEROutput", "count_parameters"]
