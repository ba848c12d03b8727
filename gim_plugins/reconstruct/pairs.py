"""Step 1 of ``gim reconstruct``: which image pairs to match — written to ``pairs.txt``.

* ``exhaustive``: every pair, N·(N−1)/2.
* ``sequential:K``: each image with its next K in sorted order (video-like sets); ``sequential:K+loop:L`` adds, for
  each image, its L most similar images among those more than K away in the sequence (loop-closure candidates).
* ``retrieval:K``: each image with its K most similar images (at most N·K pairs). Similarity comes from
  :mod:`.retrieval`: the run's local features aggregated against a vocabulary learnt from the image set (no
  downloaded network), or one of hloc's global-descriptor networks when its weights are present.
* a pair-list file (hloc format, ``name0 name1`` per line).

The list is rebuilt from the images and the ``pairs`` option on every run (the similarity of ``retrieval``/``loop``
reuses the feature cache the match step fills anyway), so a changed option or a new image takes effect at once; the
match step only matches the pairs its store does not hold yet.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.errors import InputError, UnknownNameError
from gim_plugins.h5io import read_pairs, write_pairs
from gim_plugins.reconstruct.common import ReconstructPaths, resolve_conf

__all__ = ["IMAGE_EXTENSIONS", "image_pairs", "list_images", "main", "make_pairs", "needs_similarity"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def list_images(image_dir: str | os.PathLike[str]) -> list[str]:
    """Image files under ``image_dir`` (recursively) as sorted relative POSIX paths, COLMAP's image names.

    Raises:
        FileNotFoundError: the directory does not exist or holds no images.
        ValueError: a name COLMAP cannot store (whitespace at the ends, or two names differing only in case).
    """
    root = Path(image_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"image directory not found: {root}")
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not names:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {root}")
    folded = [n.lower() for n in names]
    clashes = sorted({n for n in names if folded.count(n.lower()) > 1})
    if clashes:
        raise InputError(f"image names that differ only in case are ambiguous on some file systems: {clashes}")
    for name in names:
        if name != name.strip() or any(c in name for c in "\n\r\t"):
            raise InputError(f"image name {name!r} has leading/trailing whitespace or control characters")
    return names


_SEQUENTIAL = re.compile(r"sequential(?::(\d+))?(?:\+loop:(\d+))?")
_RETRIEVAL = re.compile(r"retrieval:(\d+)")
SPECS = "'exhaustive', 'sequential:K', 'sequential:K+loop:L', 'retrieval:K' or an existing pair file"


def needs_similarity(spec: str | os.PathLike[str]) -> bool:
    """Whether the pairs ``spec`` asks for image similarity (``retrieval:K``, ``sequential:K+loop:L``)."""
    text = os.fspath(spec)
    return bool(_RETRIEVAL.fullmatch(text) or ((m := _SEQUENTIAL.fullmatch(text)) and m.group(2)))


def make_pairs(names: Sequence[str], spec: str | os.PathLike[str],
               similarity: Callable[[], np.ndarray] | None = None) -> list[tuple[str, str]]:
    """Pairs of ``names``: ``"exhaustive"``, ``"sequential:K"`` (each image with its next K in sorted order),
    ``"sequential:K+loop:L"`` (plus the L most similar images more than K away), ``"retrieval:K"`` (the K most
    similar images) or the path of a pair list (``name0 name1`` per line).

    Args:
        names: the images, in sequence order.
        spec: the pairs option.
        similarity: returns the ``(N, N)`` similarity of ``names`` (called only by ``retrieval``/``loop``).

    Raises:
        ValueError: a malformed spec, a pair of an image with itself (a pair listed twice is matched once), or a
            similarity-based spec without ``similarity``.
        KeyError: a pair file that names an image not in ``names``.
    """
    from gim_plugins.reconstruct.retrieval import top_k_pairs

    ordered = list(names)
    if len(set(ordered)) != len(ordered):
        raise InputError("duplicate image names")
    text = os.fspath(spec)
    if text == "exhaustive":
        return list(itertools.combinations(ordered, 2))
    if needs_similarity(text) and similarity is None:
        raise ValueError(f"pairs: {text!r} needs the images' similarity (run it through gim reconstruct)")
    if match := _RETRIEVAL.fullmatch(text):
        k = int(match.group(1))
        if k < 1:
            raise ValueError(f"pairs: retrieval:K needs K >= 1, got {text!r}")
        assert similarity is not None
        return top_k_pairs(ordered, similarity(), k)
    if text.startswith("sequential"):
        return _sequential(ordered, text, similarity)
    if text.startswith("retrieval") and not Path(text).is_file():
        raise InputError(f"pairs: expected {SPECS} (retrieval:K with an integer K), got {text!r}")
    return _from_file(ordered, Path(text))


def _sequential(ordered: list[str], text: str, similarity: Callable[[], np.ndarray] | None
                ) -> list[tuple[str, str]]:
    from gim_plugins.reconstruct.retrieval import top_k_pairs

    match = _SEQUENTIAL.fullmatch(text)
    if match is None:
        raise InputError(f"pairs: expected 'sequential:K' or 'sequential:K+loop:L' with integers, got {text!r}")
    window = int(match.group(1) or 5)
    if window < 1:
        raise InputError(f"pairs: sequential window must be >= 1, got {window}")
    pairs = {(i, j) for i in range(len(ordered)) for j in range(i + 1, min(i + 1 + window, len(ordered)))}
    loops = int(match.group(2) or 0)
    if loops and similarity is not None:
        index = {name: i for i, name in enumerate(ordered)}
        far = top_k_pairs(ordered, similarity(), loops, allowed=lambda i, j: abs(i - j) > window)
        pairs.update((index[a], index[b]) for a, b in far)
    return [(ordered[i], ordered[j]) for i, j in sorted(pairs)]


def _from_file(ordered: list[str], path: Path) -> list[tuple[str, str]]:
    text = str(path)
    if not path.is_file():
        raise InputError(f"pairs: expected {SPECS}, got {text!r}")
    pairs = read_pairs(path)
    known = set(ordered)
    unknown = sorted({n for pair in pairs for n in pair if n not in known})
    if unknown:
        raise UnknownNameError(f"{path} names images that are not in the image directory: {unknown[:10]}")
    seen: set[frozenset[str]] = set()
    unique = []
    for name0, name1 in pairs:
        if name0 == name1:
            raise InputError(f"{path}: pair of an image with itself: {name0}")
        key = frozenset((name0, name1))
        if key not in seen:  # retrieval pair lists often hold (a, b) and (b, a): match once
            seen.add(key)
            unique.append((name0, name1))
    if len(unique) < len(pairs):
        log.info("%s: %d duplicate pairs skipped", path, len(pairs) - len(unique))
    return unique


def image_pairs(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any],
                matcher: Any | None = None, features_path: Path | None = None
                ) -> tuple[list[str], list[tuple[str, str]]]:
    """The pairs to match (also written to ``pairs.txt``) and the sorted names of the images they use.

    ``matcher`` (the run's, when already loaded) lends its feature cache to retrieval (``retrieval:K``,
    ``sequential:K+loop:L``); without it the matcher is loaded when the spec needs it. ``features_path``: the
    feature cache retrieval fills (a shard's own; default ``features.h5``).

    Raises:
        FileNotFoundError: no image folder or no images in it.
        ValueError: no pairs (e.g. a single image), or a bad ``pairs`` option (see :func:`make_pairs`).
    """
    conf, paths = resolve_conf(conf), ReconstructPaths.of(paths)
    names = list_images(paths.images)

    def similarity() -> np.ndarray:
        from gim_plugins.reconstruct import retrieval

        sim, _ = retrieval.cached_similarity(conf, paths.images, paths.out, names, matcher, features_path)
        return sim

    pairs = make_pairs(names, conf.pairs, similarity)
    if not pairs:
        raise InputError(f"no image pairs to match ({len(names)} images, pairs={conf.pairs!r})")
    write_pairs(paths.pairs, pairs)
    used = sorted({n for pair in pairs for n in pair})
    return used, pairs


def main(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any]) -> Path:
    """Write ``pairs.txt`` for the images and the ``pairs`` option; returns its path."""
    image_pairs(conf, paths)
    return ReconstructPaths.of(paths).pairs
