"""GIMMatcher / GIMLocalFeature on CPU with synthetic images: kornia's contract, equality with ``load_matcher``.

Matchers: ``root_sift`` (sparse, no weights), ``aliked_lightglue`` with random weights (``pretrained=False``; the
same seed builds the same network on both sides of an equality), and a small dense matcher
(``test_shift``, registered at run time).
"""

from __future__ import annotations

import pytest
import torch
from kornia.feature import DescriptorMatcher, LocalFeatureMatcher, get_laf_center, laf_is_filled
from kornia_helpers import SHIFT, shifted_pair

from gim_plugins import load_matcher
from gim_plugins.conf import ConfError
from gim_plugins.kornia_ext import GIMLocalFeature, GIMMatcher
from gim_plugins.registry import UnknownMatcherError

OUTPUT_KEYS = {"keypoints0", "keypoints1", "confidence", "batch_indexes"}
MATCHERS = ["root_sift", "test_shift"]
WITH_ALIKED = [*MATCHERS, "aliked_lightglue"]
"""Random-weight ALIKED+LightGlue costs seconds per pair on a loaded CPU: it runs where the network matters."""


RANDOM_ALIKED = {"max_keypoints": 128, "filter_threshold": 0.0}
"""Random ALIKED responds everywhere: cap its keypoints (cheap random LightGlue), and keep every mutual match, since
random LightGlue's assignment scores (~1/128) never pass the default threshold of 0.1: a few matches remain, so the
equalities below compare something (real-weight equality on 1500+ matches: test_kornia_motorcycle.py)."""


def build(name: str, **conf) -> GIMMatcher:
    """A GIMMatcher with deterministic weights (random ones for aliked_lightglue, seeded)."""
    if name == "aliked_lightglue":
        torch.manual_seed(0)
        return GIMMatcher(name, pretrained=False, **{**RANDOM_ALIKED, **conf})
    return GIMMatcher(name, **conf)


def reference(name: str, **conf):
    """The same matcher through the core API (same seed for random weights)."""
    if name == "aliked_lightglue":
        torch.manual_seed(0)
        return load_matcher(name, pretrained=False, **{**RANDOM_ALIKED, **conf})
    return load_matcher(name, **conf)


def batch(sizes, channels: int = 3):
    """``{"image0": (B, C, H0, W0), "image1": …}`` from shifted pairs of the given (size0, size1) list."""
    pairs = [shifted_pair(s0, s1, seed=b, channels=channels) for b, (s0, s1) in enumerate(sizes)]
    return {"image0": torch.stack([p[0] for p in pairs]), "image1": torch.stack([p[1] for p in pairs])}


def rows(out, b):
    keep = out["batch_indexes"] == b
    return out["keypoints0"][keep], out["keypoints1"][keep], out["confidence"][keep]


def assert_equal_to_result(out, b, result):
    k0, k1, conf = rows(out, b)
    assert torch.equal(k0, result.keypoints0.to(k0.device))
    assert torch.equal(k1, result.keypoints1.to(k1.device))
    assert torch.equal(conf, result.confidence.to(conf.device))


@pytest.fixture(autouse=True)
def _registered(dense_matchers):
    yield


@pytest.fixture(scope="module", params=MATCHERS)
def name(request):
    return request.param


