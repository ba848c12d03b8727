"""COLMAP's multi-view stereo (undistortion → PatchMatch stereo → fusion) by pycolmap or by the colmap program.

PatchMatch stereo exists only in CUDA builds: the ``pycolmap-cuda12`` wheel (``pip install 'gim-plugins[cuda]'``)
on a machine with a GPU, or a colmap program compiled with CUDA. The PyPI ``pycolmap`` wheel and Debian's COLMAP 3.8
are CPU-only; :func:`unavailable` says why MVS cannot run, so a caller can fall back or tell the user.

The workspace is resumable stage by stage: the undistortion is skipped when its ``sparse/`` and ``images/`` exist
(marked by ``.undistorted``), PatchMatch when every image has a geometric depth map, and fusion writes into a
temporary file that replaces the output only when complete.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from gim_plugins.atomic import atomic_path

__all__ = ["ENGINES", "depth_maps_done", "run_mvs", "unavailable"]

log = logging.getLogger(__name__)

ENGINES = ("pycolmap", "colmap")


def unavailable(engine: str, executable: str | None = None) -> str | None:
    """Why ``engine`` cannot run PatchMatch stereo here (``None`` when it can)."""
    if engine == "pycolmap":
        from gim_plugins.colmap_ext import _pycolmap

        try:
            devices = _pycolmap.cuda_devices()
        except ImportError as exc:
            return str(exc)
        if devices == 0:
            return ("pycolmap has CUDA but finds no GPU" if _pycolmap.cuda_build() else
                    "the installed pycolmap has no CUDA (pip install 'gim-plugins[cuda]' on a machine with a GPU)")
        return None
    if engine == "colmap":
        from gim_plugins.colmap_ext import binary

        try:
            binary.find_colmap(executable)
        except binary.ColmapError as exc:
            return str(exc)
        if not binary.cuda_build(executable):
            return "the colmap program was built without CUDA (Debian's COLMAP 3.8 is CPU-only)"
        return None
    raise ValueError(f"MVS engine must be one of {', '.join(ENGINES)}, got {engine!r}")


def depth_maps_done(workspace: Path) -> bool:
    """Whether every undistorted image of the workspace has its geometric depth map."""
    images = workspace / "images"
    if not images.is_dir():
        return False
    names = [p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file()]
    maps = workspace / "stereo" / "depth_maps"
    return bool(names) and all((maps / f"{name}.geometric.bin").is_file() for name in names)


def run_mvs(engine: str, model_dir: Path, image_dir: Path, workspace: Path, output: Path, *,
            max_image_size: int = 2000, min_num_pixels: int = 5, executable: str | None = None) -> Path:
    """Undistort, run PatchMatch stereo and fuse into ``output`` (``fused.ply``); finished stages are skipped.

    Args:
        engine: ``"pycolmap"`` or ``"colmap"``.
        model_dir: the sparse model (binary or text files).
        image_dir: the images the model was made from.
        workspace: the MVS workspace folder (created).
        output: the fused point cloud (PLY), written atomically.
        max_image_size: longest image side for stereo and fusion (COLMAP's default 2000 fits 8 GB GPUs).
        min_num_pixels: a fused point needs this many consistent pixels.
        executable: the colmap program (engine ``colmap``).

    Raises:
        RuntimeError: the engine cannot run MVS here (see :func:`unavailable`).
    """
    reason = unavailable(engine, executable)
    if reason is not None:
        raise RuntimeError(f"COLMAP MVS ({engine}) cannot run: {reason}")
    marker = workspace / ".undistorted"
    if not marker.is_file():
        if workspace.exists():
            shutil.rmtree(workspace)
        workspace.mkdir(parents=True)
        log.info("undistorting images into %s", workspace)
        if engine == "pycolmap":
            from gim_plugins.colmap_ext import _pycolmap

            _pycolmap.undistort_images(workspace, model_dir, image_dir, max_image_size=max_image_size)
        else:
            from gim_plugins.colmap_ext import binary

            binary.image_undistorter(model_dir, image_dir, workspace, max_image_size=max_image_size,
                                     executable=executable)
        marker.write_text("done\n")
    if not depth_maps_done(workspace):
        log.info("PatchMatch stereo in %s", workspace)
        if engine == "pycolmap":
            from gim_plugins.colmap_ext import _pycolmap

            _pycolmap.patch_match_stereo(workspace, max_image_size=max_image_size)
        else:
            from gim_plugins.colmap_ext import binary

            binary.patch_match_stereo(workspace, max_image_size=max_image_size, executable=executable)
    with atomic_path(output) as tmp:
        tmp_ply = tmp.with_suffix(".ply")  # COLMAP picks the writer by the output type, not the name; keep .ply
        if engine == "pycolmap":
            from gim_plugins.colmap_ext import _pycolmap

            _pycolmap.stereo_fusion(tmp_ply, workspace, min_num_pixels=min_num_pixels,
                                    max_image_size=max_image_size)
        else:
            from gim_plugins.colmap_ext import binary

            binary.stereo_fusion(tmp_ply, workspace, min_num_pixels=min_num_pixels, max_image_size=max_image_size,
                                 executable=executable)
        os.replace(tmp_ply, tmp)
    return output
