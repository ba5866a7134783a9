"""``model.batch_levels``: the batched visual forward computes what the per-level one computes.

``batch_levels: true`` (default) runs every visual level in one forward through the frozen ViT
(:func:`dfer.model.vision.encode_streams`: levels concatenated along the batch, each level's
adapters on its slice, the frozen attention as one in-projection + SDPA, the last block on the
CLS token only); ``false`` is the first implementation (:func:`encode_frames`, one level after
the other through open_clip's ``nn.MultiheadAttention``). Same random weights, fp32, adapters
moved off their zero init so that every adapter path contributes: equal logits, features and
adapter gradients up to float rounding. The ViT-B/16 check is in tests/test_model_fidelity.py.
"""

from __future__ import annotations

import copy

import pytest
import torch

from dfer.methods.fineclipper import FineCLIPER, ModelConfig
from dfer.model.config import TINY_CLIP_CFG

LABELS = ["happiness", "sadness", "neutral", "anger"]


def tiny(**kw) -> ModelConfig:
    return ModelConfig(backbone="tiny", pretrained=None, **kw)


def clips(b: int, t: int, seed: int, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, size, size, 3), generator=g, dtype=torch.uint8)


def perturb(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Move every trainable weight off its init (zero up-projections, temporal embedding)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * std)


def run(model: FineCLIPER, batch_levels: bool, inputs: dict, targets: torch.Tensor,
        grad_checkpointing: bool = False) -> tuple:
    model.cfg.batch_levels = batch_levels
    model.cfg.grad_checkpointing = grad_checkpointing
    model.zero_grad(set_to_none=True)
    out = model(**inputs)
    model.losses(out, targets)["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.tunable_parameters().items() if p.grad is not None}
    return out, grads


def assert_same(a: tuple, b: tuple, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    out_a, grads_a = a
    out_b, grads_b = b
    torch.testing.assert_close(out_b.logits, out_a.logits, atol=atol, rtol=rtol)
    assert set(out_a.level_features) == set(out_b.level_features)
    for level, feats in out_a.level_features.items():
        torch.testing.assert_close(out_b.level_features[level], feats, atol=atol, rtol=rtol)
    assert set(grads_a) == set(grads_b) and grads_a
    for name, g in grads_a.items():
        torch.testing.assert_close(grads_b[name], g, atol=atol, rtol=rtol, msg=name)


@pytest.fixture(scope="module")
def backbone() -> tuple:
    torch.manual_seed(0)
    base = FineCLIPER(tiny(), LABELS)
    return base.clip, base.tokenizer


#: standardize_features: a BatchNorm over 2 clips of a random backbone (whose clip features
#: nearly coincide) divides by their tiny difference and so magnifies float rounding ~100x
#: (logits within 4e-5, gradients within 2e-4 here; 2e-6 without it)
LOOSE = {"atol": 5e-4, "rtol": 1e-3}


@pytest.mark.parametrize(("keys", "tol"), [
    ({}, {}),
    ({"temporal": "attention"}, {}),
    ({"mid_temporal": "aim", "temporal": "none"}, {}),
    ({"share_mid_adapters": True, "spatial_adapter": False}, {}),
    ({"mlp_adapter": False}, {}),
    ({"standardize_features": True}, LOOSE),
    ({"use_parsing": False, "use_landmarks": False}, {}),
    ({"use_video": False}, {}),
])
def test_batched_levels_equal_per_level_forward_and_gradients(backbone: tuple, keys: dict, tol: dict) -> None:
    clip, tokenizer = backbone
    model = FineCLIPER(tiny(**keys), LABELS, clip=clip, tokenizer=tokenizer).train()
    perturb(model, seed=1)
    # the middle levels may use fewer frames than the video level (data.mid_frames)
    inputs = {"frames": clips(2, 4, seed=2), "parsing": clips(2, 2, seed=3),
              "landmarks": clips(2, 2, seed=4), "captions": ["brows rise", "mouth opens"]}
    targets = torch.tensor([0, 3])
    state = copy.deepcopy(model.feature_norms.state_dict())  # BatchNorm running stats move
    old = run(model, False, inputs, targets)
    model.feature_norms.load_state_dict(state)
    new = run(model, True, inputs, targets)
    assert_same(old, new, **tol)
    model.eval()
    with torch.no_grad():
        model.cfg.batch_levels = False
        old_eval = model(**inputs).logits
        model.cfg.batch_levels = True
        torch.testing.assert_close(model(**inputs).logits, old_eval, **({"atol": 1e-5, "rtol": 1e-4} | tol))


def test_batched_levels_with_grad_checkpointing(backbone: tuple) -> None:
    clip, tokenizer = backbone
    model = FineCLIPER(tiny(), LABELS, clip=clip, tokenizer=tokenizer).train()
    perturb(model, seed=5)
    inputs = {"frames": clips(2, 4, seed=6), "parsing": clips(2, 4, seed=7),
              "landmarks": clips(2, 4, seed=8), "captions": ["a", "b"]}
    targets = torch.tensor([1, 2])
    assert_same(run(model, False, inputs, targets), run(model, True, inputs, targets, grad_checkpointing=True))


def test_batched_levels_with_average_pooling() -> None:
    """Without CLS pooling every token of the last block is computed (no CLS-only shortcut)."""
    cfg = copy.deepcopy(TINY_CLIP_CFG)
    cfg["vision_cfg"]["pool_type"] = "avg"
    torch.manual_seed(0)
    model = FineCLIPER(ModelConfig(backbone="custom", pretrained=None, model_cfg=cfg), LABELS).train()
    assert model.clip.visual.pool_type == "avg"
    perturb(model, seed=9)
    inputs = {"frames": clips(2, 3, seed=10), "parsing": clips(2, 3, seed=11),
              "landmarks": clips(2, 3, seed=12), "captions": ["a", "b"]}
    targets = torch.tensor([0, 1])
    assert_same(run(model, False, inputs, targets), run(model, True, inputs, targets))


def test_batch_levels_is_a_config_key() -> None:
    assert ModelConfig().batch_levels is True
    assert ModelConfig.from_dict({"batch_levels": False}).batch_levels is False
