"""The pipeline package's shape: importing it (as the ``gim`` command does to register ``gim reconstruct``) loads
nothing heavy, its lazy names resolve, and every step module has an importable ``main(conf, paths)``."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

HEAVY = ["torch", "numpy", "cv2", "kornia", "pycolmap", "h5py", "tqdm"]


def test_feature_registering_the_command_loads_nothing_heavy() -> None:
    code = ("import argparse, json, sys\n"
            "import gim_plugins.reconstruct, gim_plugins.reconstruct.cli as cli\n"
            "cli.register(argparse.ArgumentParser().add_subparsers())\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_feature_lazy_names_resolve() -> None:
    import gim_plugins.reconstruct as reconstruct
    from gim_plugins.reconstruct import common, correspondences

    assert reconstruct.ReconstructPaths is common.ReconstructPaths
    assert reconstruct.DEFAULT_CONF is common.DEFAULT_CONF
    assert reconstruct.output_lock is common.output_lock
    assert reconstruct.load_correspondences is correspondences.load_correspondences
    with pytest.raises(AttributeError, match="match_step"):
        reconstruct.match_step


@pytest.mark.parametrize("step", ["pairs", "match", "database", "mapping"])
def test_cardinality_step_main(step: str) -> None:
    import importlib

    module = importlib.import_module(f"gim_plugins.reconstruct.{step}")
    assert list(inspect.signature(module.main).parameters) == ["conf", "paths"]
