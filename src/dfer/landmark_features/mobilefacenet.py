"""MobileFaceNet up to ``conv_4``: the landmark network whose feature map S2D feeds its prompters.

S2D (``MSA-LMC/S2D`` at ``e1b5e5d``, ``landmark/backbone.py``, ``landmark/mobilefacenet.py``)
runs a frozen MobileFaceNet face-landmark regressor (136 outputs: 68 points) on every frame of
its ImageNet-normalised clip, resized to 112 px (bilinear, ``align_corners=True``), and keeps
the output of stage ``conv_4``: ``[128, 14, 14]``. Written here from that architecture (the
layers after ``conv_4`` are not built: nothing reads them)::

    conv1      3 -> 64, 3x3 stride 2, BN, PReLU                              112 -> 56
    conv2_dw   64 -> 64, depthwise 3x3, BN, PReLU
    conv_23    bottleneck 64 -> 64 (expand 128), stride 2                    56 -> 28
    conv_3     4 residual bottlenecks 64 -> 64 (expand 128)
    conv_34    bottleneck 64 -> 128 (expand 256), stride 2                   28 -> 14
    conv_4     6 residual bottlenecks 128 -> 128 (expand 256)                -> [128, 14, 14]

    bottleneck(x) = project(dw(expand(x))) (+ x when residual):
        expand 1x1 conv, BN, PReLU;  dw depthwise 3x3 (the stride), BN, PReLU;  project 1x1, BN
    every conv without bias; BN in eval mode (running statistics)

Module names follow the released checkpoint's keys (``conv1.conv.weight``,
``conv_3.model.0.conv_dw.bn.running_mean``, ...), so S2D's ``mobilefacenet_model_best.pth.tar``
loads without renaming; :func:`load_state` drops its layers after ``conv_4`` and checks the rest
strictly.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

INPUT_SIZE = 112
CHANNELS = 128

#: key prefixes of the released (full) network after ``conv_4``: expected in its checkpoint,
#: not part of the trunk
TAIL_PREFIXES = ("conv_45.", "conv_5.", "conv_6_sep.", "output_layer.")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

WEIGHTS_KEY = "landmark_features.weights"


class ConvUnit(nn.Module):
    """Convolution without bias, batch norm, and (``act``) a per-channel PReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.prelu(x) if self.prelu is not None else x


class Bottleneck(nn.Module):
    """1x1 expansion, depthwise 3x3 (carrying the stride), linear 1x1 projection; the input is
    added back when ``residual`` (same width, stride 1)."""

    def __init__(self, cin: int, cout: int, hidden: int, stride: int, residual: bool) -> None:
        super().__init__()
        if residual and (cin != cout or stride != 1):
            raise ValueError("a residual bottleneck keeps its width and resolution")
        self.conv = ConvUnit(cin, hidden)
        self.conv_dw = ConvUnit(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvUnit(hidden, cout, act=False)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.conv_dw(self.conv(x)))
        return x + y if self.residual else y


class ResidualStage(nn.Module):
    """``blocks`` residual bottlenecks of one width (the checkpoint's ``<stage>.model.<i>``)."""

    def __init__(self, width: int, blocks: int, hidden: int) -> None:
        super().__init__()
        self.model = nn.Sequential(*(Bottleneck(width, width, hidden, 1, True) for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MobileFaceNetConv4(nn.Module):
    """MobileFaceNet's layers up to ``conv_4``: images ``[N, 3, 112, 112]`` -> ``[N, 128, 14, 14]``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvUnit(3, 64, 3, stride=2)
        self.conv2_dw = ConvUnit(64, 64, 3, groups=64)
        self.conv_23 = Bottleneck(64, 64, 128, stride=2, residual=False)
        self.conv_3 = ResidualStage(64, 4, 128)
        self.conv_34 = Bottleneck(64, 128, 256, stride=2, residual=False)
        self.conv_4 = ResidualStage(128, 6, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in (self.conv1, self.conv2_dw, self.conv_23, self.conv_3, self.conv_34, self.conv_4):
            x = stage(x)
        return x


def random_trunk(seed: int) -> MobileFaceNetConv4:
    """A random-weight trunk (tests, the CPU demo), drawn from ``seed`` without touching the
    caller's random state: He-normal convolutions for PReLU 0.25 (fan-in), the residual
    projections linear He-normal halved, unit batch norms. Unlike the public init (fan-out,
    written for training), this keeps ``conv_4`` near unit scale (std about 0.5 on random
    frames) instead of shrinking it to 1e-4 or letting the 10 residual additions blow it up,
    so the float16 storage sees values like those of trained weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MobileFaceNetConv4()
        for name, m in net.named_modules():
            if not isinstance(m, nn.Conv2d):
                continue
            if name.endswith("project.conv"):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="linear")
                with torch.no_grad():
                    m.weight.mul_(0.5)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="leaky_relu", a=0.25)
    return net.eval()


