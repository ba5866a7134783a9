"""FineCLIPER's feature standardisation and losses on a share of a global batch, and its
caption features, by value.

Training on several processes hands each one a :class:`BatchShare`: the batch statistics and
the losses must be the global batch's, padding rows left out. Here the share is a
one-process share (``world=1``) with padding rows, so the expected values are plain sums and
means over the valid rows, written out in the test (a hand-written BatchNorm update and a
hand-written log-softmax cross-entropy), not taken from BatchNorm or the loss code. The
methods are called on a small stand-in holding only what they read (the norms, the config,
the temperature), so no CLIP is built.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dfer.methods.fineclipper import FineCLIPER, FineCLIPEROutput
from dfer.model.batch_share import BatchShare

FEATS = torch.tensor([[1.0, 2.0], [3.0, -2.0], [100.0, 100.0], [5.0, 6.0]])  # row 2 is padding
VALID = torch.tensor([True, True, False, True])


def _norm(momentum: float | None = 0.1) -> nn.BatchNorm1d:
    norm = nn.BatchNorm1d(2, affine=False, momentum=momentum)
    norm.running_mean.copy_(torch.tensor([1.0, -1.0]))
    norm.running_var.copy_(torch.tensor([2.0, 0.5]))
    return norm


def _stand_in(norm: nn.BatchNorm1d, training: bool = True) -> SimpleNamespace:
    norm.train(training)  # as model.train() / model.eval() set it
    return SimpleNamespace(feature_norms={"video": norm}, training=training)


def test_standardize_on_a_share_uses_the_valid_rows_and_updates_running_stats() -> None:
    norm = _norm()
    share = BatchShare(VALID, n_global=3, world=1, rank=0)
    out = FineCLIPER._standardize(_stand_in(norm), "video", FEATS, share)
    # valid rows (1, 2), (3, -2), (5, 6): mean (3, 2); biased variance ((4+0+4)/3, (0+16+16)/3)
    mean = torch.tensor([3.0, 2.0])
    var = torch.tensor([8.0 / 3.0, 32.0 / 3.0])
    torch.testing.assert_close(out, (FEATS - mean) / torch.sqrt(var + 1e-5))
    # running stats: 0.9 * old + 0.1 * batch, the variance unbiased (x 3/2)
    torch.testing.assert_close(norm.running_mean, torch.tensor([0.9 * 1.0 + 0.3, 0.9 * -1.0 + 0.2]))
    torch.testing.assert_close(norm.running_var, torch.tensor([0.9 * 2.0 + 0.1 * 4.0, 0.9 * 0.5 + 0.1 * 16.0]))
    assert int(norm.num_batches_tracked) == 1


def test_standardize_without_momentum_averages_over_the_batches_seen() -> None:
    norm = _norm(momentum=None)
    norm.num_batches_tracked.fill_(3)  # the fourth batch gets weight 1/4
    FineCLIPER._standardize(_stand_in(norm), "video", FEATS, BatchShare(VALID, n_global=3, world=1, rank=0))
    assert int(norm.num_batches_tracked) == 4
    torch.testing.assert_close(norm.running_mean, torch.tensor([0.75 * 1.0 + 0.25 * 3.0, 0.75 * -1.0 + 0.25 * 2.0]))
    torch.testing.assert_close(norm.running_var, torch.tensor([0.75 * 2.0 + 0.25 * 4.0, 0.75 * 0.5 + 0.25 * 16.0]))


def test_standardize_with_one_clip_or_in_eval_uses_the_running_stats() -> None:
    expected = (FEATS - torch.tensor([1.0, -1.0])) / torch.sqrt(torch.tensor([2.0, 0.5]) + 1e-5)
    for stand_in, share in ((_stand_in(_norm()), BatchShare(VALID, n_global=1, world=1, rank=0)),
                            (_stand_in(_norm()), None),  # ... plain training batch of 4: batch stats
                            (_stand_in(_norm(), training=False), BatchShare(VALID, n_global=3, world=1, rank=0))):
        out = FineCLIPER._standardize(stand_in, "video", FEATS, share)
        norm = stand_in.feature_norms["video"]
        if share is None:  # BatchNorm on all four rows
            mean = FEATS.mean(0)
            var = ((FEATS - mean) ** 2).mean(0)
            torch.testing.assert_close(out, (FEATS - mean) / torch.sqrt(var + 1e-5))
            continue
        torch.testing.assert_close(out, expected)
        assert norm.running_mean.tolist() == [1.0, -1.0] and int(norm.num_batches_tracked) == 0
    one = FineCLIPER._standardize(_stand_in(_norm()), "video", FEATS[:1], None)  # one clip, no share
    torch.testing.assert_close(one, expected[:1])


def _ce(logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """Per-row cross-entropy, by hand: log-sum-exp minus the target's logit."""
    return [math.log(sum(math.exp(v) for v in row)) - row[t] for row, t in zip(logits.tolist(), targets.tolist(),
                                                                              strict=True)]


