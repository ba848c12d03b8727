"""Safe loading: a checkpoint file in, a plain state dict (name → tensor) out.

Loading always uses ``torch.load(..., weights_only=True)``; a checkpoint that needs arbitrary unpickling (e.g. a
Lightning checkpoint with pickled hyper-parameters) is refused with :class:`UnsafeCheckpointError`, whose message
explains ``gim weights import``: that command accepts such a file only when its hash is that of a known official
file (or with an explicit ``--trust``), unpickles it once and stores a plain state-dict copy. torch is imported only
when a file is loaded.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gim_plugins.errors import UserError

if TYPE_CHECKING:
    import torch

__all__ = ["UnsafeCheckpointError", "extract_state_dict", "load_state_dict_file", "torch_load"]


class UnsafeCheckpointError(RuntimeError, UserError):
    """A checkpoint that cannot be loaded with ``weights_only=True`` and is not trusted."""


def torch_load(path: Path, *, weights_only: bool) -> Any:
    import torch

    return torch.load(path, map_location="cpu", weights_only=weights_only)


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    import torch

    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict (a mapping of tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: not a state dict; {len(bad)} entries are not tensors (e.g. {bad[:3]})")
    return dict(obj)


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a checkpoint safely and return its state dict (``ckpt["state_dict"]`` when present).

    ``.safetensors`` files are read with the ``safetensors`` package; everything else with
    ``torch.load(weights_only=True)`` on the CPU.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file needs arbitrary unpickling; the message explains ``gim weights import``.
        ValueError: the file holds something other than a state dict.
    """
    import pickle

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError(f"{path} is a safetensors file; `pip install safetensors` to read it") from None
        return dict(load_file(str(path), device="cpu"))
    try:
        obj = torch_load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path} cannot be loaded with torch.load(weights_only=True): it contains pickled Python objects "
            f"that would run arbitrary code ({str(exc).splitlines()[0][:200]}). If it is an official GIM "
            f"checkpoint, run `gim weights import {path}`: the file is accepted when its hash matches the "
            f"official one and a safe state-dict copy is stored. For a file you trust, add --trust."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a readable checkpoint (truncated or corrupt?): {exc}") from exc
    return extract_state_dict(obj, path)
