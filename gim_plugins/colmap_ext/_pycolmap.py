"""The only module that imports pycolmap: version gate and the few calls the pipeline needs.

Why one module: pycolmap's API moves between releases (``Database`` got rigs/frames in 3.12, ``cam_from_world``
became a method, options classes were renamed), and pycolmap is an optional extra. Everything else in
``colmap_ext`` goes through these functions, so a new pycolmap release is adapted here and only here.
Supported: pycolmap >= 4.2, < 5 (tested with 4.2.1).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from gim_plugins.errors import MissingDependencyError

__all__ = ["available", "create_database", "cuda_build", "cuda_devices", "incremental_mapping", "patch_match_stereo",
           "require", "stereo_fusion", "undistort_images", "verify_matches", "version"]

log = logging.getLogger(__name__)

MIN_VERSION = (4, 2)
MAX_VERSION = (5, 0)


def _parse(text: str) -> tuple[int, ...]:
    numbers = []
    for part in text.split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def require() -> ModuleType:
    """Import pycolmap, or raise ImportError that says how to install a supported version."""
    try:
        import pycolmap
    except ImportError as exc:
        raise MissingDependencyError("pycolmap is not installed: `pip install 'gim-plugins[colmap]'` (pycolmap >= 4.2, "
                                     "< 5), or use the COLMAP binary with --engine colmap") from exc
    _restore_sigterm()
    found = _parse(getattr(pycolmap, "__version__", "0"))
    if not MIN_VERSION <= found < MAX_VERSION:
        raise MissingDependencyError(f"pycolmap {pycolmap.__version__} is not supported (need >= 4.2, < 5): "
                          "`pip install 'pycolmap>=4.2,<5'`")
    return pycolmap


def _restore_sigterm() -> None:
    """Give SIGTERM back to Python after importing pycolmap.

    COLMAP's logging library installs a failure handler for SIGTERM when pycolmap is imported: a terminated run then
    dies with a native stack trace, skipping every ``finally`` block. Re-installing Python's handler (the command
    line's, which ends the run with one line, or the default) restores the normal behaviour; a signal that arrives
    during a long native call is handled when the call returns.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    handler = signal.getsignal(signal.SIGTERM)
    if handler is not None:  # None: installed from C by someone else, leave it
        signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def _quiet(pycolmap: ModuleType) -> Iterator[None]:
    """COLMAP's glog output only when this package logs at INFO (``gim -v``); errors always."""
    logging_api = getattr(pycolmap, "logging", None)
    if logging_api is None or not hasattr(logging_api, "minloglevel"):
        yield
        return
    previous = logging_api.minloglevel
    logging_api.minloglevel = 0 if log.isEnabledFor(logging.INFO) else 2
    try:
        yield
    finally:
        logging_api.minloglevel = previous


def available() -> bool:
    """Whether a supported pycolmap is importable."""
    try:
        require()
    except ImportError:
        return False
    return True


def version() -> str:
    return str(require().__version__)


def create_database(path: str | os.PathLike[str]) -> None:
    """Create an empty database with the installed pycolmap's schema (the file must not exist)."""
    pycolmap = require()
    pycolmap.Database.open(str(path)).close()


def verify_matches(database: str | os.PathLike[str], pairs_file: str | os.PathLike[str], *, max_error: float,
                   max_num_trials: int, min_inlier_ratio: float, min_num_inliers: int, confidence: float,
                   random_seed: int = 0) -> None:
    """Geometric verification of the pairs listed in ``pairs_file`` (``name0 name1`` lines); writes
    ``two_view_geometries``. RANSAC draws from ``random_seed`` (reruns give the same inliers; pycolmap's own
    default, -1, seeds from the clock)."""
    pycolmap = require()
    options = pycolmap.TwoViewGeometryOptions()
    options.ransac.max_error = float(max_error)
    options.ransac.max_num_trials = int(max_num_trials)
    options.ransac.min_inlier_ratio = float(min_inlier_ratio)
    options.ransac.confidence = float(confidence)
    options.min_num_inliers = int(min_num_inliers)
    options.ransac.random_seed = int(random_seed)
    with _quiet(pycolmap):
        pycolmap.verify_matches(str(database), str(pairs_file), options=options)


