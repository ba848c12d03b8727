"""gim_dkm: strict checkpoint compatibility, GIM's inference conventions, bad input, CPU robustness.

Default-suite tests use random weights at tiny sizes (96×128, no upsampling pass); GIM-default sizes are ``slow``.
Numeric parity with the original code is in ``tests/parity/test_gim_dkm_parity.py``.
"""

from __future__ import annotations

import json
import math
import resource
from pathlib import Path

import numpy as np
import pytest
import torch

from gim_plugins.conf import ConfError
from gim_plugins.matching import load_matcher
from gim_plugins.models._arch.dkm import DKMv3
from gim_plugins.models._arch.dkm_sampling import balanced_sample, kde
from gim_plugins.models._arch.gp import GP, cos_kernel
from gim_plugins.models._arch.grids import black_mask, normalized_grid
from gim_plugins.models._arch.refiners import local_correlation
from gim_plugins.models.dense_warp import padding_to_aspect
from gim_plugins.models.gim_dkm import GIMDKM, PRESETS, remap_gim_dkm
from gim_plugins.types import MatchResult

MANIFEST = Path(__file__).resolve().parents[1] / "fixtures" / "manifests" / "gim_dkm.json"
TINY = {"h": 96, "w": 128, "upsample": False, "num_samples": 200, "seed": 0}


def manifest() -> list[tuple[str, list[int], str]]:
    return [tuple(entry) for entry in json.loads(MANIFEST.read_text())]


def synthetic_checkpoint(prefix: str = "model.", lightning: bool = True, fc: bool = True) -> dict:
    """Random tensors with the manifest's keys/shapes/dtypes, in GIM's raw checkpoint layout."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape, dtype in manifest():
        if dtype == "int64":
            state[prefix + key] = torch.tensor(7, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[prefix + key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[prefix + key] = torch.randn(shape, generator=gen)
    if fc:
        state[prefix + "encoder.net.fc.weight"] = torch.randn(1000, 2048, generator=gen)
        state[prefix + "encoder.net.fc.bias"] = torch.randn(1000, generator=gen)
    return {"state_dict": state, "epoch": torch.tensor(3)} if lightning else state


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    """One intra-op thread: the tiny networks gain nothing from two, and on a loaded machine every parallel region
    of a 2-thread run can wait a scheduler quantum for its second thread (10× slower). Tests that need 2 threads
    set them explicitly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny() -> GIMDKM:
    torch.manual_seed(0)
    return load_matcher("gim_dkm", pretrained=False, **TINY)


