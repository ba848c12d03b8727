"""GIM's pair augmentation: labels keep pointing at the same content through every geometric step, padding masks,
retries, GIM's ranges, determinism, and the worker path equal to the device path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from traindata_helpers import HOMOGRAPHY, homography_pair

from gim_plugins.training.data.augment import (
    PairAugmenter,
    finish,
    keep_mask,
    plan_image,
    sample_perspective,
    transform,
)
from gim_plugins.training.data.base import make_sample
from gim_plugins.training.data.batch import check_batch, check_sample, collate


def _sample(augmenter, rng, image0, image1, labels, *, pending=False, max_labels=4096):
    plan = augmenter.plan(rng, image0.shape[:2], image1.shape[:2], labels)
    assert plan is not None
    return plan, make_sample(plan, augmenter.canvas, image0, image1, rng=rng, max_labels=max_labels, dataset="walk",
                             scene="synthetic", pair=("0", "1"), zs=True, gt=False, pending=pending)


@pytest.mark.parametrize("perspective", [0.0, 1.0])
@pytest.mark.parametrize("size", [(160, 128), (320, 256)])
def test_feature_labels_point_at_the_same_content(perspective, size):
    """Image content is coordinate-coded (red = x, green = y of image 0), so the colour under a label in either
    augmented image says which image-0 pixel it shows: both must agree, through resize, rescale, crop, padding and
    the image-1 perspective + rotation."""
    image0, image1, labels = homography_pair()
    augmenter = PairAugmenter({"image_size": size, "perspective_prob": perspective, "dark": False})
    errors, counts, rotated = [], [], 0
    for seed in range(12):
        plan, sample = _sample(augmenter, np.random.default_rng(seed), image0, image1, labels)
        n = int(sample["num_labels"])
        points = sample["labels"][:n].numpy().astype(np.float64)
        seen0 = _decode(sample["image0"], points[:, :2])
        seen1 = _decode(sample["image1"], points[:, 2:])
        scale0 = plan.plan0.scale[0]
        errors.append(np.abs(seen0 - seen1).max() * scale0)  # image-0 pixels → network pixels
        counts.append(n)
        rotated += not np.allclose(sample["H1"].numpy(), np.eye(3))
    assert max(errors) < 0.05, errors
    assert min(counts) >= 64
    assert rotated == (12 if perspective else 0)


def _decode(image: torch.Tensor, points: np.ndarray) -> np.ndarray:
    from traindata_helpers import decode

    return decode(image.numpy(), points)


def test_feature_labels_agree_with_ground_truth_through_the_batch_geometry():
    """Un-doing the recorded geometry (``source0``, ``source1``, ``H1``) gives back exact GT correspondences."""
    image0, image1, labels = homography_pair()
    augmenter = PairAugmenter({"image_size": (240, 192), "dark": False})
    for seed in range(8):
        _, sample = _sample(augmenter, np.random.default_rng(seed), image0, image1, labels)
        n = int(sample["num_labels"])
        points = sample["labels"][:n].numpy().astype(np.float64)
        src0 = transform(sample["source0"].numpy().astype(np.float64), points[:, :2])
        pre1 = transform(np.linalg.inv(sample["H1"].numpy().astype(np.float64)), points[:, 2:])
        src1 = transform(sample["source1"].numpy().astype(np.float64), pre1)
        np.testing.assert_allclose(transform(HOMOGRAPHY, src0), src1, atol=2e-3)


def test_feature_padding_masks_and_shapes():
    image0, image1, labels = homography_pair()
    augmenter = PairAugmenter({"image_size": (320, 256), "dark": False, "perspective_prob": 1.0})
    for seed in range(6):
        plan, sample = _sample(augmenter, np.random.default_rng(seed), image0, image1, labels, max_labels=300)
        assert check_sample(sample) == {"H": 256, "W": 320, "L": 300}
        h, w = plan.plan0.size
        expected = np.zeros((256, 320), bool)
        expected[:h, :w] = True
        assert np.array_equal(sample["mask0"].numpy(), expected)
        assert sample["size0"].tolist() == [h, w]
        for k in (0, 1):
            image, mask = sample[f"image{k}"], sample[f"mask{k}"]
            assert float(image[:, ~mask].abs().max()) == 0.0  # nothing but zeros outside the validity mask
            assert float(mask.float().mean()) > 0.2
        assert not bool(sample["pending"])
        n = int(sample["num_labels"])
        assert n == min(300, len(plan.labels))
        points = sample["labels"][:n].numpy()
        for k, m in ((0, sample["mask0"]), (1, sample["mask1"])):  # every label lies on valid content
            cols, rows = np.rint(points[:, 2 * k]).astype(int), np.rint(points[:, 2 * k + 1]).astype(int)
            assert bool(m.numpy()[rows, cols].all())


def test_cardinality_label_capacity_and_duplicates():
    image0, image1, labels = homography_pair()
    doubled = np.concatenate([labels, labels])
    augmenter = PairAugmenter({"image_size": (240, 192), "dark": False, "train": False})
    plan = augmenter.plan(np.random.default_rng(0), image0.shape[:2], image1.shape[:2], doubled)
    assert len(plan.labels) == len(np.unique(plan.labels, axis=0)) <= len(labels)  # GIM's torch.unique
    sample = make_sample(plan, augmenter.canvas, image0, image1, rng=np.random.default_rng(0), max_labels=50,
                         dataset="walk", scene="s", pair=("0", "1"), zs=True, gt=False)
    assert int(sample["num_labels"]) == 50 and sample["labels"].shape == (50, 4)


def test_exception_retries_then_gives_up():
    image0, image1, labels = homography_pair()
    few = labels[:40]  # below the 64 labels GIM requires, whatever the augmentation
    augmenter = PairAugmenter({"image_size": (240, 192), "retries": 30})
    assert augmenter.plan(np.random.default_rng(0), image0.shape[:2], image1.shape[:2], few) is None
    attempts = []
    strict = PairAugmenter({"image_size": (160, 128), "min_labels": 1450, "perspective_prob": 1.0})
    for seed in range(10):
        plan = strict.plan(np.random.default_rng(seed), image0.shape[:2], image1.shape[:2], labels)
        attempts.append(None if plan is None else plan.attempts)
        if plan is not None:
            assert len(plan.labels) >= 400
    assert any(a is not None and a > 1 for a in attempts), attempts  # some pairs needed retries


def test_feature_gim_ranges():
    rng = np.random.default_rng(0)
    left, right, both = [], [], []
    for _ in range(400):
        for side, out in (("left", left), ("right", right), (None, both)):
            plan = plan_image(rng, (1080, 1920), (840, 840), 8, train=True, side=side)
            out.append(plan.resized[1] / 1920)
    fits = np.array([840 / 1080, 840 / 1920])  # GIM fits by the height or the width ratio, at random
    for values, (low, high) in ((left, (0.6, 1.0)), (right, (1.0, 1.4)), (both, (0.6, 1.4))):
        factors = np.array(values)[:, None] / fits[None]  # the rescale factor under either fit
        tolerance = 8 / (1920 * fits)  # sizes are floored to multiples of 8
        plain = np.isclose(factors, 1.0, atol=tolerance.max()).any(axis=1)
        inside = ((factors >= low - tolerance) & (factors <= high + 1e-9)).any(axis=1)
        assert inside.all()
        assert 0.4 < plain.mean() < 0.75  # no rescale with probability aug_prob = 0.5 (+ draws close to 1)
        assert factors.min() < low + 0.1 and factors.max() > high - 0.1  # the range is used
    plan = plan_image(rng, (1080, 1920), (840, 840), 8, train=False)
    assert plan.resized == (472, 840) and plan.size == (472, 840) and plan.crop == (0, 0)
    corners = np.array([[0, 0], [839, 0], [839, 839], [0, 839]], float)
    angles = []
    for seed in range(50):
        P = sample_perspective(np.random.default_rng(seed), (840, 840), rotation=0.0)  # the corner jitter alone
        offsets = transform(P, corners) - corners
        assert np.all(np.abs(offsets) <= 0.25 * 840 + 1)
        assert len(np.unique(np.rint(offsets[:, 0]))) == 4  # distinct integer offsets per axis (random.sample)
        R = sample_perspective(np.random.default_rng(seed), (840, 840), jitter=0.0)  # the rotation alone
        # a rotation, times GIM's 840/839 scale (its corner targets use w − x against the source's w − 1)
        assert np.allclose(R[:2, :2] @ R[:2, :2].T, (840 / 839) ** 2 * np.eye(2)) and np.allclose(R[2], [0, 0, 1])
        assert np.abs(transform(R, np.array([[419.5, 419.5]])) - 419.5).max() < 1.0  # about the centre
        angles.append(np.degrees(np.arctan2(R[1, 0], R[0, 0])))
    assert min(angles) < -120 and max(angles) > 120  # the whole [-180°, 180°] is used


def test_feature_keep_mask():
    points = np.array([[0.0, 0.0], [15.9, 15.9], [16.0, 16.0], [23.5, 10.0], [-0.1, 5.0]])
    keep = keep_mask(points, (24, 32), (32, 40), 8)
    # coarse corners of (16, 16) are (16, 16) … (24, 24): y = 24 is off the 24-row picture
    assert keep.tolist() == [True, True, False, True, False]
    shift = np.array([[1.0, 0, 8], [0, 1, 0], [0, 0, 1]])
    assert keep_mask(np.array([[4.0, 4.0], [12.0, 4.0]]), (24, 32), (32, 40), 8, shift).tolist() == [False, True]


def test_smoke_deterministic_under_a_seed():
    image0, image1, labels = homography_pair()
    augmenter = PairAugmenter({"image_size": (240, 192)})
    _, a = _sample(augmenter, np.random.default_rng(7), image0, image1, labels)
    _, b = _sample(augmenter, np.random.default_rng(7), image0, image1, labels)
    _, c = _sample(augmenter, np.random.default_rng(8), image0, image1, labels)
    for key in ("image0", "image1", "labels", "H1", "dark0", "dark1", "mask1"):
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["labels"], c["labels"])


def test_feature_device_path_equals_worker_path(device):
    """Pending samples finished batch-wide (on ``--device``) equal samples finished in the worker."""
    image0, image1, labels = homography_pair()
    augmenter = PairAugmenter({"image_size": (240, 192), "perspective_prob": 1.0})
    dark_seen = 0
    worker, pending = [], []
    for seed in range(10):
        rng_seed = 100 + seed
        _, w = _sample(augmenter, np.random.default_rng(rng_seed), image0, image1, labels)
        _, p = _sample(augmenter, np.random.default_rng(rng_seed), image0, image1, labels, pending=True)
        assert bool(p["pending"]) and not bool(w["pending"])
        dark_seen += bool(w["dark0"][0] > 0) + bool(w["dark1"][0] > 0)
        worker.append(w)
        pending.append(p)
    batch = collate(pending)
    moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    done = finish(moved)
    check_batch(done)
    reference = collate(worker)
    assert not bool(done["pending"].any())
    for key in ("image0", "image1"):
        assert torch.allclose(done[key].cpu(), reference[key], atol=2e-5), key
    assert torch.equal(done["mask1"].cpu(), reference["mask1"])
    assert dark_seen > 0  # some rows were darkened, so the Dark path is compared too
    assert finish(done) is not done and torch.equal(finish(done)["image1"], done["image1"])  # idempotent
