"""Readable strict-loading errors: which keys of a state dict are missing, unexpected or of the wrong shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["describe_keys", "state_dict_mismatch", "unprefixed_state_dict"]


def describe_keys(keys: list[str], limit: int = 12) -> str:
    """The first ``limit`` keys, comma separated, and how many there are in all."""
    shown = ", ".join(keys[:limit])
    return f"{shown}, … ({len(keys)} in all)" if len(keys) > limit else shown


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str:
    """``""`` when ``given`` has exactly ``expected``'s keys and shapes, else what differs, for an error message.

    Checked before ``load_state_dict(strict=True)`` so that the error names every offending key (torch stops at
    the first shape mismatch) and nothing is half-loaded when a second file of the same model does not fit.
    """
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [f"{k} {tuple(given[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in given and given[k].shape != v.shape]
    parts = [f"missing keys: {describe_keys(missing)}" if missing else "",
             f"unexpected keys: {describe_keys(unexpected)}" if unexpected else "",
             f"wrong shapes: {describe_keys(wrong)}" if wrong else ""]
    return "; ".join(p for p in parts if p)


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
            raise ValueError(f"{owner} checkpoint: {raw_key!r} is a {type(value).__name__}, not a tensor")
        key = next((raw_key[len(p):] for p in prefixes if raw_key.startswith(p)), raw_key)
        if drop and key.startswith(drop):
            continue
        if key in out:
            prefixed = raw_key if raw_key != key else origin[key]
            raise ValueError(f"{owner} checkpoint: both {key!r} and {prefixed!r} are present (the same tensor "
                             "twice, with and without a prefix)")
        out[key] = value
        origin[key] = raw_key
    return out
