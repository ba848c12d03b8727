"""``gim reconstruct``: a folder of images → matches → COLMAP database → geometric verification → sparse model.

A pipeline on top of the COLMAP adapter (:mod:`gim_plugins.colmap_ext`), in the manner of hloc: one module per
step, each an importable ``main(conf, paths) -> Path`` that reads the previous step's files, skips work that is
already done and writes its outputs atomically, so any step can be rerun alone and a killed run resumes.

1. :mod:`~gim_plugins.reconstruct.pairs` → ``pairs.txt``: ``exhaustive``, ``sequential:K`` or a pair-list file.
2. :mod:`~gim_plugins.reconstruct.match` → ``matches.sqlite`` (+ ``features.h5`` for sparse matchers,
   ``match.json``): every pair matched once and committed on its own. It builds the pair list itself first, so
   matching always follows the current images and ``pairs`` option.
3. :mod:`~gim_plugins.reconstruct.database` → ``database.db`` (+ ``database.json``): keypoints and matches
   (:mod:`~gim_plugins.reconstruct.correspondences` reads them back from step 2), verified by pycolmap or the colmap
   program.
4. :mod:`~gim_plugins.reconstruct.mapping` → ``sparse/0`` (largest model, binary + text) and ``summary.json``.
5. Optionally (``dense=``, ``--dense``) :mod:`~gim_plugins.reconstruct.dense` → ``dense/fused.ply`` and
   ``dense/summary.json``: COLMAP's MVS where CUDA allows, else dense triangulation from a matcher.

:func:`main` runs them under an exclusive lock on the output folder. Options: :data:`DEFAULT_CONF` (merged
strictly); file names: :class:`ReconstructPaths`. The command line (``gim reconstruct``) is
:mod:`gim_plugins.reconstruct.cli`. Importing this package imports nothing heavy.

Example:
    >>> from gim_plugins.reconstruct import main
    >>> summary = main({"matcher": "aliked_lightglue", "pairs": "sequential:5"},
    ...                {"images": "images/", "out": "recon/"})      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

__all__ = ["DEFAULT_CONF", "ReconstructPaths", "load_correspondences", "main", "output_lock"]

_LAZY = {
    "DEFAULT_CONF": "gim_plugins.reconstruct.common",
    "ReconstructPaths": "gim_plugins.reconstruct.common",
    "output_lock": "gim_plugins.reconstruct.common",
    "load_correspondences": "gim_plugins.reconstruct.correspondences",
}

if TYPE_CHECKING:
    from gim_plugins.reconstruct.common import DEFAULT_CONF, ReconstructPaths, output_lock
    from gim_plugins.reconstruct.correspondences import load_correspondences


def main(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any], *,
         dense: Mapping[str, Any] | None = None) -> Path:
    """Run pairs + match → database → mapping; returns ``summary.json`` (resumable: finished work is skipped).

    With ``shard="i/n"`` only this shard's pairs are matched and its store is returned (a later run without
    ``shard`` merges the shards and maps); under ``torchrun`` every rank matches its share, rank 0 merges, maps and
    returns ``summary.json``, the other ranks return their shard's store.

    Args:
        conf: options (:data:`DEFAULT_CONF`; unknown keys are errors).
        paths: :class:`ReconstructPaths` or a mapping with ``images`` (folder, searched recursively) and ``out``.
        dense: run the dense step after mapping with these options (``{}``: defaults; see
            :data:`gim_plugins.reconstruct.dense.DEFAULT_CONF`); without a ``matcher`` it uses the reconstruction's
            matcher, options, weights and device.

    Raises:
        UserError: (one line) a bad option or device, a missing image folder, another run holding the output
            folder; with ``dense``: no dense method can run here (before anything runs), or the mapping
            made no model.
    """
    import os

    from gim_plugins.errors import UserError
    from gim_plugins.matching import check_device
    from gim_plugins.reconstruct import database, mapping, match
    from gim_plugins.reconstruct.common import ReconstructPaths, check_paths, output_lock, resolve_conf

    conf, paths = resolve_conf(conf), ReconstructPaths.of(paths)
    check_device(conf.device)  # once, before anything is written
    check_paths(paths)
    dense_conf = None
    if dense is not None:
        from gim_plugins.conf import to_plain
        from gim_plugins.reconstruct import dense as dense_step

        inherited = {"progress": conf.progress}
        if dense.get("matcher") is None:
            inherited.update(matcher=conf.matcher, matcher_conf=to_plain(conf.matcher_conf), weights=conf.weights,
                             device=conf.device)
        dense_conf = dense_step.resolve_dense_conf({**inherited, **{k: v for k, v in dense.items() if v is not None}})
        dense_step.choose_method(dense_conf, dense_conf.matcher)  # fails now, not after the sparse steps
    def map_and_densify() -> Path:
        summary = mapping.main(conf, paths)
        if dense_conf is not None:
            if not (paths.model / "images.txt").is_file():
                import json

                registered = json.loads(summary.read_text()).get("registered", 0)
                raise UserError(f"--dense: the sparse reconstruction registered {registered} images and made no model "
                                f"to densify (see {summary}); try more images, more pairs or another matcher")
            dense_step.main(dense_conf, paths)
        return summary

    if conf.shard or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        with output_lock(paths.out, shared=True):
            store = match.main(conf, paths)
        if store != paths.matches:
            return store  # a shard's store: the merge (a run without shard) maps
        with output_lock(paths.out, wait=True):  # torchrun's rank 0 merged: map once the other ranks let go
            database.main(conf, paths)
            return map_and_densify()
    with output_lock(paths.out):
        match.main(conf, paths)
        database.main(conf, paths)
        return map_and_densify()


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'gim_plugins.reconstruct' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