def _output(caption: torch.Tensor | None = None) -> FineCLIPEROutput:
    sim_pos = torch.tensor([[0.5, 0.1], [0.2, 0.4], [0.0, 0.0], [0.3, -0.1]])
    sim_neg = torch.tensor([[0.1, 0.3], [0.0, 0.2], [0.0, 0.0], [-0.2, 0.1]])
    video = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.6, 0.8]])
    # the fused feature differs from the video level's: the alignment reads the video level
    return FineCLIPEROutput(logits=2.0 * (sim_pos - 0.5 * sim_neg), sim_pos=sim_pos, sim_neg=sim_neg,
                            fused=video.flip(1),
                            level_features={"video": video}, modality_weights=torch.ones(1), caption=caption,
                            scale=torch.tensor(2.0))


def _model_stand_in(pn_loss: str, align_weight: float = 0.0, smoothing: float = 0.0) -> SimpleNamespace:
    cfg = SimpleNamespace(label_smoothing=smoothing, pn_loss=pn_loss, negative_weight=0.5, align_weight=align_weight,
                          high_only=False, align_temperature=0.5)
    # the model's own temperature (3) differs from the one the output carries (2)
    ns = SimpleNamespace(cfg=cfg, log_logit_scale=torch.tensor([math.log(3.0)]))
    ns.class_loss_terms = lambda out, t: FineCLIPER.class_loss_terms(ns, out, t)
    ns._align = lambda v, c: FineCLIPER._align(ns, v, c)
    ns._shared_losses = lambda out, t, share: FineCLIPER._shared_losses(ns, out, t, share)
    return ns


TARGETS = torch.tensor([0, 1, 0, 1])


def test_class_loss_terms_per_clip() -> None:
    out = _output()
    combined = FineCLIPER.class_loss_terms(_model_stand_in("combined"), out, TARGETS)
    assert list(combined) == ["ce"]
    torch.testing.assert_close(combined["ce"], torch.tensor(_ce(out.logits, TARGETS)))
    two = FineCLIPER.class_loss_terms(_model_stand_in("two_term"), out, TARGETS)
    pos, neg = _ce(2.0 * out.sim_pos, TARGETS), _ce(-2.0 * out.sim_neg, TARGETS)
    torch.testing.assert_close(two["ce_pos"], torch.tensor(pos))
    torch.testing.assert_close(two["ce_neg"], torch.tensor(neg))
    torch.testing.assert_close(two["ce"], torch.tensor([p + 0.5 * n for p, n in zip(pos, neg, strict=True)]))
    out.scale = None  # no scale in the output: the model's own temperature, exp(log 3) = 3
    torch.testing.assert_close(FineCLIPER.class_loss_terms(_model_stand_in("two_term"), out, TARGETS)["ce_pos"],
                               torch.tensor(_ce(3.0 * out.sim_pos, TARGETS)))


def _smoothed_ce(logits: torch.Tensor, targets: torch.Tensor, eps: float) -> list[float]:
    """Label-smoothed cross-entropy by hand: (1 - eps) x the target's term + eps x the mean term."""
    out = []
    for row, t in zip(logits.tolist(), targets.tolist(), strict=True):
        lse = math.log(sum(math.exp(v) for v in row))
        out.append((1 - eps) * (lse - row[t]) + eps * sum(lse - v for v in row) / len(row))
    return out


def test_class_loss_terms_smooth_the_labels() -> None:
    out = _output()
    combined = FineCLIPER.class_loss_terms(_model_stand_in("combined", smoothing=0.1), out, TARGETS)
    torch.testing.assert_close(combined["ce"], torch.tensor(_smoothed_ce(out.logits, TARGETS, 0.1)))
    two = FineCLIPER.class_loss_terms(_model_stand_in("two_term", smoothing=0.1), out, TARGETS)
    torch.testing.assert_close(two["ce_pos"], torch.tensor(_smoothed_ce(2.0 * out.sim_pos, TARGETS, 0.1)))
    torch.testing.assert_close(two["ce_neg"], torch.tensor(_smoothed_ce(-2.0 * out.sim_neg, TARGETS, 0.1)))


