"""``standardize_features``: BatchNorm of each level's clip feature, saved with the checkpoint.

Why it exists: a random-init backbone maps every clip to almost the same direction, so the
cosine scores against the class descriptors cannot separate the classes (docs/model.md).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from dfer.methods.checkpoint import load_checkpoint, save_checkpoint
from dfer.methods.fineclipper import FineCLIPER, ModelConfig

LABELS = ["happiness", "sadness", "neutral"]


def tiny(**kw) -> ModelConfig:
    return ModelConfig(backbone="tiny", pretrained=None, use_captions=False, **kw)


def clips(b: int, seed: int, t: int = 2, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # a shared base image plus small per-clip changes: like faces, nearly parallel features
    base = torch.randint(0, 256, (1, 1, size, size, 3), generator=g).float()
    delta = torch.randint(-20, 21, (b, t, size, size, 3), generator=g).float()
    return (base + delta).clamp(0, 255).to(torch.uint8)


def inputs(b: int, seed: int) -> dict[str, torch.Tensor]:
    return {"frames": clips(b, seed), "parsing": clips(b, seed + 1), "landmarks": clips(b, seed + 2)}


def mean_offdiag_cos(f: torch.Tensor) -> float:
    s = f @ f.T
    n = s.shape[0]
    return float((s.sum() - s.diagonal().sum()) / (n * (n - 1)))


def test_standardization_spreads_nearly_parallel_clip_features() -> None:
    torch.manual_seed(0)
    plain = FineCLIPER(tiny(), LABELS).eval()
    std = FineCLIPER(tiny(standardize_features=True), LABELS).train()
    x = inputs(8, seed=0)
    with torch.no_grad():
        before = plain(**x).level_features["video"]
        after = std(**x).level_features["video"]
    assert mean_offdiag_cos(before) > 0.9  # the random backbone's common direction
    # batch-standardised features of 8 clips are centred: their mean pairwise cosine is -1/7
    assert abs(mean_offdiag_cos(after) - (-1 / 7)) < 0.05
    assert set(std.feature_norms) == {"video", "parsing", "landmarks"}


def test_running_statistics_round_trip_through_the_checkpoint(tmp_path) -> None:
    torch.manual_seed(0)
    model = FineCLIPER(tiny(standardize_features=True), LABELS)
    model.train()
    with torch.no_grad():
        for step in range(3):  # updates the running statistics
            model(**inputs(6, seed=10 * step))
    stats = model.feature_norms["video"].running_mean.clone()
    assert stats.abs().sum() > 0
    state = model.tunable_state_dict()
    assert {k for k in state if k.startswith("feature_norms.video")} == {
        "feature_norms.video.running_mean", "feature_norms.video.running_var"}
    path = save_checkpoint(tmp_path / "ckpt.safetensors", model)
    loaded, _ = load_checkpoint(path)
    torch.testing.assert_close(loaded.feature_norms["video"].running_mean, stats)
    x = inputs(3, seed=99)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**x).logits, model(**x).logits)
        # evaluation uses the running statistics, so a clip's score does not depend on its batch
        alone = model(**{k: v[:1] for k, v in x.items()}).logits
    torch.testing.assert_close(alone, model(**x).logits[:1])


def test_one_clip_training_batch_uses_the_running_statistics() -> None:
    torch.manual_seed(0)
    model = FineCLIPER(tiny(standardize_features=True, use_parsing=False, use_landmarks=False), LABELS).train()
    out = model(frames=clips(1, seed=3))
    norm = model.feature_norms["video"]
    raw = model.encode_level(clips(1, seed=3), "video").float().mean(1)
    expected = F.normalize((raw - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps), dim=-1)
    torch.testing.assert_close(out.level_features["video"], expected)
    assert int(norm.num_batches_tracked) == 0  # a one-clip batch does not update the statistics


def test_off_by_default_and_checkpoint_keys_unchanged() -> None:
    model = FineCLIPER(tiny(), LABELS)
    assert len(model.feature_norms) == 0
    assert not any(k.startswith("feature_norms") for k in model.tunable_state_dict())