def incremental_mapping(database: str | os.PathLike[str], image_dir: str | os.PathLike[str],
                        out_dir: str | os.PathLike[str], mapper: dict[str, Any]) -> list[Path]:
    """Run incremental mapping; each model is written (binary and text files) into ``out_dir/<index>``.

    Args:
        mapper: ``min_num_matches``, ``init_min_num_inliers``, ``abs_pose_min_num_inliers``,
            ``abs_pose_min_inlier_ratio``, ``ba_refine_focal_length``, ``ba_refine_principal_point``,
            ``ba_refine_extra_params``, ``num_threads``, ``random_seed``, ``multiple_models``.

    Returns:
        The model directories, largest (most registered images) first.
    """
    pycolmap = require()
    options = pycolmap.IncrementalPipelineOptions()
    options.min_num_matches = int(mapper["min_num_matches"])
    options.multiple_models = bool(mapper["multiple_models"])
    options.num_threads = int(mapper["num_threads"])
    options.random_seed = int(mapper["random_seed"])
    options.ba_refine_focal_length = bool(mapper["ba_refine_focal_length"])
    options.ba_refine_principal_point = bool(mapper["ba_refine_principal_point"])
    options.ba_refine_extra_params = bool(mapper["ba_refine_extra_params"])
    options.mapper.init_min_num_inliers = int(mapper["init_min_num_inliers"])
    options.mapper.abs_pose_min_num_inliers = int(mapper["abs_pose_min_num_inliers"])
    options.mapper.abs_pose_min_inlier_ratio = float(mapper["abs_pose_min_inlier_ratio"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    binary_dir = out / "_binary"
    with _quiet(pycolmap):
        models = pycolmap.incremental_mapping(str(database), str(image_dir), str(binary_dir), options=options)
    ranked = sorted(models.values(), key=lambda rec: rec.num_reg_images(), reverse=True)
    paths = []
    for index, reconstruction in enumerate(ranked):
        target = out / str(index)
        target.mkdir(parents=True, exist_ok=True)
        reconstruction.write_binary(str(target))
        reconstruction.write_text(str(target))
        paths.append(target)
    shutil.rmtree(binary_dir, ignore_errors=True)
    return paths


# ------------------------------------------------------------------------------------------- multi-view stereo


def cuda_build() -> bool:
    """Whether the installed pycolmap was built with CUDA (``pycolmap-cuda12``; the ``pycolmap`` wheel is not)."""
    return bool(getattr(require(), "has_cuda", False))


def cuda_devices() -> int:
    """CUDA devices pycolmap can use: 0 for the CPU-only ``pycolmap`` wheel (``has_cuda`` is False) or when a CUDA
    build (``pycolmap-cuda12``) finds no GPU. PatchMatch stereo needs at least one."""
    pycolmap = require()
    if not cuda_build():
        return 0
    count = getattr(pycolmap, "get_num_cuda_devices", None)
    try:
        return int(count()) if count is not None else 1
    except Exception:  # a CUDA build without a driver raises from the CUDA runtime
        log.debug("pycolmap.get_num_cuda_devices failed", exc_info=True)
        return 0


def undistort_images(out_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str],
                     image_dir: str | os.PathLike[str], *, max_image_size: int) -> None:
    """COLMAP's image undistorter: an MVS workspace (``images/``, ``sparse/``, ``stereo/``) in ``out_dir``."""
    pycolmap = require()
    options = pycolmap.UndistortCameraOptions()
    options.max_image_size = int(max_image_size)
    with _quiet(pycolmap):
        pycolmap.undistort_images(str(out_dir), str(model_dir), str(image_dir), undistort_options=options)


def patch_match_stereo(workspace: str | os.PathLike[str], *, max_image_size: int, gpu_index: str = "-1") -> None:
    """PatchMatch stereo with geometric consistency on an undistorted workspace (needs CUDA); writes
    ``stereo/depth_maps`` and ``stereo/normal_maps``."""
    pycolmap = require()
    options = pycolmap.PatchMatchOptions()
    options.max_image_size = int(max_image_size)
    options.geom_consistency = True
    options.gpu_index = str(gpu_index)
    with _quiet(pycolmap):
        pycolmap.patch_match_stereo(str(workspace), options=options)


def stereo_fusion(output: str | os.PathLike[str], workspace: str | os.PathLike[str], *, min_num_pixels: int,
                  max_image_size: int) -> None:
    """Fuse the geometric depth maps of a workspace into a coloured point cloud with normals, ``output`` (PLY)."""
    pycolmap = require()
    options = pycolmap.StereoFusionOptions()
    options.min_num_pixels = int(min_num_pixels)
    options.max_image_size = int(max_image_size)
    with _quiet(pycolmap):
        pycolmap.stereo_fusion(str(output), str(workspace), input_type="geometric", options=options,
                               output_type="PLY")