@pytest.fixture(scope="module")
def tiny_result(tiny: GIMDKM, pair: tuple[np.ndarray, np.ndarray]) -> MatchResult:
    return tiny.match(*pair)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A textured pair related by a known shift (image 1 = image 0 moved 12 px right, 5 px down)."""
    rng = np.random.default_rng(0)
    base = rng.random((18, 24, 3))
    big = np.kron(base, np.ones((12, 12, 1)))[:200, :270]
    image0 = (255 * big[:180, :250]).astype(np.uint8)
    image1 = np.zeros_like(image0)
    image1[5:, 12:] = image0[:-5, :-12]
    return image0, image1


# ----------------------------------------------------------------------------------------------- architecture


def test_feature_state_dict_equals_manifest() -> None:
    state = DKMv3().state_dict()
    expected = manifest()
    assert list(state) == [key for key, _, _ in expected]
    for key, shape, dtype in expected:
        assert list(state[key].shape) == shape, key
        assert str(state[key].dtype).removeprefix("torch.") == dtype, key


def test_cardinality_parameters() -> None:
    net = DKMv3()
    assert sum(p.numel() for p in net.parameters()) == 70_212_090
    assert len(net.state_dict()) == 811


# ------------------------------------------------------------------------------------------- checkpoint loading


@pytest.mark.parametrize(("prefix", "lightning"), [("model.", True), ("", False), ("model.", False), ("", True)])
def test_feature_synthetic_checkpoint_loads_strictly(prefix: str, lightning: bool) -> None:
    raw = synthetic_checkpoint(prefix, lightning)
    matcher = GIMDKM(TINY, weights=raw)
    state = matcher.net.state_dict()
    flat = raw["state_dict"] if lightning else raw
    for key, value in state.items():
        assert torch.equal(value, flat[prefix + key]), key
    assert "state dict" in matcher.weights_id


def test_feature_remap_drops_fc_and_is_pure() -> None:
    raw = synthetic_checkpoint()
    before = set(raw["state_dict"])
    remapped = remap_gim_dkm(raw)
    assert set(raw["state_dict"]) == before
    assert not any(key.startswith("encoder.net.fc") for key in remapped)
    assert set(remapped) == {key for key, _, _ in manifest()}


def test_feature_checkpoint_file_through_load_matcher(tmp_path: Path) -> None:
    path = tmp_path / "gim_dkm_100h.ckpt"
    torch.save(synthetic_checkpoint(), path)
    matcher = load_matcher("gim_dkm", weights=str(path), **TINY)
    assert matcher.weights_id == "gim_dkm_100h=gim_dkm_100h.ckpt"


def test_exception_missing_key_is_named() -> None:
    raw = synthetic_checkpoint()
    del raw["state_dict"]["model.decoder.gps.16.pos_conv.bias"]
    with pytest.raises(ValueError, match=r"missing keys: decoder\.gps\.16\.pos_conv\.bias"):
        GIMDKM(TINY, weights=raw)


def test_exception_unexpected_key_is_named() -> None:
    raw = synthetic_checkpoint()
    raw["state_dict"]["model.decoder.extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected keys: decoder\.extra\.weight"):
        GIMDKM(TINY, weights=raw)


def test_exception_wrong_shape_is_named() -> None:
    raw = synthetic_checkpoint()
    raw["state_dict"]["model.decoder.proj.16.bias"] = torch.zeros(5)
    with pytest.raises(ValueError, match=r"wrong shapes: decoder\.proj\.16\.bias \(5,\)"):
        GIMDKM(TINY, weights=raw)


def test_exception_prefix_collision() -> None:
    raw = synthetic_checkpoint()
    raw["state_dict"]["decoder.proj.16.bias"] = torch.zeros(512)
    with pytest.raises(ValueError, match=r"both 'decoder\.proj\.16\.bias' and 'model\.decoder\.proj\.16\.bias'"):
        remap_gim_dkm(raw)


def test_exception_weights_missing_says_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIM_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="gim weights import"):
        load_matcher("gim_dkm")


# ---------------------------------------------------------------------------------------------------------- conf


def test_feature_presets_are_valid_confs() -> None:
    for name, preset in PRESETS.items():
        assert name.startswith("gim_dkm-")
        conf = GIMDKM({**preset, "h": 64, "w": 64}, pretrained=False).conf
        assert conf.num_samples == preset["num_samples"]
    assert PRESETS["gim_dkm-zeb"]["h"] == 660 and not PRESETS["gim_dkm-zeb"]["pad_to_aspect"]
    assert GIMDKM.default_conf["upsample_res"] == (1152, 1536)


def test_exception_unknown_and_invalid_options() -> None:
    with pytest.raises(ConfError, match="num_sample"):
        GIMDKM({"num_sample": 10}, pretrained=False)
    with pytest.raises(ValueError, match="precision"):
        GIMDKM({"precision": "fp8"}, pretrained=False)
    with pytest.raises(ValueError, match="option 'h' of matcher 'gim_dkm' expects an integer >= 32"):
        GIMDKM({"h": 16}, pretrained=False)


# ------------------------------------------------------------------------------------------------- components


def test_feature_padding_matches_gim_formula() -> None:
    # tools.get_padding_size(image, 672, 896): centred zeros to 4:3.
    assert padding_to_aspect(500, 741, 672, 896) == (0, 0, 27, 28)
    assert padding_to_aspect(1000, 1000, 672, 896) == (166, 167, 0, 0)
    assert padding_to_aspect(672, 896, 672, 896) == (0, 0, 0, 0)


def test_feature_local_correlation_equals_windowed_sampling() -> None:
    """Against the definition: bilinear samples of f1 at flow + (j − r, i − r) px, dotted with f0, / sqrt(C)."""
    gen = torch.Generator().manual_seed(0)
    b, c, h, w, r = 2, 16, 9, 11, 2
    f0, f1 = torch.randn(b, c, h, w, generator=gen), torch.randn(b, c, h, w, generator=gen)
    flow = normalized_grid(h, w)[None] + 0.4 * torch.randn(b, 2, h, w, generator=gen)
    side = 2 * r + 1
    expected = torch.empty(b, side * side, h, w)
    for i in range(side):
        for j in range(side):
            shift = torch.tensor([2 * (j - r) / w, 2 * (i - r) / h])
            grid = flow.permute(0, 2, 3, 1) + shift
            sample = torch.nn.functional.grid_sample(f1, grid, align_corners=False)
            expected[:, i * side + j] = (f0 * sample).sum(1) / c**0.5
    got = local_correlation(f0, f1, r, flow, budget=1000)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_feature_gp_posterior_mean() -> None:
    """GP output = K(x,y) (K(y,y) + 0.1 I)⁻¹ φ(grid), per direction (faithful mode below the N > 2000 branch)."""
    torch.manual_seed(0)
    gp = GP().eval()
    x, y = torch.randn(2, 32, 4, 5), torch.randn(2, 32, 4, 5)
    with torch.inference_mode():
        got = gp(x, y).double()
        phi = gp.basis(4, 5, torch.device("cpu")).flatten(2).transpose(1, 2).double()
        for k in range(2):
            xs, ys = (t[k : k + 1].flatten(2).transpose(1, 2).double() for t in (x, y))
            mu = cos_kernel(xs, ys) @ torch.linalg.solve(cos_kernel(ys, ys) + 0.1 * torch.eye(20), phi)
            torch.testing.assert_close(got[k], mu[0].transpose(0, 1).reshape(256, 4, 5), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("h", "w"), [(21, 28), (42, 56)])
def test_feature_gp_default_grid_sizes_cpu_robust(h: int, w: int) -> None:
    """N = 588 (stride 32) and 2352 (stride 16) at 672×896, batch 2, 2 threads: the sizes where a batched
    ``torch.linalg.inv`` fails on oneMKL CPUs. Also checks the faithful N > 2000 behaviour: direction B→A reuses
    direction A→B's inverse (``faithful=False`` uses its own)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        gp = GP().eval()
        x = torch.randn(1, 64, h, w)
        y = torch.randn(1, 64, h, w)
        batch_q, batch_s = torch.cat((x, y)), torch.cat((y, x))
        with torch.inference_mode():
            faithful = gp(batch_q, batch_s, faithful=True)
            own = gp(batch_q, batch_s, faithful=False)
            single = gp(y, x)
    finally:
        torch.set_num_threads(threads)
    assert faithful.shape == (2, 256, h, w) and torch.isfinite(faithful).all() and torch.isfinite(own).all()
    torch.testing.assert_close(faithful[0], own[0])
    torch.testing.assert_close(own[1], single[0], atol=1e-5, rtol=1e-4)
    if h * w > 2000:
        assert not torch.allclose(faithful[1], own[1], atol=1e-3)
    else:
        torch.testing.assert_close(faithful[1], own[1])


