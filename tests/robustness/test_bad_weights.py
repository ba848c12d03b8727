"""Truncated, random, pickled and foreign checkpoints; corrupted and stale weights in the cache.

All rows work on copies (``GIM_WEIGHTS_DIR``/``XDG_CACHE_HOME`` point into a temporary folder, see conftest): a
broken file is named as broken (never as "dangerous"), a pickle that needs trust is named as such, a damaged
registered file is refused at load time and never listed as verified, and a slim copy of another file is never used.
"""

from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path

import pytest
import torch
from robust_helpers import check_error, check_ok, record

from gim_plugins import weights
from gim_plugins.weights import WeightSpec


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """One file per kind of bad checkpoint (and a good, a legacy-format and a trust-needing one)."""
    root = tmp_path_factory.mktemp("checkpoints")
    state = {"w": torch.arange(6, dtype=torch.float32)}
    files = {name: root / f"{name}.pth" for name in ("good", "legacy", "truncated", "truncated_legacy", "random",
                                                     "empty", "foreign_zip", "plain_pickle", "needs_trust",
                                                     "png", "flipped", "foreign")}
    torch.save(state, files["good"])
    torch.save(state, files["legacy"], _use_new_zipfile_serialization=False)
    good, legacy = files["good"].read_bytes(), files["legacy"].read_bytes()
    files["truncated"].write_bytes(good[: len(good) // 2])
    files["truncated_legacy"].write_bytes(legacy[: len(legacy) // 2])
    files["random"].write_bytes(os.urandom(4096))
    files["empty"].write_bytes(b"")
    with zipfile.ZipFile(files["foreign_zip"], "w") as archive:
        archive.writestr("readme.txt", "not a checkpoint")
    import pickle

    files["plain_pickle"].write_bytes(pickle.dumps({"w": [1, 2, 3]}, protocol=4))
    torch.save({"state_dict": state, "hparams": argparse.Namespace(lr=0.1)}, files["needs_trust"])
    files["png"].write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    flipped = bytearray(good)
    start = flipped.find(b"data.pkl") + 40
    flipped[start : start + 16] = b"\xff" * 16
    files["flipped"].write_bytes(bytes(flipped))
    torch.save({"some.other.network": torch.zeros(3)}, files["foreign"])
    return files


LOAD_ROWS = [
    ("truncated-zip", "truncated", r"truncated or damaged zip archive"),
    ("truncated-legacy", "truncated_legacy", r"damaged or truncated checkpoint"),
    ("random-bytes", "random", r"neither a torch checkpoint .* random bytes"),
    ("empty", "empty", r"neither a torch checkpoint"),
    ("foreign-zip", "foreign_zip", r"a zip archive without torch's data\.pkl"),
    ("plain-pickle", "plain_pickle", r"a plain Python pickle, not a torch checkpoint"),
    ("png-renamed", "png", r"neither a torch checkpoint"),
    ("flipped-bytes", "flipped", r"damaged"),
    ("needs-trust", "needs_trust", r"pickled Python objects .*it needs argparse.Namespace.*gim weights import"),
]


@pytest.mark.parametrize(("key", "pattern"), [r[1:] for r in LOAD_ROWS], ids=[r[0] for r in LOAD_ROWS])
def test_exception_bad_checkpoint_as_weights(gim, inputs, tmp_path, checkpoints, key, pattern) -> None:
    """``--weights FILE``: the file is classified before anything is unpickled."""
    before = checkpoints[key].read_bytes()
    check_error(gim("match", inputs["left"], inputs["right"], "--matcher", "gim_lightglue", "--weights",
                    checkpoints[key], "--out", tmp_path), 2, pattern)
    assert checkpoints[key].read_bytes() == before  # left intact
    assert not any(tmp_path.iterdir())


def test_exception_foreign_checkpoint_names_the_keys(gim, inputs, tmp_path, checkpoints) -> None:
    check_error(gim("match", inputs["left"], inputs["right"], "--matcher", "gim_lightglue", "--weights",
                    checkpoints["foreign"], "--out", tmp_path), 2, r"some\.other\.network|superpoint|model\.")


IMPORT_ROWS = [
    ("random", "random", (), r"neither a torch checkpoint"),
    ("random-trusted", "random", ("--trust",), r"neither a torch checkpoint"),
    ("truncated-trusted", "truncated", ("--trust",), r"truncated or damaged zip"),
    ("flipped-trusted", "flipped", ("--trust",), r"damaged"),
    ("plain-pickle-trusted", "plain_pickle", ("--trust",), r"a plain Python pickle"),
    ("needs-trust", "needs_trust", (), r"contains pickled Python objects"),
    ("unknown-name", "good", ("--name", "gim_nothing"), r"unknown weights 'gim_nothing'; known:"),
]


@pytest.mark.parametrize(("key", "extra", "pattern"), [r[1:] for r in IMPORT_ROWS], ids=[r[0] for r in IMPORT_ROWS])
def test_exception_weights_import(gim, checkpoints, key, extra, pattern) -> None:
    name = () if "--name" in extra else ("--name", "gim_roma_100h")
    check_error(gim("weights", "import", checkpoints[key], *name, *extra), 2, pattern)
    assert weights.status("gim_roma_100h").state == "missing"  # nothing was copied into the cache


def test_feature_trusted_pickle_imports_as_a_safe_copy(gim, checkpoints, scratch_weights) -> None:
    outcome = gim("weights", "import", checkpoints["needs_trust"], "--name", "gim_roma_100h", "--trust")
    check_ok(outcome)
    loaded = weights.load_state_dict_file(weights.resolve_weights("gim_roma_100h", verify=True))
    assert torch.equal(loaded["w"], torch.arange(6, dtype=torch.float32))
    for path in scratch_weights.glob("gim_roma_100h*"):
        path.unlink()


# --------------------------------------------------------------------------------------- the weight cache


def _flip(path: Path, keep_mtime: bool = True) -> None:
    stat = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(stat.st_size // 2)
        handle.write(os.urandom(16))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.fixture
def damaged(offline_weights) -> Path:
    """A copy of aliked_lightglue.pth with 16 bytes flipped (mtime kept), restored afterwards."""
    path = offline_weights / "aliked_lightglue.pth"
    original = path.read_bytes()
    weights.verify_weights("aliked_lightglue")
    _flip(path)
    yield path
    path.write_bytes(original)
    weights.verify_weights("aliked_lightglue")


def test_exception_damaged_cached_weights_refused(gim, inputs, tmp_path, damaged) -> None:
    outcome = gim("match", inputs["left"], inputs["right"], "--matcher", "aliked_lightglue", "--out", tmp_path)
    check_error(outcome, 2, r"aliked_lightglue\.pth is not the official aliked_lightglue checkpoint .* `gim weights "
                            r"verify aliked_lightglue`, then `gim weights fetch aliked_lightglue --force`")
    assert not any(tmp_path.iterdir())


def test_feature_damaged_weights_never_listed_as_verified(gim, damaged) -> None:
    listing = gim("weights", "list")
    check_ok(listing)
    line = next(line for line in listing.out.splitlines() if line.startswith("aliked_lightglue "))
    assert "verified" not in line.replace("not yet verified", "")
    verify = gim("weights", "verify", "aliked_lightglue")
    assert verify.code == 1 and "HASH MISMATCH" in verify.out
    record("clear")


def test_feature_damaged_weights_load_with_explicit_override(damaged, monkeypatch, caplog) -> None:
    from gim_plugins import load_matcher

    monkeypatch.setenv("GIM_WEIGHTS_ALLOW_MISMATCH", "1")
    matcher = load_matcher("aliked_lightglue")
    assert "aliked_lightglue.pth" in matcher.weights_id
    assert "GIM_WEIGHTS_ALLOW_MISMATCH is set" in caplog.text
    record("ok")


@pytest.fixture
def test_spec(monkeypatch, scratch_weights) -> WeightSpec:
    """A registered checkpoint without an official hash (as gim_roma_100h), for the slim-copy rows."""
    spec = WeightSpec(name="robust_ckpt", file_name="robust_ckpt.pth", description="test", license="test")
    monkeypatch.setitem(weights.WEIGHTS, spec.name, spec)
    yield spec
    for path in scratch_weights.glob("robust_ckpt*"):
        path.unlink()


def _ckpt(path: Path, value: float) -> Path:
    torch.save({"w": torch.full((4,), value)}, path)
    return path


def test_feature_stale_slim_copy_is_never_used(tmp_path, test_spec) -> None:
    """import A --slim, then import B: B is loaded, A's slim copy is gone (and would be ignored if put back)."""
    first, second = _ckpt(tmp_path / "a.pth", 1.0), _ckpt(tmp_path / "b.pth", 2.0)
    weights.import_weights(first, "robust_ckpt", slim=True)
    slim = weights.resolve_weights("robust_ckpt", verify=True)
    assert slim.name.endswith(".slim.pt")
    saved_slim = slim.read_bytes()
    weights.import_weights(second, "robust_ckpt")
    path = weights.resolve_weights("robust_ckpt", verify=True)
    assert path.name == "robust_ckpt.pth" and float(weights.load_state_dict_file(path)["w"][0]) == 2.0
    slim.write_bytes(saved_slim)  # A's slim copy put back by hand: still not used, not listed
    assert weights.resolve_weights("robust_ckpt", verify=True).name == "robust_ckpt.pth"
    assert weights.status("robust_ckpt").slim is None
    record("ok")


def test_exception_replaced_file_without_official_hash_refused(tmp_path, test_spec, scratch_weights) -> None:
    """A file without an official hash is checked against the one imported: replacing it by hand is caught."""
    weights.import_weights(_ckpt(tmp_path / "a.pth", 1.0), "robust_ckpt")
    _ckpt(scratch_weights / "robust_ckpt.pth", 3.0)  # someone overwrites the cached file
    with pytest.raises(weights.HashMismatchError, match=r"robust_ckpt\.pth is not the imported robust_ckpt"):
        weights.resolve_weights("robust_ckpt", verify=True)
    assert weights.status("robust_ckpt", rehash=True).state == "mismatch"
    record("clear")
