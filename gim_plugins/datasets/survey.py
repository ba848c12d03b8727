"""A survey of the motorcycle scene: many narrow views scanning it, with exact poses and a ground-truth overlap matrix.

Why: choosing which pairs to match (retrieval, sequential windows, loop closures) only matters when most pairs do
*not* overlap, and :func:`~gim_plugins.datasets.scene.render_motorcycle_scene` renders full views that all see the
whole scene. Here every view sees about a quarter of it: views of ``size`` (default 256×384 px) with the left
camera's focal length look at targets on a grid over the scene, so neighbours on the grid overlap strongly and
distant ones not at all — as in a scan of a building or a room.

Layout (:func:`survey_cameras`, deterministic per ``seed``): the targets are the scene points seen by the left photo
at a ``rows × cols`` grid of its pixels (x from 20 % to 80 % of its width, y from 22 % to 78 % of its height), visited
in a serpentine (row by row, alternating direction), so consecutive views overlap and views of adjacent rows close
loops far apart in the sequence. Each camera looks at its target from the direction of the left camera's ray to it,
turned by up to ±``spread_deg`` in azimuth and ±0.6·``spread_deg`` in elevation, at ×0.85…1.10 the left camera's
distance, rolled by up to ±4°: baselines of 0.1–0.5 m, so SfM is well conditioned.

Ground truth: :func:`view_overlap` is the share of each view's pixels (on a grid) that another view sees — the
overlap by which retrieval is judged.

Example:
    >>> views = render_motorcycle_survey(60)            # doctest: +SKIP
    >>> overlap = view_overlap(views)                   # (60, 60), 1 on the diagonal
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gim_plugins.datasets.render import degrade
from gim_plugins.datasets.scene import _left_camera, _orbit_center, _source, correspondences, render_view
from gim_plugins.datasets.views import Camera, SceneView, look_at

__all__ = ["grid_shape", "render_motorcycle_survey", "survey_cameras", "view_overlap"]

SIZE = (192, 288)
"""``(H, W)`` of a survey view: about half the left photo's field of view in each direction."""


def grid_shape(num_views: int) -> tuple[int, int]:
    """``(rows, cols)`` of the target grid for ``num_views`` views (about 1.6 columns per row, like the photo)."""
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    cols = max(1, math.ceil(math.sqrt(num_views * 1.6)))
    return math.ceil(num_views / cols), cols


def _targets(num_views: int) -> list[np.ndarray]:
    """World points at the serpentine grid of left-photo pixels (the nearest pixel with ground truth)."""
    depth = _source().depth
    height, width = depth.shape
    rows, cols = grid_shape(num_views)
    finite_rows, finite_cols = np.nonzero(np.isfinite(depth))
    camera = Camera(*_left_camera(), depth.shape)
    targets = []
    for r, v in enumerate(np.linspace(0.2, 0.8, rows) * (height - 1)):
        us = np.linspace(0.15, 0.85, cols) * (width - 1)
        for u in us if r % 2 == 0 else us[::-1]:
            nearest = int(np.argmin((finite_rows - v) ** 2 + (finite_cols - u) ** 2))
            row, col = finite_rows[nearest], finite_cols[nearest]
            targets.append(camera.backproject(np.array([[col, row]], float), np.array([depth[row, col]]))[0])
    return targets[:num_views]


def survey_cameras(num_views: int = 60, *, seed: int = 0, spread_deg: float = 8.0,
                   size: tuple[int, int] = SIZE) -> list[Camera]:
    """The survey's cameras in scan order (see the module docstring); intrinsics: the left camera's focal length,
    principal point at the centre of ``size``."""
    rng = np.random.default_rng(seed)
    focal = _left_camera()[0][0, 0]
    height, width = size
    K = np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])
    cameras = []
    for target in _targets(num_views):
        distance = float(np.linalg.norm(target))
        azimuth = math.atan2(target[0], target[2]) + math.radians(rng.uniform(-spread_deg, spread_deg))
        elevation = math.asin(target[1] / distance) + math.radians(0.6 * rng.uniform(-spread_deg, spread_deg))
        center = _orbit_center(target, rng.uniform(0.85, 1.10) * distance, azimuth, elevation)
        R, t = look_at(center, target, math.radians(rng.uniform(-4.0, 4.0)))
        cameras.append(Camera(K, R, t, size))
    return cameras


def render_motorcycle_survey(num_views: int = 60, *, seed: int = 0, spread_deg: float = 8.0,
                             size: tuple[int, int] = SIZE, appearance: float = 1.0,
                             with_depth: bool = True) -> list[SceneView]:
    """Render the survey: ``survey_000.png`` … in scan order, each with its exact camera (and depth).

    Args:
        num_views: number of views.
        seed: jitter of the cameras and of the appearance changes (same seed, same views bit for bit).
        spread_deg: how far each camera turns away from the left camera's direction to its target.
        size: ``(H, W)`` of the views.
        appearance: strength of the per-view exposure / white-balance / blur / noise changes (0: clean renders).
        with_depth: keep the depth maps (needed by :func:`view_overlap`).
    """
    views = []
    for index, camera in enumerate(survey_cameras(num_views, seed=seed, spread_deg=spread_deg, size=size)):
        view = render_view(f"survey_{index:03d}.png", camera.K, camera.R, camera.t, size=size)
        image = degrade(view.image, np.random.default_rng([seed, 1000 + index]), appearance)
        views.append(SceneView(view.name, image, view.K, view.R, view.t, view.depth if with_depth else None))
    return views


def view_overlap(views: Sequence[SceneView], *, step: int = 8, tolerance: float = 0.01) -> np.ndarray:
    """Ground-truth overlap: ``O[i, j]`` = share of view i's pixels with known depth (on a ``step`` px grid) that
    view j sees (:func:`~gim_plugins.datasets.scene.correspondences`); 1 on the diagonal, not symmetric.

    Raises:
        ValueError: a view without depth.
    """
    count = len(views)
    overlap = np.eye(count)
    for i, view in enumerate(views):
        if view.depth is None:
            raise ValueError(f"{view.name} has no depth map: render it with with_depth=True")
        known = max(1, int(np.isfinite(view.depth[::step, ::step]).sum()))
        for j in range(count):
            if i != j:
                overlap[i, j] = len(correspondences(view, views[j], step=step, tolerance=tolerance)[0]) / known
    return overlap