def read_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a MobileFaceNet checkpoint file: safetensors, or ``torch.save``'d (bare or
    under ``state_dict`` / ``model`` / ``model_state_dict``, ``module.`` prefixes removed).

    ``torch.load`` runs with ``weights_only=True``: a file that needs arbitrary unpickling is
    refused with a message saying how to convert it.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"MobileFaceNet weights not found at {p} ({WEIGHTS_KEY}); S2D's file is "
                                "landmark/mobilefacenet_model_best.pth.tar of MSA-LMC/S2D")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(p), device="cpu")
        else:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - name the file and the key
        raise ValueError(
            f"cannot read the MobileFaceNet checkpoint {p} ({WEIGHTS_KEY}): {exc}. A file that "
            "pickles more than tensors can be converted once where it is trusted: "
            "torch.save(torch.load(f, weights_only=False)['state_dict'], 'mobilefacenet.pth')"
        ) from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{p} ({WEIGHTS_KEY}) holds no state dict (got {type(state).__name__})")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()
            if isinstance(v, torch.Tensor)}


def load_state(net: MobileFaceNetConv4, state: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """Load ``state`` into ``net`` strictly: every trunk tensor present with its shape; the
    released network's layers after ``conv_4`` (:data:`TAIL_PREFIXES`) are dropped; any other
    key is an error. A missing ``num_batches_tracked`` (checkpoints of PyTorch < 0.4.1) is
    allowed: eval-mode batch norm never reads it."""
    own = net.state_dict()
    trunk = {k: v for k, v in state.items() if not k.startswith(TAIL_PREFIXES)}
    missing = sorted(k for k in set(own) - set(trunk) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(trunk) - set(own))
    wrong = sorted(k for k in set(own) & set(trunk) if tuple(trunk[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path} ({WEIGHTS_KEY}) does not fit MobileFaceNet up to conv_4: "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)}), wrong shape {wrong[:5]} ({len(wrong)})"
        )
    net.load_state_dict({**own, **trunk}, strict=True)


@functools.lru_cache(maxsize=2)
def load_mobilefacenet(path: str, device: str) -> MobileFaceNetConv4:
    """The trunk with the checkpoint at ``path`` loaded, frozen, in eval mode on ``device``."""
    net = MobileFaceNetConv4()
    load_state(net, read_state(path), path)
    log.info("loaded MobileFaceNet conv_4 trunk from %s", path)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(device).eval()


def network_input(frames: torch.Tensor, normalization: str = "imagenet") -> torch.Tensor:
    """Decoded frames uint8 (or 0..255) ``[N, H, W, 3]`` -> ``[N, 3, 112, 112]`` as S2D feeds its
    landmark network: ``/ 255``, ImageNet mean/std (``normalization: imagenet``; ``none``
    keeps [0, 1]), bilinear resize with ``align_corners=True`` (S2D resizes its normalised clip;
    both steps are linear, so the order does not matter)."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [N, H, W, 3], got {tuple(frames.shape)}")
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    if normalization == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=True)
    return x
