"""Access to GIM's original RoMa code (from the ``imcui`` wheel) for parity tests.

Same separate environment as :mod:`parity.original_dkm` (torch + torchvision + ``imcui`` + einops). Three adjustments
make the original runnable here without changing its numbers, all made in this harness (the installed files are
untouched):

* ``networks/roma/dino.py`` cannot be imported without xformers: when the xformers import fails it sets
  ``SwiGLU = None`` and then defines ``class SwiGLUFFNFused(SwiGLU)``, a ``TypeError`` at import. The module is
  executed from its source with that one class base replaced by ``nn.Module``; the class is never instantiated
  (``ffn_layer="mlp"``), and ``MemEffAttention`` falls back to plain attention as it does in the original without
  xformers.
* ``CNNandDinov2`` downloads DINOv2 in its constructor; ``torch.hub.load_state_dict_from_url`` is replaced, while the
  original is built, by a function returning the given (synthetic) DINOv2 state dict.
* the GP's batched ``torch.linalg.inv`` crashes on some oneMKL CPUs; use :func:`parity.original_dkm.looped_inverse`
  around calls.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Mapping
from pathlib import Path

import torch

from parity.original_dkm import SETUP_HINT, gim_root

__all__ = ["SETUP_HINT", "build_original_roma", "roma_root"]

SWIGLU_BASE = "class SwiGLUFFNFused(SwiGLU):"


def roma_root() -> Path | None:
    """``.../third_party/gim`` when the original RoMa code and einops are importable, else None."""
    root = gim_root()
    if root is None or not (root / "networks" / "roma" / "roma.py").is_file():
        return None
    if importlib.util.find_spec("einops") is None:
        return None
    return root


def _load_dino(root: Path) -> None:
    """Execute ``networks/roma/dino.py`` as ``networks.roma.dino`` with the xformers-free class base."""
    name = "networks.roma.dino"
    if name in sys.modules:
        return
    path = root / "networks" / "roma" / "dino.py"
    source = path.read_text()
    if SWIGLU_BASE not in source:
        raise RuntimeError(f"{path}: expected {SWIGLU_BASE!r}; the harness needs updating")
    source = source.replace(SWIGLU_BASE, "class SwiGLUFFNFused(nn.Module):")
    module = types.ModuleType(name)
    module.__file__ = str(path)
    module.__package__ = "networks.roma"
    sys.modules[name] = module
    exec(compile(source, str(path), "exec"), module.__dict__)


def build_original_roma(size: int, upsample: bool, dinov2: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """The original ``RoMa(img_size=[size], upsample_preds=upsample)`` with random init and the given DINOv2."""
    root = roma_root()
    if root is None:
        raise ImportError(SETUP_HINT)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    _load_dino(root)
    from networks.roma.roma import RoMa  # type: ignore[import-not-found]

    original_load = torch.hub.load_state_dict_from_url
    torch.hub.load_state_dict_from_url = lambda *args, **kwargs: dict(dinov2)  # type: ignore[assignment]
    try:
        model = RoMa(img_size=[size], upsample_preds=upsample)
    finally:
        torch.hub.load_state_dict_from_url = original_load  # type: ignore[assignment]
    return model.eval()
