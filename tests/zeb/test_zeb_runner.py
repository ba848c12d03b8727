"""The ZEB runner: an end-to-end RootSIFT run on real photos, resumability, stale-result guard, shards, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from gim_plugins.models.base import BaseMatcher
from gim_plugins.registry import register_matcher, unregister_matcher
from gim_plugins.types import MatchResult
from gim_plugins.zeb import runner
from gim_plugins.zeb.dataset import ZebImage
from gim_plugins.zeb.dumps import dump_file_name, read_dump
from gim_plugins.zeb.method import resolve_preset
from gim_plugins.zeb.protocols.gim import to_gim_coordinates
from gim_plugins.zeb.report import collect
from gim_plugins.zeb.runner import RunConfig, merge, run
from gim_plugins.zeb.store import MethodStore, StaleResultsError
from gim_plugins.zeb.treatment import gim_treatment
from gim_plugins.zeb.world import parse_shard

DUMP = dump_file_name("root_sift", "MiniHomography", "vanilla")
CONFIG = RunConfig(matcher="root_sift", progress=False)


@pytest.fixture(scope="module")
def reference(tiny_zeb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted single-process RootSIFT run on the tiny benchmark."""
    out = tmp_path_factory.mktemp("reference")
    summary = run(CONFIG, tiny_zeb, out)
    assert [s.dump is not None for s in summary.subsets] == [True]
    return out


def test_smoke_root_sift_run(reference: Path):
    rows = read_dump(reference / DUMP)
    assert len(rows) == 6
    assert [r.identifier for r in rows] == sorted(r.identifier for r in rows)
    assert rows[0].identifier == "astronaut#v0#v1"
    (result,) = collect(reference)
    sub = result.subsets["MiniHomography"]
    # real photos, 15–45° viewpoint changes at 320×240: RootSIFT solves most pairs to a few degrees
    assert sub.failures == 0 and sub.auc[20.0] > 0.5 and sub.auc[5.0] > 0.2
    assert result.cost is not None and result.cost.pairs == 6 and result.cost.pairs_per_second > 0
    assert result.cost.peak_rss_mb > 50 and result.cost.peak_cuda_mb is None
    sidecar = MethodStore(reference, "root_sift", "vanilla").read_sidecar()
    assert sidecar is not None
    fingerprint = sidecar["fingerprint"]
    assert fingerprint["conf"]["ratio_threshold"] == 0.8 and fingerprint["rescale"] == "scale"
    assert fingerprint["keypoint_offset"] == 0.0 and fingerprint["versions"]["torch"] == torch.__version__


def test_feature_interrupted_run_resumes_to_the_same_dump(tiny_zeb: Path, reference: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    calls = {"n": 0}
    evaluate = runner._evaluate

    def flaky(*args: Any, **kwargs: Any):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(runner, "_evaluate", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(CONFIG, tiny_zeb, tmp_path)
    monkeypatch.setattr(runner, "_evaluate", evaluate)
    records = tmp_path / "runs" / "root_sift@vanilla" / "MiniHomography" / "records-0-of-1.jsonl"
    assert len(records.read_text().splitlines()) == 2 and not (tmp_path / DUMP).exists()
    with open(records, "a") as handle:  # a writer killed in the middle of a line
        handle.write('{"file": "coffee-v0-v1.txt", "identif')
    summary = run(CONFIG, tiny_zeb, tmp_path)
    assert summary.subsets[0].processed_now == 4
    assert (tmp_path / DUMP).read_bytes() == (reference / DUMP).read_bytes()
    assert len(records.read_text().splitlines()) == 6
    again = run(CONFIG, tiny_zeb, tmp_path)  # nothing left to do; the dump is rebuilt identically
    assert again.subsets[0].processed_now == 0
    assert (tmp_path / DUMP).read_bytes() == (reference / DUMP).read_bytes()


def test_exception_stale_results_are_refused(tiny_zeb: Path, tmp_path: Path):
    run(RunConfig(matcher="root_sift", max_pairs=1, progress=False), tiny_zeb, tmp_path)
    other = RunConfig(matcher="root_sift", conf={"ratio_threshold": 0.7}, max_pairs=1, progress=False)
    with pytest.raises(StaleResultsError, match=r"ratio_threshold.*0\.8.*0\.7"):
        run(other, tiny_zeb, tmp_path)
    run(other, tiny_zeb, tmp_path, overwrite=True)
    sidecar = MethodStore(tmp_path, "root_sift", "vanilla").read_sidecar()
    assert sidecar is not None and sidecar["fingerprint"]["conf"]["ratio_threshold"] == 0.7
    # dumps of the same name without a run record (e.g. GIM's own) are not silently mixed either
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / DUMP).write_text((tmp_path / DUMP).read_text())
    with pytest.raises(StaleResultsError, match="without a run record"):
        run(CONFIG, tiny_zeb, foreign)


def test_feature_shards_and_merge(tiny_zeb: Path, reference: Path, tmp_path: Path):
    first = run(RunConfig(matcher="root_sift", shard=(0, 2), progress=False), tiny_zeb, tmp_path)
    assert first.subsets[0].dump is None and first.subsets[0].done == 3 and len(first.subsets[0].missing) == 3
    statuses = merge(tmp_path)
    assert [s.dump for s in statuses] == [None]
    second = run(RunConfig(matcher="root_sift", shard=(1, 2), progress=False), tiny_zeb, tmp_path)
    assert second.subsets[0].dump is not None
    assert (tmp_path / DUMP).read_bytes() == (reference / DUMP).read_bytes()
    (tmp_path / DUMP).unlink()
    assert [s.dump for s in merge(tmp_path, ["root_sift"])] == [tmp_path / DUMP]
    assert (tmp_path / DUMP).read_bytes() == (reference / DUMP).read_bytes()
    assert parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "1", "-1/2", "a/b"):
        with pytest.raises(ValueError, match="0 <= i < n"):
            parse_shard(bad)


