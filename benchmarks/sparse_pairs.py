"""Sparse matchers over all pairs of N images: each image is extracted once (FeatureCache), pairs/s reported.

For every sparse matcher the N images go through a :class:`~gim_plugins.features.FeatureCache` (in memory, or an
HDF5 file with ``--h5``) and all N·(N−1)/2 pairs are matched. The script checks that the number of extractions is
exactly N (counted both by the cache and by wrapping the matcher's ``_extract``) and reports extraction and matching
times, pairs/s, and the speed-up over matching each pair from the images (2 extractions per pair), estimated from
the measured per-image and per-pair times.

Weights: the registered ones when installed (``gim weights fetch …``), else random (``--random`` forces random). The
cost of GIM's LightGlue does not depend on its weights (adaptive depth and width are off); ALIKED+LightGlue's does
(early exit and pruning are on), so its random-weight numbers are only indicative.

Usage::

    python benchmarks/sparse_pairs.py --num-images 6 --size 480x640 --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

MATCHERS = ("gim_lightglue", "aliked_lightglue")


def load_images(num: int, height: int, width: int) -> dict[str, np.ndarray]:
    """``num`` real RGB images (scikit-image's bundled photos), resized to ``height × width``."""
    import skimage.data

    from gim_plugins.datasets.motorcycle import paths
    from gim_plugins.io import read_image

    sources = [read_image(paths()["left"]), read_image(paths()["right"])]
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
                 "retina", "colorwheel"):
        image = getattr(skimage.data, name)()
        sources.append(np.repeat(image[..., None], 3, 2) if image.ndim == 2 else image[..., :3])
    if num > len(sources):
        raise SystemExit(f"at most {len(sources)} images available")
    return {f"img{i:02d}": cv2.resize(np.ascontiguousarray(img), (width, height), interpolation=cv2.INTER_AREA)
            for i, img in enumerate(sources[:num])}


def build(name: str, random: bool):  # type: ignore[no-untyped-def]
    from gim_plugins.matching import load_matcher, weights_available

    use_random = random or not weights_available(name)
    matcher = load_matcher(name, pretrained=not use_random)
    return matcher, "random" if use_random else "pretrained"


def run(name: str, images: dict[str, np.ndarray], random: bool, h5: Path | None) -> dict:
    from gim_plugins.features import FeatureCache

    matcher, weights = build(name, random)
    extract_times: list[float] = []
    original = matcher._extract

    def timed_extract(image):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return original(image)
        finally:
            extract_times.append(time.perf_counter() - start)

    matcher._extract = timed_extract
    cache = FeatureCache(matcher, h5)
    pairs = list(itertools.combinations(sorted(images), 2))
    match_times, matches = [], []
    start = time.perf_counter()
    for a, b in pairs:
        features0, features1 = cache.get(a, images[a]), cache.get(b, images[b])
        t1 = time.perf_counter()
        result = matcher.match_features(features0, features1)
        match_times.append(time.perf_counter() - t1)
        matches.append(len(result))
    total = time.perf_counter() - start
    n = len(images)
    assert cache.num_extracted == n == len(extract_times), (cache.num_extracted, len(extract_times), n)
    per_image, per_pair = statistics.mean(extract_times), statistics.mean(match_times)
    naive = len(pairs) * (2 * per_image + per_pair)
    return {"matcher": name, "weights": weights, "images": n, "pairs": len(pairs), "extractions": cache.num_extracted,
            "extract_s": sum(extract_times), "extract_per_image_s": per_image, "match_s": sum(match_times),
            "match_per_pair_s": per_pair, "total_s": total, "pairs_per_s": len(pairs) / total,
            "match_only_pairs_per_s": len(pairs) / sum(match_times), "naive_total_s": naive,
            "speedup": naive / total, "median_matches": statistics.median(matches)}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=6)
    parser.add_argument("--size", default="480x640", help="HxW every image is resized to")
    parser.add_argument("--matchers", nargs="+", default=list(MATCHERS), choices=MATCHERS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--random", action="store_true", help="random weights even when real ones are installed")
    parser.add_argument("--h5", action="store_true", help="cache features in an HDF5 file instead of memory")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    images = load_images(args.num_images, h, w)
    print(f"# all pairs of {len(images)} images at {w}x{h}, {args.threads} threads, "
          f"cache in {'HDF5' if args.h5 else 'memory'}")
    print(f"{'matcher':>17} {'weights':>10} {'pairs':>5} {'extractions':>11} {'extract/img s':>13} "
          f"{'match/pair s':>12} {'total s':>8} {'pairs/s':>7} {'match-only pairs/s':>18} {'vs 2 extr/pair':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.matchers:
            row = run(name, images, args.random, Path(tmp) / f"{name}.h5" if args.h5 else None)
            print(f"{row['matcher']:>17} {row['weights']:>10} {row['pairs']:5d} {row['extractions']:11d} "
                  f"{row['extract_per_image_s']:13.2f} {row['match_per_pair_s']:12.2f} {row['total_s']:8.1f} "
                  f"{row['pairs_per_s']:7.3f} {row['match_only_pairs_per_s']:18.3f} {row['speedup']:13.2f}×",
                  flush=True)


if __name__ == "__main__":
    main()