class TestGIMMatcher:
    @pytest.mark.parametrize("name", WITH_ALIKED)
    def test_smoke(self, name, device):
        matcher = build(name).to(device)
        data = {k: v.to(device) for k, v in batch([((96, 128), (96, 128))]).items()}
        out = matcher(data)
        assert set(out) == OUTPUT_KEYS
        assert out["keypoints0"].dtype == out["keypoints1"].dtype == out["confidence"].dtype == torch.float32
        assert out["batch_indexes"].dtype == torch.int64
        assert all(v.device.type == torch.device(device).type for v in out.values())
        assert matcher.name == name and isinstance(matcher.matcher, torch.nn.Module)
        assert name in repr(matcher)
        assert len(out["keypoints0"]) > (0 if name == "aliked_lightglue" else 10)

    def test_cardinality(self, name):
        sizes = [((96, 128), (104, 120))] * 3  # the two sides differ in size; a batch shares each side's size
        data = batch(sizes)
        out = build(name)(data)
        n = len(out["batch_indexes"])
        assert out["keypoints0"].shape == (n, 2) and out["keypoints1"].shape == (n, 2)
        assert out["confidence"].shape == (n,)
        assert bool((out["batch_indexes"].diff() >= 0).all()) and set(out["batch_indexes"].tolist()) <= {0, 1, 2}
        for b, ((h0, w0), (h1, w1)) in enumerate(sizes):
            k0, k1, _ = rows(out, b)
            for k, (h, w) in ((k0, (h0, w0)), (k1, (h1, w1))):
                assert bool((k >= -0.5).all()) and bool((k[:, 0] <= w - 0.5).all()) and bool((k[:, 1] <= h - 0.5).all())

    @pytest.mark.parametrize("name", WITH_ALIKED)
    def test_batch_equals_load_matcher_per_pair(self, name):
        sizes = [((64, 96), (72, 80))] * 2
        data = batch(sizes)
        out = build(name)(data)
        assert set(out["batch_indexes"].tolist()) == {0, 1}
        ref = reference(name)
        for b in range(len(sizes)):
            assert_equal_to_result(out, b, ref.match(data["image0"][b], data["image1"][b]))

    def test_feature_recovers_the_shift(self, name):
        k0, k1, _ = rows(build(name)(batch([((96, 128), (96, 128))])), 0)
        offset = k1 - k0
        good = ((offset - torch.tensor(SHIFT, dtype=torch.float32)).abs() <= 1.0).all(1)
        assert float(good.float().mean()) > 0.8, (len(offset), float(good.float().mean()))

    def test_gray_input_for_any_matcher(self, name):
        gray = batch([((96, 128), (96, 128))], channels=1)
        out = build(name)(gray)
        rgb = {k: v.expand(-1, 3, -1, -1) for k, v in gray.items()}
        assert_equal_to_result(out, 0, reference(name).match(rgb["image0"][0], rgb["image1"][0]))

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
    def test_dtype(self, name, dtype):
        data = {k: v.to(dtype) for k, v in batch([((96, 128), (96, 128))]).items()}
        self._check_dtype(name, data)

    def test_dtype_random_aliked(self):
        self._check_dtype("aliked_lightglue", {k: v.half() for k, v in batch([((64, 96), (64, 96))]).items()})

    @staticmethod
    def _check_dtype(name, data):
        out = build(name)(data)
        assert out["keypoints0"].dtype == torch.float32 and out["confidence"].dtype == torch.float32
        ref = reference(name).match(data["image0"][0].float(), data["image1"][0].float())
        assert_equal_to_result(out, 0, ref)

    def test_empty_batch(self):
        out = build("test_shift")({"image0": torch.zeros(0, 3, 32, 32), "image1": torch.zeros(0, 3, 32, 32)})
        assert {k: tuple(v.shape) for k, v in out.items()} == {"keypoints0": (0, 2), "keypoints1": (0, 2),
                                                              "confidence": (0,), "batch_indexes": (0,)}
        assert out["batch_indexes"].dtype == torch.int64