def test_feature_torchrun_two_processes_gloo(tiny_zeb: Path, reference: Path, tmp_path: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "gim_plugins.zeb", "run", "--matcher", "root_sift", "--data", str(tiny_zeb), "--out", str(tmp_path),
           "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    store = tmp_path / "runs" / "root_sift@vanilla" / "MiniHomography"
    assert sorted(p.name for p in store.glob("records-*")) == ["records-0-of-2.jsonl", "records-1-of-2.jsonl"]
    assert (tmp_path / DUMP).read_bytes() == (reference / DUMP).read_bytes()


# ------------------------------------------------------------------------------------ keypoints and presets


def test_cardinality_keypoint_mapping():
    image = ZebImage(np.zeros((384, 1240, 3), np.uint8), (376, 1241), (376, 1240),
                     np.array([1241 / 1240, 1.0], np.float32))
    k = np.array([[0.0, 0.0], [100.0, 200.0]], np.float32)
    scaled = to_gim_coordinates(k, image, 0.5, "scale")  # GIM: (k + 0.5) · scale
    np.testing.assert_allclose(scaled, (k + 0.5) * [1241 / 1240, 1.0], rtol=1e-6)
    canvas = to_gim_coordinates(k, image, 0.5, "canvas")  # GIM DKM: over the padded canvas → original size
    np.testing.assert_allclose(canvas, (k + 0.5) * [1241 / 1240, 376 / 384], rtol=1e-6)
    assert scaled.dtype == np.float32
    with pytest.raises(ValueError, match="rescale"):
        to_gim_coordinates(k, image, 0.0, "bilinear")


class _Identity(BaseMatcher):
    """A dense test matcher: matches a fixed grid to itself."""

    name: ClassVar[str] = "zeb_test_identity"
    default_conf: ClassVar[dict[str, Any]] = {"step": 16, "shift": 0.0}
    gim_keypoint_offset: ClassVar[float] = 0.5

    def _init(self, conf: Any) -> None:
        pass

    def _match(self, image0: torch.Tensor, image1: torch.Tensor) -> MatchResult:
        h, w = image0.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(0, h, self.conf.step), torch.arange(0, w, self.conf.step), indexing="ij")
        k = torch.stack([xs.flatten(), ys.flatten()], 1).float()
        return self._result(k, k + self.conf.shift, torch.ones(len(k)), image0, image1)


PRESETS = {"zeb_test_identity-zeb": {"step": 8}, "zeb_test_identity-coarse": {"step": 32, "model": "other"}}


@pytest.fixture
def identity_matcher():
    register_matcher("zeb_test_identity", _Identity, overwrite=True)
    yield "zeb_test_identity"
    unregister_matcher("zeb_test_identity")


