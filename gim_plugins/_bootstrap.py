"""Let hosts without a plugin system (hloc, kornia) see models and confs that any package declares as entry points.

Imported at every interpreter start by the one-line ``gim_plugins.pth`` that a normal or editable install puts into
``site-packages``; so it is small, standard library only, and imports no host, torch, or other part of
``gim_plugins``. Importing it installs one finder at ``sys.meta_path[0]``: the finder compares each imported module
name with a handful of host names and steps aside for every other import. For a hooked name it hands over to
:mod:`gim_plugins._host_hooks`, which is imported only then.

Why a finder: ``python -m hloc.match_dense`` does not import ``hloc.match_dense``; ``runpy`` asks the module's loader
for its code object and runs it as ``__main__``, where ``--conf``'s choices are read from ``confs`` during that run.
A hook that patches the module after import never reaches hloc's CLI; a loader that hands ``runpy`` code with the
merge built in does, and the same finder covers ``import``.

Entry-point groups any distribution may declare (details in :mod:`gim_plugins._host_hooks`):

* ``hloc.matchers``, ``hloc.extractors``: name = model name (``conf["model"]["name"]``), value = a subclass of
  hloc's ``BaseModel``;
* ``hloc.match_dense.confs``, ``hloc.match_features.confs``, ``hloc.extract_features.confs``: name = conf name,
  value = a dict, or a callable returning a dict (or ``None``: not offered);
* ``kornia.feature``: name = attribute, value = any object;
* ``hloc.match_dense.import_fallbacks`` (same for the other two steps): name = a module the step imports, value =
  the stand-in module imported instead when that import fails.

The host's own names win; a broken plugin warns and never breaks the host; ``GIM_PLUGINS_NO_HOOKS=1`` turns all of
it off (set it before Python starts).
"""

from __future__ import annotations

import os
import sys

__all__ = ["ENV_DISABLE", "HOOKED_MODULES", "MODEL_PACKAGES", "HostFinder", "hooks_disabled", "install", "installed",
           "uninstall"]

ENV_DISABLE = "GIM_PLUGINS_NO_HOOKS"
HOOKED_MODULES = frozenset({"hloc.match_dense", "hloc.match_features", "hloc.extract_features", "kornia.feature"})
MODEL_PACKAGES = frozenset({"hloc.matchers", "hloc.extractors"})


def hooks_disabled() -> bool:
    """Whether ``GIM_PLUGINS_NO_HOOKS`` is true (set to anything but empty, ``0``, ``false``, ``no``, ``off``)."""
    return os.environ.get(ENV_DISABLE, "").strip().lower() not in ("", "0", "false", "no", "off")


class HostFinder:
    """The meta-path finder: forwards hooked host modules and model modules of hloc; ``None`` for everything else."""

    _gim_plugins_finder = True

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        if fullname in HOOKED_MODULES or fullname.rpartition(".")[0] in MODEL_PACKAGES:
            from gim_plugins import _host_hooks

            return _host_hooks.find_spec(fullname, path, target)
        return None

    def invalidate_caches(self) -> None:
        """Forget the entry-point scan (``importlib.invalidate_caches()`` after installing a plugin)."""
        hooks = sys.modules.get("gim_plugins._host_hooks")
        if hooks is not None:
            hooks.invalidate_caches()


def installed() -> bool:
    """Whether a finder of this module is on ``sys.meta_path``."""
    return any(getattr(f, "_gim_plugins_finder", False) for f in sys.meta_path)


def uninstall() -> None:
    """Remove the finder (modules already imported keep their merged confs and attribute hooks)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "_gim_plugins_finder", False)]


def install() -> None:
    """Put one finder first on ``sys.meta_path`` (idempotent) and hook host modules that are already imported."""
    uninstall()
    sys.meta_path.insert(0, HostFinder())
    if any(name in sys.modules for name in HOOKED_MODULES):
        from gim_plugins import _host_hooks

        _host_hooks.hook_imported_modules()


if not hooks_disabled():
    install()
