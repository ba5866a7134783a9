"""Find a model checkpoint offline: a configured file or folder, else the torch hub cache.

The GPU backends (face-alignment's FAN, facer's FaRL parser) normally download their weights
into the torch hub cache. Where nothing can be downloaded, the error has to say exactly which
file is missing, where it was looked for, and which config key points at a local copy.
"""

from __future__ import annotations

import os
from pathlib import Path


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
        raise FileNotFoundError(
            f"{what} weights not found at {path} ({config_key}); expected the file {filename} "
            "or a folder holding it"
        )
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return cached
    raise FileNotFoundError(
        f"{what} weights {filename} are not in the torch hub cache ({cached}) and cannot be "
        f"downloaded here; fetch {url} on a machine with internet access and either copy it "
        f"there or set {config_key} to its path (or use {offline_backend})"
    )
