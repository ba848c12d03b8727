"""What a ZEB run does: :class:`RunConfig`, the one argument of :func:`gim_plugins.zeb.runner.run` besides paths."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunConfig"]


@dataclass(frozen=True)
class RunConfig:
    """What a ZEB run does.

    Attributes:
        matcher: a registered matcher name or ``"module:Class"``; may be omitted when ``preset`` names it.
        weights: checkpoint path or weight name (default: the matcher's registered weights).
        preset: a name of the matcher module's ``PRESETS`` (default ``"<matcher>-zeb"`` when present; ``"none"``
            for the matcher's plain defaults).
        conf: matcher options on top of the preset (strictly checked by the matcher).
        version: the dump files' version token (default: from the weights, ``"vanilla"`` without weights).
        subsets: subset names (default: every known subset folder present in the data directory).
        max_pairs: GIM: evaluate only the first N pairs of each subset (GIM's order); glue-factory: its
            ``max_per_scene`` (default 200).
        shard: ``(i, n)``: this job evaluates pairs ``i::n`` (0-based); ``None`` for all (or torchrun's split).
        device: ``cpu``, ``cuda``, ``cuda:1``… (under torchrun, ``cuda`` means ``cuda:LOCAL_RANK``).
        rescale: ``"scale"`` or ``"canvas"`` (GIM's protocol: how keypoints return to the original image,
            :mod:`gim_plugins.zeb.treatment`); ``None`` picks the matcher's rule.
        progress: show progress bars (pairs/s) on stderr.
        protocol: ``"gim"`` (GIM's ZEB protocol) or ``"gluefactory"`` (cvg/glue-factory's); see
            :mod:`gim_plugins.zeb.protocols`.
        batch_size: matchers with batched matching (gim_dkm, gim_roma): pairs per forward pass; ``None`` batches
            automatically on CUDA (from free memory) and not at all on the CPU. Ignored where padding masks are
            passed to the matcher (they are per pair).
    """

    matcher: str | None = None
    weights: str | None = None
    preset: str | None = None
    conf: Mapping[str, Any] = field(default_factory=dict)
    version: str | None = None
    subsets: Sequence[str] | None = None
    max_pairs: int | None = None
    shard: tuple[int, int] | None = None
    device: str = "cpu"
    rescale: str | None = None
    progress: bool = True
    protocol: str = "gim"
    batch_size: int | None = None
