"""gim-plugins: the GIM image matchers as first-class citizens of hloc, kornia and COLMAP.

Importing this package loads only the standard library (it is imported at every interpreter start by the hloc/kornia
bootstrap); the public names below are resolved on first use (PEP 562).

Example:
    >>> import gim_plugins
    >>> matcher = gim_plugins.load_matcher("aliked_lightglue")          # doctest: +SKIP
    >>> result = matcher.match("left.png", "right.png")                 # doctest: +SKIP
    >>> print(len(result), result.fundamental().num_inliers)            # doctest: +SKIP
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the .pth imports this package at every start

__version__ = "0.1.0"

__all__ = [
    "PIXEL_CONVENTION",
    "FeatureCache",
    "Features",
    "GeometryFit",
    "MatchResult",
    "__version__",
    "estimate_fundamental",
    "estimate_homography",
    "list_matchers",
    "load_matcher",
    "match_pair",
    "read_image",
]

_LAZY = {
    "PIXEL_CONVENTION": "gim_plugins.types",
    "Features": "gim_plugins.types",
    "MatchResult": "gim_plugins.types",
    "FeatureCache": "gim_plugins.features",
    "GeometryFit": "gim_plugins.geometry",
    "estimate_fundamental": "gim_plugins.geometry",
    "estimate_homography": "gim_plugins.geometry",
    "list_matchers": "gim_plugins.registry",
    "load_matcher": "gim_plugins.matching",
    "match_pair": "gim_plugins.matching",
    "read_image": "gim_plugins.io",
}

if TYPE_CHECKING:
    from typing import Any

    from gim_plugins.features import FeatureCache
    from gim_plugins.geometry import GeometryFit, estimate_fundamental, estimate_homography
    from gim_plugins.io import read_image
    from gim_plugins.matching import load_matcher, match_pair
    from gim_plugins.registry import list_matchers
    from gim_plugins.types import PIXEL_CONVENTION, Features, MatchResult


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'gim_plugins' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
