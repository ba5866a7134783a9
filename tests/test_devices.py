"""``dfer.core.devices.resolve_device``: the one reading of every ``device`` setting."""

from __future__ import annotations

import pytest
import torch

from dfer.core.devices import resolve_device


@pytest.mark.parametrize("cuda", [False, True], ids=["no-gpu", "gpu"])
def test_auto_follows_cuda_and_cpu_is_always_cpu(monkeypatch: pytest.MonkeyPatch, cuda: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device("auto") == ("cuda" if cuda else "cpu")
    assert resolve_device("cpu") == "cpu"


def test_cuda_with_a_gpu_is_kept_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=rf"device '{device}' requested but no CUDA GPU is visible"):
        resolve_device(device)


@pytest.mark.parametrize("device", ["gpu", "mps", "CPU", ""])
def test_unknown_values_are_refused(monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device(device)
