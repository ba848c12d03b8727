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

__all__ = ["feature_cache", "fingerprint", "load_matcher", "main", "merge_shards"]

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
    """The HDF5 feature cache; an unreadable file (killed mid-write) is moved aside and extraction restarts.

    A file that another process holds is waited for (bounded, see :class:`gim_plugins.features.FeatureCache`) and
    never moved: only a file HDF5 cannot read is.
    """
    from gim_plugins.features import FeatureCache, FeatureFileError

    try:
        return FeatureCache(matcher, path)
    except FeatureFileError as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        log.warning("%s; moving it to %s and extracting again", exc, aside.name)
        path.rename(aside)
        return FeatureCache(matcher, path)


def _share(conf: Conf) -> tuple[Any, tuple[int, int] | None]:
    """This process's world (torchrun ranks, ``shard`` option, or one process) and its shard, if any."""
    from gim_plugins.world import init_world, parse_shard

    try:
        shard = parse_shard(conf.shard) if conf.shard else None
        world = init_world(shard)
    except ValueError as exc:
        from gim_plugins.errors import UserError

        raise UserError(str(exc)) from None
    return world, ((world.rank, world.size) if world.size > 1 else None)


def merge_shards(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any],
                 matcher: Any | None = None) -> int:
    """Merge the shard stores in ``shards/`` into ``matches.sqlite`` (the shard files are removed once merged);
    returns the number of pairs added. A store of another matcher or configuration is left where it is, with a
    warning.
    """
    from gim_plugins.colmap_ext.store import MatchStore

    conf, paths = resolve_conf(conf), ReconstructPaths.of(paths)
    shard_stores = sorted((paths.out / "shards").glob("matches-*-of-*.sqlite"))
    if not shard_stores:
        return 0
    matcher = matcher if matcher is not None else load_matcher(conf)
    added = 0
    with MatchStore(paths.matches, fingerprint(matcher), overwrite=conf.overwrite) as store:
        for path in shard_stores:
            try:
                count = store.merge_from(path)
            except (ValueError, OSError) as exc:
                log.warning("not merging %s: %s", path.name, exc)
                continue
            added += count
            log.info("merged %d pairs from %s", count, path.name)
            path.unlink()
    shard_features = sorted((paths.out / "shards").glob("features-*-of-*.h5"))
    if shard_features and matcher.is_sparse:
        from gim_plugins.features import FeatureCache

        cache = feature_cache(matcher, paths.features)
        for path in shard_features:
            try:
                shard = FeatureCache(matcher, path)
            except (ValueError, OSError) as exc:
                log.warning("not merging %s: %s", path.name, exc)
                continue
            for key in shard.keys():
                if key not in cache:
                    cache.put(key, shard.get(key))
    for path in shard_features:
        path.unlink()
    return added


def _match_pairs(matcher: Any, conf: Conf, paths: ReconstructPaths, store: Any, todo: list[tuple[str, str]],
                 cache: Any | None) -> None:
    """Match ``todo`` into ``store``: sparse matchers through the feature cache, dense ones in batches."""
    from tqdm import tqdm

    progress = tqdm(total=len(todo), desc=f"match ({matcher.name})", unit="pair", disable=not conf.progress)
    if cache is not None:
        for name0, name1 in todo:
            pair_start = time.perf_counter()
            result = cache.match(name0, name1, paths.images / name0, paths.images / name1)
            k0, k1, scores = result.numpy()
            store.put(name0, name1, k0, k1, scores, result.image_size0, result.image_size1,
                      time.perf_counter() - pair_start)
            progress.update()
    else:
        from gim_plugins.models.batching import iter_matches

        items = ((pair, paths.images / pair[0], paths.images / pair[1]) for pair in todo)
        for (name0, name1), result in iter_matches(matcher, items, batch_size=conf.batch_size):
            k0, k1, scores = result.numpy()
            store.put(name0, name1, k0, k1, scores, result.image_size0, result.image_size1,
                      float(result.timing.get("total", 0.0)))
            progress.update()
    progress.close()


