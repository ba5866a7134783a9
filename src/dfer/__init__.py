"""dfer: FineCLIPER dynamic facial expression recognition as a reproducible pipeline."""

__version__ = "0.1.0"
