"""hloc's HDF5 layouts written and read without hloc (the layouts hloc 1.5 writes, listed in gim_plugins.h5io)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from gim_plugins import h5io


def test_feature_sparse_features_layout(tmp_path) -> None:
    path = tmp_path / "feats.h5"
    kp = np.array([[1.5, 2.25], [10.0, 20.0], [30.5, 0.0]], dtype=np.float32)
    desc = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    with h5io.atomic_h5(path) as handle:
        h5io.write_features(handle, "seq/a.png", kp, descriptors=desc, scores=[0.1, 0.2, 0.3], image_size=(480, 640),
                            uncertainty=2.0)
    with h5py.File(path, "r") as handle:
        group = handle["seq"]["a.png"]  # "/" in names nests groups, as in hloc
        assert group["keypoints"].dtype == np.float16 and group["keypoints"].shape == (3, 2)
        assert group["descriptors"].shape == (4, 3) and group["descriptors"].dtype == np.float16
        assert group["scores"].dtype == np.float16
        assert group["image_size"].dtype == np.int64 and group["image_size"][()].tolist() == [640, 480]  # (W, H)
        np.testing.assert_allclose(group["descriptors"][()].T, desc, atol=1e-3)
    keypoints, uncertainty = h5io.read_keypoints(path, "seq/a.png", with_uncertainty=True)
    np.testing.assert_array_equal(keypoints, kp)  # these values are exact in float16
    assert uncertainty == 2.0 and keypoints.dtype == np.float32
    assert h5io.list_h5_names(path) == ["seq/a.png"]


def test_feature_dense_features_layout(tmp_path) -> None:
    path = tmp_path / "dense.h5"
    kp = np.array([[0.123456, 7.654321]], dtype=np.float32)
    with h5io.atomic_h5(path) as handle:
        h5io.write_features(handle, "a.png", kp, scores=[0.5], dense=True)
    with h5py.File(path, "r") as handle:
        assert set(handle["a.png"]) == {"keypoints", "score"}  # singular "score", no image_size, float32
        assert handle["a.png"]["keypoints"].dtype == np.float32
    np.testing.assert_array_equal(h5io.read_keypoints(path, "a.png"), kp)


def test_feature_matches_roundtrip_and_reversed_lookup(tmp_path) -> None:
    path = tmp_path / "matches.h5"
    matches = np.array([[0, 5], [2, 1], [3, 0]])
    with h5io.atomic_h5(path) as handle:
        h5io.write_matches(handle, "dir/a.png", "b.png", matches, 4, scores=[0.9, 0.8, 0.7])
    with h5py.File(path, "r") as handle:
        group = handle["dir-a.png"]["b.png"]
        assert group["matches0"].dtype == np.int16 and group["matches0"][()].tolist() == [5, -1, 1, 0]
        assert group["matching_scores0"].dtype == np.float16
    got, scores = h5io.read_matches(path, "dir/a.png", "b.png")
    np.testing.assert_array_equal(got, matches)
    np.testing.assert_allclose(scores, [0.9, 0.8, 0.7], atol=1e-3)
    flipped, _ = h5io.read_matches(path, "b.png", "dir/a.png")
    np.testing.assert_array_equal(flipped, matches[:, ::-1])
    with pytest.raises(KeyError, match="not found"):
        h5io.read_matches(path, "a.png", "c.png")


def test_feature_old_pair_key_and_dense_matches(tmp_path) -> None:
    path = tmp_path / "matches.h5"
    with h5py.File(path, "w") as handle:
        group = handle.create_group(h5io.names_to_pair_old("x.png", "y.png"))
        group.create_dataset("matches0", data=np.array([1, -1], dtype=np.int16))
        group.create_dataset("matching_scores0", data=np.array([0.5, 0], dtype=np.float16))
    got, _ = h5io.read_matches(path, "y.png", "x.png")
    assert got.tolist() == [[1, 0]]
    dense = (np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]]), np.array([0.25]))
    with h5io.atomic_h5(path) as handle:
        h5io.write_matches(handle, "x.png", "z.png", [[0, 0]], 1, dense=dense)
    with h5py.File(path, "r") as handle:
        assert handle["x.png"]["z.png"]["matches0"].dtype == np.int32
        assert "x.png_y.png" in handle  # the earlier content survived the atomic append
    k0, k1, scores = h5io.read_dense_matches(path, "z.png", "x.png")
    assert k0.tolist() == [[3.0, 4.0]] and k1.tolist() == [[1.0, 2.0]] and scores.tolist() == [0.25]


def test_exception_atomic_write_keeps_old_file(tmp_path) -> None:
    path = tmp_path / "feats.h5"
    with h5io.atomic_h5(path) as handle:
        h5io.write_features(handle, "a.png", np.zeros((2, 2)))
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="killed"), h5io.atomic_h5(path) as handle:
        h5io.write_features(handle, "b.png", np.zeros((2, 2)))
        raise RuntimeError("killed")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.h5"]  # no temporary left behind


def test_exception_bad_input(tmp_path) -> None:
    with pytest.raises(ValueError, match="more than once"):
        h5io.matches0_from_pairs([[0, 1], [0, 2]], 3)
    with pytest.raises(ValueError, match="out of range"):
        h5io.matches0_from_pairs([[3, 1]], 3)
    with pytest.raises(ValueError, match="descriptors"), h5io.atomic_h5(tmp_path / "f.h5") as handle:
        h5io.write_features(handle, "a.png", np.zeros((2, 2)), descriptors=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="int16"), h5io.atomic_h5(tmp_path / "m.h5") as handle:
        h5io.write_matches(handle, "a.png", "b.png", [[0, 40000]], 1)
    assert not list(tmp_path.iterdir())  # failed batches leave nothing behind
    with pytest.raises(KeyError, match="no keypoints"):
        with h5io.atomic_h5(tmp_path / "g.h5") as handle:
            h5io.write_features(handle, "a.png", np.zeros((1, 2)))
        h5io.read_keypoints(tmp_path / "g.h5", "b.png")


def test_feature_pairs_file(tmp_path) -> None:
    path = h5io.write_pairs(tmp_path / "pairs.txt", [("a.png", "b.png"), ("b.png", "c/d.png")])
    path.write_text(path.read_text() + "\n# comment\n")
    assert h5io.read_pairs(path) == [("a.png", "b.png"), ("b.png", "c/d.png")]
    with pytest.raises(ValueError, match="whitespace"):
        h5io.write_pairs(tmp_path / "bad.txt", [("a b.png", "c.png")])
    (tmp_path / "broken.txt").write_text("a.png b.png c.png\n")
    with pytest.raises(ValueError, match=r"broken\.txt:1"):
        h5io.read_pairs(tmp_path / "broken.txt")
