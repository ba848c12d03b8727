"""Step 2 of ``gim reconstruct``: match every pair of ``pairs.txt`` once, into ``matches.sqlite``.

Each pair is committed on its own (:class:`~gim_plugins.colmap_ext.store.MatchStore`), so a killed run resumes at
the next pair; pairs already in the store are skipped. The store is keyed by the matcher's fingerprint (name,
options, weights): another matcher or configuration is refused unless ``overwrite`` is set. Sparse matchers
extract each image once through :class:`gim_plugins.features.FeatureCache` (``features.h5``), dense matchers match
the two images directly. ``match.json`` records what this run did and how long it took.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gim_plugins.conf import Conf, to_plain
from gim_plugins.reconstruct.common import ReconstructPaths, resolve_conf, write_json
from gim_plugins.reconstruct.pairs import image_pairs

__all__ = ["feature_cache", "fingerprint", "load_matcher", "main"]

log = logging.getLogger(__name__)


def load_matcher(conf: Conf) -> Any:
    """The matcher named by the conf (``matcher``, ``weights``, ``device``, ``matcher_conf``)."""
    from gim_plugins.matching import load_matcher as load

    return load(conf.matcher, conf.weights, conf.device, **to_plain(conf.matcher_conf))


def fingerprint(matcher: Any) -> str:
    """What the stored matches depend on: the matcher's name, resolved options and weights."""
    return json.dumps({"matcher": matcher.name, "conf": to_plain(matcher.conf), "weights": matcher.weights_id},
                      sort_keys=True)


def feature_cache(matcher: Any, path: Path) -> Any:
    """The HDF5 feature cache; an unreadable file (killed mid-write) is moved aside and extraction restarts."""
    from gim_plugins.features import FeatureCache

    try:
        return FeatureCache(matcher, path)
    except OSError as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        log.warning("%s; moving it to %s and extracting again", exc, aside.name)
        path.rename(aside)
        return FeatureCache(matcher, path)


def main(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any]) -> Path:
    """Match every pair not yet in ``matches.sqlite`` (writing ``pairs.txt`` first); returns the store's path.

    Writes ``match.json``: pairs, pairs matched and images extracted in this run, seconds (extraction, matching).

    Raises:
        ValueError: the store holds matches of another matcher or configuration (use ``overwrite``).
    """
    from tqdm import tqdm

    from gim_plugins.colmap_ext.store import MatchStore

    conf, paths = resolve_conf(conf), ReconstructPaths.of(paths)
    names, pairs = image_pairs(conf, paths)
    matcher = load_matcher(conf)
    start = time.perf_counter()
    extracted = 0
    with MatchStore(paths.matches, fingerprint(matcher), overwrite=conf.overwrite) as store:
        done = store.done()
        todo = [pair for pair in pairs if pair not in done]
        cache = feature_cache(matcher, paths.features) if matcher.is_sparse else None
        if cache is not None:
            for name in tqdm(names, desc="extract", unit="image", disable=not conf.progress):
                cache.get(name, paths.images / name)
        extract_seconds = time.perf_counter() - start
        for name0, name1 in tqdm(todo, desc=f"match ({matcher.name})", unit="pair", disable=not conf.progress):
            pair_start = time.perf_counter()
            if cache is not None:
                result = cache.match(name0, name1, paths.images / name0, paths.images / name1)
            else:
                result = matcher.match(paths.images / name0, paths.images / name1)
            k0, k1, scores = result.numpy()
            store.put(name0, name1, k0, k1, scores, result.image_size0, result.image_size1,
                      time.perf_counter() - pair_start)
        extracted = cache.num_extracted if cache is not None else 0
        stored_seconds = store.seconds()
    seconds = time.perf_counter() - start
    report = {"pairs": len(pairs), "matched_now": len(todo), "extracted_now": extracted, "images": len(names),
              "seconds_now": seconds, "extract_seconds_now": extract_seconds,
              "pair_seconds_now": seconds - extract_seconds, "match_seconds_total": stored_seconds,
              "matcher": matcher.name, "sparse": bool(matcher.is_sparse)}
    write_json(paths.match_report, report)
    return paths.matches
