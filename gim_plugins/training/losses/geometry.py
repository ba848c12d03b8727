"""Geometry the losses share: valid labels per pair, label sampling, pixel ↔ grid coordinates, depth warps.

Conventions. Batches (:mod:`gim_plugins.training.data.batch`) hold pixels in the package convention (centre of the
top-left pixel at (0, 0)) of the network-input image. GIM's LoFTR, DKM, RoMa and SuperPoint work in the *corner*
convention (pixel centres at ``i + 0.5``; our inference wrappers subtract 0.5 from their outputs), so the trainers
add :data:`CORNER_OFFSET` to labels before handing them to GIM's formulas. That keeps a trained network consistent with
the matchers that will run it.

Depth warps follow the batch format: ``depth0``/``K0`` describe image 0; ``depth1``/``K1`` image 1 *before* its
augmentation homography ``H1``; a camera-1 point lands in ``image1`` at ``H1 · K1 · X1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "CORNER_OFFSET",
    "grid_sample_points",
    "label_sets",
    "pixel_to_grid",
    "sample_label_sets",
    "scalar",
    "warp_points_0to1",
    "warp_points_1to0",
]

CORNER_OFFSET = 0.5
"""Package-convention pixels + this = the corner-convention pixels GIM's dense networks and SuperPoint use."""


def scalar(value: torch.Tensor | float) -> float:
    """A number to log (detached: logging never holds the autograd graph)."""
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def label_sets(labels: torch.Tensor, num_labels: torch.Tensor, rows: torch.Tensor) -> list[torch.Tensor]:
    """The valid ``(n_b, 4)`` labels of the selected rows.

    Args:
        labels: ``(B, L, 4)`` ``x0, y0, x1, y1``; rows after ``num_labels`` are padding.
        num_labels: ``(B,)`` valid rows per pair.
        rows: ``(B,)`` bool: the pairs to take.
    """
    return [labels[b, : int(num_labels[b])] for b in torch.nonzero(rows).flatten().tolist()]


