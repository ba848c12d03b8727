"""Retrieval pairs: the vocabulary, the aggregation, top-K pairs, the pairs specs, and the true neighbours on the
rendered survey (many narrow views of the motorcycle scene with a ground-truth overlap)."""

from __future__ import annotations

import numpy as np
import pytest

from gim_plugins.reconstruct.common import ReconstructPaths, resolve_conf
from gim_plugins.reconstruct.pairs import image_pairs, make_pairs, needs_similarity
from gim_plugins.reconstruct.retrieval import (
    DEFAULT_CONF,
    aggregate,
    kmeans,
    similarity_from_local,
    top_k_pairs,
)

NAMES = [f"{i}.png" for i in range(6)]


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32)
    return means, np.concatenate([m + rng.normal(0, 0.5, (200, 2)) for m in means]).astype(np.float32)


def test_feature_kmeans_finds_the_clusters_deterministically() -> None:
    means, x = _blobs()
    centres = kmeans(x, 3, seed=0)
    assert centres.shape == (3, 2) and centres.dtype == np.float32
    found = sorted(map(tuple, np.round(centres).astype(int)))
    assert found == sorted(map(tuple, means.astype(int)))
    assert np.array_equal(centres, kmeans(x, 3, seed=0))
    with pytest.raises(ValueError, match="at least one descriptor"):
        kmeans(np.zeros((0, 2)), 3)


def test_feature_aggregate_normalises_each_word() -> None:
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32)
    blocks = aggregate(np.array([[1.0, 0.0], [0.5, 0.0], [10.0, 2.0]], np.float32), centres)
    assert blocks.shape == (3, 2)
    assert np.allclose(blocks[0], [1.0, 0.0]) and np.allclose(blocks[1], [0.0, 1.0])
    assert np.array_equal(blocks[2], [0.0, 0.0])  # no descriptor there
    assert np.array_equal(aggregate(np.zeros((0, 2), np.float32), centres), np.zeros((3, 2), np.float32))


@pytest.mark.parametrize("backend", ["asmk", "vlad"])
def test_feature_similarity_ranks_images_with_the_same_content_first(backend: str) -> None:
    rng = np.random.default_rng(0)
    patterns = [rng.normal(size=(40, 16)).astype(np.float32) for _ in range(3)]
    # images 0,1 show pattern 0; 2,3 pattern 1; 4,5 pattern 2 (each with its own noise)
    local = {name: patterns[i // 2] + rng.normal(0, 0.05, (40, 16)).astype(np.float32)
             for i, name in enumerate(NAMES)}
    sim = similarity_from_local(NAMES, local.__getitem__, {**DEFAULT_CONF, "backend": backend, "vocabulary": 8})
    assert sim.shape == (6, 6) and np.allclose(sim, sim.T, atol=1e-5)
    assert top_k_pairs(NAMES, sim, 1) == [("0.png", "1.png"), ("2.png", "3.png"), ("4.png", "5.png")]
    with pytest.raises(ValueError, match="unknown retrieval kernel"):
        similarity_from_local(NAMES, local.__getitem__, {**DEFAULT_CONF, "backend": "nope"})


def test_feature_top_k_pairs() -> None:
    sim = np.zeros((6, 6))
    for i in range(6):
        sim[i, (i + 3) % 6] = 5.0
        sim[i, (i + 1) % 6] = 2.0
    assert top_k_pairs(NAMES, sim, 1) == [("0.png", "3.png"), ("1.png", "4.png"), ("2.png", "5.png")]
    two = top_k_pairs(NAMES, sim, 2)
    assert len(two) == 9 and all(NAMES.index(a) < NAMES.index(b) for a, b in two)
    # ties (zeros) are broken by order: with k = 5 every pair comes out once
    assert len(top_k_pairs(NAMES, sim, 5)) == 15
    far = top_k_pairs(NAMES, sim, 1, allowed=lambda i, j: abs(i - j) > 3)
    assert all(abs(NAMES.index(a) - NAMES.index(b)) > 3 for a, b in far)
    with pytest.raises(ValueError, match="expected"):
        top_k_pairs(NAMES, sim[:5], 1)


def test_feature_pairs_specs_with_similarity() -> None:
    sim = np.eye(6)
    sim[0, 5] = sim[5, 0] = 3.0
    calls = []

    def similarity() -> np.ndarray:
        calls.append(1)
        return sim

    assert needs_similarity("retrieval:3") and needs_similarity("sequential:2+loop:1")
    assert not needs_similarity("sequential:2") and not needs_similarity("exhaustive")
    retrieved = make_pairs(NAMES, "retrieval:1", similarity)
    assert ("0.png", "5.png") in retrieved and len(retrieved) <= 6
    sequential = make_pairs(NAMES, "sequential:1")
    looped = make_pairs(NAMES, "sequential:1+loop:1", similarity)
    assert set(sequential) < set(looped) and ("0.png", "5.png") in looped
    assert set(make_pairs(NAMES, "sequential:1+loop:1", similarity)) == set(looped)
    assert len(calls) == 3
    with pytest.raises(ValueError, match="needs the images' similarity"):
        make_pairs(NAMES, "retrieval:2")
    with pytest.raises(ValueError, match="K >= 1"):
        make_pairs(NAMES, "retrieval:0", similarity)
    with pytest.raises(ValueError, match="integers"):
        make_pairs(NAMES, "sequential:2+loop:x", similarity)


# ------------------------------------------------------------------------------------------- rendered survey


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory):
    from gim_plugins.datasets.scene import write_scene
    from gim_plugins.datasets.survey import render_motorcycle_survey, view_overlap

    views = render_motorcycle_survey(20)
    images = tmp_path_factory.mktemp("survey") / "images"
    write_scene(views, images)
    overlap = view_overlap(views)
    return images, [v.name for v in views], np.minimum(overlap, overlap.T)


