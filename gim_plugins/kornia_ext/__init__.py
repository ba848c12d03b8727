"""kornia host integration: every registered matcher as a kornia-native ``nn.Module``.

``GIMMatcher(model="gim_dkm" | "gim_loftr" | "gim_lightglue" | "gim_roma" | "aliked_lightglue" | …)`` takes
kornia's LoFTR input dict and returns its output dict; ``GIMLocalFeature`` is the extractor half of a sparse matcher
with kornia's ``LocalFeature`` output ``(lafs, responses, descriptors)``. The contract is spelled out in
:mod:`gim_plugins.kornia_ext.matchers`.

How they reach ``kornia.feature``: kornia has no plugin system, so the package's ``.pth`` bootstrap
(:mod:`gim_plugins._bootstrap`) gives ``kornia.feature`` a module ``__getattr__``/``__dir__`` serving entry-point
group ``kornia.feature``, where ``pyproject.toml`` declares ``GIMMatcher = "gim_plugins.kornia_ext:GIMMatcher"``.
``kornia.feature.GIMMatcher`` and ``from kornia.feature import GIMMatcher`` then import this package on first
access only; ``import kornia`` alone imports none of it. Where the hook is off (``GIM_PLUGINS_NO_HOOKS=1``,
``python -S``), :func:`register` sets the attribute explicitly.

This ``__init__`` resolves its names lazily (PEP 562), so the entry point's import costs nothing beyond the name that
is asked for; the modules behind it import torch and kornia (which a kornia user has loaded anyway) but no network
code: a matcher's own module is imported when a ``GIMMatcher`` is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["GIMLocalFeature", "GIMMatcher", "register"]

_LAZY = {"GIMMatcher": "gim_plugins.kornia_ext.matchers", "GIMLocalFeature": "gim_plugins.kornia_ext.matchers"}

if TYPE_CHECKING:
    from gim_plugins.kornia_ext.matchers import GIMLocalFeature, GIMMatcher


def register() -> None:
    """Set ``kornia.feature.GIMMatcher`` explicitly, for interpreters where the ``.pth`` hook does not run.

    Idempotent. Not needed after a normal install: there ``kornia.feature.GIMMatcher`` resolves by itself.
    """
    import kornia.feature

    from gim_plugins.kornia_ext.matchers import GIMMatcher

    if kornia.feature.__dict__.get("GIMMatcher") is not GIMMatcher:
        kornia.feature.GIMMatcher = GIMMatcher


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'gim_plugins.kornia_ext' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
