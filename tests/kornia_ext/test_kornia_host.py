"""How GIMMatcher reaches kornia: the entry point, lazy imports, ``kornia.feature.GIMMatcher`` in fresh interpreters.

Each check runs in a new interpreter (``sys.executable``, i.e. the installed environment), because what matters is
what a plain ``import kornia`` does after ``pip install``, not the state of this test process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

NETWORK_MODULES = "[m for m in sys.modules if m.startswith('gim_plugins.models.') and m != 'gim_plugins.models.base']"
HAS_BOOTSTRAP = importlib.util.find_spec("gim_plugins._bootstrap") is not None
needs_bootstrap = pytest.mark.skipif(not HAS_BOOTSTRAP, reason="gim_plugins._bootstrap (the .pth hook) is not here")


def run(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line, returned parsed."""
    environment = {key: value for key, value in os.environ.items() if key != "GIM_PLUGINS_NO_HOOKS"}
    environment.update(env)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=environment)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_feature_entry_point_is_declared_and_loads_the_class():
    from gim_plugins.kornia_ext import GIMMatcher

    found = {ep.name: ep for ep in entry_points(group="kornia.feature")}
    assert found["GIMMatcher"].value == "gim_plugins.kornia_ext:GIMMatcher"
    assert found["GIMMatcher"].load() is GIMMatcher


def test_feature_lazy_package_and_no_network_import():
    report = run(f"""
import json, sys
import gim_plugins.kornia_ext
after_package = sorted(m for m in ("torch", "kornia", "numpy") if m in sys.modules)
from gim_plugins.kornia_ext import GIMMatcher, GIMLocalFeature
networks = {NETWORK_MODULES}
GIMMatcher("root_sift")
print(json.dumps({{"after_package": after_package, "networks": networks, "built": {NETWORK_MODULES}}}))
""")
    assert report["after_package"] == []  # the entry point's own import is stdlib-only
    assert report["networks"] == []  # the class needs no network code ...
    assert report["built"] == ["gim_plugins.models.root_sift"]  # ... building one imports only its own module


def test_feature_explicit_register_without_the_hook():
    report = run("""
import json, kornia.feature, gim_plugins.kornia_ext as ext
ext.register(); ext.register()
print(json.dumps({"same": kornia.feature.GIMMatcher is ext.GIMMatcher}))
""", GIM_PLUGINS_NO_HOOKS="1")
    assert report == {"same": True}


@needs_bootstrap
def test_feature_import_kornia_loads_none_of_our_code():
    report = run(f"""
import json, sys
import kornia, kornia.feature
print(json.dumps({{"ours": sorted(m for m in sys.modules if m.startswith("gim_plugins.") and m not in
                    ("gim_plugins._bootstrap", "gim_plugins._host_hooks")),
                  "networks": {NETWORK_MODULES}}}))
""")
    assert report == {"ours": [], "networks": []}


@needs_bootstrap
def test_feature_kornia_feature_gim_matcher_after_a_plain_install():
    report = run("""
import json, sys
import kornia
import kornia.feature as KF
listed = "GIMMatcher" in dir(KF)
attribute = kornia.feature.GIMMatcher
from kornia.feature import GIMMatcher
import gim_plugins.kornia_ext as ext
try:
    KF.GIMNoSuchThing
    unknown = "no error"
except AttributeError as exc:
    unknown = str(exc)
out = GIMMatcher("root_sift")({"image0": __import__("torch").rand(1, 1, 64, 64),
                              "image1": __import__("torch").rand(1, 1, 64, 64)})
print(json.dumps({"listed": listed, "same": attribute is GIMMatcher is ext.GIMMatcher, "unknown": unknown,
                  "loftr": KF.LoFTR.__module__, "keys": sorted(out)}))
""")
    assert report["listed"] and report["same"]
    assert "GIMNoSuchThing" in report["unknown"]
    assert report["loftr"].startswith("kornia.feature")
    assert report["keys"] == ["batch_indexes", "confidence", "keypoints0", "keypoints1"]


@needs_bootstrap
def test_feature_hook_opt_out():
    report = run("""
import json, kornia.feature as KF
print(json.dumps({"has": hasattr(KF, "GIMMatcher")}))
""", GIM_PLUGINS_NO_HOOKS="1")
    assert report == {"has": False}