def sample_label_sets(sets: list[torch.Tensor], limit: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """At most ``limit`` labels per pair, drawn without replacement (GIM's ``randperm(n)[:limit]``).

    Pairs with ``limit`` or fewer labels keep theirs (in order); ``limit <= 0`` keeps everything, as GIM's
    ``sample_num = 0``. The draws come from ``generator`` (the engine seeds one per micro-batch, so runs resume and
    shard identically).
    """
    if limit <= 0:
        return sets
    out = []
    for labels in sets:
        if len(labels) > limit:
            device = labels.device
            order = torch.randperm(len(labels), generator=generator, device="cpu")[:limit].to(device)
            labels = labels[order]
        out.append(labels)
    return out


def pixel_to_grid(points: torch.Tensor, size: tuple[int, int], *, align_corners: bool) -> torch.Tensor:
    """Pixels ``(..., 2)`` (x, y) → ``grid_sample`` coordinates in [-1, 1] for an image of ``size = (h, w)``.

    ``align_corners=True`` is GIM's ``pt_to_grid`` (``x · 2/(W − 1) − 1``: pixel centres at integer ``x``);
    ``False`` is ``2x/W − 1`` for corner-convention ``x`` (pixel centres at ``i + 0.5``), the convention of DKM's and
    RoMa's flow (their coordinate grid is ``align_corners=False``).
    """
    h, w = size
    if align_corners:
        scale = points.new_tensor([2.0 / (w - 1), 2.0 / (h - 1)])
    else:
        scale = points.new_tensor([2.0 / w, 2.0 / h])
    return points * scale - 1


def _lookup(depth: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest-pixel depth ``(N,)`` of ``(H, W)`` at package-convention ``points`` ``(N, 2)`` and an inside mask."""
    h, w = depth.shape
    index = torch.round(torch.nan_to_num(points, nan=-1.0, posinf=-1.0, neginf=-1.0)).long()
    inside = (index[:, 0] >= 0) & (index[:, 0] < w) & (index[:, 1] >= 0) & (index[:, 1] < h)
    index = torch.where(inside[:, None], index, torch.zeros_like(index))
    values = depth[index[:, 1], index[:, 0]]
    return torch.where(inside, values, torch.zeros_like(values)), inside


def _apply_homography(H: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``(N, 2)`` points through a ``(3, 3)`` homography (non-finite where they map to infinity)."""
    homogeneous = torch.cat([points, torch.ones_like(points[:, :1])], dim=1) @ H.T
    return homogeneous[:, :2] / homogeneous[:, 2:]


def _on_content(mask: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: the nearest pixel of each point is inside ``mask`` ``(H, W)`` and True there."""
    finite = torch.isfinite(points).all(1)
    value, inside = _lookup(mask.float(), torch.where(finite[:, None], points, torch.full_like(points, -1.0)))
    return finite & inside & (value > 0.5)


def _project(points: torch.Tensor, depth: torch.Tensor, K_from: torch.Tensor, K_to: torch.Tensor,
             R: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unproject with ``depth`` through ``K_from``, move by ``R, t``, project with ``K_to``: ``(points, z)``."""
    homogeneous = torch.cat([points, torch.ones_like(points[:, :1])], dim=1)
    cam = (homogeneous @ torch.linalg.inv(K_from).T) * depth[:, None]
    moved = cam @ R.T + t
    z = moved[:, 2]
    projected = moved @ K_to.T
    return projected[:, :2] / projected[:, 2:].clamp_min(1e-4), z


@torch.no_grad()
def warp_points_0to1(points: torch.Tensor, depth0: torch.Tensor, depth1: torch.Tensor, K0: torch.Tensor,
                     K1: torch.Tensor, T_0to1: torch.Tensor, H1: torch.Tensor, mask1: torch.Tensor, *,
                     depth_tolerance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Where image-0 pixels land in image 1, with GIM's validity test (one pair).

    A point is valid when it has depth in image 0, lands inside image 1 (on its content: ``mask1``), and the depth
    image 1 records there agrees with the warped depth to ``depth_tolerance`` (relative; GIM's LoFTR/DKM use 0.2,
    RoMa 0.05).

    Args:
        points: ``(N, 2)`` package-convention pixels of ``image0``.
        depth0: ``(H, W)``; depth1 ``(H, W)`` on image 1's pre-``H1`` grid.
        K0: ``(3, 3)``; K1 ``(3, 3)`` (pre-``H1``); T_0to1 ``(4, 4)``; H1 ``(3, 3)``.
        mask1: ``(H, W)`` bool content mask of ``image1`` (post-``H1``).

    Returns:
        ``(points1 (N, 2) in image1's pixels, valid (N,) bool)``.
    """
    d0, inside0 = _lookup(depth0, points)
    pre, z = _project(points, d0, K0, K1, T_0to1[:3, :3], T_0to1[:3, 3])
    d1, inside1 = _lookup(depth1, pre)
    consistent = (d1 > 0) & ((d1 - z).abs() < depth_tolerance * d1.clamp_min(1e-8))
    post = _apply_homography(H1, pre)
    valid = inside0 & (d0 > 0) & (z > 0) & inside1 & consistent & _on_content(mask1, post)
    return torch.nan_to_num(post), valid


@torch.no_grad()
def warp_points_1to0(points: torch.Tensor, depth0: torch.Tensor, depth1: torch.Tensor, K0: torch.Tensor,
                     K1: torch.Tensor, T_0to1: torch.Tensor, H1: torch.Tensor, mask0: torch.Tensor, *,
                     depth_tolerance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Where ``image1`` pixels (post-``H1``) land in image 0; the mirror of :func:`warp_points_0to1`."""
    pre = _apply_homography(torch.linalg.inv(H1), points)
    d1, inside1 = _lookup(depth1, pre)
    T = torch.linalg.inv(T_0to1)
    out, z = _project(pre, d1, K1, K0, T[:3, :3], T[:3, 3])
    d0, inside0 = _lookup(depth0, out)
    consistent = (d0 > 0) & ((d0 - z).abs() < depth_tolerance * d0.clamp_min(1e-8))
    valid = inside1 & (d1 > 0) & (z > 0) & inside0 & consistent & _on_content(mask0, out)
    return torch.nan_to_num(out), valid


def grid_sample_points(tensor: torch.Tensor, grid: torch.Tensor, *, align_corners: bool) -> torch.Tensor:
    """Bilinear samples ``(N, C)`` of ``(1, C, h, w)`` at ``grid`` ``(N, 2)`` in [-1, 1]."""
    sampled = F.grid_sample(tensor, grid.view(1, 1, -1, 2).to(tensor.dtype), mode="bilinear",
                            align_corners=align_corners)
    return sampled[0, :, 0].t()
