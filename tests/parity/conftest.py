"""Access to GIM's original networks for parity tests; every test here skips cleanly when they are absent.

The original code ships inside the ``imcui`` wheel on PyPI (``imcui/third_party/gim``, MIT). It needs packages the
project does not depend on, so parity runs in a separate virtual environment::

    python3 -m venv ../refvenv-loftr
    ../refvenv-loftr/bin/pip install torch==2.13.0
    ../refvenv-loftr/bin/pip install --no-deps imcui==0.1.3
    ../refvenv-loftr/bin/pip install einops yacs omegaconf joblib loguru scipy "kornia>=0.9" opencv-python h5py \
        tqdm matplotlib scikit-image pytest
    ../refvenv-loftr/bin/pip install --no-deps -e .
    ../refvenv-loftr/bin/python -m pytest tests/parity -v

The original imports itself as ``networks.…`` (its folder goes on ``sys.path``), and ``networks/loftr/misc.py``
imports ``pytorch_lightning.utilities.rank_zero_only``: a no-op stand-in is installed for it when pytorch-lightning
is not importable.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest

SETUP_HINT = ("GIM's original code is not importable: build the parity venv described in tests/parity/conftest.py "
              "(pip install --no-deps imcui==0.1.3 plus einops yacs omegaconf joblib loguru scipy kornia) and run "
              "pytest from it")


def _gim_root() -> Path | None:
    spec = importlib.util.find_spec("imcui")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "third_party" / "gim"
    return root if (root / "networks").is_dir() else None


def _stub_lightning() -> None:
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


@pytest.fixture(scope="session")
def gim_networks() -> types.ModuleType:
    """GIM's ``networks`` package (original code), or a skip with the set-up instructions."""
    root = _gim_root()
    if root is None:
        pytest.skip(SETUP_HINT)
    for module in ("einops", "yacs", "omegaconf", "loguru", "joblib"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{SETUP_HINT} (missing {module})")
    _stub_lightning()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("networks")
