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
    if device.startswith("cuda:"):
        _check_pin_fits_placement(device)
    return device


def _check_pin_fits_placement(device: str) -> None:
    """A workflow job placed on its own GPUs (dfer.core.gpu_placement) sees only those, as
    ``cuda:0`` ...: a pin beyond them would name another job's GPU, or none. Refused with what
    the job was given, instead of torch's "invalid device ordinal" deep inside a model load."""
    import os

    from dfer.core.gpu_placement import PLACED_ENV

    placed = [g for g in os.environ.get(PLACED_ENV, "").split(",") if g]
    number = device.split(":", 1)[1]
    index = int(number) if number.isdigit() else -1
    if placed and not 0 <= index < len(placed):
        raise RuntimeError(
            f"device {device!r} pins a GPU, but this job was placed on GPU(s) {','.join(placed)} "
            f"(seen as cuda:0..cuda:{len(placed) - 1}); use device: cuda or auto and let the "
            "workflow's placement choose (docs/cluster.md)")
