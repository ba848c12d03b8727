"""gim_roma: strict checkpoint compatibility (GIM file + separate DINOv2 file), GIM's conventions, bad input.

Default-suite tests use random weights at tiny sizes (56×56 coarse pass, 112×112 or no refinement pass). Synthetic
checkpoint *files* are built from the manifests with one stored value per tensor (expanded views), so they are a few
kB on disk instead of 0.4 + 1.2 GB, and still go through ``torch.load(weights_only=True)`` and the strict load.
Numeric parity with the original code is in ``tests/parity/test_gim_roma_parity.py``.

Memory: one RoMa instance is ≈1.7 GB (DINOv2 ViT-L 1.2 GB). Tests that build their own come first in this file,
before the shared ``tiny`` matcher exists, so at most one or two are alive at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gim_plugins.conf import ConfError, merge_conf, to_plain
from gim_plugins.matching import load_matcher
from gim_plugins.models._arch.dkm_sampling import kde
from gim_plugins.models._arch.grids import normalized_grid
from gim_plugins.models._arch.roma import ANCHOR_RES, RoMa, cls_to_flow
from gim_plugins.models.gim_roma import PRESETS, GIMRoMa, remap_gim_roma
from gim_plugins.types import MatchResult

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "manifests"
TINY = {"h": 56, "w": 56, "upsample": False, "num_samples": 200, "seed": 0}


def manifest(name: str) -> list[tuple[str, list[int], str]]:
    return [tuple(entry) for entry in json.loads((FIXTURES / name).read_text())]


def constant_state(name: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """Manifest keys/shapes/dtypes; tensor i is the value i/1000 broadcast to its shape (one stored element)."""
    state = {}
    for index, (key, shape, dtype) in enumerate(manifest(name)):
        if dtype == "int64":
            state[prefix + key] = torch.tensor(7, dtype=torch.int64)
        else:
            value = 1.0 + index / 1000 if key.endswith("running_var") else index / 1000
            state[prefix + key] = torch.tensor([value]).expand(shape) if shape else torch.tensor(value)
    return state


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A textured pair related by a shift (image 1 = image 0 moved 9 px right, 4 px down); not square."""
    rng = np.random.default_rng(0)
    big = np.kron(rng.random((10, 12, 3)), np.ones((8, 8, 1)))
    image0 = (255 * big[:72, :90]).astype(np.uint8)
    image1 = np.zeros_like(image0)
    image1[4:, 9:] = image0[:-4, :-9]
    return image0, image1


# ------------------------------------------------------------------- checkpoint files (own instances; run first)


def test_feature_synthetic_checkpoint_files_load_strictly(tmp_path: Path) -> None:
    """GIM's Lightning layout (``state_dict`` / ``model.`` keys) and Meta's DINOv2 file, both loaded from disk."""
    gim_file, dino_file = tmp_path / "gim_roma_100h.ckpt", tmp_path / "dinov2_vitl14_pretrain.pth"
    torch.save({"state_dict": constant_state("gim_roma.json", "model."), "epoch": torch.tensor(3)}, gim_file)
    torch.save(constant_state("dinov2_vitl14.json"), dino_file)
    assert gim_file.stat().st_size < 2_000_000 and dino_file.stat().st_size < 2_000_000
    matcher = load_matcher("gim_roma", weights={"gim_roma_100h": str(gim_file), "dinov2_vitl14": str(dino_file)},
                           **TINY)
    assert matcher.weights_id == "gim_roma_100h=gim_roma_100h.ckpt, dinov2_vitl14=dinov2_vitl14_pretrain.pth"
    loaded, loaded_dino = matcher.net.state_dict(), matcher.net.encoder.dinov2.state_dict()
    for key, value in constant_state("gim_roma.json").items():
        assert torch.equal(loaded[key], value), key
    for key, value in constant_state("dinov2_vitl14.json").items():
        assert torch.equal(loaded_dino[key], value), key
    del loaded, loaded_dino
    del matcher
    # the DINOv2 file can also come from the conf; the GIM file as the plain weights= path
    matcher = load_matcher("gim_roma", weights=str(gim_file), dinov2_weights=str(dino_file), **TINY)
    assert "dinov2_vitl14=dinov2_vitl14_pretrain.pth" in matcher.weights_id


def test_exception_dinov2_missing_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIM_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    gim_file = tmp_path / "gim_roma_100h.ckpt"
    torch.save({"state_dict": constant_state("gim_roma.json", "model.")}, gim_file)
    with pytest.raises(FileNotFoundError, match=r"'dinov2_vitl14'.*gim weights fetch dinov2_vitl14"):
        load_matcher("gim_roma", weights=str(gim_file), **TINY)
    with pytest.raises(FileNotFoundError, match="gim_roma_100h"):
        load_matcher("gim_roma", **TINY)