def test_feature_retrieval_finds_the_true_neighbours_on_the_survey(survey, tmp_path) -> None:
    images, names, overlap = survey
    k = 5
    conf = resolve_conf({"matcher": "root_sift", "matcher_conf": {"max_keypoints": 1024}, "pairs": f"retrieval:{k}",
                         "retrieval": {"vocabulary": 128}, "progress": False})
    paths = ReconstructPaths(images, tmp_path)
    used, pairs = image_pairs(conf, paths)
    assert used == names and len(pairs) <= len(names) * k
    assert pairs == [tuple(line.split()) for line in paths.pairs.read_text().splitlines()]
    index = {name: i for i, name in enumerate(names)}
    shared = np.array([overlap[index[a], index[b]] for a, b in pairs])
    # retrieved pairs overlap; random pairs of a survey mostly do not
    everything = overlap[np.triu_indices(len(names), 1)]
    assert (shared > 0.1).mean() >= 0.7 > (everything > 0.1).mean() + 0.25
    # every image's best true neighbour is among its retrieved candidates for most images
    found = []
    for i, name in enumerate(names):
        partners = {b if a == name else a for a, b in pairs if name in (a, b)}
        row = overlap[i].copy()
        row[i] = -1
        found.append(names[int(row.argmax())] in partners)
    assert np.mean(found) >= 0.8
    # the similarity is kept and reused while images and options stay the same
    stamp = paths.retrieval.stat().st_mtime_ns
    assert image_pairs(conf, paths)[1] == pairs
    assert paths.retrieval.stat().st_mtime_ns == stamp


def test_exception_unknown_hloc_backend(survey, tmp_path) -> None:
    from gim_plugins.errors import UserError

    images, _, _ = survey
    conf = resolve_conf({"matcher": "root_sift", "pairs": "retrieval:3", "retrieval": {"backend": "nope"}})
    with pytest.raises(UserError, match="unknown retrieval backend"):
        image_pairs(conf, ReconstructPaths(images, tmp_path))


def test_exception_hloc_backend_without_weights(survey, tmp_path, monkeypatch) -> None:
    pytest.importorskip("hloc")
    import torch

    from gim_plugins.errors import UserError

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    images, _, _ = survey
    conf = resolve_conf({"matcher": "root_sift", "pairs": "retrieval:3", "retrieval": {"backend": "netvlad"}})
    with pytest.raises(UserError, match=r"weights not found at .*netvlad.*retrieval.backend=asmk"):
        image_pairs(conf, ReconstructPaths(images, tmp_path / "out"))
    assert not (tmp_path / "hub").exists()  # nothing was downloaded
