"""Training checkpoints: one file that is both a matcher's weights and a resumable training state.

Layout (loadable with ``torch.load(weights_only=True)``)::

    {"state_dict": {...},          # the matcher's layout: load_matcher(name, weights="RUN/best.ckpt") loads it
     "gim_plugins": {"matcher": name, "matcher_conf": {...}, "preset": ..., "settings": {...}},
     "training": {"optimizer": ..., "step": int, "epoch": int, "position": int, "rng": {...},
                  "best": [[auc5, step, file], ...], "world_size": int, "version": 1}}

The package's weight loader reads ``state_dict`` only, so the same file serves inference. ``RUN/last.ckpt`` is
rewritten atomically (never half-written); ``RUN/checkpoints/`` keeps the best ``top_k`` by validation AUC@5 and
``RUN/best.ckpt`` is a copy of the best.

RNG states: torch (CPU and every CUDA device), NumPy's legacy global generator and Python's ``random`` are saved and
restored, so code that draws from them continues its sequence; the trainers and data draw from seeded per-batch and
per-item generators anyway.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gim_plugins.atomic import atomic_path

__all__ = ["CHECKPOINT_VERSION", "BestCheckpoints", "TrainState", "get_rng_state", "load_checkpoint",
           "load_weights_into", "save_checkpoint", "set_rng_state"]

CHECKPOINT_VERSION = 1


@dataclass
class TrainState:
    """Where a run stands: optimizer ``step`` (done), ``epoch``, and ``position`` (micro-batches of the epoch
    consumed by this rank); ``best``: ``[auc5, step, file name]`` of the kept checkpoints, best first."""

    step: int = 0
    epoch: int = 0
    position: int = 0
    best: list[list[Any]] = field(default_factory=list)


def get_rng_state() -> dict[str, Any]:
    """Every global generator's state, in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "internal": [int(v) for v in internal], "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`get_rng_state`'s result (CUDA states only when CUDA is available)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike[str], *, state_dict: Mapping[str, torch.Tensor], matcher: str,
                    matcher_conf: Mapping[str, Any], preset: str, settings: Mapping[str, Any],
                    optimizer: torch.optim.Optimizer, state: TrainState, world_size: int) -> Path:
    """Write a checkpoint atomically (see the module docstring); returns ``path``."""
    payload = {
        "state_dict": dict(state_dict),
        "gim_plugins": {"matcher": matcher, "matcher_conf": dict(matcher_conf), "preset": preset,
                        "settings": dict(settings)},
        "training": {"optimizer": optimizer.state_dict(), "step": state.step, "epoch": state.epoch,
                     "position": state.position, "rng": get_rng_state(), "best": [list(b) for b in state.best],
                     "world_size": int(world_size), "version": CHECKPOINT_VERSION},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A training checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        ValueError: the file is not one (no ``training`` section) or of another version.
    """
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    training = checkpoint.get("training") if isinstance(checkpoint, Mapping) else None
    if not isinstance(training, Mapping):
        raise ValueError(f"{path} is not a gim train checkpoint (no training state); use --init to start from "
                         "its weights")
    if training.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {training.get('version')}, this gim-plugins writes "
                         f"{CHECKPOINT_VERSION}")
    return checkpoint


def load_weights_into(trainer: Any, source: str) -> str:
    """Load weights into ``trainer`` from a weight name, a checkpoint file (ours, GIM's, or a plain state dict).

    GIM's Lightning checkpoints that need full unpickling are refused by the safe loader with instructions
    (``gim weights import FILE --trust``); their tensors load once converted.

    Returns:
        A description of the source, for the logs.
    """
    from gim_plugins import weights as registry

    if source in registry.WEIGHTS and not Path(source).exists():
        path = registry.resolve_weights(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"--init: no such weight file or weight name: {source}")
    trainer.load_matcher_weights(registry.load_state_dict_file(path))
    return str(path)


class BestCheckpoints:
    """The ``top_k`` checkpoints by validation AUC@5 in ``RUN/checkpoints``, and ``RUN/best.ckpt``.

    Two phases, so the ranking can be stored inside the checkpoint it ranks: :meth:`rank` decides (and returns the
    new list for :class:`TrainState`), :meth:`commit` copies the just-written checkpoint into place and deletes the
    ones that fell out.
    """

    def __init__(self, run_dir: Path, top_k: int, entries: list[list[Any]]) -> None:
        self.dir = run_dir / "checkpoints"
        self.best_path = run_dir / "best.ckpt"
        self.top_k = max(1, int(top_k))
        self.entries = [list(e) for e in entries]
        self._pending: tuple[str | None, list[list[Any]], bool] | None = None

    def rank(self, auc5: float, step: int) -> list[list[Any]]:
        """Rank a new result; returns the kept entries ``[auc5, step, file name]``, best first."""
        name = f"step={step:08d}-auc5={auc5:.6f}.ckpt"
        entry = [float(auc5), int(step), name]
        ranked = sorted([*self.entries, entry], key=lambda e: (-e[0], e[1]))
        kept, dropped = ranked[: self.top_k], ranked[self.top_k :]
        self._pending = (name if entry in kept else None, dropped, kept[0] == entry)
        self.entries = kept
        return [list(e) for e in kept]

    def commit(self, source: Path) -> bool:
        """Copy ``source`` (the checkpoint of the last :meth:`rank`) into place; returns whether it is the best."""
        if self._pending is None:
            return False
        name, dropped, is_best = self._pending
        self._pending = None
        if name is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.dir / name) as tmp:
                shutil.copyfile(source, tmp)
        for entry in dropped:
            (self.dir / entry[2]).unlink(missing_ok=True)
        if is_best:
            with atomic_path(self.best_path) as tmp:
                shutil.copyfile(source, tmp)
        return is_best
