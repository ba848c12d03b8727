"""Synthetic checkpoints built from the state-dict manifests in ``tests/fixtures/manifests`` (GIM's real weights are
not available offline). Tensors are random but sane: batch-norm variances positive, counters zero."""

from __future__ import annotations

import json
from pathlib import Path

import torch

MANIFESTS = Path(__file__).resolve().parents[1] / "fixtures" / "manifests"


def manifest(name: str) -> list[tuple[str, tuple[int, ...], str]]:
    """``[(key, shape, dtype), …]`` of ``tests/fixtures/manifests/<name>.json``, in state-dict order."""
    entries = json.loads((MANIFESTS / f"{name}.json").read_text())
    return [(key, tuple(shape), dtype) for key, shape, dtype in entries]


def layout(state_dict: dict[str, torch.Tensor]) -> list[tuple[str, tuple[int, ...], str]]:
    """A state dict in the manifest's ``(key, shape, dtype)`` form."""
    return [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state_dict.items()]


def synthetic_state_dict(name: str, prefix: str = "", seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the manifest's keys (``prefix`` prepended), shapes and dtypes."""
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, shape, dtype in manifest(name):
        if dtype == "int64":
            value = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            value = torch.rand(shape, generator=generator) + 0.5
        else:
            value = (torch.rand(shape, generator=generator) - 0.5) * 0.2
        out[prefix + key] = value
    return out


def one_thread():  # type: ignore[no-untyped-def]
    """Generator body of a fixture: run a module's tiny-tensor tests on one thread, then restore the count.

    On a shared 2-core machine, OpenMP barriers of a 2-thread pool cost more than these small operations do.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
