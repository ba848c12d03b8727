"""The survey of the motorcycle scene: deterministic cameras, narrow views, a ground-truth overlap that falls off
with the distance on the scan grid."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gim_plugins.datasets.survey import grid_shape, render_motorcycle_survey, survey_cameras, view_overlap

SIZE = (192, 288)


@pytest.fixture(scope="module")
def views():
    return render_motorcycle_survey(12)


def test_cardinality_grid_shape() -> None:
    assert grid_shape(1) == (1, 2)
    assert grid_shape(60) == (6, 10)
    for count in (5, 12, 30, 61):
        rows, cols = grid_shape(count)
        assert rows * cols >= count and (rows - 1) * cols < count
    with pytest.raises(ValueError, match="num_views"):
        grid_shape(0)


def test_feature_cameras_are_deterministic_per_seed() -> None:
    a, b, c = survey_cameras(8, seed=0), survey_cameras(8, seed=0), survey_cameras(8, seed=1)
    assert len(a) == 8
    assert all(np.array_equal(x.R, y.R) and np.array_equal(x.t, y.t) for x, y in zip(a, b))
    assert not all(np.allclose(x.t, z.t) for x, z in zip(a, c))
    for camera in a:
        assert camera.size == SIZE
        assert np.allclose(camera.R @ camera.R.T, np.eye(3), atol=1e-9)


def test_feature_views_and_overlap(views) -> None:
    assert [v.name for v in views] == [f"survey_{i:03d}.png" for i in range(12)]
    assert all(v.image.shape == (*SIZE, 3) and v.image.dtype == np.uint8 for v in views)
    overlap = view_overlap(views)
    assert overlap.shape == (12, 12)
    assert np.array_equal(np.diag(overlap), np.ones(12))
    assert ((overlap >= 0) & (overlap <= 1)).all()
    # consecutive views in the scan overlap; views at opposite corners of the grid share little or nothing
    consecutive = np.mean([overlap[i, i + 1] for i in range(11)])
    assert consecutive > 0.3
    assert overlap[0, 11] < 0.1 and overlap[11, 0] < 0.1
    assert (np.minimum(overlap, overlap.T) < 0.05).mean() > 0.3  # most pairs of a survey do not overlap


def test_exception_overlap_needs_depth(views) -> None:
    flat = [dataclasses.replace(v, depth=None) for v in views[:2]]
    with pytest.raises(ValueError, match="no depth map"):
        view_overlap(flat)
