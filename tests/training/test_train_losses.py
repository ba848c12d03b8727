"""GIM's training losses against values computed by hand on tiny inputs (and against brute-force versions)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gim_plugins.training.losses import dense as D
from gim_plugins.training.losses import lightglue as LG
from gim_plugins.training.losses import loftr as L
from gim_plugins.training.losses.geometry import pixel_to_grid, sample_label_sets, warp_points_0to1, warp_points_1to0

# ------------------------------------------------------------------------------------------------------- LoFTR


def test_feature_focal_diagonal_loss_hand_value() -> None:
    # −α(1−x)^γ log x for x = 0.5 and 0.9, α = 0.25, γ = 2, then the mean over labels and over pairs
    first = (0.25 * 0.25 * math.log(2) + 0.25 * 0.01 * -math.log(0.9)) / 2
    second = 0.25 * 0.49 * -math.log(0.3)
    loss = L.focal_diagonal_loss([torch.tensor([0.5, 0.9]), torch.tensor([0.3])])
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)
    assert first == pytest.approx(0.0217926, rel=1e-5)


def test_feature_focal_clamps_like_gim() -> None:
    expected = -0.25 * (1 - 1e-6) ** 2 * math.log(1e-6)
    assert L.focal_diagonal_loss([torch.tensor([0.0])]).item() == pytest.approx(expected, rel=1e-5)


def test_feature_zeroshot_diagonal_hand_value() -> None:
    # C = 1, 2×2 coarse grids with a single 1 at cell (0, 0) in both images, one label exactly at that cell:
    # column 0 and row 0 of S/10 are [1, 1, 0, 0, 0] → both softmaxes give e^10 / (2 e^10 + 3)
    grid = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    point = torch.zeros(1, 2)
    conf = L.zeroshot_diagonal_confidence(grid, grid, point, point)
    e10 = math.exp(10)
    assert conf.item() == pytest.approx((e10 / (2 * e10 + 3)) ** 2, rel=1e-6)
    assert conf.item() == pytest.approx(0.249966, rel=1e-5)


def test_feature_zeroshot_diagonal_equals_full_dual_softmax() -> None:
    torch.manual_seed(0)
    c, h, w, n = 16, 5, 6, 7
    g0, g1 = torch.randn(c, h, w), torch.randn(c, h, w)
    p0 = torch.rand(n, 2) * torch.tensor([8.0 * (w - 1), 8.0 * (h - 1)])
    p1 = torch.rand(n, 2) * torch.tensor([8.0 * (w - 1), 8.0 * (h - 1)])
    m0, m1 = torch.rand(h, w) > 0.3, torch.rand(h, w) > 0.3

    def sample(g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:  # GIM: pt_to_grid(pt / 8) + grid_sample
        grid = (p / 8) * torch.tensor([2 / (w - 1), 2 / (h - 1)]) - 1
        return F.grid_sample(g[None], grid.view(1, 1, -1, 2), align_corners=True)[0, :, 0].t() / c**0.5

    rows = torch.cat([sample(g0, p0), g0.flatten(1).t() / c**0.5])
    cols = torch.cat([sample(g1, p1), g1.flatten(1).t() / c**0.5])
    sim = rows @ cols.t() / 0.1
    valid = torch.cat([torch.ones(n, dtype=torch.bool), m0.flatten()])[:, None] & \
        torch.cat([torch.ones(n, dtype=torch.bool), m1.flatten()])[None]
    sim = sim.masked_fill(~valid, -1e9)
    full = (F.softmax(sim, 0) * F.softmax(sim, 1))[:n, :n].diagonal()
    ours = L.zeroshot_diagonal_confidence(g0, g1, p0, p1, m0, m1)
    torch.testing.assert_close(ours, full, rtol=1e-4, atol=1e-9)


def test_feature_coarse_focal_positive_hand_value() -> None:
    conf = torch.tensor([[[0.1, 0.8], [0.3, 0.2]]])
    positives = torch.tensor([[[False, True], [False, False]]])
    assert L.coarse_focal_positive_loss(conf, positives).item() == pytest.approx(-0.25 * 0.04 * math.log(0.8))
    weight = torch.full_like(conf, 0.5)
    assert L.coarse_focal_positive_loss(conf, positives, weight).item() == pytest.approx(-0.125 * 0.04 * math.log(0.8))
    none = L.coarse_focal_positive_loss(conf.requires_grad_(), torch.zeros_like(positives))
    assert none.item() == 0.0 and none.requires_grad


def test_feature_fine_expectation_hand_value() -> None:
    # C = 1, 3×3 windows; image 0's centre feature 1; image 1's window zero except cell (row 1, col 2) = ln 9:
    # heat = 9/17 there, 1/17 elsewhere → x = 8/17, y = 0, var_x = 14/17 − (8/17)², var_y = 6/17
    windows0 = torch.zeros(1, 9, 1)
    windows0[0, 4, 0] = 1.0
    windows1 = torch.zeros(1, 9, 1)
    windows1[0, 5, 0] = math.log(9)
    out = L.fine_expectation(windows0, windows1)[0]
    assert out[0].item() == pytest.approx(8 / 17, rel=1e-5)
    assert out[1].item() == pytest.approx(0.0, abs=1e-6)
    assert out[2].item() == pytest.approx(math.sqrt(14 / 17 - (8 / 17) ** 2) + math.sqrt(6 / 17), rel=1e-5)


def test_feature_fine_expectation_samples_image0_at_offset() -> None:
    # offset (1, 0) reads image 0's window at its right-middle cell (align_corners=True), not the centre
    windows0 = torch.zeros(1, 9, 1)
    windows0[0, 5, 0] = 1.0
    windows1 = torch.zeros(1, 9, 1)
    windows1[0, 5, 0] = math.log(9)
    at_centre = L.fine_expectation(windows0, windows1)[0]
    at_offset = L.fine_expectation(windows0, windows1, torch.tensor([[1.0, 0.0]]))[0]
    assert at_centre[0].item() == pytest.approx(0.0, abs=1e-6)  # centre feature 0: uniform heat
    assert at_offset[0].item() == pytest.approx(8 / 17, rel=1e-5)


def test_feature_l2_with_std_hand_value() -> None:
    expectation = torch.tensor([[0.1, 0.2, 0.5], [0.0, 0.0, 1.0], [0.3, 0.3, 2.0]])
    target = torch.tensor([[0.0, 0.0], [0.5, 0.5], [1.5, 0.0]])  # the third left the window: not counted
    weights = torch.tensor([2.0, 1.0, 0.5]) / (3.5 / 3)
    expected = (0.05 * weights[0] + 0.5 * weights[1]) / 2
    assert L.l2_with_std_loss(expectation, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert expected.item() == pytest.approx(0.2571429, rel=1e-6)
    outside = L.l2_with_std_loss(expectation, torch.full((3, 2), 2.0))
    assert outside.item() == 0.0


def test_feature_zeroshot_fine_targets_hand_value() -> None:
    out = L.zeroshot_fine_targets(torch.tensor([[9.0, 17.0]]), torch.tensor([[30.0, 2.0]]), (4, 5), (4, 5))
    assert out["keep"].tolist() == [True]
    assert out["cell0"].tolist() == [1 + 2 * 5] and out["cell1"].tolist() == [4]
    torch.testing.assert_close(out["offset0"], torch.tensor([[0.25, 0.25]]))
    torch.testing.assert_close(out["target"], torch.tensor([[-0.5, 0.5]]))


def test_exception_zeroshot_fine_targets_drop_labels_without_a_cell() -> None:
    out = L.zeroshot_fine_targets(torch.tensor([[39.9, 3.0]]), torch.tensor([[3.0, 3.0]]), (4, 5), (4, 5))
    assert out["keep"].tolist() == [False] and len(out["target"]) == 0


# ------------------------------------------------------------------------------------------------ DKM, RoMa


def test_feature_dkm_zeroshot_loss_hand_value() -> None:
    flow = torch.empty(1, 2, 3, 4)
    flow[:, 0], flow[:, 1] = 0.5, -0.5
    flows = {2: flow, 1: flow.clone()}
    certainties = {s: torch.zeros(1, 1, 3, 4) for s in flows}
    grid0 = torch.tensor([[0.1, 0.2]])
    grid1 = torch.tensor([[0.5, -0.2]])  # end-point error 0.3 at both strides
    loss, scalars = D.dkm_zeroshot_loss(flows, certainties, torch.tensor([0]), grid0, grid1, align_corners=False)
    assert loss.item() == pytest.approx(0.6, rel=1e-6)
    assert scalars["zs_ce_1"] == pytest.approx(0.01 * math.log(2), rel=1e-5)  # logged, not added


def test_feature_dkm_dense_loss_hand_value() -> None:
    warp = torch.zeros(1, 2, 2, 2)
    flow = torch.zeros(1, 2, 2, 2)
    flow[0, 0, 0, 0] = 0.3  # error 0.3 at pixel (0, 0), 0 elsewhere
    prob = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])
    loss, _ = D.dkm_dense_loss({16: flow}, {16: torch.zeros(1, 1, 2, 2)}, {16: (warp, prob)})
    assert loss.item() == pytest.approx(0.01 * math.log(2) + 0.3 / 3, rel=1e-6)


def test_feature_dkm_dense_loss_local_mask() -> None:
    # at stride 8 only pixels whose stride-16 error was below 2/512 · 4 · 8 = 0.0625 count
    warp = torch.zeros(1, 1, 2, 2)
    coarse = torch.zeros(1, 2, 1, 2)
    coarse[0, 0, 0, 1] = 0.5  # right half wrong at stride 16
    fine = torch.full((1, 2, 1, 2), 0.01)
    loss, scalars = D.dkm_dense_loss({16: coarse, 8: fine}, {16: torch.zeros(1, 1, 1, 2), 8: torch.zeros(1, 1, 1, 2)},
                                     {16: (warp, torch.ones(1, 1, 2)), 8: (warp, torch.ones(1, 1, 2))})
    assert scalars["gt_epe_8"] == pytest.approx(math.sqrt(2) * 0.01, rel=1e-5)  # only the left pixel
    assert scalars["gt_epe_16"] == pytest.approx(0.25, rel=1e-6)
    assert loss.item() == pytest.approx(0.25 + math.sqrt(2) * 0.01 + 2 * 0.01 * math.log(2), rel=1e-5)


def test_feature_robust_regression_hand_value() -> None:
    # c = 1e-4, stride 1: cs^0.5 · ((x/cs)² + 1)^0.25 at x = cs → 0.01 · 2^0.25
    assert D.robust_regression(torch.tensor(1e-4), 1).item() == pytest.approx(0.01 * 2**0.25, rel=1e-6)


def test_feature_anchor_targets_corners() -> None:
    r = 1 / 64
    points = torch.tensor([[-1 + r, -1 + r], [1 - r, -1 + r], [-1 + r, 1 - r], [0.001, 0.001]])
    assert D.anchor_targets(points, 4096).tolist() == [0, 63, 4032, 32 * 64 + 32]


def test_feature_roma_zeroshot_loss_hand_value() -> None:
    flow = torch.zeros(1, 2, 2, 2)
    flows = {16: flow, 1: flow.clone()}
    cls = torch.zeros(1, 4, 2, 2)  # four anchors, flat logits: cross-entropy ln 4
    grid1 = torch.tensor([[1e-4, 0.0]])  # end-point error = c · 1 at stride 1, c at stride 16 (cs = 16c)
    loss, _ = D.roma_zeroshot_loss(flows, cls, torch.tensor([0]), torch.zeros(1, 2), grid1, align_corners=False)
    stride16 = (16e-4) ** 0.5 * ((1 / 16) ** 2 + 1) ** 0.25
    stride1 = 0.01 * 2**0.25
    assert loss.item() == pytest.approx(stride16 + stride1 + math.log(4), rel=1e-5)


def test_feature_roma_dense_loss_hand_value() -> None:
    warp = torch.zeros(1, 1, 2, 2)
    flow = torch.zeros(1, 2, 1, 2)
    flow[0, 0, 0, 0] = 1e-4 * 16
    prob = torch.tensor([[[1.0, 0.0]]])
    gm_cls = torch.zeros(1, 4, 1, 2)
    loss, _ = D.roma_dense_loss({16: flow}, {16: torch.zeros(1, 1, 1, 2)}, {16: (warp, prob)}, gm_cls,
                                torch.zeros(1, 1, 1, 2))
    robust = (16e-4) ** 0.5 * 2**0.25
    assert loss.item() == pytest.approx(2 * 0.01 * math.log(2) + math.log(4) + robust, rel=1e-5)


# --------------------------------------------------------------------------------------------------- LightGlue


def test_feature_diagonal_nll_hand_value() -> None:
    la = torch.tensor([[[-0.5, -3.0, -1.0], [-2.0, -1.5, -1.0], [-1.0, -1.0, 0.0]]])
    assert LG.diagonal_nll_loss(la, [2]).item() == pytest.approx(1.0)  # −mean(−0.5, −1.5)
    assert LG.diagonal_nll_loss(la, [1]).item() == pytest.approx(0.5)


def test_feature_weighted_nll_hand_value() -> None:
    la = torch.log(torch.tensor([[[0.5, 0.1, 0.4], [0.2, 0.6, 0.2], [0.3, 0.3, 1.0]]]))
    positive = torch.tensor([[True, False], [False, False]])
    weights = LG.assignment_weights(positive, torch.tensor([0, LG.UNMATCHED]), torch.tensor([0, LG.IGNORE]))
    assert weights.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    nll = LG.weighted_nll(la, weights[None])
    expected = 0.5 * -math.log(0.5) + 0.5 * (-math.log(0.2) / 2)  # negatives: one dustbin entry over (1 + 1 clamp)
    assert nll.item() == pytest.approx(expected, rel=1e-6)


def test_feature_deep_supervision_weights() -> None:
    la_last = torch.log(torch.full((1, 2, 2), 0.5))
    la_first = torch.log(torch.full((1, 2, 2), 0.25))
    weights = torch.zeros(1, 2, 2)
    weights[0, 0, 0] = 1  # one positive
    nll = LG.deep_supervision_nll([la_first, la_last], weights, gamma=1.0)
    # nll = balancing · (−log p) (no negatives): (0.5·ln2 + 0.5·ln4) / 2
    assert nll.item() == pytest.approx((0.5 * math.log(2) + 0.5 * math.log(4)) / 2, rel=1e-6)


def test_feature_token_confidence_hand_value() -> None:
    la = torch.randn(1, 3, 4)
    loss = LG.token_confidence_loss(torch.zeros(1, 2), torch.zeros(1, 3), la, la)
    assert loss.item() == pytest.approx(math.log(2), rel=1e-6)  # logit 0: BCE ln 2 whatever the target


def test_feature_ground_truth_matches() -> None:
    kp0 = torch.tensor([[10.0, 10.0], [30.0, 30.0], [50.0, 5.0]])
    kp1 = torch.tensor([[11.0, 10.0], [80.0, 80.0]])
    warped0 = kp0 + torch.tensor([1.0, 0.0])  # image 0 → 1 is a shift by (1, 0)
    warped1 = kp1 - torch.tensor([1.0, 0.0])
    visible = torch.ones(3, dtype=torch.bool)
    positive, m0, m1 = LG.ground_truth_matches(kp0, kp1, warped0, visible, visible, warped1, visible[:2],
                                               visible[:2])
    assert positive.nonzero().tolist() == [[0, 0]]
    assert m0.tolist() == [0, LG.UNMATCHED, LG.UNMATCHED] and m1.tolist() == [0, LG.UNMATCHED]
    no_depth = torch.zeros(3, dtype=torch.bool)
    _, m0, _ = LG.ground_truth_matches(kp0, kp1, warped0, no_depth, no_depth, warped1, visible[:2], visible[:2])
    assert m0.tolist() == [LG.IGNORE] * 3  # without depth nothing is known about image 0's points


# ---------------------------------------------------------------------------------------------------- geometry


def test_feature_pixel_to_grid_conventions() -> None:
    points = torch.tensor([[0.0, 0.0], [9.0, 4.0]])
    torch.testing.assert_close(pixel_to_grid(points, (5, 10), align_corners=True), torch.tensor([[-1.0, -1.0],
                                                                                                [1.0, 1.0]]))
    torch.testing.assert_close(pixel_to_grid(points + 0.5, (5, 10), align_corners=False),
                               torch.tensor([[-0.9, -0.8], [0.9, 0.8]]))


def test_feature_sample_label_sets_is_seeded() -> None:
    sets = [torch.arange(40.0).view(10, 4), torch.arange(8.0).view(2, 4)]
    a = sample_label_sets(sets, 3, torch.Generator().manual_seed(1))
    b = sample_label_sets(sets, 3, torch.Generator().manual_seed(1))
    assert len(a[0]) == 3 and torch.equal(a[0], b[0]) and torch.equal(a[1], sets[1])


def test_feature_depth_warp_matches_plane_homography() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _train_synthetic import plane_pair

    sample = plane_pair((48, 64), 3, "megadepth")
    H = torch.tensor(sample["homography"], dtype=torch.float32)
    points = torch.tensor([[20.0, 20.0], [40.0, 10.0], [5.0, 30.0]])
    args = (sample["depth0"], sample["depth1"], sample["K0"], sample["K1"], sample["T_0to1"], sample["H1"])
    warped, valid = warp_points_0to1(points, *args, sample["mask1"], depth_tolerance=0.05)
    expected = torch.cat([points, torch.ones(3, 1)], 1) @ H.T
    expected = expected[:, :2] / expected[:, 2:]
    inside = (expected[:, 0] > 1) & (expected[:, 0] < 62) & (expected[:, 1] > 1) & (expected[:, 1] < 46)
    assert valid.tolist() == inside.tolist() and bool(valid.any())
    torch.testing.assert_close(warped[valid], expected[valid], atol=1e-3, rtol=0)
    back, ok = warp_points_1to0(warped[valid], *args, sample["mask0"], depth_tolerance=0.05)
    assert bool(ok.all())
    torch.testing.assert_close(back, points[valid], atol=2e-3, rtol=0)
