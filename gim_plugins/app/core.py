"""The page's checks and inputs, without Gradio: matcher status, option specs, validation, the image size check.

The page needs to know which matchers exist and whether their weights are installed (and, if not, the exact
``gim weights`` command that installs them); typed inputs generated from a matcher's ``default_conf``; and the same
validation the command line applies: :func:`gim_plugins.conf.parse_conf` for text values, :func:`merge_conf`
strictness, the matcher's own range checks when it is built (:mod:`gim_plugins.app.cache`), and the request's
own values (robust model, threshold, maximum side, device).

Large uploads are refused from the image header, before any pixel is decoded (PIL reads the size lazily). Every
problem the user can fix raises :class:`~gim_plugins.errors.UserError` (a ``ConfError`` for options) with one line
naming the problem and the fix.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gim_plugins.conf import ConfError, merge_conf, parse_conf, to_plain
from gim_plugins.errors import UserError
from gim_plugins.registry import get_matcher_class, list_matchers

__all__ = [
    "DEFAULT_MAX_MODELS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "ROBUST_MODELS",
    "WARP_THRESHOLD",
    "MatcherStatus",
    "OptionSpec",
    "available_devices",
    "canonical",
    "check_device",
    "check_request",
    "matcher_status",
    "matcher_statuses",
    "option_specs",
    "parse_options",
    "probe_image",
]

DEFAULT_MAX_PIXELS = 40_000_000
"""Largest accepted image (width × height, per image); larger uploads are refused from their header."""

DEFAULT_MAX_SIDE = 1600
"""Default long side for the optional downscaling before matching."""

DEFAULT_MAX_MODELS = 2
"""How many loaded matchers the page keeps (least recently used ones are released first)."""

ROBUST_MODELS = ("fundamental", "homography")
"""Models fitted with USAC_MAGSAC to count inliers."""

WARP_THRESHOLD = 8.0
"""Inlier threshold (px) of the homography behind the warp picture when inliers are counted with F (GIM's demo)."""


# ------------------------------------------------------------------------------------------------------- matchers


@dataclass(frozen=True)
class MatcherStatus:
    """Whether a registered matcher can run, and what to do when it cannot.

    Attributes:
        name: registry name.
        ready: every default weight file is installed (matchers without weights are always ready).
        text: one line for the page: the weights' states, or how to install the missing ones.
    """

    name: str
    ready: bool
    text: str


def matcher_status(name: str) -> MatcherStatus:
    """The weights status of matcher ``name``; missing weights come with the ``gim weights`` command to run."""
    from gim_plugins import weights as registry
    from gim_plugins.matching import weights_available

    try:
        cls = get_matcher_class(name)
    except (KeyError, ImportError, AttributeError, TypeError) as exc:  # unknown, or a plugin that fails to import
        return MatcherStatus(name, False, f"cannot be loaded: {exc}")
    if not cls.weight_names:
        return MatcherStatus(name, True, "no weights needed")
    parts, missing = [], []
    for weight in cls.weight_names:
        state = registry.status(weight).state
        if state == "missing":
            missing.append(weight)
        parts.append(f"{weight}: {state}")
    if missing:
        how = "; ".join(f"{w}: {registry.get_spec(w).how_to_get()}" for w in missing)
        return MatcherStatus(name, False, f"weights missing ({how})")
    return MatcherStatus(name, weights_available(name), "weights " + ", ".join(parts))


def matcher_statuses() -> list[MatcherStatus]:
    """:func:`matcher_status` of every registered matcher, in registry order."""
    return [matcher_status(name) for name in list_matchers()]


# -------------------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class OptionSpec:
    """One matcher option as the page shows it.

    Attributes:
        key: the option's name (``a.b`` for a nested option).
        default: the value in the matcher's ``default_conf``.
        kind: ``"bool"`` (checkbox), ``"int"`` / ``"float"`` (number fields), or ``"text"`` (strings, and values
            written as Python literals: ``None``, tuples such as ``(1152, 1536)``; an empty field means ``None``).
    """

    key: str
    default: Any
    kind: str

    @property
    def initial(self) -> Any:
        """The widget's initial value (the default, as text for ``"text"`` options)."""
        if self.kind != "text":
            return self.default
        return self.default if isinstance(self.default, str) else repr(_as_tuples(self.default))


def _as_tuples(value: Any) -> Any:
    """Lists inside a default (frozen confs hold tuples) shown as tuples, the form ``parse_conf`` reads back."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def _flatten(conf: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in conf.items():
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "text"


def option_specs(name: str) -> list[OptionSpec]:
    """The page's inputs for matcher ``name``, one per (flattened) key of its ``default_conf``, in its order."""
    cls = get_matcher_class(name)
    return [OptionSpec(key, value, _kind(value)) for key, value in _flatten(to_plain(cls.default_conf)).items()]


def _typed(spec: OptionSpec, value: Any, owner: str) -> Any:
    """A widget value converted to the option's type (text parsed as the CLI parses ``--conf KEY=VALUE``)."""
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise ConfError(f"option {spec.key!r} of {owner} expects true or false, got {value!r}")
        return value
    if spec.kind in ("int", "float"):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ConfError(f"option {spec.key!r} of {owner} needs a value (default: {spec.default!r})")
        if isinstance(value, str):
            value = parse_conf([f"{spec.key}={value.strip()}"])[spec.key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfError(f"option {spec.key!r} of {owner} expects a number, got {value!r}")
        if spec.kind == "int":
            if float(value) != int(value):
                raise ConfError(f"option {spec.key!r} of {owner} expects a whole number, got {value!r}")
            return int(value)
        return float(value)
    text = "" if value is None else str(value).strip()
    if not text and not isinstance(spec.default, str):
        return None
    parsed = parse_conf([f"{spec.key}={text}"])[spec.key]
    if isinstance(spec.default, list | tuple) and not isinstance(parsed, list | tuple):  # merge_conf lets it pass
        raise ConfError(f"option {spec.key!r} of {owner} expects a tuple such as {spec.initial}, got {text!r}")
    return parsed


def canonical(value: Any) -> str:
    """A value as sorted JSON: equal for equal options (``(1, 2)`` and ``[1, 2]``), different for 1, 1.0 and True."""
    return json.dumps(to_plain(value), sort_keys=True, default=repr)


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def parse_options(name: str, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Turn the page's option values into the ``**conf`` of :func:`~gim_plugins.matching.load_matcher`.

    Args:
        name: the matcher.
        values: ``{key: widget value}`` for some or all of :func:`option_specs`; missing keys keep their default.

    Returns:
        The options that differ from the defaults (nested as in ``default_conf``), already checked by
        :func:`~gim_plugins.conf.merge_conf`. Range checks are the matcher's own and run when it is built.

    Raises:
        ConfError: an unknown key, a value of the wrong type, or a text that does not parse.
    """
    owner = f"matcher {name!r}"
    specs = {spec.key: spec for spec in option_specs(name)}
    changed: dict[str, Any] = {}
    for key, value in (values or {}).items():
        if key not in specs:
            raise ConfError(f"unknown option {key!r} for {owner}; known options: {', '.join(sorted(specs))}")
        typed = _typed(specs[key], value, owner)
        if canonical(typed) != canonical(specs[key].default):  # 1 ≠ 1.0 ≠ True; (1, 2) = [1, 2]
            changed[key] = typed
    overrides = _unflatten(changed)
    merge_conf(get_matcher_class(name).default_conf, overrides, owner=owner)
    return overrides


# --------------------------------------------------------------------------------------------------------- checks


def available_devices() -> list[str]:
    """``cpu`` and every CUDA device torch sees (``cuda:0``, …)."""
    import torch

    return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def check_device(device: str) -> str:
    """Validate a torch device string for this machine; returns it normalised (``cuda`` → ``cuda:0``).

    Raises:
        UserError: an unparsable device, or a GPU that torch does not see.
    """
    import torch

    try:
        parsed = torch.device(str(device).strip())
    except RuntimeError:
        raise UserError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if parsed.type == "cpu":
        return "cpu"
    if parsed.type == "cuda":
        count = torch.cuda.device_count()
        index = parsed.index or 0
        if index >= count:
            seen = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise UserError(f"device {device!r} is not available (torch sees {seen}): choose cpu")
        return f"cuda:{index}"
    raise UserError(f"device {device!r} is not supported by the page: use cpu or cuda:N")


def check_request(robust: str, threshold: Any, max_side: Any, min_size: int) -> tuple[float, int | None]:
    """Validate the request's robust model, threshold (px, > 0) and maximum side; returns ``(threshold, max_side)``.

    Raises:
        UserError: the value that is wrong and what it should be.
    """
    if robust not in ROBUST_MODELS:
        raise UserError(f"unknown robust model {robust!r}: choose {' or '.join(ROBUST_MODELS)}")
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise UserError(f"the inlier threshold must be a number of pixels, got {threshold!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"the inlier threshold must be a positive number of pixels, got {threshold!r}")
    if max_side is None:
        return value, None
    if isinstance(max_side, bool) or not isinstance(max_side, int | float) or float(max_side) != int(max_side):
        raise UserError(f"the maximum side must be a whole number of pixels, got {max_side!r}")
    if int(max_side) < min_size:
        raise UserError(f"the maximum side must be at least {min_size} px for this matcher, got {int(max_side)}")
    return value, int(max_side)


def probe_image(path: str | Path | None, label: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` of an image file read from its header only; refuses one above ``max_pixels``.

    Raises:
        UserError: no file, not an image, or too many pixels (the message says how to get under the limit).
    """
    from PIL import Image, UnidentifiedImageError

    if path is None or not str(path):
        raise UserError(f"{label} is missing: upload or paste an image, or load the example pair")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # lazy: reads the header, decodes nothing
                width, height = image.size
    except Image.DecompressionBombError:
        raise UserError(f"{label} is far too large to decode safely: downscale it before uploading") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"cannot read {label} as an image ({type(exc).__name__}): upload a PNG or JPEG file") from None
    if width * height > max_pixels:
        raise UserError(f"{label} is {width}×{height} px ({width * height / 1e6:g} MP), above the page's limit of "
                        f"{max_pixels / 1e6:g} MP: downscale it first, or start the page with a larger --max-pixels")
    return width, height