def test_losses_on_a_share_are_the_global_mean_of_the_valid_rows() -> None:
    share = BatchShare(VALID, n_global=3, world=1, rank=0)
    out = _output()
    stand_in = _model_stand_in("two_term")
    got = FineCLIPER.losses(stand_in, out, TARGETS, share)
    pos, neg = _ce(2.0 * out.sim_pos, TARGETS), _ce(-2.0 * out.sim_neg, TARGETS)
    keep = [0, 1, 3]
    assert sorted(got) == ["ce", "ce_neg", "ce_pos", "loss"]  # no caption: no alignment
    assert math.isclose(float(got["ce_pos"]), sum(pos[i] for i in keep) / 3, rel_tol=1e-6)
    assert math.isclose(float(got["ce_neg"]), sum(neg[i] for i in keep) / 3, rel_tol=1e-6)
    ce = sum(pos[i] + 0.5 * neg[i] for i in keep) / 3
    assert math.isclose(float(got["ce"]), ce, rel_tol=1e-6) and math.isclose(float(got["loss"]), ce, rel_tol=1e-6)


def _info_nce(video: list[list[float]], caption: list[list[float]], temperature: float) -> float:
    sims = [[sum(a * b for a, b in zip(v, c, strict=True)) / temperature for c in caption] for v in video]
    n = len(sims)
    rows = sum(math.log(sum(math.exp(x) for x in sims[i])) - sims[i][i] for i in range(n)) / n
    cols = sum(math.log(sum(math.exp(sims[j][i]) for j in range(n))) - sims[i][i] for i in range(n)) / n
    return 0.5 * (rows + cols)


def test_losses_on_a_share_align_the_captioned_valid_clips() -> None:
    share = BatchShare(VALID, n_global=3, world=1, rank=0)
    caption = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.8, 0.6]])
    out = _output(caption)
    got = FineCLIPER.losses(_model_stand_in("combined", align_weight=0.25), out, TARGETS, share)
    video = out.level_features["video"].tolist()
    align = _info_nce([video[i] for i in (0, 1, 3)], [caption.tolist()[i] for i in (0, 1, 3)], 0.5)
    ce = sum(_ce(out.logits, TARGETS)[i] for i in (0, 1, 3)) / 3
    assert math.isclose(float(got["align"]), align, rel_tol=1e-6)
    assert math.isclose(float(got["loss"]), ce + 0.25 * align, rel_tol=1e-6)
    # a clip without a caption (a zero row) is left out of the alignment
    caption[1] = 0.0
    got = FineCLIPER.losses(_model_stand_in("combined", align_weight=0.25), _output(caption), TARGETS, share)
    align = _info_nce([video[i] for i in (0, 3)], [caption.tolist()[i] for i in (0, 3)], 0.5)
    assert math.isclose(float(got["align"]), align, rel_tol=1e-6)
    # fewer than two captioned clips: nothing to align with
    caption[3] = 0.0
    got = FineCLIPER.losses(_model_stand_in("combined", align_weight=0.25), _output(caption), TARGETS, share)
    assert "align" not in got and math.isclose(float(got["loss"]), ce, rel_tol=1e-6)
    # no alignment weight, or a high-only model: no alignment term
    full = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.8, 0.6]])
    no_weight = FineCLIPER.losses(_model_stand_in("combined"), _output(full), TARGETS, share)
    assert "align" not in no_weight
    high = _model_stand_in("combined", align_weight=0.25)
    high.cfg.high_only = True
    assert "align" not in FineCLIPER.losses(high, _output(torch.ones(4, 2)), TARGETS, share)


def test_losses_align_only_the_captioned_clips() -> None:
    caption = torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 1.0], [0.8, 0.6]])  # clip 1 has none
    out = _output(caption)
    got = FineCLIPER.losses(_model_stand_in("combined", align_weight=0.25), out, TARGETS)
    video = out.level_features["video"].tolist()
    align = _info_nce([video[i] for i in (0, 2, 3)], [caption.tolist()[i] for i in (0, 2, 3)], 0.5)
    assert math.isclose(float(got["align"]), align, rel_tol=1e-6)
    ce = sum(_ce(out.logits, TARGETS)) / 4
    assert math.isclose(float(got["loss"]), ce + 0.25 * align, rel_tol=1e-6)


