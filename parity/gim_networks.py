"""GIM's original ``networks`` package (LoFTR, LightGlue, SuperPoint) from the ``imcui`` wheel.

The original imports itself as ``networks.…`` (its folder goes on ``sys.path``), and ``networks/loftr/misc.py``
imports ``pytorch_lightning.utilities.rank_zero_only``: a no-op stand-in is installed for it when pytorch-lightning
is not importable. Set-up of the reference environment: ``parity/README.md``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

__all__ = ["REQUIRED_MODULES", "SETUP_HINT", "gim_root", "load_networks", "missing_reason", "stub_lightning"]

SETUP_HINT = ("GIM's original code is not importable: build the LoFTR/LightGlue reference venv described in "
              "parity/README.md (pip install --no-deps imcui==0.1.3 plus einops yacs omegaconf joblib loguru scipy "
              "kornia) and run pytest from it")

REQUIRED_MODULES = ("einops", "yacs", "omegaconf", "loguru", "joblib")
"""What the original ``networks`` package imports beyond torch and kornia."""


def gim_root() -> Path | None:
    """``<site-packages>/imcui/third_party/gim`` when it holds ``networks/``, else None."""
    spec = importlib.util.find_spec("imcui")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "third_party" / "gim"
    return root if (root / "networks").is_dir() else None


def missing_reason() -> str | None:
    """Why the original ``networks`` cannot be imported here (the set-up hint), or None when it can."""
    if gim_root() is None:
        return SETUP_HINT
    for module in REQUIRED_MODULES:
        if importlib.util.find_spec(module) is None:
            return f"{SETUP_HINT} (missing {module})"
    return None


def stub_lightning() -> None:
    """A no-op ``pytorch_lightning.utilities.rank_zero_only`` unless pytorch-lightning is importable."""
    try:
        importlib.import_module("pytorch_lightning.utilities")
        return
    except ImportError:
        pass

    def rank_zero_only(fn):  # type: ignore[no-untyped-def]
        return fn

    rank_zero_only.rank = 0  # type: ignore[attr-defined]
    package = types.ModuleType("pytorch_lightning")
    utilities = types.ModuleType("pytorch_lightning.utilities")
    utilities.rank_zero_only = rank_zero_only  # type: ignore[attr-defined]
    package.utilities = utilities  # type: ignore[attr-defined]
    sys.modules.setdefault("pytorch_lightning", package)
    sys.modules.setdefault("pytorch_lightning.utilities", utilities)


def load_networks() -> types.ModuleType:
    """Import GIM's ``networks`` package (call :func:`missing_reason` first: this assumes it is available)."""
    root = gim_root()
    if root is None:
        raise ImportError(SETUP_HINT)
    stub_lightning()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("networks")