def test_feature_presets(identity_matcher: str):
    assert resolve_preset(identity_matcher, None) == (identity_matcher, "zeb_test_identity-zeb", {"step": 8})
    assert resolve_preset(identity_matcher, "none") == (identity_matcher, None, {})
    assert resolve_preset(None, "zeb_test_identity-zeb")[0] == identity_matcher
    assert resolve_preset("root_sift", None) == ("root_sift", None, {})
    with pytest.raises(ValueError, match="presets: zeb_test_identity-zeb"):
        resolve_preset(identity_matcher, "zeb_test_identity-fast")
    with pytest.raises(ValueError, match="for matcher 'other'"):
        resolve_preset(identity_matcher, "zeb_test_identity-coarse")
    with pytest.raises(ValueError, match="--matcher"):
        resolve_preset(None, None)


def test_feature_dense_matcher_run_uses_preset_and_version(identity_matcher: str, tiny_zeb: Path, tmp_path: Path):
    summary = run(RunConfig(matcher=identity_matcher, conf={"shift": 0.25}, max_pairs=2, progress=False),
                  tiny_zeb, tmp_path)
    assert summary.method == "zeb_test_identity vanilla"
    sidecar = MethodStore(tmp_path, "zeb_test_identity", "vanilla").read_sidecar()
    assert sidecar is not None
    fp = sidecar["fingerprint"]
    assert fp["preset"] == "zeb_test_identity-zeb" and fp["conf"] == {"step": 8, "shift": 0.25}
    assert fp["keypoint_offset"] == 0.5 and fp["rescale"] == "scale"
    rows = read_dump(tmp_path / dump_file_name("zeb_test_identity", "MiniHomography", "vanilla"))
    assert len(rows) == 2 and all(round(r.bef_num / r.bef_prec) == 40 * 30 for r in rows)  # Bef.Prec = num / all
    records = MethodStore(tmp_path, "zeb_test_identity", "vanilla").selected_records("MiniHomography")
    assert [r.num_matches for r in records] == [40 * 30, 40 * 30]
    assert json.loads((tmp_path / "runs" / "zeb_test_identity@vanilla" / "MiniHomography" /
                       "selection.json").read_text()) == ["astronaut-v0-v1.txt", "astronaut-v0-v2.txt"]


class _BatchingIdentity(_Identity):
    """The identity matcher, declaring batched matching and recording the batches it gets."""

    name: ClassVar[str] = "zeb_test_batching"
    supports_batching: ClassVar[bool] = True
    batches: ClassVar[list[int]] = []

    def match_prepared(self, prepared):  # type: ignore[no-untyped-def]
        type(self).batches.append(len(prepared))
        return super().match_prepared(prepared)


def test_feature_batched_run_equals_the_pair_by_pair_run(tiny_zeb: Path, tmp_path: Path):
    register_matcher("zeb_test_batching", _BatchingIdentity, overwrite=True)
    try:
        stores = {}
        for batch_size in (None, 2):
            _BatchingIdentity.batches.clear()
            out = tmp_path / f"batch-{batch_size}"
            run(RunConfig(matcher="zeb_test_batching", preset="none", conf={"shift": 0.25}, max_pairs=5,
                          progress=False, batch_size=batch_size), tiny_zeb, out)
            # without a batch size the CPU matches pair by pair, with one the pairs come in batches of 2
            assert _BatchingIdentity.batches == ([] if batch_size is None else [2, 2, 1])
            stores[batch_size] = MethodStore(out, "zeb_test_batching", "vanilla").selected_records("MiniHomography")
    finally:
        unregister_matcher("zeb_test_batching")
    serial, batched = stores[None], stores[2]
    assert [r.file for r in serial] == [r.file for r in batched] and len(serial) == 5
    for a, b in zip(serial, batched):
        assert (a.row, a.num_matches, a.num_inliers) == (b.row, b.num_matches, b.num_inliers)
        assert set(b.seconds) == {"load", "match", "pose"} and b.seconds["match"] >= 0


