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

from gim_plugins.errors import InputError, MissingDependencyError, UserError

if TYPE_CHECKING:
    import torch

__all__ = ["CorruptCheckpointError", "UnsafeCheckpointError", "check_checkpoint_file", "checkpoint_kind",
           "extract_state_dict", "load_state_dict_file", "torch_load"]


class UnsafeCheckpointError(RuntimeError, UserError):
    """A checkpoint that cannot be loaded with ``weights_only=True`` and is not trusted."""


class CorruptCheckpointError(InputError):
    """A file that is not a readable checkpoint: truncated, damaged, random bytes, another kind of file."""


_TORCH_PICKLE = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
"""How a checkpoint in torch's legacy (pre-zip) format starts: pickle protocol 2 and torch's magic number."""


def checkpoint_kind(path: Path) -> str:
    """What a file is, from its first bytes and (for a zip) its member list, without unpickling anything.

    Returns:
        ``"torch-zip"`` or ``"torch-legacy"`` (torch checkpoints), ``"pickle"`` (a plain Python pickle),
        ``"truncated-zip"``, ``"zip"`` (a zip archive that is not a torch checkpoint) or ``"unknown"``.
    """
    with open(path, "rb") as handle:
        head = handle.read(len(_TORCH_PICKLE))
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError):
            return "truncated-zip"
        return "torch-zip" if any(n.endswith("data.pkl") for n in names) else "zip"
    if head == _TORCH_PICKLE:
        return "torch-legacy"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    return "unknown"


def check_checkpoint_file(path: Path) -> str:
    """The file's kind when it is a torch checkpoint (see :func:`checkpoint_kind`).

    Raises:
        CorruptCheckpointError: anything else, with one line saying what the file is instead.
    """
    kind = checkpoint_kind(path)
    if kind.startswith("torch"):
        return kind
    what = {
        "truncated-zip": "a truncated or damaged zip archive (an interrupted download or copy?)",
        "zip": "a zip archive without torch's data.pkl (another kind of archive)",
        "pickle": "a plain Python pickle, not a torch checkpoint (refused: unpickling it could run code)",
        "unknown": "neither a torch checkpoint (zip or pickle) nor safetensors: random bytes, a truncated download "
                   "or another kind of file",
    }[kind]
    raise CorruptCheckpointError(f"{path} is not a readable checkpoint: {what}; fetch or export it again")


def torch_load(path: Path, *, weights_only: bool) -> Any:
    """``torch.load`` on the CPU; a damaged file raises :class:`CorruptCheckpointError` (also with ``weights_only``
    False, so ``--trust`` on a broken file is a clear error rather than an ``UnpicklingError``)."""
    import pickle

    import torch

    check_checkpoint_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as exc:
        if weights_only and "Unsupported global" in str(exc):
            raise  # a well-formed file that needs trust: the caller decides
        raise CorruptCheckpointError(f"{path} is a damaged checkpoint ({_first_line(exc)}); fetch or export it "
                                     "again") from None
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError, AttributeError, zipfile.BadZipFile,
            OSError) as exc:
        if isinstance(exc, FileNotFoundError | PermissionError):
            raise
        raise CorruptCheckpointError(f"{path} is a damaged or truncated checkpoint ({_first_line(exc)}); fetch or "
                                     "export it again") from None


def _first_line(exc: BaseException) -> str:
    """The informative line of torch's (long, multi-line) errors: the refused global, else the first line."""
    import re

    text = str(exc).strip() or type(exc).__name__
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return f"it needs {refused.group(1)}"
    return text.splitlines()[0][:200]


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    import torch

    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise InputError(f"{path}: expected a state dict (a mapping of tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(f"{path}: not a state dict; {len(bad)} entries are not tensors (e.g. {bad[:3]})")
    return dict(obj)


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a checkpoint safely and return its state dict (``ckpt["state_dict"]`` when present).

    ``.safetensors`` files are read with the ``safetensors`` package; everything else with
    ``torch.load(weights_only=True)`` on the CPU, after checking from its first bytes that it is a torch checkpoint
    at all.

    Raises:
        FileNotFoundError: no such file.
        CorruptCheckpointError: not a checkpoint, or a damaged one (one line saying which).
        UnsafeCheckpointError: a well-formed checkpoint that needs arbitrary unpickling; the message explains
            ``gim weights import``.
        InputError: the file holds something other than a state dict.
    """
    import pickle

    path = Path(path)
    if path.is_dir():
        raise InputError(f"weights {path} is a directory, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise MissingDependencyError(f"{path} is a safetensors file; `pip install safetensors` to read it"
                                         ) from None
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:  # safetensors raises its own error types for a damaged header
            raise CorruptCheckpointError(f"{path} is a damaged safetensors file ({_first_line(exc)})") from None
    try:
        obj = torch_load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path} cannot be loaded with torch.load(weights_only=True): it contains pickled Python objects "
            f"that would run code when loaded ({_first_line(exc)}). If it is an official GIM "
            f"checkpoint, run `gim weights import {path}`: the file is accepted when its hash matches the "
            f"official one and a safe state-dict copy is stored. For a file you trust, add --trust."
        ) from None
    return extract_state_dict(obj, path)