# -------------------------------------------------------------------------------------------- architecture


def test_feature_state_dicts_equal_manifests() -> None:
    net = RoMa()
    for state, name in ((net.state_dict(), "gim_roma.json"), (net.encoder.dinov2.state_dict(), "dinov2_vitl14.json")):
        expected = manifest(name)
        assert list(state) == [key for key, _, _ in expected]
        for key, shape, dtype in expected:
            assert list(state[key].shape) == shape, key
            assert str(state[key].dtype).removeprefix("torch.") == dtype, key
    # DINOv2 is held outside the module tree (as in the original) but follows device/dtype moves
    assert sum(p.numel() for p in net.parameters()) == 111_288_336
    assert sum(p.numel() for p in net.encoder.dinov2.parameters()) == 304_368_640
    assert not any(key.startswith(("encoder.dinov2", "encoder._dinov2")) for key in net.state_dict())
    net.to("meta")
    assert net.encoder.dinov2.pos_embed.device.type == "meta"


@pytest.fixture(scope="module")
def tiny() -> GIMRoMa:
    torch.manual_seed(0)
    return load_matcher("gim_roma", pretrained=False, **TINY)


@pytest.fixture(scope="module")
def tiny_result(tiny: GIMRoMa, pair: tuple[np.ndarray, np.ndarray]) -> MatchResult:
    return tiny.match(*pair)


# ------------------------------------------------------------------------------------------- strict loading


