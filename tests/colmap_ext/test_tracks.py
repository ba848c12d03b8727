"""Dense matches → shared keypoints: merging rules, one-to-one re-indexing, and longer tracks on the real scene."""

from __future__ import annotations

import numpy as np
import pytest
from colmap_helpers import dense_raw

from gim_plugins.colmap_ext import tracks
from gim_plugins.colmap_ext.correspondences import indices_of, track_statistics
from gim_plugins.conf import ConfError


def test_feature_nearby_observations_merge_far_ones_do_not() -> None:
    points = np.array([[10.0, 10.0], [10.3, 10.2], [10.1, 9.9], [14.0, 10.0], [30.0, 30.0]])
    weights = np.array([1.0, 2.0, 1.0, 1.0, 0.5])
    kp, weight, index = tracks.merge_keypoints(points, weights, grid=0.5, radius=1.5)
    assert len(kp) == 3
    assert index[0] == index[1] == index[2] != index[3] != index[4]
    np.testing.assert_allclose(kp[index[0]], np.average(points[:3], axis=0, weights=weights[:3]), atol=1e-5)
    assert weight[index[0]] == pytest.approx(4.0)  # accumulated match scores
    exact, _, exact_index = tracks.merge_keypoints(points, weights, grid=0.0, radius=0.0)
    assert len(exact) == 5 and sorted(exact_index.tolist()) == [0, 1, 2, 3, 4]


def test_feature_unique_matches_keep_the_best_score() -> None:
    idx0 = np.array([0, 0, 1, 2, 3])
    idx1 = np.array([5, 6, 6, 7, 7])
    scores = np.array([0.9, 0.95, 0.5, 0.2, 0.3])
    rows = tracks.unique_matches(idx0, idx1, scores)
    assert rows.tolist() == [1, 4]  # 0→6 (0.95) beats 0→5 and 1→6; 3→7 (0.3) beats 2→7
    assert len(set(idx0[rows])) == len(rows) == len(set(idx1[rows]))


def test_cardinality_build_correspondences() -> None:
    raw = {("a", "b"): (np.array([[1.0, 1.0], [5.0, 5.0]]), np.array([[2.0, 2.0], [6.0, 6.0]]), np.array([1.0, 0.5])),
           ("a", "c"): (np.array([[1.2, 1.1], [9.0, 9.0]]), np.array([[3.0, 3.0], [7.0, 7.0]]), np.array([1.0, 1.0])),
           ("b", "c"): (np.array([[2.1, 2.0]]), np.array([[3.1, 2.9]]), np.array([0.8]))}
    sizes = {"a": (20, 20), "b": (20, 20), "c": (20, 20)}
    corr = tracks.build_correspondences(raw, sizes)
    corr.validate()
    assert corr.dense and {n: len(k) for n, k in corr.keypoints.items()} == {"a": 3, "b": 2, "c": 2}
    stats = track_statistics(corr.keypoints, corr.matches)
    assert stats["share_long_tracks"] > 0 and stats["inconsistent_tracks"] == 0  # a-b-c closes one 3-view track
    naive = tracks.build_correspondences(raw, sizes, {"mode": "none"})
    assert track_statistics(naive.keypoints, naive.matches)["mean_track_length"] == 2.0
    with pytest.raises(ConfError, match="radius"):
        tracks.build_correspondences(raw, sizes, {"radiuss": 2.0})
    with pytest.raises(ValueError, match="mode"):
        tracks.build_correspondences(raw, sizes, {"mode": "cluster"})
    with pytest.raises(KeyError, match="no image size"):
        tracks.build_correspondences(raw, {"a": (20, 20)})


def test_feature_merging_lengthens_tracks_on_the_scene(scene_views) -> None:
    """Ground-truth dense matches of 8 real-scene views: pair-specific points give tracks of length 2 exactly;
    merged, the same matches share keypoints observed in 3+ images."""
    raw = dense_raw(scene_views, num_matches=2000)
    sizes = {v.name: v.size for v in scene_views}
    naive = tracks.build_correspondences(raw, sizes, {"mode": "none"}).summary()
    merged_corr = tracks.build_correspondences(raw, sizes)
    merged = merged_corr.summary()
    assert naive["mean_track_length"] == 2.0 and naive["share_long_tracks"] == 0.0
    assert naive["mean_keypoints"] == 7 * 2000  # every observation is its own keypoint
    assert merged["mean_track_length"] > 2.2 and merged["share_long_tracks"] > 0.15
    assert merged["mean_keypoints"] < 0.9 * naive["mean_keypoints"]
    for pairs in merged_corr.matches.values():
        assert len(pairs) > 0.85 * 2000  # merging keeps almost every match (one-to-one after re-indexing)


def test_feature_indices_of() -> None:
    keypoints = np.random.default_rng(0).uniform(0, 100, (50, 2)).astype(np.float32)
    assert indices_of(keypoints, keypoints[[7, 3, 7]]).tolist() == [7, 3, 7]
    assert indices_of(keypoints, np.array([[-1.0, -1.0]])).tolist() == [-1]
    assert indices_of(np.zeros((0, 2)), keypoints[:2]).tolist() == [-1, -1]
