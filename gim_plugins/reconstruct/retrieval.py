"""Image retrieval for choosing pairs: global descriptors aggregated from the local features a run extracts anyway.

Why: matching every pair costs N·(N−1)/2 matches, almost all of them between images that share nothing once N is
in the hundreds. Retrieval keeps, for each image, the K images most similar to it (``retrieval:K``: at most N·K
pairs), and the similarity needs no downloaded network: the local descriptors of the run's sparse matcher (its
``features.h5``), or RootSIFT's for dense matchers, are aggregated per image against a visual vocabulary learnt from
the image set itself.

* Vocabulary: k-means (k-means++ seeding, ``seed``) on up to ``train_descriptors`` descriptors sampled evenly over
  the images.
* Per image and visual word: the sum of the residuals of the descriptors assigned to it, L2-normalised per word
  ("intra-normalisation").
* Similarity: ``"asmk"`` (default) — the aggregated selective match kernel: the sum over shared words of
  ``max(0, cos)³`` of the two images' normalised residuals, which ignores weak word agreements (repetitive texture,
  shared background colour); ``"vlad"`` — the dot product of the concatenated, power-normalised (signed square root)
  and L2-normalised VLAD vectors.
* Networks: with ``backend`` set to one of hloc's global descriptors (``netvlad``, ``megaloc``, ``openibl``, ``dir``;
  :mod:`gim_plugins.hloc_ext.retrieval`), their descriptors are used instead when hloc and their weights are present;
  otherwise the step says what is missing.

:func:`top_k_pairs` turns a similarity matrix into pairs; the pairs step (:mod:`.pairs`) uses it for
``retrieval:K`` and for the loop-closure candidates of ``sequential:K+loop:L``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_CONF", "KERNELS", "aggregate", "cached_similarity", "kmeans", "similarity", "similarity_from_local",
           "top_k_pairs"]

log = logging.getLogger(__name__)

KERNELS = ("asmk", "vlad")
"""Similarities computed from local features (no network); any other backend is one of hloc's networks."""

DEFAULT_CONF: dict[str, Any] = {
    "backend": "asmk",  # "asmk" or "vlad" (local features), or an hloc global descriptor: netvlad, megaloc, ...
    "features": None,  # sparse matcher whose descriptors are aggregated (None: the run's own, root_sift if dense)
    "vocabulary": 64,  # visual words
    "train_descriptors": 50_000,  # descriptors k-means learns from (sampled evenly over the images)
    "iterations": 20,  # k-means iterations
    "seed": 0,
}
RETRIEVAL_KEYPOINTS = 4096
"""RootSIFT keypoints per image when RootSIFT only serves retrieval (a dense matcher's run)."""


# ------------------------------------------------------------------------------------------------ the vocabulary


def _assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (Euclidean) of each row of ``x``."""
    distances = (centres**2).sum(1)[None] - 2.0 * x @ centres.T
    return distances.argmin(1)


def kmeans(x: np.ndarray, k: int, *, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """``(k, D)`` centres of ``x`` ``(N, D)`` by Lloyd's algorithm with k-means++ seeding (deterministic per seed).

    Fewer than ``k`` distinct rows give fewer useful centres; an emptied cluster is re-seeded at the point farthest
    from its centre.
    """
    x = np.asarray(x, dtype=np.float32)
    if len(x) == 0:
        raise ValueError("k-means needs at least one descriptor (no image gave any features)")
    rng = np.random.default_rng(seed)
    centres = np.empty((k, x.shape[1]), np.float32)
    centres[0] = x[rng.integers(len(x))]
    nearest = ((x - centres[0]) ** 2).sum(1)
    for i in range(1, k):
        total = float(nearest.sum())
        index = rng.choice(len(x), p=nearest / total) if total > 0 else rng.integers(len(x))
        centres[i] = x[index]
        nearest = np.minimum(nearest, ((x - centres[i]) ** 2).sum(1))
    for _ in range(iterations):
        labels = _assign(x, centres)
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, x)
        moved = counts > 0
        updated = centres.copy()
        updated[moved] = sums[moved] / counts[moved, None]
        for empty in np.flatnonzero(~moved):
            far = int(((x - updated[labels]) ** 2).sum(1).argmax())
            updated[empty], labels[far] = x[far], empty
        if np.allclose(updated, centres, atol=1e-6):
            centres = updated
            break
        centres = updated
    return centres


def aggregate(descriptors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``(k, D)`` per-word residual sums of one image's descriptors, each L2-normalised (zero for absent words)."""
    descriptors = np.asarray(descriptors, dtype=np.float32)
    blocks = np.zeros_like(centres)
    if len(descriptors):
        labels = _assign(descriptors, centres)
        np.add.at(blocks, labels, descriptors - centres[labels])
    norms = np.linalg.norm(blocks, axis=1, keepdims=True)
    return np.divide(blocks, norms, out=np.zeros_like(blocks), where=norms > 0)