def test_feature_kde_chunked_is_bit_identical() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3000, 4, generator=gen) * 2 - 1
    reference = (-torch.cdist(x, x) ** 2 / (2 * 0.1**2)).exp().sum(dim=-1)
    assert torch.equal(kde(x, chunk=256), reference)


def test_feature_balanced_sample_returns_original_certainty() -> None:
    gen = torch.Generator().manual_seed(0)
    warp = torch.rand(30, 40, 4, generator=gen) * 2 - 1
    certainty = torch.rand(30, 40, generator=gen) * 0.2
    matches, conf = balanced_sample(warp, certainty, 100, generator=torch.Generator().manual_seed(1))
    assert matches.shape == (100, 4) and conf.shape == (100,)
    flat = warp.reshape(-1, 4)
    for m, c in zip(matches[:10], conf[:10]):
        index = (flat == m).all(dim=1).nonzero()[0, 0]
        assert c == certainty.reshape(-1)[index]
    zeros = balanced_sample(warp, torch.zeros(30, 40), 50, generator=torch.Generator().manual_seed(1))
    assert len(zeros[0]) == 50 and (zeros[1] == 0).all()


def test_feature_black_mask_equals_nearest_resize() -> None:
    gen = torch.Generator().manual_seed(0)
    threshold = 1 / 32
    for shape, sizes in [((37, 53), [(20, 30), (96, 128), (37, 53)]),
                         ((500, 741), [(240, 320), (672, 896), (1152, 1536)]),
                         ((556, 741), [(480, 640), (1152, 1536)])]:
        image = (torch.rand(1, 3, *shape, generator=gen) < 0.5).float()  # many isolated black pixels
        full = (image[0] < threshold).all(dim=0).float()[None, None]
        for size in sizes:
            expected = torch.nn.functional.interpolate(full, size=size, mode="nearest")[0, 0].bool()
            assert torch.equal(black_mask(image, size, threshold), expected), (shape, size)


# ------------------------------------------------------------------------------------------------------- matching


