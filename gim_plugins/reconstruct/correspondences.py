"""The match step's files read back as :class:`~gim_plugins.colmap_ext.correspondences.Correspondences`: keypoints
per image and index matches per pair, what the database step writes and the exporters export. No matching here.

Sparse matchers: the keypoints are the cached features of each image (``features.h5``) and every stored match is
looked up among them. Dense matchers: the per-pair points are merged into shared keypoints by
:mod:`gim_plugins.colmap_ext.tracks` (otherwise every track would have length 2). Pairs with fewer than
``min_matches`` matches are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.colmap_ext import tracks
from gim_plugins.colmap_ext.correspondences import Correspondences, indices_of
from gim_plugins.reconstruct.common import ReconstructPaths, resolve_conf
from gim_plugins.reconstruct.match import feature_cache, fingerprint, load_matcher

__all__ = ["load_correspondences"]


def _image_size(path: Path) -> tuple[int, int]:
    from gim_plugins.io import read_image

    image = read_image(path)
    return int(image.shape[0]), int(image.shape[1])


def _check_sizes(stored: dict[str, tuple[int, int]], images: Path, names: list[str]) -> dict[str, tuple[int, int]]:
    """Image sizes from the stored matches, checked against the files (an edited image invalidates its matches)."""
    sizes = {}
    for name in names:
        actual = _image_size(images / name)
        if name in stored and stored[name] != actual:
            raise ValueError(f"{name} is {actual[1]}×{actual[0]} px but was matched at {stored[name][1]}×"
                             f"{stored[name][0]}: the image changed since it was matched (rerun with --overwrite)")
        sizes[name] = actual
    return sizes


def load_correspondences(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any]
                         ) -> Correspondences:
    """Keypoints per image and index matches per pair from the match step's files (no matching happens here).

    Raises:
        ValueError: pairs are missing from the store (run the match step), image sizes changed, or no pair has
            ``min_matches`` matches.
    """
    from gim_plugins.colmap_ext.store import MatchStore
    from gim_plugins.h5io import read_pairs

    conf, paths = resolve_conf(conf), ReconstructPaths.of(paths)
    pairs = read_pairs(paths.pairs)
    names = sorted({n for pair in pairs for n in pair})
    matcher = load_matcher(conf)
    with MatchStore(paths.matches, fingerprint(matcher)) as store:
        missing = [pair for pair in pairs if pair not in store]
        if missing:
            raise ValueError(f"{len(missing)} pairs are not matched yet (first: {missing[0]}); run the match step")
        raw = {pair: store.get(*pair) for pair in pairs}
    stored_sizes = {}
    for (name0, name1), (_, _, _, size0, size1) in raw.items():
        stored_sizes[name0], stored_sizes[name1] = size0, size1
    sizes = _check_sizes(stored_sizes, paths.images, names)
    raw = {pair: value for pair, value in raw.items() if len(value[0]) >= conf.min_matches}
    if not raw:
        raise ValueError(f"no pair has at least {conf.min_matches} matches: nothing to reconstruct")
    if not matcher.is_sparse:
        return tracks.build_correspondences({pair: value[:3] for pair, value in raw.items()}, sizes, conf.tracks)
    cache = feature_cache(matcher, paths.features)
    keypoints = {name: cache.get(name, paths.images / name).keypoints.numpy() for name in names}
    scores = {name: cache.get(name).scores.numpy() for name in names}
    matches, match_scores = {}, {}
    for (name0, name1), (k0, k1, pair_scores, _, _) in raw.items():
        idx0, idx1 = indices_of(keypoints[name0], k0), indices_of(keypoints[name1], k1)
        found = (idx0 >= 0) & (idx1 >= 0)
        if not found.all():
            raise ValueError(f"pair ({name0}, {name1}): {int((~found).sum())} matched points are not keypoints of the "
                             "cached features (features.h5 changed since matching?); rerun with --overwrite")
        rows = tracks.unique_matches(idx0, idx1, pair_scores)
        matches[(name0, name1)] = np.stack([idx0[rows], idx1[rows]], 1)
        match_scores[(name0, name1)] = pair_scores[rows]
    return Correspondences(keypoints, sizes, matches, scores, match_scores)