def _kernel_similarity(blocks: np.ndarray, kernel: str) -> np.ndarray:
    """``(N, N)`` similarity of per-image ``(N, k, D)`` aggregated blocks."""
    if kernel == "vlad":
        flat = blocks.reshape(len(blocks), -1)
        flat = np.sign(flat) * np.sqrt(np.abs(flat))
        flat /= np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
        return flat @ flat.T
    if kernel == "asmk":
        out = np.zeros((len(blocks), len(blocks)), np.float32)
        for word in range(blocks.shape[1]):
            cos = blocks[:, word] @ blocks[:, word].T
            out += np.maximum(cos, 0.0) ** 3
        return out
    raise ValueError(f"unknown retrieval kernel {kernel!r}; use one of {', '.join(KERNELS)}")


def similarity_from_local(names: Sequence[str], local: Callable[[str], np.ndarray], conf: Mapping[str, Any]
                          ) -> np.ndarray:
    """``(N, N)`` image similarity from local descriptors (``local(name)`` → ``(M, D)``) with ``conf``'s kernel.

    Asks for each image's descriptors twice (vocabulary sample, then aggregation) and keeps only the sample and the
    ``(N, k, D)`` aggregates; whether ``local`` keeps the descriptors themselves is up to it (the pipeline's
    feature cache does).
    """
    per_image = max(1, int(conf["train_descriptors"]) // max(1, len(names)))
    rng = np.random.default_rng(int(conf["seed"]))
    sample = []
    for name in names:
        descriptors = np.asarray(local(name), dtype=np.float32)
        if len(descriptors) > per_image:
            descriptors = descriptors[np.sort(rng.choice(len(descriptors), per_image, replace=False))]
        sample.append(descriptors)
    train = np.concatenate(sample) if sample else np.zeros((0, 1), np.float32)
    words = min(int(conf["vocabulary"]), max(1, len(train)))
    centres = kmeans(train, words, iterations=int(conf["iterations"]), seed=int(conf["seed"]))
    del train, sample
    blocks = np.stack([aggregate(local(name), centres) for name in names])
    return _kernel_similarity(blocks, str(conf["backend"]))


# --------------------------------------------------------------------------------------------------- the pairs


def top_k_pairs(names: Sequence[str], sim: np.ndarray, k: int,
                allowed: Callable[[int, int], bool] | None = None) -> list[tuple[str, str]]:
    """For each image its ``k`` most similar others (ties broken by name order), as unordered pairs.

    Args:
        names: the images, in the order of ``sim``'s rows.
        sim: ``(N, N)`` similarity (higher: more alike); the diagonal is ignored.
        k: candidates per image.
        allowed: ``allowed(i, j)`` filters candidates (e.g. loop closures only: far apart in the sequence).

    Returns:
        Each pair once, as ``(names[i], names[j])`` with ``i < j``, sorted.
    """
    count = len(names)
    if sim.shape != (count, count):
        raise ValueError(f"similarity is {sim.shape}, expected ({count}, {count})")
    pairs: set[tuple[int, int]] = set()
    for i in range(count):
        order = sorted((j for j in range(count) if j != i and (allowed is None or allowed(i, j))),
                       key=lambda j: (-float(sim[i, j]), j))
        pairs.update((min(i, j), max(i, j)) for j in order[:k])
    return [(names[i], names[j]) for i, j in sorted(pairs)]


# ------------------------------------------------------------------------------------------- in the pipeline


def similarity(conf: Any, image_dir: Path, out_dir: Path, names: Sequence[str], matcher: Any | None,
               features_path: Path | None = None) -> tuple[np.ndarray, str]:
    """The similarity of the run's images and what it depends on (a fingerprint for the pairs record).

    With the ``asmk``/``vlad`` kernels the local descriptors come from the run's sparse ``matcher`` (its feature
    cache ``features.h5``, which the match step reuses), or from ``retrieval.features`` (RootSIFT for a dense
    matcher) in ``retrieval-features.h5``. Other backends are hloc's global-descriptor networks.

    Raises:
        gim_plugins.errors.UserError: an hloc backend that is not available here (the message says why).
    """
    import json

    from gim_plugins.conf import to_plain

    options = to_plain(conf.retrieval)
    if options["backend"] not in KERNELS:
        from gim_plugins.hloc_ext.retrieval import global_descriptors

        descriptors = global_descriptors(options["backend"], image_dir, names, out_dir / "retrieval-global.h5")
        return descriptors @ descriptors.T, json.dumps({"backend": options["backend"]})
    cache = _feature_cache(conf, options, out_dir, matcher, features_path)
    sim = similarity_from_local(names, lambda name: cache.get(name, image_dir / name).descriptors.numpy(), options)
    return sim, json.dumps({**options, "features": cache.fingerprint}, sort_keys=True)


def cached_similarity(conf: Any, image_dir: Path, out_dir: Path, names: Sequence[str], matcher: Any | None,
                      features_path: Path | None = None) -> tuple[np.ndarray, str]:
    """:func:`similarity`, kept in ``retrieval.npz`` (with the names and fingerprint) so a rerun reuses it.

    Without ``matcher`` the run's matcher is loaded only when its own features are what is aggregated.
    """
    import json

    from gim_plugins.atomic import atomic_write_bytes
    from gim_plugins.conf import to_plain

    options = to_plain(conf.retrieval)
    path = out_dir / "retrieval.npz"
    key = json.dumps({"options": options, "matcher": conf.matcher, "matcher_conf": to_plain(conf.matcher_conf),
                      "weights": conf.weights, "names": list(names)}, sort_keys=True)
    try:
        with np.load(path) as data:
            if str(data["key"]) == key:
                return data["similarity"], str(data["fingerprint"])
    except (OSError, KeyError, ValueError):
        pass
    if matcher is None and options["backend"] in KERNELS and options["features"] in (None, conf.matcher):
        from gim_plugins.reconstruct.match import load_matcher

        matcher = load_matcher(conf)
    log.info("retrieval: %s similarity of %d images", options["backend"], len(names))
    sim, fingerprint = similarity(conf, image_dir, out_dir, names, matcher, features_path)
    import io

    buffer = io.BytesIO()
    np.savez(buffer, similarity=sim, key=np.array(key), fingerprint=np.array(fingerprint))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return sim, fingerprint


def _feature_cache(conf: Any, options: Mapping[str, Any], out_dir: Path, matcher: Any | None,
                   features_path: Path | None) -> Any:
    from gim_plugins.features import FeatureCache
    from gim_plugins.matching import load_matcher
    from gim_plugins.reconstruct.match import feature_cache

    name = options["features"]
    if matcher is not None and matcher.is_sparse and name in (None, matcher.name):
        return feature_cache(matcher, features_path or out_dir / "features.h5")
    name = name or "root_sift"
    extra = {"max_keypoints": RETRIEVAL_KEYPOINTS} if name == "root_sift" else {}
    extractor = load_matcher(name, device=conf.device, **extra)
    if not extractor.is_sparse:
        from gim_plugins.errors import UserError

        raise UserError(f"retrieval features must come from a sparse matcher (root_sift, aliked_lightglue, "
                        f"gim_lightglue), not {name!r}; set retrieval.features")
    return FeatureCache(extractor, out_dir / "retrieval-features.h5", overwrite=True)
