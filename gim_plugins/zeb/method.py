"""The method a ZEB run evaluates: the matcher built from its preset and options, its name and version in the dump
files, the protocol's treatment of its keypoints, and the fingerprint that decides whether stored results still apply.

Presets: a matcher module may define ``PRESETS = {"<name>-<variant>": {conf}}``. ``preset=None`` picks
``"<name>-zeb"`` when the matcher has one (GIM's ZEB settings, e.g. gim_dkm at 660×880 without padding); ``"none"``
disables that; user ``conf`` entries override the preset's.

Names: the dump files' weight token is the matcher's registered name; the version token comes from the weights
(``100h`` for ``gim_dkm_100h``, the file stem for another checkpoint, ``vanilla`` without weights) or ``--version``,
plus the protocol's suffix (:meth:`~gim_plugins.zeb.protocols.Protocol.versioned`).

Fingerprint (stored in the run's ``run.json``; :mod:`gim_plugins.zeb.store`): the protocol, the matcher and its
class, the preset, the resolved conf, the weights, the keypoint treatment (``keypoint_offset``, ``rescale``,
``padding_mask``), the device type, the versions of the software that can change the numbers, and what the protocol
adds. Its field names are those of the first runs, so older stores resume.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gim_plugins.zeb.config import RunConfig
from gim_plugins.zeb.protocols import Protocol, get_protocol
from gim_plugins.zeb.treatment import Treatment

if TYPE_CHECKING:
    from gim_plugins.models.base import BaseMatcher

__all__ = ["Method", "build_method", "default_version", "resolve_preset", "software_versions"]


def _matcher_presets(cls: type) -> Mapping[str, Mapping[str, Any]]:
    module = sys.modules.get(cls.__module__)
    presets = getattr(module, "PRESETS", None)
    return presets if isinstance(presets, Mapping) else {}


def resolve_preset(matcher: str | None, preset: str | None) -> tuple[str, str | None, dict[str, Any]]:
    """The matcher name, the preset actually used and its conf.

    Args:
        matcher: registered name or ``module:Class``; ``None`` derives it from ``preset`` (``gim_dkm-zeb`` →
            ``gim_dkm``).
        preset: a key of the matcher module's ``PRESETS``, ``None`` for ``"<matcher>-zeb"`` when present, or
            ``"none"``.

    Raises:
        ValueError: neither given, or an unknown preset (the message lists the matcher's presets).
    """
    from gim_plugins.registry import get_matcher_class

    if matcher is None:
        if not preset or preset == "none":
            raise ValueError("give --matcher (or a --preset named <matcher>-<variant>)")
        matcher = preset.rsplit("-", 1)[0]
    cls = get_matcher_class(matcher)
    presets = _matcher_presets(cls)
    if preset == "none":
        return matcher, None, {}
    if preset is None:
        name = f"{cls.name or matcher}-zeb"
        return (matcher, name, dict(presets[name])) if name in presets else (matcher, None, {})
    if preset not in presets:
        known = ", ".join(presets) or "none"
        raise ValueError(f"matcher {matcher!r} has no preset {preset!r}; its presets: {known}")
    conf = dict(presets[preset])
    model = conf.pop("model", None)
    if model is not None and model not in (matcher, cls.name):
        raise ValueError(f"preset {preset!r} is for matcher {model!r}, not {matcher!r}")
    return matcher, preset, conf


def _strip_prefix(text: str, prefix: str) -> str:
    return text[len(prefix) + 1 :] if text.startswith(prefix + "_") else ("" if text == prefix else text)


def default_version(cls: type[BaseMatcher], name: str, weights: str | None) -> str:
    """GIM-like version token: ``100h`` for ``gim_dkm_100h``, the file stem for other checkpoints, ``vanilla``
    without weights."""
    if weights is not None:
        text = Path(weights).stem if os.path.exists(weights) else weights
        return _strip_prefix(text, name) or text
    if not cls.weight_names:
        return "vanilla"
    return _strip_prefix(cls.weight_names[0], name) or "pretrained"


def _token(text: str) -> str:
    return "".join(c if (c.isalnum() or c in "._+-") else "." for c in text) or "matcher"


def software_versions(cls: type) -> dict[str, str]:
    """Versions that can change the numbers: gim-plugins, torch, OpenCV, numpy, and the matcher's own package."""
    import cv2
    import torch

    from gim_plugins import __version__

    versions = {"gim_plugins": __version__, "torch": torch.__version__, "opencv": cv2.__version__,
                "numpy": np.__version__}
    top = cls.__module__.split(".")[0]
    if top != "gim_plugins":
        from importlib.metadata import PackageNotFoundError, packages_distributions, version

        for dist in packages_distributions().get(top, []):
            try:
                versions[dist] = version(dist)
            except PackageNotFoundError:
                pass
    return versions


@dataclass
class Method:
    """A matcher ready for a ZEB run (:func:`build_method`).

    Attributes:
        matcher: the loaded matcher.
        name: the dump files' weight token.
        version: the dump files' version token (with the protocol's suffix).
        preset: the preset used (``None``: the matcher's defaults).
        protocol: the protocol it is evaluated with.
        treatment: what the protocol does with its keypoints.
        fingerprint: what the run's ``run.json`` records and checks on resume.
    """

    matcher: BaseMatcher
    name: str
    version: str
    preset: str | None
    protocol: Protocol
    treatment: Treatment
    fingerprint: dict[str, Any]


def build_method(config: RunConfig, device: str) -> Method:
    """Load the matcher of ``config`` on ``device`` and settle its names, treatment and fingerprint.

    Raises:
        ValueError: an unknown protocol, an option the protocol refuses, a version token reserved for another
            protocol, or an unknown preset.
    """
    from gim_plugins.conf import to_plain
    from gim_plugins.matching import load_matcher
    from gim_plugins.registry import get_matcher_class

    protocol = get_protocol(config.protocol)
    protocol.check_options(config.rescale)
    if config.version:
        protocol.versioned(config.version)  # refuse another protocol's suffix before loading a network
    matcher_name, preset, preset_conf = resolve_preset(config.matcher, config.preset)
    cls = get_matcher_class(matcher_name)
    matcher = load_matcher(matcher_name, weights=config.weights, device=device, **{**preset_conf, **config.conf})
    name = _token(cls.name or matcher_name)
    version = protocol.versioned(config.version or default_version(cls, cls.name or matcher_name, config.weights))
    treatment = protocol.treatment(cls, config.rescale)
    fingerprint = {
        "matcher": name,
        "matcher_class": f"{cls.__module__}:{cls.__qualname__}",
        "preset": preset,
        "conf": to_plain(matcher.conf),
        "weights": matcher.weights_id,
        "device": device.split(":")[0],
        "versions": {**software_versions(cls), **protocol.software_versions()},
        **protocol.fingerprint(treatment),
    }
    return Method(matcher, name, _token(version), preset, protocol, treatment, fingerprint)