class TestModule:
    @pytest.mark.parametrize("cast", ["half", "bfloat16", "double", "to16", "to64", "device_and_dtype", "type"])
    def test_exception_dtype_cast_is_refused(self, cast):
        matcher = build("test_shift")
        call = {"half": lambda: matcher.half(), "bfloat16": lambda: matcher.bfloat16(),
                "double": lambda: matcher.double(), "to16": lambda: matcher.to(torch.float16),
                "to64": lambda: matcher.to(dtype=torch.float64),
                "device_and_dtype": lambda: matcher.to("cpu", torch.float16),
                "type": lambda: matcher.type(torch.float64)}[cast]
        with pytest.raises(TypeError, match="keeps its network in float32"):
            call()
        assert matcher.matcher.gray_weights.dtype == torch.float32

    def test_float32_casts_and_device_moves_pass(self, device):
        matcher = build("test_shift")
        assert matcher.to(torch.float32) is matcher and matcher.float() is matcher
        assert matcher.type(torch.float32) is matcher
        moved = matcher.to(device)
        assert moved is matcher and matcher.device.type == torch.device(device).type
        assert matcher.matcher.gray_weights.device.type == torch.device(device).type

    def test_device_inputs_elsewhere_are_moved(self, device):
        matcher = build("test_shift").to(device)
        data = batch([((64, 64), (64, 64))])  # CPU inputs for a matcher on `device`: outputs follow the inputs
        out = matcher(data)
        assert all(v.device.type == "cpu" for v in out.values())

    def test_train_keeps_network_in_eval(self):
        matcher = build("aliked_lightglue")
        matcher.train()
        assert matcher.training and not matcher.matcher.training
        assert not any(m.training for m in matcher.matcher.modules())

    def test_inference_mode(self):
        data = batch([((96, 128), (96, 128))])
        matcher = build("root_sift")
        with torch.inference_mode():
            inside = matcher(data)
        outside = matcher(data)
        for key in OUTPUT_KEYS:
            assert torch.equal(inside[key], outside[key])
            assert not outside[key].is_inference() and not outside[key].requires_grad

    def test_gradients_do_not_flow(self):
        data = batch([((64, 64), (64, 64))])
        data["image0"].requires_grad_(True)
        out = build("test_shift")(data)
        assert not out["keypoints0"].requires_grad

    def test_state_dict_round_trip(self):
        first = build("aliked_lightglue")
        torch.manual_seed(1)
        second = GIMMatcher("aliked_lightglue", pretrained=False, **RANDOM_ALIKED)
        second.load_state_dict(first.state_dict())
        data = batch([((64, 96), (64, 96))])
        a, b = first(data), second(data)
        assert all(torch.equal(a[k], b[k]) for k in OUTPUT_KEYS)

    def test_wraps_a_built_matcher(self):
        core = load_matcher("root_sift", max_keypoints=200)
        matcher = GIMMatcher(core)
        assert matcher.matcher is core
        data = batch([((96, 128), (96, 128))])
        assert_equal_to_result(matcher(data), 0, core.match(data["image0"][0], data["image1"][0]))

    def test_conf_reaches_the_matcher(self):
        matcher = GIMMatcher("root_sift", max_keypoints=50, ratio_threshold=0.9)
        assert matcher.matcher.conf.max_keypoints == 50 and matcher.matcher.conf.ratio_threshold == 0.9


