"""The one reading of a ``device`` setting (landmarks, parsing, training, evaluation, predict).

Every ``device`` key accepts ``auto | cpu | cuda | cuda:N`` (the config schema's pattern), and
every user of it (face stages, training, evaluation, ``dfer predict``) reads it here, so the
same value means the same thing everywhere. A pinned GPU that is not there, or a value outside
the pattern, is refused up front with the value in the message: a misplaced job says why it
cannot run before it loads a model, instead of failing deep inside torch or silently running
on the CPU.
"""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cpu`` / ``cuda[:N]`` as given.

    Raises ``RuntimeError`` for ``cuda[:N]`` when no CUDA GPU is visible (never a silent CPU
    run: the user pinned the GPU) and ``ValueError`` for any other value.
    """
    import torch  # lazily: the workflow parses configs without importing torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; expected auto, cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but no CUDA GPU is visible")
    return device