def _caption_stand_in(use_captions: bool = True, high_only: bool = False) -> SimpleNamespace:
    """What _caption_features reads; its caption encoder maps a text to (len, 1) and records
    what it was asked."""
    asked: list[list[str]] = []

    def encode(texts: list[str]) -> torch.Tensor:
        asked.append(list(texts))
        return torch.tensor([[float(len(t)), 1.0] for t in texts])

    return SimpleNamespace(cfg=SimpleNamespace(use_captions=use_captions, high_only=high_only), embed_dim=2,
                           log_logit_scale=torch.zeros(1), encode_captions=encode, asked=asked)


def test_caption_features_zero_rows_for_clips_without_one() -> None:
    ns = _caption_stand_in()
    out = FineCLIPER._caption_features(ns, ["a smile", None, "  ", 12345])
    assert out.tolist() == [[7.0, 1.0], [0.0, 0.0], [0.0, 0.0], [5.0, 1.0]]
    assert ns.asked == [["a smile", "12345"]]  # blank and missing captions are not encoded
    ns = _caption_stand_in()
    assert FineCLIPER._caption_features(ns, ["ab", "c"]).tolist() == [[2.0, 1.0], [1.0, 1.0]]
    assert ns.asked == [["ab", "c"]]
    ns = _caption_stand_in()
    assert FineCLIPER._caption_features(ns, [None, ""]).tolist() == [[0.0, 0.0], [0.0, 0.0]] and ns.asked == []
    assert FineCLIPER._caption_features(_caption_stand_in(), None) is None
    assert FineCLIPER._caption_features(_caption_stand_in(use_captions=False), ["a"]) is None


def test_a_high_only_model_refuses_clips_without_captions() -> None:
    with pytest.raises(ValueError) as err:
        FineCLIPER._caption_features(_caption_stand_in(high_only=True), None)
    assert str(err.value) == "a high-only model (captions as the only level) needs captions"
    with pytest.raises(ValueError) as err:
        FineCLIPER._caption_features(_caption_stand_in(high_only=True), ["a", None, " ", "b"])
    assert str(err.value) == ("a high-only model cannot score a clip without a caption (2 in this batch); "
                              "evaluation counts such clips as not scored")
    assert FineCLIPER._caption_features(_caption_stand_in(high_only=True), ["a"]).tolist() == [[1.0, 1.0]]


def test_forward_passes_its_share_to_the_standardisation() -> None:
    """A padded batch with a share standardises like the valid rows alone without one."""
    import copy

    from dfer.methods.fineclipper import ModelConfig

    tiny = {"embed_dim": 16, "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
    cfg = ModelConfig(backbone="custom", model_cfg=tiny, pretrained=None, max_frames=2, standardize_features=True,
                      use_parsing=False, use_landmarks=False, use_negative=False)
    model = FineCLIPER(cfg, ["happiness", "sadness"]).train()
    alone = copy.deepcopy(model)
    frames = torch.randint(0, 256, (4, 2, 32, 32, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    captions = ["a smile", None, "padding", "wide eyes"]  # one clip without a caption: a zero row
    shared = model(frames=frames, captions=captions, share=BatchShare(VALID, n_global=3, world=1, rank=0))
    plain = alone(frames=frames[VALID], captions=["a smile", None, "wide eyes"])
    torch.testing.assert_close(shared.level_features["video"][VALID], plain.level_features["video"])
    assert shared.caption.shape == (4, 16) and shared.caption[1].abs().sum() == 0
    torch.testing.assert_close(shared.caption[VALID], plain.caption)
    torch.testing.assert_close(model.feature_norms["video"].running_var, alone.feature_norms["video"].running_var)


def test_without_a_video_level_the_fused_feature_is_aligned() -> None:
    share = BatchShare(VALID, n_global=3, world=1, rank=0)
    caption = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.8, 0.6]])
    out = _output(caption)
    out.level_features = {}  # e.g. parsing and landmarks only: no video level
    got = FineCLIPER.losses(_model_stand_in("combined", align_weight=0.25), out, TARGETS, share)
    fused = out.fused.tolist()
    align = _info_nce([fused[i] for i in (0, 1, 3)], [caption.tolist()[i] for i in (0, 1, 3)], 0.5)
    assert math.isclose(float(got["align"]), align, rel_tol=1e-6)
