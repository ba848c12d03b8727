"""Checkpoint keys: stripping GIM's prefixes, and the one strict-loading check every network uses.

Every matcher loads its weights with ``load_state_dict(strict=True)`` — a checkpoint that leaves a parameter at its
random initial value, or carries tensors the network does not use, is the wrong file, not a near miss. Before that
call, :func:`fit_state_dict` compares the file with the network and raises :class:`CheckpointMismatchError` naming
*every* missing, unexpected and mis-shaped key (torch stops at the first shape mismatch), so a matcher built from
several files can check them all before loading any, and nothing is half-loaded.

Some modules compute buffers in their constructor that checkpoints do not carry (kornia's ALIKED sampling grid,
LightGlue's early-exit thresholds); those keys are passed as ``derived`` and keep the freshly built module's values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from gim_plugins.errors import UserError

__all__ = [
    "ALIKED_DERIVED",
    "LIGHTGLUE_DERIVED",
    "CheckpointMismatchError",
    "describe_keys",
    "fit_state_dict",
    "load_strict",
    "state_dict_mismatch",
    "unprefixed_state_dict",
]

ALIKED_DERIVED = frozenset({"dkd.hw_grid"})
"""Buffer of kornia's ``ALIKED`` that its weight files lack (the keypoint sampling grid, built from the conf)."""

LIGHTGLUE_DERIVED = frozenset({"confidence_thresholds"})
"""Buffer of kornia's ``LightGlue`` that its weight files lack (the per-layer early-exit thresholds)."""


class CheckpointMismatchError(ValueError, RuntimeError, UserError):
    """A checkpoint whose keys or shapes do not fit the network it is loaded into.

    A user error (the wrong file was given for this network), reported as one line with exit status 2 by the CLI. It
    is also a ``ValueError`` and a ``RuntimeError``: the two types the DKM/RoMa and the kornia-based loaders raised
    before they shared this check (``RuntimeError`` is what ``torch.nn.Module.load_state_dict`` raises), so callers
    catching either keep working.
    """


def describe_keys(keys: list[str], limit: int = 12) -> str:
    """The first ``limit`` keys, comma separated, and how many there are in all."""
    shown = ", ".join(keys[:limit])
    return f"{shown}, … ({len(keys)} in all)" if len(keys) > limit else shown


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor],
                        derived: frozenset[str] = frozenset()) -> str:
    """``""`` when ``given`` has exactly ``expected``'s keys and shapes, else what differs, for an error message.

    Keys in ``derived`` may be absent from ``given`` (they are not "missing"); present, they must fit like any other.
    """
    missing = [k for k in expected if k not in given and k not in derived]
    unexpected = [k for k in given if k not in expected]
    wrong = [f"{k} {tuple(given[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in given and given[k].shape != v.shape]
    parts = [f"missing keys: {describe_keys(missing)}" if missing else "",
             f"unexpected keys: {describe_keys(unexpected)}" if unexpected else "",
             f"wrong shapes: {describe_keys(wrong)}" if wrong else ""]
    return "; ".join(p for p in parts if p)


def fit_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, *,
                   derived: frozenset[str] = frozenset(), hint: str = "") -> dict[str, torch.Tensor]:
    """Check ``state_dict`` against ``module`` and return what to pass to ``module.load_state_dict(strict=True)``.

    Args:
        module: the network (or part) the tensors are for.
        state_dict: the checkpoint's tensors, already remapped to the module's key names.
        what: names the network and checkpoint in the message, e.g. ``"gim_dkm (DKMv3)"``.
        derived: buffers the module computes itself and files may lack; the module's own values fill them in.
        hint: appended to the message when the check fails (e.g. where misplaced tensors belong).

    Returns:
        ``state_dict`` plus the module's own values of the ``derived`` buffers it lacks.

    Raises:
        CheckpointMismatchError: keys are missing or unexpected, or shapes differ; the message names them all.
    """
    own = module.state_dict()
    mismatch = state_dict_mismatch(own, state_dict, derived)
    if mismatch:
        raise CheckpointMismatchError(f"{what}: checkpoint does not fit the network; {mismatch}{hint}")
    return {**{k: own[k] for k in derived if k in own and k not in state_dict}, **state_dict}


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, *,
                derived: frozenset[str] = frozenset(), hint: str = "") -> None:
    """:func:`fit_state_dict`, then ``module.load_state_dict(..., strict=True)``.

    A network loaded from several files calls :func:`fit_state_dict` on each first, then loads them, so that a bad
    second file leaves the first unloaded too.
    """
    module.load_state_dict(fit_state_dict(module, state_dict, what, derived=derived, hint=hint), strict=True)


def unprefixed_state_dict(checkpoint: Mapping[str, Any], owner: str, prefixes: tuple[str, ...] = ("model.",),
                          drop: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """A GIM checkpoint's tensors keyed as the network names them (pure; the input is untouched).

    Accepts the Lightning layout ``{"state_dict": {...}}`` or a plain state dict; one leading prefix out of
    ``prefixes`` is stripped from each key (GIM's loaders strip one), keys starting with a ``drop`` prefix (after
    stripping) are left out, and nothing else is: the strict load that follows reports what does not fit.

    Raises:
        ValueError: a value is not a tensor, or a key appears twice (with and without a prefix); ``owner`` names
            the checkpoint in the message.
    """
    inner = checkpoint.get("state_dict")
    if isinstance(inner, Mapping):
        checkpoint = inner
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for raw_key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointMismatchError(f"{owner} checkpoint: {raw_key!r} is a {type(value).__name__}, not a tensor")
        key = next((raw_key[len(p):] for p in prefixes if raw_key.startswith(p)), raw_key)
        if drop and key.startswith(drop):
            continue
        if key in out:
            prefixed = raw_key if raw_key != key else origin[key]
            raise CheckpointMismatchError(f"{owner} checkpoint: both {key!r} and {prefixed!r} are present (the same "
                                          "tensor twice, with and without a prefix)")
        out[key] = value
        origin[key] = raw_key
    return out
