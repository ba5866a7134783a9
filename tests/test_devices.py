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
    monkeypatch.delenv("DFER_GPUS_PLACED", raising=False)
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


def test_a_pin_beyond_the_gpus_a_job_was_placed_on_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A workflow job placed on GPUs 5 and 7 sees them as cuda:0 and cuda:1: those pins are
    kept, cuda:2 is refused naming what the job was given."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("DFER_GPUS_PLACED", "5,7")
    assert resolve_device("cuda:0") == "cuda:0" and resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("cuda") == "cuda"
    with pytest.raises(RuntimeError, match=r"device 'cuda:2' pins a GPU, but this job was placed on "
                                           r"GPU\(s\) 5,7 \(seen as cuda:0..cuda:1\)"):
        resolve_device("cuda:2")