def test_cardinality_dense_match_shapes(tiny: GIMDKM) -> None:
    image = torch.rand(1, 3, 100, 140)
    with torch.inference_mode():
        warp, certainty = tiny.net.dense_match(image, image.flip(-1), size=(96, 128), upsample_res=(128, 160))
    assert warp.shape == (128, 320, 4) and certainty.shape == (128, 320)
    assert warp.abs().max() <= 1 and certainty.min() >= 0 and certainty.max() <= 1
    grid = normalized_grid(128, 160).permute(1, 2, 0)
    assert torch.equal(warp[:, :160, :2], grid) and torch.equal(warp[:, 160:, 2:], grid)


def test_feature_black_pixels_get_zero_certainty(tiny: GIMDKM) -> None:
    image0, image1 = torch.rand(1, 3, 96, 128), torch.rand(1, 3, 96, 128)
    image0[..., :48, :] = 0.0
    with torch.inference_mode():
        _, certainty = tiny.net.dense_match(image0, image1, size=(96, 128), upsample_res=None)
    assert (certainty[:48, :128] == 0).all()


def test_smoke_match_through_load_matcher(tiny_result: MatchResult, pair: tuple[np.ndarray, np.ndarray]) -> None:
    result = tiny_result
    assert isinstance(result, MatchResult) and result.matcher == "gim_dkm"
    assert 0 < len(result) <= TINY["num_samples"]
    height, width = pair[0].shape[:2]
    for kp in (result.keypoints0, result.keypoints1):
        # GIM keeps 0 < x ≤ W − 1 in corner coordinates; minus 0.5 in the package convention.
        assert (kp[:, 0] > -0.5).all() and (kp[:, 0] <= width - 1.5).all()
        assert (kp[:, 1] > -0.5).all() and (kp[:, 1] <= height - 1.5).all()
    assert {"dense", "sample", "total"} <= set(result.timing)


def test_feature_seed_makes_matching_reproducible(tiny: GIMDKM, tiny_result: MatchResult,
                                                  pair: tuple[np.ndarray, np.ndarray]) -> None:
    first, second = tiny_result, tiny.match(*pair)
    assert torch.equal(first.keypoints0, second.keypoints0) and torch.equal(first.confidence, second.confidence)


def test_feature_padding_maps_keypoints_back(tiny: GIMDKM) -> None:
    """A tall image is padded left/right to 4:3; keypoints come back in its own pixels."""
    image0 = (255 * np.random.default_rng(1).random((160, 64, 3))).astype(np.uint8)
    result = tiny.match(image0, image0)
    assert len(result) > 0
    assert result.keypoints0[:, 0].max() <= 64 - 1.5 and result.keypoints0[:, 0].min() > -0.5


def test_feature_keypoint_convention_is_gim_minus_half(tiny: GIMDKM, tiny_result: MatchResult,
                                                      pair: tuple[np.ndarray, np.ndarray]) -> None:
    """Same seed: our keypoints + 0.5 are GIM's corner-convention conversion of the sampled matches."""
    image0, image1 = (torch.from_numpy(p).permute(2, 0, 1).float()[None] / 255 for p in pair)
    padded0, (left, top) = tiny._pad(image0)
    with torch.inference_mode():
        warp, certainty = tiny.dense(padded0, tiny._pad(image1)[0])
        matches, _ = tiny.sample(warp, certainty)
    h, w = padded0.shape[-2:]
    gim_x = w * (matches[:, 0] + 1) / 2 - left
    gim_y = h * (matches[:, 1] + 1) / 2 - top
    result = tiny_result
    keep = (gim_x > 0) & (gim_y > 0) & (gim_x <= pair[0].shape[1] - 1) & (gim_y <= pair[0].shape[0] - 1)
    k1x = w * (matches[:, 2] + 1) / 2 - left
    k1y = h * (matches[:, 3] + 1) / 2 - top
    keep &= (k1x > 0) & (k1y > 0) & (k1x <= pair[1].shape[1] - 1) & (k1y <= pair[1].shape[0] - 1)
    torch.testing.assert_close(result.keypoints0 + GIMDKM.gim_keypoint_offset,
                               torch.stack((gim_x, gim_y), -1)[keep])


# ------------------------------------------------------------------------------------------------------ bad input


def test_exception_image_too_small(tiny: GIMDKM) -> None:
    with pytest.raises(ValueError, match="too small"):
        tiny.match(np.zeros((20, 20, 3), np.uint8), np.zeros((64, 64, 3), np.uint8))


