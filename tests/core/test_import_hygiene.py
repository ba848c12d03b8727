"""``import gim_plugins`` is cheap and silent: standard library only, no output, no warnings, no side effects."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "numpy", "cv2", "kornia", "hloc", "pycolmap", "h5py", "matplotlib", "skimage", "tqdm"]

CODE = f"""
import json, logging, sys
before_handlers = list(logging.getLogger().handlers)
import gim_plugins
assert gim_plugins.__version__
loaded = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps({{"loaded": loaded, "handlers": len(logging.getLogger().handlers) - len(before_handlers)}}))
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)


def test_feature_import_loads_no_heavy_module_and_prints_nothing():
    proc = _run(CODE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    report = json.loads(proc.stdout)
    assert report == {"loaded": [], "handlers": 0}


def test_feature_lazy_public_names_resolve():
    proc = _run("import gim_plugins; print(all(getattr(gim_plugins, n) is not None for n in gim_plugins.__all__))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


def test_exception_unknown_attribute():
    proc = _run("import gim_plugins\ntry:\n    gim_plugins.nope\nexcept AttributeError as e:\n    print(e)")
    assert "has no attribute 'nope'" in proc.stdout