class TestMasks:
    @staticmethod
    def ignore_masks(data):
        """Masks that are not padding: the left half of image0, a central square of image1."""
        b, _, h0, w0 = data["image0"].shape
        _, _, h1, w1 = data["image1"].shape
        mask0 = torch.ones(b, h0, w0)
        mask0[:, :, : w0 // 2] = 0
        mask1 = torch.ones(b, h1, w1, dtype=torch.bool)
        mask1[:, h1 // 4: 3 * h1 // 4, w1 // 4: 3 * w1 // 4] = False
        return mask0, mask1

    @staticmethod
    def on_mask(points, mask):
        col = points[:, 0].round().long().clamp(0, mask.shape[-1] - 1)
        row = points[:, 1].round().long().clamp(0, mask.shape[-2] - 1)
        return mask[row, col].bool()

    @pytest.mark.parametrize("name", ["root_sift", "test_shift"])
    def test_feature_no_keypoint_on_an_ignored_pixel(self, name):
        data = batch([((96, 128), (96, 128))] * 2)
        mask0, mask1 = self.ignore_masks(data)
        matcher = build(name)
        out = matcher({**data, "mask0": mask0, "mask1": mask1})
        full = matcher(data)
        assert 10 < len(out["keypoints0"]) < len(full["keypoints0"])
        for b in range(2):
            k0, k1, _ = rows(out, b)
            assert bool(self.on_mask(k0, mask0[b]).all()) and bool(self.on_mask(k1, mask1[b]).all())

    def test_dense_ignore_masks_filter_the_unmasked_result(self):
        data = batch([((96, 128), (96, 128))])
        mask0, mask1 = self.ignore_masks(data)
        matcher = build("test_shift")
        masked, full = matcher({**data, "mask0": mask0, "mask1": mask1}), matcher(data)
        keep = self.on_mask(full["keypoints0"], mask0[0]) & self.on_mask(full["keypoints1"], mask1[0])
        assert 0 < int(keep.sum()) < len(keep)
        for key in OUTPUT_KEYS:
            assert torch.equal(masked[key], full[key][keep])

    def test_sparse_ignore_masks_filter_before_matching(self):
        data = batch([((96, 128), (96, 128))])
        mask0, _ = self.ignore_masks(data)
        matcher = build("root_sift")
        out = matcher({**data, "mask0": mask0})
        core = matcher.matcher
        f0, f1 = core.extract(data["image0"][0]), core.extract(data["image1"][0])
        keep = self.on_mask(f0.keypoints, mask0[0])
        from gim_plugins.types import Features

        f0 = Features(f0.keypoints[keep], f0.descriptors[keep], f0.scores[keep], f0.image_size, f0.extractor)
        assert_equal_to_result(out, 0, core.match_features(f0, f1))

    @pytest.mark.parametrize("name", WITH_ALIKED)
    def test_feature_padded_batch_equals_the_unpadded_pairs(self, name):
        """Images of different sizes padded into one batch (kornia's use of masks) match as if unpadded."""
        sizes = [((96, 128), (104, 120)), ((80, 112), (64, 96))]
        pairs = [shifted_pair(s0, s1, seed=b) for b, (s0, s1) in enumerate(sizes)]
        data, masks = {}, {}
        for side in (0, 1):
            height = max(p[side].shape[1] for p in pairs)
            width = max(p[side].shape[2] for p in pairs)
            data[f"image{side}"] = torch.zeros(len(pairs), 3, height, width)
            masks[f"mask{side}"] = torch.zeros(len(pairs), 1, height, width)
            for b, p in enumerate(pairs):
                data[f"image{side}"][b, :, : p[side].shape[1], : p[side].shape[2]] = p[side]
                masks[f"mask{side}"][b, :, : p[side].shape[1], : p[side].shape[2]] = 1
        out = build(name)({**data, **masks})
        ref = reference(name)
        for b, (image0, image1) in enumerate(pairs):
            assert_equal_to_result(out, b, ref.match(image0, image1))
        if name != "aliked_lightglue":
            assert set(out["batch_indexes"].tolist()) == {0, 1}

    def test_all_valid_mask_changes_nothing_and_4d_masks(self):
        data = batch([((96, 128), (96, 128))])
        matcher = build("root_sift")
        ones = torch.ones(1, 1, 96, 128)
        out, full = matcher({**data, "mask0": ones, "mask1": ones}), matcher(data)
        assert all(torch.equal(out[k], full[k]) for k in OUTPUT_KEYS)

    @pytest.mark.parametrize("name", ["root_sift", "test_shift"])
    def test_fully_masked_gives_typed_empty_output(self, name):
        data = batch([((96, 128), (96, 128))] * 2)
        mask0 = torch.ones(2, 96, 128)
        mask0[1] = 0
        out = build(name)({**data, "mask0": mask0})
        assert out["keypoints0"].shape[1] == 2 and out["batch_indexes"].dtype == torch.int64
        assert set(out["batch_indexes"].tolist()) == {0}


class TestException:
    def test_exception_unknown_model_lists_registered(self):
        with pytest.raises(UnknownMatcherError, match=r"registered matchers: .*root_sift"):
            GIMMatcher("gim_nope")

    def test_exception_unknown_option(self):
        with pytest.raises(ConfError, match="max_keypoints"):
            GIMMatcher("root_sift", max_keypoint=10)

    def test_exception_missing_weights_say_how_to_get_them(self, tmp_path, monkeypatch):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        monkeypatch.delenv("GIM_WEIGHTS_DIR", raising=False)
        with pytest.raises(FileNotFoundError, match="gim weights fetch aliked_lightglue"):
            GIMMatcher("aliked_lightglue")
        assert GIMMatcher("aliked_lightglue", pretrained=False).matcher.weights_id == "random"

    def test_exception_default_model_without_gim_weights_warns(self, tmp_path, monkeypatch):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        monkeypatch.delenv("GIM_WEIGHTS_DIR", raising=False)
        with pytest.warns(RuntimeWarning, match="no GIM weights installed"):
            matcher = GIMMatcher(pretrained=False, **RANDOM_ALIKED)
        assert matcher.name == "aliked_lightglue"

    def test_exception_weights_and_random(self, tmp_path):
        with pytest.raises(ValueError, match="not both"):
            GIMMatcher("aliked_lightglue", weights=tmp_path / "x.pth", pretrained=False)

    def test_exception_options_with_a_built_matcher(self):
        with pytest.raises(ValueError, match="used as it is"):
            GIMMatcher(load_matcher("root_sift"), max_keypoints=10)
        with pytest.raises(TypeError, match="matcher name"):
            GIMMatcher(42)

    @pytest.mark.parametrize(
        ("data", "error", "message"),
        [
            ([1, 2], TypeError, "expected a dict"),
            ({"image0": torch.rand(1, 3, 32, 32)}, ValueError, "missing input keys"),
            ({"image0": torch.rand(1, 3, 32, 32), "image1": torch.rand(1, 3, 32, 32), "mask_0": None}, ValueError,
             "unknown input keys"),
            ({"image0": torch.rand(3, 32, 32), "image1": torch.rand(3, 32, 32)}, ValueError, r"\(B, 1, H, W\)"),
            ({"image0": torch.rand(1, 2, 32, 32), "image1": torch.rand(1, 2, 32, 32)}, ValueError, "B, 3, H, W"),
            ({"image0": torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "image1": torch.zeros(1, 3, 32, 32,
                                                                                             dtype=torch.uint8)},
             TypeError, "floating-point"),
            ({"image0": torch.rand(2, 3, 32, 32), "image1": torch.rand(1, 3, 32, 32)}, ValueError, "same batch size"),
            ({"image0": torch.rand(1, 3, 32, 32) * 255, "image1": torch.rand(1, 3, 32, 32)}, ValueError, r"\[0, 1\]"),
            ({"image0": torch.rand(1, 3, 8, 8), "image1": torch.rand(1, 3, 8, 8)}, ValueError, "too small"),
            ({"image0": torch.rand(1, 3, 32, 32), "image1": torch.rand(1, 3, 32, 32), "mask0": torch.ones(1, 16, 16)},
             ValueError, "mask0: expected shape"),
            ({"image0": torch.rand(1, 3, 32, 32), "image1": torch.rand(1, 3, 32, 32), "mask0": [[1]]}, TypeError,
             "mask0: expected a torch.Tensor"),
            ({"image0": "left.png", "image1": torch.rand(1, 3, 32, 32)}, TypeError, "image0: expected a torch.Tensor"),
        ],
    )
    def test_exception_bad_input(self, data, error, message):
        with pytest.raises(error, match=message):
            build("root_sift")(data)

    def test_exception_pre_extracted_features(self):
        data = batch([((64, 64), (64, 64))])
        lafs, descs = torch.zeros(1, 4, 2, 3), torch.zeros(1, 4, 128)
        with pytest.raises(ValueError, match="dense matcher"):
            build("test_shift")({**data, "lafs0": lafs, "descriptors0": descs})
        with pytest.raises(ValueError, match="both lafs0 and descriptors0"):
            build("root_sift")({**data, "lafs0": lafs})
        with pytest.raises(ValueError, match="descriptors0: expected shape"):
            build("root_sift")({**data, "lafs0": lafs, "descriptors0": torch.zeros(1, 3, 128)})


class TestLocalFeature:
    def test_exception_dense_matcher_has_no_extractor(self):
        with pytest.raises(TypeError, match="dense matcher"):
            build("test_shift").local_feature()
        with pytest.raises(TypeError, match="dense matcher"):
            GIMLocalFeature("test_shift")

    def test_cardinality_and_padding(self):
        local = GIMLocalFeature("root_sift")
        flat = torch.full((3, 64, 80), 0.5)  # no keypoints: an all-padding row
        images = torch.stack([shifted_pair((64, 80), seed=1)[0], flat, shifted_pair((64, 80), seed=2)[0]])
        lafs, responses, descs = local(images)
        core = local.matcher
        counts = [len(core.extract(image)) for image in images]
        assert counts[1] == 0 and min(counts[0], counts[2]) > 10
        n = max(counts)
        assert lafs.shape == (3, n, 2, 3) and responses.shape == (3, n) and descs.shape == (3, n, 128)
        assert laf_is_filled(lafs).sum(1).tolist() == counts
        for b, image in enumerate(images):
            feats = core.extract(image)
            k = counts[b]
            assert torch.equal(get_laf_center(lafs)[b, :k], feats.keypoints)
            assert torch.equal(descs[b, :k], feats.descriptors) and torch.equal(responses[b, :k], feats.scores)
            assert not bool(lafs[b, k:].any()) and not bool(descs[b, k:].any())

    def test_mask_and_gray_input(self):
        image = shifted_pair((64, 80), seed=1)[0][None]
        mask = torch.ones(1, 1, 64, 80)
        mask[..., :40] = 0
        local = build("root_sift").local_feature()
        lafs, _, _ = local(image, mask)
        centres = get_laf_center(lafs)[laf_is_filled(lafs)]
        assert len(centres) > 0 and bool((centres[:, 0].round() >= 40).all())
        gray = image.mean(1, keepdim=True)
        lafs_gray, _, _ = local(gray)
        lafs_rgb, _, _ = local(gray.expand(-1, 3, -1, -1))
        assert torch.equal(lafs_gray, lafs_rgb)

    @pytest.mark.parametrize("name", ["root_sift", "aliked_lightglue"])
    def test_pre_extracted_features_give_the_same_matches(self, name):
        data = batch([((64, 96), (72, 80))] * 2)
        matcher = build(name)
        local = matcher.local_feature()
        assert local.matcher is matcher.matcher
        lafs0, resp0, descs0 = local(data["image0"])
        out = matcher({**data, "lafs0": lafs0, "descriptors0": descs0, "responses0": resp0})
        direct = matcher(data)
        assert all(torch.equal(out[k], direct[k]) for k in OUTPUT_KEYS)

    def test_pre_extracted_features_of_padded_images(self):
        """Extract once on a padded batch, match with the padding masks: the matches of the unpadded pair."""
        image0, image1 = shifted_pair((80, 96), (72, 88), seed=4)
        padded = torch.zeros(1, 3, 96, 112)
        padded[0, :, :80, :96] = image0
        mask0 = torch.zeros(1, 96, 112)
        mask0[0, :80, :96] = 1
        matcher = build("root_sift")
        lafs0, resp0, descs0 = matcher.local_feature()(padded, mask0)
        out = matcher({"image0": padded, "image1": image1[None], "mask0": mask0, "lafs0": lafs0,
                       "descriptors0": descs0, "responses0": resp0})
        assert len(out["keypoints0"]) > 10
        assert_equal_to_result(out, 0, matcher.matcher.match(image0, image1))
        unmasked = matcher.local_feature()(padded)[0]  # features of the whole padded image: those outside are dropped
        again = matcher({"image0": padded, "image1": image1[None], "mask0": mask0, "lafs0": unmasked,
                         "descriptors0": matcher.local_feature()(padded)[2]})
        assert bool((again["keypoints0"] <= torch.tensor([95.5, 79.5])).all())

    def test_feature_kornia_local_feature_matcher(self):
        data = batch([((96, 128), (96, 128))])
        kornia_matcher = LocalFeatureMatcher(GIMLocalFeature("root_sift"), DescriptorMatcher("smnn", 0.9))
        out = kornia_matcher(data)
        offset = out["keypoints1"] - out["keypoints0"]
        good = ((offset - torch.tensor(SHIFT, dtype=torch.float32)).abs() <= 1.0).all(1)
        assert len(offset) > 20 and float(good.float().mean()) > 0.9