def test_feature_gim_dkm_uses_the_canvas_rule_and_its_zeb_preset(tiny_zeb: Path, tmp_path: Path):
    """gim_dkm gets GIM's canvas rescaling and corner offset; its ``gim_dkm-zeb`` preset is picked up."""
    import torch

    from gim_plugins.matching import load_matcher

    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny_dkm.ckpt"
    random_dkm = load_matcher("gim_dkm", pretrained=False)
    torch.save({"state_dict": {f"model.{k}": v for k, v in random_dkm.net.state_dict().items()}}, checkpoint)
    tiny = {"h": 96, "w": 128, "upsample": False, "num_samples": 100, "seed": 0}
    run(RunConfig(matcher="gim_dkm", weights=str(checkpoint), conf=tiny, max_pairs=1, progress=False), tiny_zeb,
        tmp_path / "dumps")
    store = MethodStore(tmp_path / "dumps", "gim_dkm", "tiny_dkm")
    sidecar = store.read_sidecar()
    assert sidecar is not None
    fp = sidecar["fingerprint"]
    assert fp["preset"] == "gim_dkm-zeb" and fp["rescale"] == "canvas" and fp["keypoint_offset"] == 0.5
    assert fp["conf"]["pad_to_aspect"] is False and fp["conf"]["h"] == 96
    assert len(store.selected_records("MiniHomography")) == 1


# ------------------------------------------------------------------------------------------ padding masks


class _MaskRecorder(_Identity):
    """``_Identity`` that records the masks the runner hands over; ``accepts_masks`` is set per test."""

    name: ClassVar[str] = "zeb_test_masks"
    calls: ClassVar[list[tuple[tuple[int, int], Any, Any]]] = []

    def match(self, image0: Any, image1: Any, *, mask0: Any = None, mask1: Any = None) -> MatchResult:
        self.calls.append((tuple(np.asarray(image0).shape[:2]), mask0, mask1))
        return super().match(image0, image1)


@pytest.fixture(scope="module")
def tiny_kitti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KITTI folder of 96×400 renders: not resized (GIM only shrinks), zero-padded bottom-right to 384×1240."""
    from zeb_helpers import write_tiny_subset

    root = tmp_path_factory.mktemp("tiny_kitti")
    write_tiny_subset(root, "kitti", size=(96, 400))
    return root


@pytest.mark.parametrize("declared", [True, False])
def test_feature_padding_masks_reach_matchers_that_declare_them(declared: bool, tiny_kitti: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_MaskRecorder, "accepts_masks", declared)
    monkeypatch.setattr(_MaskRecorder, "calls", [])
    register_matcher("zeb_test_masks", _MaskRecorder, overwrite=True)
    try:
        run(RunConfig(matcher="zeb_test_masks", subsets=["KITTI"], max_pairs=2, progress=False), tiny_kitti, tmp_path)
    finally:
        unregister_matcher("zeb_test_masks")
    assert len(_MaskRecorder.calls) == 2
    for canvas, mask0, mask1 in _MaskRecorder.calls:
        assert canvas == (384, 1240)
        if not declared:
            assert mask0 is None and mask1 is None
            continue
        for mask in (mask0, mask1):
            assert mask.shape == (384, 1240) and mask.dtype == bool
            assert mask[:96, :400].all() and mask.sum() == 96 * 400  # the image's pixels, the padding excluded
    sidecar = MethodStore(tmp_path, "zeb_test_masks", "vanilla").read_sidecar()
    assert sidecar is not None and sidecar["fingerprint"]["padding_mask"] is declared


def test_feature_unpadded_subsets_get_no_masks(tiny_zeb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_MaskRecorder, "accepts_masks", True)
    monkeypatch.setattr(_MaskRecorder, "calls", [])
    register_matcher("zeb_test_masks", _MaskRecorder, overwrite=True)
    try:
        run(RunConfig(matcher="zeb_test_masks", max_pairs=1, progress=False), tiny_zeb, tmp_path)
    finally:
        unregister_matcher("zeb_test_masks")
    assert [(mask0, mask1) for _, mask0, mask1 in _MaskRecorder.calls] == [(None, None)]


def test_feature_gim_loftr_declares_the_padding_mask():
    """gim_loftr is the matcher GIM's ZEB gives masks to, and its ``match`` takes them."""
    import inspect

    from gim_plugins.registry import get_matcher_class

    cls = get_matcher_class("gim_loftr")
    assert gim_treatment(cls).padding_mask is True and cls.accepts_masks is True
    assert {"mask0", "mask1"} <= set(inspect.signature(cls.match).parameters)
    assert not gim_treatment(get_matcher_class("gim_dkm")).padding_mask
