"""Where weight files live and how a checkpoint name becomes a path.

Resolution order (:func:`resolve_weights`): an explicit path → ``$GIM_WEIGHTS_DIR`` → the user cache
(``$XDG_CACHE_HOME/gim-plugins/weights``, default ``~/.cache/gim-plugins/weights``). Never a path relative to the
working directory. A slim state-dict copy (``<stem>.slim.pt``, written by ``gim weights import``) is preferred over
the original file because it loads safely and faster.
"""

from __future__ import annotations

import os
from pathlib import Path

from gim_plugins.weights.catalogue import WeightSpec, get_spec

__all__ = ["ENV_WEIGHTS_DIR", "SLIM_SUFFIX", "cache_dir", "resolve_weights", "search_dirs", "slim_name", "target_dir"]

ENV_WEIGHTS_DIR = "GIM_WEIGHTS_DIR"
SLIM_SUFFIX = ".slim.pt"


def cache_dir() -> Path:
    """The user weight cache: ``$XDG_CACHE_HOME/gim-plugins/weights`` (default ``~/.cache/gim-plugins/weights``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gim-plugins" / "weights"


def search_dirs() -> list[Path]:
    """Directories searched for weights, in order: ``$GIM_WEIGHTS_DIR`` (if set), then the user cache."""
    dirs = []
    if os.environ.get(ENV_WEIGHTS_DIR):
        dirs.append(Path(os.environ[ENV_WEIGHTS_DIR]).expanduser())
    dirs.append(cache_dir())
    return dirs


def target_dir() -> Path:
    """Where fetch/import write: ``$GIM_WEIGHTS_DIR`` if set, else the user cache."""
    return search_dirs()[0]


def slim_name(spec: WeightSpec) -> str:
    """The file name of the slim state-dict copy of ``spec`` (``<stem>.slim.pt``), in the same directory."""
    return Path(spec.file_name).stem + SLIM_SUFFIX


def resolve_weights(name: str, path: str | os.PathLike[str] | None = None, *, verify: bool = False) -> Path:
    """Find the file of checkpoint ``name``.

    Args:
        name: a key of :data:`WEIGHTS`.
        path: an explicit file, which wins over every directory (and is loaded as it is: the user chose it).
        verify: check that a file found in a weight directory is the expected one
            (:func:`~gim_plugins.weights.hashes.check_cached_file`), as loading does.

    Returns:
        The path to load. Where both exist, the slim state-dict copy written by ``gim weights import`` is preferred
        over the original (it loads with ``weights_only=True`` and faster), but only while it was made from that
        original: a stale slim copy is never used.

    Raises:
        FileNotFoundError: nothing found; the message says how to get the file.
        HashMismatchError: ``verify`` and the file is damaged or replaced.
    """
    from gim_plugins.weights.hashes import check_cached_file, slim_is_current

    if path is not None:
        explicit = Path(path).expanduser()
        if explicit.is_dir():
            raise IsADirectoryError(f"weights {explicit} is a directory, not a checkpoint file")
        if not explicit.is_file():
            raise FileNotFoundError(f"weights file not found: {explicit}")
        return explicit
    spec = get_spec(name)
    for directory in search_dirs():
        slim, original = directory / slim_name(spec), directory / spec.file_name
        if slim.is_file() and slim_is_current(directory, spec):
            candidate = slim
        elif original.is_file():
            candidate = original
        else:
            continue
        if verify:
            check_cached_file(spec, candidate)
        return candidate
    where = " or ".join(str(d) for d in search_dirs())
    raise FileNotFoundError(
        f"weights {name!r} ({spec.file_name}) not found in {where}. To get them: {spec.how_to_get()}"
    )