def test_exception_image_too_large() -> None:
    matcher = GIMDKM({**TINY, "max_image_pixels": 10_000}, pretrained=False)
    with pytest.raises(ValueError, match=r"100×120 px \(0.0 MP\) is larger than the 10000 px matcher 'gim_dkm' "
                                         r"accepts \(max_image_pixels\)"):
        matcher.match(np.zeros((120, 100, 3), np.uint8), np.zeros((64, 64, 3), np.uint8))


def test_feature_grayscale_is_replicated(tiny: GIMDKM, pair: tuple[np.ndarray, np.ndarray]) -> None:
    gray0, gray1 = pair[0][..., 0], pair[1][..., 0]
    from_gray = tiny.match(gray0, torch.from_numpy(gray1)[None])  # H×W array and 1×H×W tensor
    gray_rgb = np.repeat(gray0[..., None], 3, -1), np.repeat(gray1[..., None], 3, -1)
    from_rgb = tiny.match(*gray_rgb)
    assert torch.equal(from_gray.keypoints0, from_rgb.keypoints0)


def test_feature_input_dtypes_agree(tiny: GIMDKM, tiny_result: MatchResult,
                                    pair: tuple[np.ndarray, np.ndarray]) -> None:
    as_uint8 = tiny_result
    tensors = [torch.from_numpy(p).permute(2, 0, 1) for p in pair]
    as_double = tiny.match(*(t.double() / 255 for t in tensors))
    as_batched = tiny.match(*((t.float() / 255)[None] for t in tensors))
    assert torch.equal(as_uint8.keypoints0, as_double.keypoints0)
    assert torch.equal(as_uint8.keypoints1, as_batched.keypoints1)


def test_feature_bf16_precision_runs(pair: tuple[np.ndarray, np.ndarray]) -> None:
    torch.manual_seed(0)
    fp32 = GIMDKM(TINY, pretrained=False)
    bf16 = GIMDKM({**TINY, "precision": "bf16"}, pretrained=False)
    bf16.load_state_dict(fp32.state_dict())
    image = torch.from_numpy(pair[0]).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        warp32, cert32 = fp32.dense(image, image)
        warp16, cert16 = bf16.dense(image, image)
    assert warp16.dtype == torch.float32 and torch.isfinite(warp16).all()
    assert (warp16 - warp32).abs().mean() < 0.05 and (cert16 - cert32).abs().mean() < 0.05
    assert len(bf16.match(*pair)) > 0


def test_smoke_cli_match_with_synthetic_checkpoint(tmp_path: Path, pair: tuple[np.ndarray, np.ndarray],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    from gim_plugins.cli import main

    torch.manual_seed(0)
    state = {f"model.{k}": v for k, v in DKMv3().state_dict().items()}
    ckpt = tmp_path / "gim_dkm_100h.ckpt"
    torch.save({"state_dict": state}, ckpt)
    paths = []
    for index, image in enumerate(pair):
        paths.append(tmp_path / f"im{index}.png")
        cv2.imwrite(str(paths[-1]), image[..., ::-1])
    code = main(["match", str(paths[0]), str(paths[1]), "--matcher", "gim_dkm", "--weights", str(ckpt),
                 "--out", str(tmp_path / "out"), "--conf", "h=96", "--conf", "w=128", "--conf", "upsample=false",
                 "--conf", "num_samples=150", "--conf", "seed=0"])
    assert code == 0
    out = capsys.readouterr().out
    assert "matcher: gim_dkm" in out and "matches:" in out
    assert len(list((tmp_path / "out").glob("*_match.png"))) == 1


# ------------------------------------------------------------------------------------------------- GIM defaults


@pytest.mark.slow
def test_feature_gim_defaults_memory_and_output() -> None:
    """The demo configuration end to end on the motorcycle pair (random weights): shapes and a memory ceiling."""
    from gim_plugins.datasets.motorcycle import paths

    torch.manual_seed(0)
    matcher = load_matcher("gim_dkm", pretrained=False, seed=0)
    files = paths()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the batched-inverse trap needs ≥ 2 threads; this runs the GP at N = 588 and 2352
    try:
        result = matcher.match(files["left"], files["right"])
    finally:
        torch.set_num_threads(threads)
    assert 0 < len(result) <= 5000
    assert result.keypoints0[:, 0].max() <= 741 - 1.5 and result.keypoints0[:, 1].max() <= 500 - 1.5
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    assert peak_gib < 4.7, f"peak RSS {peak_gib:.1f} GiB (original: 14.1 GB)"
    assert math.isfinite(float(result.confidence.sum()))
