"""Find a model checkpoint offline, and say which backend a face stage runs with and why.

The GPU backends (face-alignment's FAN, facer's FaRL parser) normally download their weights
into the torch hub cache. Where nothing can be downloaded, the error has to say exactly which
file is missing, where it was looked for, and which config key points at a local copy.

A stage whose backend is pinned (``landmarks.backend: face_alignment``) never falls back: a
missing checkpoint stops the job before its first clip (:class:`MissingWeightsError`). Only
``backend: auto`` substitutes the CPU backend, and then it says so: the choice and its reason
(:class:`BackendChoice`) go to the job's log, into the artifact's provenance
(``backend``, ``backend_reason``) and from there into the training run's ``train.json``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class MissingWeightsError(FileNotFoundError):
    """A configured or pinned backend's checkpoint is not on disk (never downloaded here).

    ``config_key`` is the setting that takes a local path, ``path`` the file looked for.
    """

    def __init__(self, message: str, *, config_key: str, path: Path) -> None:
        super().__init__(message)
        self.config_key = config_key
        self.path = path


@dataclass(frozen=True)
class BackendChoice:
    """The backend a stage runs with: what the config said, what it became, and why."""

    stage: str
    configured: str
    backend: str
    reason: str
    #: the CPU backend stands in for the GPU one the paper used (only ever under ``auto``)
    substitute: bool = False

    def record(self) -> dict[str, Any]:
        """The JSON form stored in provenance and in train.json."""
        return {"configured": self.configured, "backend": self.backend, "reason": self.reason,
                "substitute": self.substitute}


_ANNOUNCED: set[BackendChoice] = set()


def announce(choice: BackendChoice) -> BackendChoice:
    """Log an ``auto`` choice once per process (a shard job's log), and return it.

    Logged as a warning: the stage commands do not configure logging, and Python prints
    warnings to stderr by default, which the rule tees into the job's log. A choice that
    ``auto`` made for the user belongs there, above all a CPU substitute for the paper's
    GPU backend.
    """
    if choice.configured == "auto" and choice not in _ANNOUNCED:
        _ANNOUNCED.add(choice)
        log.warning("%s.backend auto -> %s%s: %s", choice.stage, choice.backend,
                    " (CPU substitute)" if choice.substitute else "", choice.reason)
    return choice


def choose_backend(
    stage: str,
    configured: str,
    *,
    gpu: str,
    cpu: str,
    weights_name: str,
    find_weights: Callable[[], Path],
) -> BackendChoice:
    """The backend a face stage runs with, and why: the one rule both face stages follow.

    ``configured`` is the stage's ``backend`` setting; ``gpu`` the paper's GPU backend whose
    checkpoint ``find_weights`` looks up (raising ``FileNotFoundError``, usually
    :class:`MissingWeightsError`, when it is not on disk); ``cpu`` the offline substitute;
    ``weights_name`` names those weights in the reason. A pinned ``gpu`` looks its checkpoint
    up here, so a missing one stops the job before any clip (never a fallback); any other
    pinned value is taken as is. ``auto`` picks ``gpu`` when CUDA is visible and the weights
    are found, ``cpu`` otherwise, and logs the choice (:func:`announce`). The reasons go into
    the artifacts' provenance verbatim, so their wording is part of the artifact contract.
    """
    if configured == gpu:
        path = find_weights()
        return BackendChoice(stage, configured, configured,
                             f"pinned by {stage}.backend; {weights_name} weights {path}")
    if configured != "auto":
        return BackendChoice(stage, configured, configured, f"pinned by {stage}.backend")
    import torch

    if not torch.cuda.is_available():
        choice = BackendChoice(stage, "auto", cpu, f"no CUDA device is visible, so not {gpu}",
                               substitute=True)
    else:
        try:
            path = find_weights()
        except FileNotFoundError as exc:
            choice = BackendChoice(stage, "auto", cpu,
                                   f"CUDA is visible but not the {weights_name} weights: {exc}",
                                   substitute=True)
        else:
            choice = BackendChoice(stage, "auto", gpu,
                                   f"CUDA is visible and the {weights_name} weights are at {path}")
    return announce(choice)


def find_checkpoint(
    filename: str,
    configured: str | os.PathLike[str] | None,
    *,
    what: str,
    config_key: str,
    url: str,
    offline_backend: str,
) -> Path:
    """``configured`` (the file, or a folder holding ``filename``), else the hub cache copy.

    ``what`` names the weights in errors ("face-alignment FAN"), ``config_key`` is the key
    that takes a local path, ``url`` where to fetch the file, ``offline_backend`` the
    ``backend: ...`` setting that needs no weights.
    """
    import torch

    if configured:
        path = Path(configured).expanduser()
        if path.is_dir():
            path = path / filename
        if path.is_file():
            return path
        raise MissingWeightsError(
            f"{what} weights not found at {path} ({config_key}); expected the file {filename} "
            "or a folder holding it",
            config_key=config_key, path=path,
        )
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return cached
    raise MissingWeightsError(
        f"{what} weights {filename} are not in the torch hub cache ({cached}) and cannot be "
        f"downloaded here; fetch {url} on a machine with internet access and either copy it "
        f"there or set {config_key} to its path (or use {offline_backend})",
        config_key=config_key, path=cached,
    )
