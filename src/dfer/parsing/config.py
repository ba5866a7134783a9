"""Configuration of the parsing stage (the ``parsing`` section of config/config.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from dfer.core.strict_config import from_mapping

Backend = Literal["auto", "facer", "landmarks"]

#: Keys that only decide where or how fast the stage runs, not its label maps
#: (``dfer.core.execution_keys``): changing them re-runs no parsing job. facer parses each
#: frame on its own (eval mode), so the frames per forward pass change speed, not the maps.
EXECUTION_KEYS: tuple[str, ...] = ("device", "batch_size")


@dataclass(frozen=True)
class ParsingConfig:
    """Settings of :func:`dfer.parsing.parse_clip`."""

    backend: Backend = "auto"        # auto: facer with CUDA and weights, else landmarks
    model: str = "farl/lapa/448"     # facer model: farl/lapa/448 | farl/celebm/448
    device: str = "auto"
    weights: str | None = None       # facer TorchScript file or folder (None: torch hub cache)
    batch_size: int = 16             # frames per facer forward pass

    @classmethod
    def from_dict(cls, section: Mapping[str, Any] | None) -> ParsingConfig:
        cfg = from_mapping(cls, section, "parsing setting")
        if cfg.backend not in ("auto", "facer", "landmarks"):
            raise ValueError(f"parsing.backend must be auto, facer or landmarks, got {cfg.backend!r}")
        if cfg.model not in ("farl/lapa/448", "farl/celebm/448"):
            raise ValueError(f"parsing.model must be farl/lapa/448 or farl/celebm/448, got {cfg.model!r}")
        if cfg.batch_size < 1:
            raise ValueError(f"parsing.batch_size must be >= 1, got {cfg.batch_size}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
