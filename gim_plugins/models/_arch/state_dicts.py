"""Readable strict-loading errors: which keys of a state dict are missing, unexpected or of the wrong shape."""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["describe_keys", "state_dict_mismatch"]


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