def main(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any]) -> Path:
    """Match every pair not yet in ``matches.sqlite`` (writing ``pairs.txt`` first); returns the store's path.

    Sharded (``shard="i/n"``, or under ``torchrun`` with ``WORLD_SIZE > 1``): this process matches pairs ``i::n``
    of ``pairs.txt`` that ``matches.sqlite`` lacks into ``shards/matches-i-of-n.sqlite`` (sparse matchers extract
    into ``shards/features-i-of-n.h5``) and returns that store; under torchrun rank 0 then waits for the others and
    merges (:func:`merge_shards`) and returns ``matches.sqlite``. An unsharded run merges whatever shard stores it
    finds first, so ``gim reconstruct`` without ``--shard`` after independent ``--shard i/n`` jobs is the merge
    step. Each pair's result does not depend on the shard that matched it.

    Writes ``match.json`` (``shards/match-i-of-n.json`` for a shard): pairs, pairs matched and images extracted
    in this run, seconds (extraction, matching).

    Raises:
        ValueError: the store holds matches of another matcher or configuration (use ``overwrite``).
    """
    from tqdm import tqdm

    from gim_plugins.colmap_ext.store import MatchStore, stored_pairs
    from gim_plugins.world import rank_device

    conf, paths = resolve_conf(conf), ReconstructPaths.of(paths)
    world, shard = _share(conf)
    try:
        device = rank_device(conf.device, world)
        if device != conf.device:
            conf = resolve_conf({**to_plain(conf), "device": device})
        matcher = load_matcher(conf)
        features = paths.features if shard is None else paths.shard_features(*shard)
        features.parent.mkdir(parents=True, exist_ok=True)
        if shard is not None and world.distributed and world.rank != 0:
            world.barrier()  # rank 0 first builds the pairs (and the retrieval similarity the others then reuse)
        names, pairs = image_pairs(conf, paths, matcher, features if matcher.is_sparse else None)
        if shard is not None and world.distributed and world.rank == 0:
            world.barrier()
        if shard is None:
            merge_shards(conf, paths, matcher)
            store_path, report_path = paths.matches, paths.match_report
            mine = pairs
        else:
            store_path = paths.shard_matches(*shard)
            report_path = store_path.with_name(f"match-{shard[0]}-of-{shard[1]}.json")
            done_before = stored_pairs(paths.matches, fingerprint(matcher))
            mine = [pair for index, pair in enumerate(pairs) if index % shard[1] == shard[0]
                    and pair not in done_before]
        start = time.perf_counter()
        with MatchStore(store_path, fingerprint(matcher), overwrite=conf.overwrite) as store:
            done = store.done()
            todo = [pair for pair in mine if pair not in done]
            cache = feature_cache(matcher, features) if matcher.is_sparse else None
            if cache is not None:  # a shard extracts the images its pairs need, one process all of them
                needed = names if shard is None else sorted({name for pair in todo for name in pair})
                for name in tqdm(needed, desc="extract", unit="image", disable=not conf.progress):
                    cache.get(name, paths.images / name)
            extract_seconds = time.perf_counter() - start
            _match_pairs(matcher, conf, paths, store, todo, cache)
            extracted = cache.num_extracted if cache is not None else 0
            stored_seconds = store.seconds()
        seconds = time.perf_counter() - start
        report = {"pairs": len(pairs), "matched_now": len(todo), "extracted_now": extracted, "images": len(names),
                  "seconds_now": seconds, "extract_seconds_now": extract_seconds,
                  "pair_seconds_now": seconds - extract_seconds, "match_seconds_total": stored_seconds,
                  "matcher": matcher.name, "sparse": bool(matcher.is_sparse),
                  "shard": None if shard is None else f"{shard[0]}/{shard[1]}", "batch_size": conf.batch_size}
        write_json(report_path, report)
        if shard is not None and world.distributed:
            world.barrier()
            if world.rank == 0:
                merge_shards(conf, paths, matcher)
                write_json(paths.match_report, {**report, "shard": None, "pairs_in_store": len(pairs)})
                return paths.matches
        return store_path
    finally:
        world.close()
