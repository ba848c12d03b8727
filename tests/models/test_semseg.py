"""The ADE20K segmenter of GIM's video masks: strict checkpoint compatibility, GIM's preprocessing, shapes, masks.

GIM's files (``encoder_epoch_20.pth``, ``decoder_epoch_20.pth``) are not available offline; synthetic checkpoint files
are built from the state-dict manifests (``tests/fixtures/manifests/semseg_*.json``, with the synchronised-batch-norm
buffers the original modules carry) with one stored value per tensor, so they are a few kB on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gim_plugins.models.semseg import (
    EXCLUDED_CLASSES,
    SYNC_BN_BUFFERS,
    SemanticSegmenter,
    remap_semseg,
    usable_mask,
)
from gim_plugins.models.state_dicts import CheckpointMismatchError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "manifests"
ENCODER = "semseg_encoder_resnet50dilated.json"
DECODER = "semseg_decoder_ppm_deepsup.json"


def manifest(name: str) -> list[tuple[str, tuple[int, ...], str]]:
    return [(k, tuple(s), t) for k, s, t in json.loads((FIXTURES / name).read_text())]


def constant_state(name: str, prefix: str = "", sync_bn: bool = True) -> dict[str, torch.Tensor]:
    """Manifest keys/shapes/dtypes; tensor i holds the value i/1000 broadcast to its shape (one stored element)."""
    state = {}
    for index, (key, shape, dtype) in enumerate(manifest(name)):
        if not sync_bn and key.endswith(SYNC_BN_BUFFERS):
            continue
        if dtype == "int64":
            state[prefix + key] = torch.tensor(7, dtype=torch.int64)
        else:
            value = 1.0 + index / 1000 if key.endswith("running_var") else index / 1000
            state[prefix + key] = torch.tensor([value]).expand(shape) if shape else torch.tensor(value)
    return state


@pytest.fixture(scope="module")
def random_segmenter() -> SemanticSegmenter:
    torch.manual_seed(0)
    return SemanticSegmenter(pretrained=False)


def test_cardinality_state_dicts_equal_manifests(random_segmenter: SemanticSegmenter) -> None:
    """Same keys, order, shapes and dtypes as the original modules, less exactly the sync-BN bookkeeping buffers."""
    for module, name, params, dropped in ((random_segmenter.encoder, ENCODER, 23_631_808, 165),
                                          (random_segmenter.decoder, DECODER, 27_947_308, 18)):
        full = manifest(name)
        expected = [entry for entry in full if not entry[0].endswith(SYNC_BN_BUFFERS)]
        ours = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in module.state_dict().items()]
        assert ours == expected
        assert len(full) - len(expected) == dropped
        assert sum(p.numel() for p in module.parameters()) == params


@pytest.mark.parametrize(("prefix", "sync_bn"), [("", True), ("", False), ("module.", True)])
def test_feature_synthetic_files_load_strictly(tmp_path: Path, prefix: str, sync_bn: bool) -> None:
    """Files as the original saves them (with or without sync-BN buffers, or from DataParallel) load bit-exactly."""
    enc, dec = tmp_path / "encoder_epoch_20.pth", tmp_path / "decoder_epoch_20.pth"
    torch.save(constant_state(ENCODER, prefix, sync_bn), enc)
    torch.save(constant_state(DECODER, prefix, sync_bn), dec)
    assert enc.stat().st_size < 1_000_000
    segmenter = SemanticSegmenter(encoder=enc, decoder=dec)
    for module, name in ((segmenter.encoder, ENCODER), (segmenter.decoder, DECODER)):
        reference = remap_semseg(constant_state(name))
        loaded = module.state_dict()
        assert loaded.keys() == reference.keys()
        assert all(torch.equal(loaded[k], reference[k].expand_as(loaded[k])) for k in loaded)


def test_exception_wrong_checkpoint_names_the_keys() -> None:
    enc = constant_state(ENCODER)
    dec = constant_state(DECODER)
    del enc["layer4.2.conv3.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: layer4\.2\.conv3\.weight"):
        SemanticSegmenter(encoder=enc, decoder=dec)
    with pytest.raises(CheckpointMismatchError, match=r"ADE20K encoder.*unexpected keys: ppm\.0\.1\.weight"):
        SemanticSegmenter(encoder=dec, decoder=constant_state(ENCODER))
    with pytest.raises(FileNotFoundError, match="not found"):
        SemanticSegmenter(encoder="/nonexistent/encoder_epoch_20.pth", decoder=dec)


def test_feature_preprocessing_is_gims(random_segmenter: SemanticSegmenter) -> None:
    """Long side ≤ 720 by area interpolation (short side truncated as GIM's int()), ImageNet normalisation."""
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (1001, 1500, 3), dtype=np.uint8)
    tall = rng.integers(0, 256, (1500, 1001, 3), dtype=np.uint8)
    small = np.full((40, 60, 3), 255, np.uint8)
    assert SemanticSegmenter.preprocess(wide).shape == (1, 3, 480, 720)  # int(720 * 1001 / 1500) = 480
    assert SemanticSegmenter.preprocess(tall).shape == (1, 3, 720, 480)
    white = SemanticSegmenter.preprocess(small)
    assert white.shape == (1, 3, 40, 60)
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(white[0, :, 0, 0], expected)
    with pytest.raises(ValueError, match="uint8 RGB"):
        SemanticSegmenter.preprocess(small.astype(np.float32))


def test_smoke_segment_shapes(random_segmenter: SemanticSegmenter) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    classes = random_segmenter.segment(rgb)
    assert classes.shape == (48, 80) and classes.dtype == np.uint8
    assert classes.max() < 150
    probs = random_segmenter(SemanticSegmenter.preprocess(rgb))
    assert probs.shape == (1, 150, 48, 80)
    assert torch.allclose(probs.sum(dim=1), torch.ones(1, 48, 80), atol=1e-4)


def test_feature_usable_mask_removes_people_sky_cars() -> None:
    """The class map is resized to the frame (nearest) and exactly the three excluded classes become unusable."""
    assert EXCLUDED_CLASSES == {"person": 12, "sky": 2, "car": 20}
    class_map = np.array([[12, 2], [20, 5]], dtype=np.uint8)
    mask = usable_mask(class_map, (4, 6))
    assert mask.shape == (4, 6) and mask.dtype == bool
    assert not mask[:2].any() and not mask[2:, :3].any() and mask[2:, 3:].all()
    assert usable_mask(class_map, (2, 2), excluded=(5,)).tolist() == [[True, True], [True, False]]
