"""COLMAP models with observations: text and binary readers agree (pycolmap writes the binary files), the text
writer round-trips, quaternions convert both ways, calibration per camera model."""

from __future__ import annotations

import numpy as np
import pytest
from colmap_helpers import requires_pycolmap

from gim_plugins.colmap_ext.model import qvec_to_rotmat, read_text_model
from gim_plugins.colmap_ext.observations import (
    ObservedImage,
    ObservedModel,
    calibration,
    read_observed_model,
    rotmat_to_qvec,
    write_text_model,
)


def _model(seed: int = 0) -> ObservedModel:
    rng = np.random.default_rng(seed)
    points = {i + 1: rng.normal(0, 1, 3) + np.array([0, 0, 6]) for i in range(20)}
    cameras = {1: ("PINHOLE", 64, 48, np.array([50.0, 52.0, 32.5, 24.5])),
               2: ("SIMPLE_RADIAL", 80, 60, np.array([70.0, 40.5, 30.5, 0.02]))}
    images = {}
    for iid in (1, 2, 3):
        angle = 0.1 * iid
        R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
        ids = np.array([p for p in points if (p + iid) % 3 != 0] + [-1], dtype=np.int64)
        xy = rng.uniform(0, 60, (len(ids), 2))
        images[iid] = ObservedImage(iid, f"dir/im{iid}.png", 1 + iid % 2, R, rng.normal(0, 1, 3), xy, ids)
    return ObservedModel(cameras, images, points)


def _same(a: ObservedModel, b: ObservedModel) -> None:
    assert a.cameras.keys() == b.cameras.keys() and a.images.keys() == b.images.keys()
    for cid in a.cameras:
        assert a.cameras[cid][:3] == b.cameras[cid][:3] and np.allclose(a.cameras[cid][3], b.cameras[cid][3])
    for iid, image in a.images.items():
        other = b.images[iid]
        assert (image.name, image.camera_id) == (other.name, other.camera_id)
        assert np.allclose(image.R, other.R) and np.allclose(image.t, other.t) and np.allclose(image.xy, other.xy)
        assert np.array_equal(image.point3D_ids, other.point3D_ids)
    assert a.points.keys() == b.points.keys() and all(np.allclose(a.points[k], b.points[k]) for k in a.points)


def test_feature_text_round_trip(tmp_path):
    model = _model()
    write_text_model(model, tmp_path)
    _same(model, read_observed_model(tmp_path))
    measured = read_text_model(tmp_path)  # the measuring reader reads our files too
    assert measured.statistics()["registered"] == 3 and measured.statistics()["points"] == 20


def test_feature_tracks_and_correspondences():
    model = _model()
    shared = model.shared_points()
    expected = len({p for p in model.points if (p + 1) % 3 and (p + 2) % 3})
    assert shared[(1, 2)] == expected
    pairs = model.correspondences(1, 2)
    assert pairs.shape == (expected, 4)
    first = {int(p): i for i, p in enumerate(model.images[1].point3D_ids) if p >= 0}
    pid = sorted(set(first) & {int(p) for p in model.images[2].point3D_ids if p >= 0})[0]
    assert np.allclose(pairs[0, :2], model.images[1].xy[first[pid]] - 0.5)  # package convention


@requires_pycolmap
def test_feature_binary_equals_text(tmp_path):
    """pycolmap reads our text model and writes it back in binary; our binary reader gives the same model."""
    import pycolmap

    model = _model(3)
    model.cameras[2] = ("PINHOLE", 80, 60, np.array([70.0, 71.0, 40.5, 30.5]))
    write_text_model(model, tmp_path / "text")
    reconstruction = pycolmap.Reconstruction()
    reconstruction.read_text(str(tmp_path / "text"))
    (tmp_path / "binary").mkdir()
    reconstruction.write_binary(str(tmp_path / "binary"))
    assert not (tmp_path / "binary" / "images.txt").exists()
    _same(model, read_observed_model(tmp_path / "binary"))


def test_smoke_quaternions_and_calibration():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        R = qvec_to_rotmat(q)
        assert np.allclose(qvec_to_rotmat(rotmat_to_qvec(R)), R)
        assert np.allclose(rotmat_to_qvec(R), q * np.sign(q[0]))
    K, pinhole = calibration("SIMPLE_RADIAL", np.array([100.0, 50.0, 40.0, 0.0]))
    assert pinhole and np.allclose(K, [[100, 0, 50], [0, 100, 40], [0, 0, 1]])
    assert not calibration("OPENCV", np.array([100.0, 101.0, 50.0, 40.0, 0.1, 0, 0, 0]))[1]
    assert calibration("PINHOLE", np.array([100.0, 101.0, 50.0, 40.0]))[0][1, 1] == 101.0


def test_exception_missing_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="no COLMAP model"):
        read_observed_model(tmp_path)
