"""Step 1 of ``gim reconstruct``: which image pairs to match — ``exhaustive``, ``sequential:K`` or a pair-list file
(hloc format) — written to ``pairs.txt``.

The list is rebuilt from the images and the ``pairs`` option on every run (it is cheap), so a changed option or a
new image takes effect at once; the match step only matches the pairs its store does not hold yet.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gim_plugins.h5io import read_pairs, write_pairs
from gim_plugins.reconstruct.common import ReconstructPaths, resolve_conf

__all__ = ["IMAGE_EXTENSIONS", "image_pairs", "list_images", "main", "make_pairs"]

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
        raise ValueError(f"image names that differ only in case are ambiguous on some file systems: {clashes}")
    for name in names:
        if name != name.strip() or any(c in name for c in "\n\r\t"):
            raise ValueError(f"image name {name!r} has leading/trailing whitespace or control characters")
    return names


def make_pairs(names: Sequence[str], spec: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Pairs of ``names``: ``"exhaustive"``, ``"sequential:K"`` (each image with its next K in sorted order) or
    the path of a pair list (``name0 name1`` per line).

    Raises:
        ValueError: a malformed spec or a pair of an image with itself (a pair listed twice is matched once).
        KeyError: a pair file that names an image not in ``names``.
    """
    ordered = list(names)
    if len(set(ordered)) != len(ordered):
        raise ValueError("duplicate image names")
    text = os.fspath(spec)
    if text == "exhaustive":
        return list(itertools.combinations(ordered, 2))
    if text.startswith("sequential"):
        _, _, k = text.partition(":")
        try:
            window = int(k or 5)
        except ValueError:
            raise ValueError(f"pairs: expected 'sequential:K' with an integer K, got {text!r}") from None
        if window < 1:
            raise ValueError(f"pairs: sequential window must be >= 1, got {window}")
        return [(ordered[i], ordered[j]) for i in range(len(ordered))
                for j in range(i + 1, min(i + 1 + window, len(ordered)))]
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"pairs: expected 'exhaustive', 'sequential:K' or an existing pair file, got {text!r}")
    pairs = read_pairs(path)
    known = set(ordered)
    unknown = sorted({n for pair in pairs for n in pair if n not in known})
    if unknown:
        raise KeyError(f"{path} names images that are not in the image directory: {unknown[:10]}")
    seen: set[frozenset[str]] = set()
    unique = []
    for name0, name1 in pairs:
        if name0 == name1:
            raise ValueError(f"{path}: pair of an image with itself: {name0}")
        key = frozenset((name0, name1))
        if key not in seen:  # retrieval pair lists often hold (a, b) and (b, a): match once
            seen.add(key)
            unique.append((name0, name1))
    if len(unique) < len(pairs):
        log.info("%s: %d duplicate pairs skipped", path, len(pairs) - len(unique))
    return unique


def image_pairs(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any]
                ) -> tuple[list[str], list[tuple[str, str]]]:
    """The pairs to match (also written to ``pairs.txt``) and the sorted names of the images they use.

    Raises:
        FileNotFoundError: no image folder or no images in it.
        ValueError: no pairs (e.g. a single image), or a bad ``pairs`` option (see :func:`make_pairs`).
    """
    conf, paths = resolve_conf(conf), ReconstructPaths.of(paths)
    names = list_images(paths.images)
    pairs = make_pairs(names, conf.pairs)
    if not pairs:
        raise ValueError(f"no image pairs to match ({len(names)} images, pairs={conf.pairs!r})")
    write_pairs(paths.pairs, pairs)
    used = sorted({n for pair in pairs for n in pair})
    return used, pairs


def main(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any]) -> Path:
    """Write ``pairs.txt`` for the images and the ``pairs`` option; returns its path."""
    image_pairs(conf, paths)
    return ReconstructPaths.of(paths).pairs