def _weights(gim: dict[str, torch.Tensor] | None = None,
             dino: dict[str, torch.Tensor] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    return {"gim_roma_100h": {"state_dict": gim if gim is not None else constant_state("gim_roma.json", "model.")},
            "dinov2_vitl14": dino if dino is not None else constant_state("dinov2_vitl14.json")}


def test_feature_remap_prefixes_and_is_pure() -> None:
    raw = {"state_dict": constant_state("gim_roma.json", "model.")}
    before = list(raw["state_dict"])
    remapped = remap_gim_roma(raw)
    assert list(raw["state_dict"]) == before
    assert list(remapped) == [key for key, _, _ in manifest("gim_roma.json")]
    assert list(remap_gim_roma(constant_state("gim_roma.json"))) == list(remapped)  # plain, unprefixed
    with pytest.raises(ValueError, match=r"both 'decoder\.gps\.16\.pos_conv\.bias' and 'model\."):
        remap_gim_roma({**raw["state_dict"], "decoder.gps.16.pos_conv.bias": torch.zeros(512)})
    with pytest.raises(ValueError, match="not a tensor"):
        remap_gim_roma({"model.x": [1, 2]})


def test_exception_gim_checkpoint_mismatch_is_named(tiny: GIMRoMa) -> None:
    before = tiny.net.decoder.proj["16"][0].bias.clone()
    gim = constant_state("gim_roma.json", "model.")
    del gim["model.decoder.gps.16.pos_conv.bias"]
    gim["model.decoder.extra.weight"] = torch.zeros(3)
    gim["model.decoder.proj.16.0.bias"] = torch.zeros(5)
    with pytest.raises(ValueError, match=r"missing keys: decoder\.gps\.16\.pos_conv\.bias; unexpected keys: "
                                         r"decoder\.extra\.weight; wrong shapes: decoder\.proj\.16\.0\.bias \(5,\)"):
        tiny.load_weights(_weights(gim=gim))
    # DINOv2 tensors inside the GIM checkpoint: a hint says where they belong
    gim = constant_state("gim_roma.json", "model.")
    gim.update({f"model.encoder.dinov2.{k}": v for k, v in constant_state("dinov2_vitl14.json").items()})
    with pytest.raises(ValueError, match="separate dinov2_vitl14 file"):
        tiny.load_weights(_weights(gim=gim))
    assert torch.equal(tiny.net.decoder.proj["16"][0].bias, before)  # nothing was loaded


def test_exception_dinov2_mismatch_is_named_before_anything_loads(tiny: GIMRoMa) -> None:
    before = tiny.net.decoder.proj["16"][0].bias.clone()
    dino = constant_state("dinov2_vitl14.json")
    del dino["blocks.23.ls2.gamma"]
    dino["pos_embed"] = torch.zeros(1, 257, 1024)
    with pytest.raises(ValueError, match=r"DINOv2.*missing keys: blocks\.23\.ls2\.gamma; wrong shapes: pos_embed"):
        tiny.load_weights(_weights(dino=dino))
    assert torch.equal(tiny.net.decoder.proj["16"][0].bias, before)


# ------------------------------------------------------------------------------------------------------ conf


def test_feature_presets_and_defaults() -> None:
    assert GIMRoMa.default_conf["h"] == GIMRoMa.default_conf["w"] == 672
    assert GIMRoMa.default_conf["upsample_res"] == (1344, 1344) and GIMRoMa.default_conf["pad_to_aspect"]
    assert set(PRESETS) == {"gim_roma-demo", "gim_roma-zeb"}
    assert not PRESETS["gim_roma-zeb"]["pad_to_aspect"] and PRESETS["gim_roma-zeb"]["drop_zero_confidence"]


def test_exception_unknown_and_invalid_options() -> None:
    with pytest.raises(ConfError, match="num_sample"):
        GIMRoMa({"num_sample": 10}, pretrained=False)
    with pytest.raises(ValueError, match="multiple of 14"):
        GIMRoMa({"h": 64}, pretrained=False)
    with pytest.raises(ValueError, match="num_samples"):
        GIMRoMa({"num_samples": 0}, pretrained=False)


# ------------------------------------------------------------------------------------------------ components


def test_feature_cls_to_flow_is_local_soft_argmax() -> None:
    """A peaked distribution at an interior anchor returns that anchor; mass on a neighbour pulls towards it."""
    anchors = normalized_grid(ANCHOR_RES, ANCHOR_RES).reshape(2, -1).T
    logits = torch.full((1, ANCHOR_RES**2, 1, 2), -50.0)
    mode = 10 * ANCHOR_RES + 20
    logits[0, mode, 0, 0] = 10.0
    logits[0, mode, 0, 1] = 10.0
    logits[0, mode + 1, 0, 1] = 10.0  # tie broken towards `mode`; half the mass on the right neighbour
    flow = cls_to_flow(logits)
    torch.testing.assert_close(flow[0, :, 0, 0], anchors[mode])
    torch.testing.assert_close(flow[0, :, 0, 1], (anchors[mode] + anchors[mode + 1]) / 2)


def test_feature_dinov2_position_embedding(tiny: GIMRoMa) -> None:
    """518 px uses the 37×37 table unchanged; 672 px resizes it to 48×48 (class token kept)."""
    vit = tiny.net.encoder.dinov2
    assert vit.position_embedding(518, 518) is vit.pos_embed
    table = vit.position_embedding(672, 672)
    assert table.shape == (1, 1 + 48 * 48, 1024)
    assert torch.equal(table[:, 0], vit.pos_embed[:, 0])
    assert vit.position_embedding(56, 84).shape == (1, 1 + 4 * 6, 1024)
    with pytest.raises(ValueError, match="multiples of 14"):
        vit.patch_features(torch.zeros(1, 3, 50, 56))


def test_feature_kde_float16_equals_unchunked() -> None:
    """RoMa's KDE runs in float16 (``x.half()``): chunked computation equals the one-block formula bit for bit."""
    x = torch.rand(3000, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    half = x.half()
    reference = (-torch.cdist(half, half) ** 2 / (2 * 0.1**2)).exp().sum(dim=-1)
    density = kde(x, chunk=700, dtype=torch.float16)
    assert density.dtype == torch.float16 and torch.equal(density, reference)


# ------------------------------------------------------------------------------------------------- matching


def test_cardinality_dense_match_shapes(tiny: GIMRoMa) -> None:
    image0, image1 = torch.rand(1, 3, 70, 60), torch.rand(1, 3, 56, 84)
    warp, certainty = tiny.net.dense_match(image0, image1, size=(56, 56), upsample_res=(112, 98))
    assert warp.shape == (112, 196, 4) and certainty.shape == (112, 196)
    assert warp.abs().max() <= 1 and certainty.min() >= 0 and certainty.max() <= 1
    grid = normalized_grid(112, 98).permute(1, 2, 0)
    assert torch.equal(warp[:, :98, :2], grid) and torch.equal(warp[:, 98:, 2:], grid)


def test_feature_black_pixels_get_zero_certainty(tiny: GIMRoMa) -> None:
    image0, image1 = torch.rand(1, 3, 56, 56), torch.rand(1, 3, 56, 56)
    image0[..., :28, :] = 0.01
    _, certainty = tiny.net.dense_match(image0, image1, size=(56, 56), upsample_res=None)
    assert (certainty[:28, :56] == 0).all()


def test_smoke_match_through_load_matcher(tiny_result: MatchResult, pair: tuple[np.ndarray, np.ndarray]) -> None:
    result = tiny_result
    assert isinstance(result, MatchResult) and result.matcher == "gim_roma"
    assert 0 < len(result) <= TINY["num_samples"]
    assert result.confidence.shape == (len(result),) and result.confidence.dtype == torch.float32
    height, width = pair[0].shape[:2]
    for kp in (result.keypoints0, result.keypoints1):
        # GIM keeps 0 < x ≤ W − 1 in corner coordinates; minus 0.5 in the package convention.
        assert (kp[:, 0] > -0.5).all() and (kp[:, 0] <= width - 1.5).all()
        assert (kp[:, 1] > -0.5).all() and (kp[:, 1] <= height - 1.5).all()
    assert {"dense", "sample", "total"} <= set(result.timing)


def test_feature_seed_makes_matching_reproducible(tiny: GIMRoMa, tiny_result: MatchResult,
                                                  pair: tuple[np.ndarray, np.ndarray]) -> None:
    second = tiny.match(*pair)
    assert torch.equal(tiny_result.keypoints0, second.keypoints0)
    assert torch.equal(tiny_result.confidence, second.confidence)


def test_feature_keypoints_are_gim_minus_half_after_square_padding(
        tiny: GIMRoMa, tiny_result: MatchResult, pair: tuple[np.ndarray, np.ndarray]) -> None:
    """The 72×90 inputs are padded to 90×90 (top 9, bottom 9); our keypoints + 0.5 are GIM's conversion."""
    image0, image1 = (torch.from_numpy(p).permute(2, 0, 1).float()[None] / 255 for p in pair)
    padded0, (left, top) = tiny._pad(image0)
    assert padded0.shape[-2:] == (90, 90) and (left, top) == (0, 9)
    warp, certainty = tiny.dense(padded0, tiny._pad(image1)[0])
    matches, confidence = tiny.sample(warp, certainty)
    size = 90
    xy = [size * (matches[:, o : o + 2] + 1) / 2 - torch.tensor([left, top]) for o in (0, 2)]
    height, width = pair[0].shape[:2]
    keep = torch.ones(len(matches), dtype=torch.bool)
    for k in xy:
        keep &= (k[:, 0] > 0) & (k[:, 1] > 0) & (k[:, 0] <= width - 1) & (k[:, 1] <= height - 1)
    torch.testing.assert_close(tiny_result.keypoints0 + GIMRoMa.gim_keypoint_offset, xy[0][keep])
    torch.testing.assert_close(tiny_result.keypoints1 + GIMRoMa.gim_keypoint_offset, xy[1][keep])
    torch.testing.assert_close(tiny_result.confidence, confidence[keep])


def test_feature_upsampling_pass_runs(tiny: GIMRoMa, pair: tuple[np.ndarray, np.ndarray],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The two-pass setting (coarse 56², refinement at 112², scale_factor 2) through the public API."""
    conf = merge_conf(to_plain(tiny.conf), {"upsample": True, "upsample_res": (112, 112)}, owner="test")
    monkeypatch.setattr(tiny, "conf", conf)
    result = tiny.match(*pair)
    assert 0 < len(result) <= TINY["num_samples"] and torch.isfinite(result.keypoints0).all()


def test_exception_image_too_small(tiny: GIMRoMa) -> None:
    with pytest.raises(ValueError, match="too small"):
        tiny.match(np.zeros((20, 20, 3), np.uint8), np.zeros((64, 64, 3), np.uint8))


def test_exception_image_too_large(tiny: GIMRoMa, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiny, "conf", merge_conf(to_plain(tiny.conf), {"max_image_pixels": 10_000}, owner="test"))
    with pytest.raises(ValueError, match="is larger than the 10000 px matcher 'gim_roma' accepts"):
        tiny.match(np.zeros((120, 100, 3), np.uint8), np.zeros((64, 64, 3), np.uint8))


def test_exception_non_finite_certainty_is_explained(tiny: GIMRoMa, pair: tuple[np.ndarray, np.ndarray],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Broken weights (e.g. constant tensors overflow in DINOv2) give NaN certainties: a clear error, not
    ``torch.multinomial``'s "probability tensor contains either inf, nan or element < 0"."""
    warp = torch.zeros(56, 112, 4)
    monkeypatch.setattr(tiny, "dense", lambda *_: (warp, torch.full((56, 112), float("nan"))))
    with pytest.raises(RuntimeError, match="non-finite certainties"):
        tiny.match(*pair)


def test_feature_fused_attention_agrees(tiny: GIMRoMa) -> None:
    """``fused_attention=True`` (scaled_dot_product_attention) computes the same function up to rounding."""
    from gim_plugins.models._arch.dinov2 import Attention

    torch.manual_seed(0)
    attention = Attention(64, 8, qkv_bias=True)
    tokens = torch.randn(2, 30, 64)
    exact = attention(tokens)
    attention.fused = True
    torch.testing.assert_close(attention(tokens), exact, atol=1e-5, rtol=1e-5)
    assert not any(m.fused for m in tiny.net.encoder.dinov2.modules() if isinstance(m, Attention))
