"""GIM's chaining rules on arrays: linking, start frames, targets, hops, retries, the missing-hop rule, the cache."""

from __future__ import annotations

import numpy as np
import pytest

from gim_plugins.training.video import chain

WIDTH = 100


def _track_label(keys: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """Labels whose both ends sit on the pixels ``keys`` (x + y·WIDTH), the far end moved by ``shift``."""
    x, y = (keys % WIDTH).astype(np.float32), (keys // WIDTH).astype(np.float32)
    return np.stack([x, y, x + shift, y], axis=1).astype(np.float32)


def test_feature_link_joins_through_shared_rounded_pixels() -> None:
    a = np.array([[1, 1, 10.2, 3.4], [2, 2, 20.0, 5.0], [3, 3, 30.0, 7.0]], np.float32)
    b = np.array([[10.4, 2.6, 50, 50], [29.6, 7.49, 60, 60], [90, 9, 70, 70]], np.float32)
    out = chain.link(a, b, WIDTH, min_final_matches=2)
    assert out.dtype == np.float32
    assert out.tolist() == [[1, 1, 50, 50], [3, 3, 60, 60]]  # (10.2, 3.4) ~ (10.4, 2.6); (30, 7) ~ (29.6, 7.49)
    assert chain.link(a, b, WIDTH, min_final_matches=3) is None


def test_feature_link_last_point_per_pixel_wins_and_pairs_are_unique() -> None:
    a = np.array([[0, 0, 5, 5], [1, 1, 5.2, 4.8], [2, 2, 7, 7]], np.float32)  # rows 0 and 1 share pixel (5, 5)
    b = np.array([[5.1, 5.1, 40, 40], [4.9, 5.3, 41, 41], [7, 7, 42, 42]], np.float32)  # rows 0 and 1 too
    out = chain.link(a, b, WIDTH, min_final_matches=1)
    assert out.tolist() == [[1, 1, 41, 41], [2, 2, 42, 42]]


def test_feature_link_orders_rows_by_the_first_label() -> None:
    keys = np.arange(300, 900)
    a = _track_label(keys)[::-1].copy()
    b = _track_label(np.random.default_rng(0).permutation(keys), shift=1)
    out = chain.link(a, b, WIDTH, min_final_matches=600)
    assert np.array_equal(out[:, :2], a[:, :2])
    assert np.array_equal(out[:, 2], a[:, 2] + 1)


def test_feature_start_frames_follow_gims_checks() -> None:
    def record(starts: list[int], skip: int, count: int = 100) -> tuple[np.ndarray, np.ndarray]:
        idxs = np.array([(s, s + skip) for s in starts], np.int64).reshape(-1, 2)
        return np.full(len(idxs), count), idxs

    every = list(range(0, 200, 10))
    records = {
        10: [record(every, 10), record([s for s in every if s != 70], 10)],  # 70 missing at 10 in one variant
        20: [record(every, 20), record(every, 20, count=1)],  # counts do not matter below the largest skip
        40: [record(every, 40), record([s for s in every if s != 120], 40)],
    }
    records[40][0][0][every.index(30)] = 32  # not more than 32 labels: 30 cannot start
    starts = chain.start_frames(records, min_filter_matches=32)[:, 0].tolist()
    # s needs s and s+40 at 40 (with > 32), s and s+20 at 20, s..s+30 at 10; 190's continuation is absent
    assert 0 in starts and 10 in starts
    assert 30 not in starts and 70 - 40 not in starts  # 30: too few labels; s + 40 = 70 would be fine at 40
    for s in (40, 50, 60, 70):  # 70 - m·10 for m = 0..3: 70 is missing at skip 10
        assert s not in starts
    assert 120 not in starts and 80 not in starts  # 120 missing at 40, so 80 has no continuation either
    assert max(starts) <= 150


def test_feature_start_frames_for_one_and_two_skips() -> None:
    idxs = np.array([(s, s + 20) for s in range(0, 100, 10)], np.int64)
    one = chain.start_frames({20: [(np.full(10, 50), idxs)]}, 32)
    assert one[:, 0].tolist() == list(range(0, 80, 10))  # s + 20 must also start a pair
    small = np.array([(s, s + 10) for s in range(0, 100, 10) if s != 40], np.int64)
    two = chain.start_frames({10: [(np.full(9, 5), small)], 20: [(np.full(10, 50), idxs)]}, 32)
    assert two[:, 0].tolist() == [0, 10, 20, 50, 60, 70]  # s and s+10 at skip 10: not 30, 40


def test_feature_target_pairs_are_clipped_and_filtered() -> None:
    starts = np.array([[0, 40], [10, 50], [200, 240]], np.int64)
    assert chain.target_pairs(starts, 40, step=1000) == [(0, 240), (10, 240), (200, 240)]
    assert chain.target_pairs(starts, 40, step=2) == [(0, 80), (10, 90), (200, 240)]
    assert chain.target_pairs(starts, 40, step=0) == [(0, 40), (10, 50), (200, 240)]
    assert chain.target_pairs(np.zeros((0, 2), np.int64), 40, 1000) == []


def _store(pairs: dict[tuple[int, int], np.ndarray]) -> chain.Reader:
    def read(skip: int, pair: tuple[int, int]) -> np.ndarray | None:
        return pairs.get(pair) if pair[1] - pair[0] == skip else None

    return read


KEYS = np.arange(2000, 2700)  # 700 shared pixels: every link succeeds


def test_feature_chain_runs_over_hops_and_shortens_on_failure() -> None:
    good = {(a, a + 10): _track_label(KEYS) for a in range(0, 100, 10)}
    good[(50, 60)] = _track_label(KEYS + 5000)  # links to nothing: the chain stops at 50 …
    label, first, last = chain.Chainer(_store(good), WIDTH).propagate(0, 100, [10])
    assert (first, last) == (0, 50) and len(label) == len(KEYS)
    shortening = {(a, a + 20): _track_label(KEYS) for a in range(0, 100, 20)}
    shortening.update({(a, a + 10): _track_label(KEYS) for a in range(0, 100, 10)})
    shortening[(40, 60)] = shortening[(50, 60)] = _track_label(KEYS + 5000)
    # … and with skips 10/20 the failing 20-hop (40, 60) is replaced by (40, 50) from the 10-hops
    label, first, last = chain.Chainer(_store(shortening), WIDTH).propagate(0, 100, [10, 20])
    assert (first, last) == (0, 50)


def test_feature_missing_first_hop_gim_rule_and_stop() -> None:
    store = _store({(10, 20): _track_label(KEYS, shift=3)})  # (0, 10) has no labels
    label, first, last = chain.Chainer(store, WIDTH, missing_hop="skip").propagate(0, 20, [10])
    assert (first, last) == (0, 20)  # GIM's rule: the (10, 20) label is reported as (0, 20)
    assert np.array_equal(label, _track_label(KEYS, shift=3))
    assert chain.Chainer(store, WIDTH, missing_hop="stop").propagate(0, 20, [10]) == (None, None, None)
    with pytest.raises(ValueError, match="missing_hop"):
        chain.Chainer(store, WIDTH, missing_hop="maybe")


def _epipolar_world(n: int = 900) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    points = np.column_stack([rng.uniform(-2, 2, n), rng.uniform(-1.5, 1.5, n), rng.uniform(4, 9, n)])
    K = np.array([[300.0, 0, 320], [0, 300.0, 240], [0, 0, 1]])
    return points, K


def _view(points: np.ndarray, K: np.ndarray, frame: int) -> np.ndarray:
    uv = (points - np.array([0.01 * frame, 0.0, 0.0])) @ K.T
    return (uv[:, :2] / uv[:, 2:]).astype(np.float32)


def test_feature_propagate_pair_retries_single_hops_and_rejects_smallest() -> None:
    points, K = _epipolar_world()

    def label(a: int, b: int) -> np.ndarray:
        return np.concatenate([_view(points, K, a), _view(points, K, b)], axis=1)

    # the 40-hop (40, 80) and the smaller hops from 40 link nowhere: the chain reaches one 40-hop, (0, 40), which is
    # then chained again from the 10/20-hops alone
    pairs = {(a, a + k): label(a, a + k) for k in (10, 20, 40) for a in range(0, 200, 10)}
    for hop in [(40, 80), (40, 60), (40, 50)]:
        pairs[hop] = pairs[hop] + np.float32(1000)
    outcome = chain.propagate_pair(chain.Chainer(_store(pairs), 640), (0, 200), [10, 20, 40])
    assert outcome.reached == (0, 40) and outcome.label is not None
    # the retry's label is the 20-hop chain alone (one row per point); the first pass also had the stored 40-label
    assert 64 <= len(outcome.label) <= len(points)
    first_pass, _, _ = chain.Chainer(_store(pairs), 640).propagate(0, 200, [10, 20, 40])
    assert len(first_pass) > 1.5 * len(points)
    view0, view40 = _view(points, K, 0), _view(points, K, 40)
    which = np.argmin(np.abs(outcome.label[:, None, :2] - view0[None]).sum(-1), axis=1)
    assert np.mean(np.abs(outcome.label[:, 2:] - view40[which]).max(1) < 1e-3) > 0.95
    # only the smallest skip is reachable: a bad pair
    tiny = _store({(0, 10): label(0, 10), (0, 20): label(0, 20) + np.float32(1000)})
    bad = chain.propagate_pair(chain.Chainer(tiny, 640), (0, 20), [10, 20])
    assert bad.label is None and bad.reached == (0, 10) and "smallest" in bad.reason


def test_feature_propagate_pair_needs_64_inliers() -> None:
    points, K = _epipolar_world(60)
    store = _store({(a, a + 10): np.concatenate([_view(points, K, a), _view(points, K, a + 10)], axis=1)
                    for a in range(0, 40, 10)})
    outcome = chain.propagate_pair(chain.Chainer(store, 640, min_final_matches=10), (0, 40), [10])
    assert outcome.label is None and outcome.reached == (0, 40) and "inliers" in outcome.reason


def test_cardinality_variant_order_is_gims_list_order() -> None:
    names = [("GIM_LOFTR", True), ("ALIKED_LIGHTGLUE", False), ("SIFT", True), ("GIM_DKM", False), ("SIFT", False),
             ("GIM_GLUE", False)]
    ordered = sorted(names, key=lambda v: chain.variant_order(*v))
    assert ordered == [("SIFT", False), ("SIFT", True), ("GIM_DKM", False), ("GIM_GLUE", False), ("GIM_LOFTR", True),
                       ("ALIKED_LIGHTGLUE", False)]


def test_feature_label_cache_reads_once_and_evicts() -> None:
    calls: list[tuple[int, tuple[int, int]]] = []

    def read(skip: int, pair: tuple[int, int]) -> np.ndarray | None:
        calls.append((skip, pair))
        return None if pair[0] == 99 else np.zeros((100, 4), np.float32)  # 1600 bytes

    cache = chain.LabelCache(read, max_bytes=3200)
    for pair in [(0, 10), (0, 10), (10, 20), (99, 109), (99, 109), (0, 10)]:
        cache(10, pair)
    assert calls == [(10, (0, 10)), (10, (10, 20)), (10, (99, 109))]
    cache(10, (20, 30))  # a third array: the least recently used one, (10, 20), goes
    cache(10, (10, 20))
    assert calls[-1] == (10, (10, 20)) and cache.reads == 5
