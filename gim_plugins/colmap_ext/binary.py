"""Calls of the ``colmap`` command-line program (the only place it is run from).

Tested with Debian's COLMAP 3.8 (``apt-get install colmap``, CPU only). Every call passes the options that make it
run headless on a CPU (``--SiftMatching.use_gpu 0``); a non-zero exit raises :class:`ColmapError` with the tail of
COLMAP's output, because COLMAP often reports the actual problem only in its log.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gim_plugins.errors import UserError

__all__ = ["ColmapError", "cuda_build", "database_creator", "feature_importer", "find_colmap", "image_undistorter",
           "mapper", "matches_importer", "model_converter", "patch_match_stereo", "run", "stereo_fusion"]

log = logging.getLogger(__name__)


class ColmapError(RuntimeError, UserError):
    """The colmap program is missing or failed (its first line names the command and COLMAP's last message)."""


def find_colmap(executable: str | None = None) -> str:
    """Path of the colmap program (``executable``, ``$GIM_COLMAP`` or ``colmap`` on ``PATH``)."""
    name = executable or os.environ.get("GIM_COLMAP") or "colmap"
    found = shutil.which(name)
    if found is None:
        raise ColmapError(f"the colmap program ({name!r}) is not on PATH: install COLMAP (Debian/Ubuntu: "
                          "`apt-get install colmap`) or use --engine pycolmap")
    return found


def _flag(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def run(command: str, options: Mapping[str, Any], *, executable: str | None = None,
        timeout: float | None = None) -> str:
    """Run ``colmap COMMAND --key value …``; returns its combined output.

    Raises:
        ColmapError: the program is missing, exits non-zero, or times out.
    """
    args = [find_colmap(executable), command]
    for key, value in options.items():
        if value is None:
            continue
        args += [f"--{key}", _flag(value)]
    log.debug("running %s", " ".join(args))
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")})
    except subprocess.TimeoutExpired as exc:
        raise ColmapError(f"colmap {command} timed out after {timeout} s") from exc
    output = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0:
        lines = [line for line in output.strip().splitlines() if line.strip()]
        last = lines[-1].strip() if lines else "no output"
        tail = "\n".join(lines[-15:])
        raise ColmapError(f"colmap {command} failed (exit {done.returncode}): {last}\n{tail}")
    return output


def database_creator(database: Path, **kwargs: Any) -> None:
    run("database_creator", {"database_path": database}, **kwargs)


def feature_importer(database: Path, image_dir: Path, import_dir: Path, *, image_list: Path | None = None,
                     camera_model: str | None = None, single_camera: bool | None = None,
                     camera_params: Sequence[float] | None = None, **kwargs: Any) -> str:
    """Import ``import_dir/<image name>.txt`` keypoint files (images already in the database keep their cameras)."""
    options: dict[str, Any] = {"database_path": database, "image_path": image_dir, "import_path": import_dir,
                               "image_list_path": image_list, "ImageReader.camera_model": camera_model,
                               "ImageReader.single_camera": single_camera}
    if camera_params:
        options["ImageReader.camera_params"] = ",".join(repr(float(v)) for v in camera_params)
    return run("feature_importer", options, **kwargs)


def matches_importer(database: Path, match_list: Path, *, match_type: str, max_error: float, max_num_trials: int,
                     min_inlier_ratio: float, min_num_inliers: int, confidence: float, num_threads: int = -1,
                     random_seed: int = 0, **kwargs: Any) -> str:
    """Import a match list (``raw``: matches, then COLMAP's geometric verification; ``inliers``: verified as is)."""
    if match_type not in ("raw", "inliers"):
        raise ValueError(f"match_type must be 'raw' or 'inliers', got {match_type!r}")
    return run("matches_importer", {
        "database_path": database, "match_list_path": match_list, "match_type": match_type,
        "SiftMatching.use_gpu": False, "SiftMatching.num_threads": num_threads,
        "SiftMatching.max_error": max_error, "SiftMatching.max_num_trials": max_num_trials,
        "SiftMatching.min_inlier_ratio": min_inlier_ratio, "SiftMatching.min_num_inliers": min_num_inliers,
        "SiftMatching.confidence": confidence, "random_seed": random_seed,
    }, **kwargs)


def mapper(database: Path, image_dir: Path, out_dir: Path, options: Mapping[str, Any], **kwargs: Any) -> str:
    """``colmap mapper``: models are written to ``out_dir/0``, ``out_dir/1``, … (binary)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    flags = {"database_path": database, "image_path": image_dir, "output_path": out_dir,
             "random_seed": options.get("random_seed")}
    for key in ("min_num_matches", "multiple_models", "num_threads", "init_min_num_inliers",
                "abs_pose_min_num_inliers", "abs_pose_min_inlier_ratio", "ba_refine_focal_length",
                "ba_refine_principal_point", "ba_refine_extra_params"):
        if key in options:
            flags[f"Mapper.{key}"] = options[key]
    return run("mapper", flags, **kwargs)


def model_converter(model_dir: Path, out_dir: Path, output_type: str = "TXT", **kwargs: Any) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    run("model_converter", {"input_path": model_dir, "output_path": out_dir, "output_type": output_type}, **kwargs)


# ------------------------------------------------------------------------------------------- multi-view stereo


def cuda_build(executable: str | None = None) -> bool:
    """Whether the colmap program was built with CUDA, read from its banner (``colmap -h``: "... with CUDA" or
    "... without CUDA"; Debian's 3.8 says "without CUDA" and its ``patch_match_stereo`` then only prints "Dense
    stereo reconstruction requires CUDA")."""
    try:
        done = subprocess.run([find_colmap(executable), "-h"], capture_output=True, text=True, timeout=60,
                              check=False, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    except (ColmapError, OSError, subprocess.TimeoutExpired):
        return False
    banner = (done.stdout or "") + (done.stderr or "")
    return "with CUDA" in banner and "without CUDA" not in banner


def image_undistorter(model_dir: Path, image_dir: Path, out_dir: Path, *, max_image_size: int, **kwargs: Any) -> str:
    """``colmap image_undistorter``: an MVS workspace (``images/``, ``sparse/``, ``stereo/``) in ``out_dir``."""
    return run("image_undistorter", {"image_path": image_dir, "input_path": model_dir, "output_path": out_dir,
                                     "output_type": "COLMAP", "max_image_size": max_image_size}, **kwargs)


def patch_match_stereo(workspace: Path, *, max_image_size: int, **kwargs: Any) -> str:
    """``colmap patch_match_stereo`` with geometric consistency (needs a CUDA build)."""
    return run("patch_match_stereo", {"workspace_path": workspace, "workspace_format": "COLMAP",
                                      "PatchMatchStereo.geom_consistency": True,
                                      "PatchMatchStereo.max_image_size": max_image_size}, **kwargs)


def stereo_fusion(output: Path, workspace: Path, *, min_num_pixels: int, max_image_size: int, **kwargs: Any) -> str:
    """``colmap stereo_fusion`` of the geometric depth maps into ``output`` (PLY)."""
    return run("stereo_fusion", {"workspace_path": workspace, "workspace_format": "COLMAP",
                                 "input_type": "geometric", "output_path": output, "output_type": "PLY",
                                 "StereoFusion.min_num_pixels": min_num_pixels,
                                 "StereoFusion.max_image_size": max_image_size}, **kwargs)
