"""GIM-LoFTR's training losses (GIM's ``train-gim-loftr`` branch: ``modules/loss.py``, ``coarse_matching.py``).

Video pairs (GIM's ``zs``): up to 2048 labels per pair; the post-transformer coarse features are sampled bilinearly
at each label (÷8, ``align_corners=True``), and a dual softmax (temperature 0.1) runs over
``[sampled ∥ every coarse cell]`` of both images, padding cells masked out. Each label's own entry — the diagonal of
the sampled × sampled block — is pushed up with the focal loss (α 0.25, γ 2; positives only: there is no negative
for a pseudo-label). The fine level refines inside 5 × 5 windows (radius 2) of the ½-resolution map centred at each
label's rounded coarse cell; the target is the label's sub-pixel offset in image 1 and the loss ``l2_with_std``
(squared offset weighted by the inverse of the predicted spread, only where ``‖target‖∞ < 1``).

Posed pairs (GIM's ``gt``): the standard LoFTR losses — the dense focal loss on the positive entries of the
ground-truth coarse match matrix (GIM adds only the positive term), and the same fine loss.

Only the diagonal of the video dual softmax is needed, so :func:`zeroshot_diagonal_confidence` computes that diagonal
from two log-sum-exps (rows and columns) instead of GIM's full ``(n + L) × (n + S)`` matrix; the value is the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gim_plugins.training.losses.geometry import grid_sample_points

__all__ = [
    "FOCAL_ALPHA",
    "FOCAL_GAMMA",
    "MASKED",
    "TEMPERATURE",
    "coarse_focal_positive_loss",
    "fine_expectation",
    "focal_diagonal_loss",
    "l2_with_std_loss",
    "zeroshot_diagonal_confidence",
    "zeroshot_fine_targets",
]

TEMPERATURE = 0.1
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
MASKED = -1e9
"""The logit GIM writes into masked (padding) entries of the similarity matrix (``-INF`` in its code)."""


def zeroshot_diagonal_confidence(grid0: torch.Tensor, grid1: torch.Tensor, points0: torch.Tensor,
                                 points1: torch.Tensor, mask0: torch.Tensor | None = None,
                                 mask1: torch.Tensor | None = None,
                                 temperature: float = TEMPERATURE) -> torch.Tensor:
    """GIM's zero-shot dual-softmax confidence of each label with itself, for one pair.

    Args:
        grid0: ``(C, h0, w0)`` coarse features of image 0 after the coarse transformer.
        grid1: ``(C, h1, w1)``.
        points0: ``(n, 2)`` label positions in image 0, corner-convention pixels of the network input.
        points1: ``(n, 2)`` in image 1.
        mask0: ``(h0, w0)`` bool, True on real content (None: all).
        mask1: ``(h1, w1)`` bool.
        temperature: dual-softmax temperature (0.1).

    Returns:
        ``(n,)``: ``softmax_rows(S)[i, i] · softmax_cols(S)[i, i]`` of
        ``S = [f0(p0) ∥ F0] · [f1(p1) ∥ F1]ᵀ / (C · temperature)``, masked cells at :data:`MASKED`.
    """
    c = grid0.shape[0]
    sampled0 = _sample_coarse(grid0, points0)  # (n, C)
    sampled1 = _sample_coarse(grid1, points1)
    flat0, flat1 = grid0.flatten(1).t(), grid1.flatten(1).t()  # (L, C), (S, C)
    norm = 1.0 / (c * temperature)  # both sides are scaled by 1/sqrt(C)
    diagonal = (sampled0 * sampled1).sum(1) * norm
    cols = torch.cat([sampled0 @ sampled1.t(), flat0 @ sampled1.t()]) * norm  # (n + L, n): the columns of S
    rows = torch.cat([sampled0 @ sampled1.t(), sampled0 @ flat1.t()], dim=1) * norm  # (n, n + S): the rows
    n = len(points0)
    if mask0 is not None:
        cols[n:] = cols[n:].masked_fill(~mask0.flatten()[:, None], MASKED)
    if mask1 is not None:
        rows[:, n:] = rows[:, n:].masked_fill(~mask1.flatten()[None, :], MASKED)
    return torch.exp(2 * diagonal - torch.logsumexp(cols, 0) - torch.logsumexp(rows, 1))


def _sample_coarse(grid: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """GIM's ``pt_to_grid(pt / 8)`` + ``grid_sample(align_corners=True)``: ``(n, C)`` features at the labels."""
    _, h, w = grid.shape
    coarse = points / 8.0
    normalised = coarse * coarse.new_tensor([2.0 / (w - 1), 2.0 / (h - 1)]) - 1
    return grid_sample_points(grid[None], normalised, align_corners=True)


def focal_diagonal_loss(confidences: list[torch.Tensor], alpha: float = FOCAL_ALPHA,
                        gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """GIM's ``compute_coarse_zeroshot_loss``: the mean over pairs of the mean positive focal loss.

    Each confidence is clamped to ``[1e-6, 1 − 1e-6]``; a label contributes ``−α (1 − x)^γ log x``.
    """
    terms = []
    for conf in confidences:
        x = conf.clamp(1e-6, 1 - 1e-6)
        terms.append((-alpha * (1 - x) ** gamma * x.log()).mean())
    return torch.stack(terms).mean()


def coarse_focal_positive_loss(conf: torch.Tensor, positives: torch.Tensor, weight: torch.Tensor | None = None,
                               alpha: float = FOCAL_ALPHA, gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """LoFTR's dense coarse focal loss, positive term (the one GIM's training adds).

    Args:
        conf: ``(N, L, S)`` dual-softmax confidence.
        positives: ``(N, L, S)`` bool ground-truth coarse matches.
        weight: ``(N, L, S)`` element weights (padding: 0), or None.

    Returns:
        ``mean(−α (1 − c)^γ log c · w)`` over the positives; 0 (attached to the graph) when there is none, as GIM
        does by supervising one entry with weight 0.
    """
    if not bool(positives.any()):
        return conf.sum() * 0.0
    c = conf[positives].clamp(1e-6, 1 - 1e-6)
    loss = -alpha * (1 - c) ** gamma * c.log()
    if weight is not None:
        loss = loss * weight[positives]
    return loss.mean()


def zeroshot_fine_targets(points0: torch.Tensor, points1: torch.Tensor, coarse_size0: tuple[int, int],
                          coarse_size1: tuple[int, int], radius: int = 2) -> dict[str, torch.Tensor]:
    """GIM's fine-level selection for video labels (``FinePreprocess`` + ``spvc_zeroshot_fine``), one pair.

    Window centres are the labels' rounded coarse cells (``round(p / 8)``), i.e. fine pixel ``4 · round(p / 8)`` of
    the ½-resolution map; a label is kept when it lies within ``radius`` fine pixels of the centre in both images
    (and, unlike GIM, whose indexing would fail there, when its cell exists).

    Args:
        points0: ``(n, 2)`` corner-convention pixels in image 0.
        points1: ``(n, 2)`` in image 1.
        coarse_size0: ``(h, w)`` of image 0's coarse grid; coarse_size1 likewise.
        radius: window radius in fine pixels (2: 5 × 5 windows).

    Returns:
        ``keep`` ``(n,)`` bool; and for the kept labels ``cell0``, ``cell1`` (flat coarse indices), ``offset0``
        (image 0's position in its window, in [-1, 1]: where to sample its feature) and ``target``
        (``(p1/2 − centre1) / radius``: what the fine expectation must predict).
    """
    cells0, cells1 = torch.round(points0 / 8.0), torch.round(points1 / 8.0)
    fine0, fine1 = points0 / 2.0, points1 / 2.0
    delta0, delta1 = fine0 - 4 * cells0, fine1 - 4 * cells1
    keep = (delta0.abs() <= radius).all(1) & (delta1.abs() <= radius).all(1)
    for cells, (h, w) in ((cells0, coarse_size0), (cells1, coarse_size1)):
        keep &= (cells[:, 0] >= 0) & (cells[:, 0] < w) & (cells[:, 1] >= 0) & (cells[:, 1] < h)
    cells0, cells1 = cells0[keep].long(), cells1[keep].long()
    return {
        "keep": keep,
        "cell0": cells0[:, 0] + cells0[:, 1] * coarse_size0[1],
        "cell1": cells1[:, 0] + cells1[:, 1] * coarse_size1[1],
        "offset0": delta0[keep] / radius,
        "target": delta1[keep] / radius,
    }


def fine_expectation(windows0: torch.Tensor, windows1: torch.Tensor,
                     offset0: torch.Tensor | None = None) -> torch.Tensor:
    """LoFTR's fine matching: expectation and spread of image 0's feature's heat map in image 1's window.

    Args:
        windows0: ``(M, W², C)`` fine features of the windows in image 0 (after the fine transformer).
        windows1: ``(M, W², C)``.
        offset0: ``(M, 2)`` where image 0's feature is read, in [-1, 1] over its window (``align_corners=True``;
            GIM's video labels); None reads the window centre (ground-truth pairs).

    Returns:
        ``(M, 3)``: the expected position ``(x, y)`` in [-1, 1] over the window and ``std = √var_x + √var_y``.
    """
    m, ww, c = windows0.shape
    side = round(ww**0.5)
    if offset0 is None:
        picked = windows0[:, ww // 2]
    else:
        maps = windows0.transpose(1, 2).reshape(m, c, side, side)
        picked = F.grid_sample(maps, offset0.view(m, 1, 1, 2).to(maps.dtype), mode="bilinear",
                               align_corners=True)[:, :, 0, 0]
    heat = torch.softmax(torch.einsum("mc,mrc->mr", picked, windows1) / c**0.5, dim=1)  # (M, W²)
    axis = torch.linspace(-1, 1, side, device=heat.device, dtype=heat.dtype)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(1, ww, 2)  # (x, y) per cell
    coords = (heat[..., None] * grid).sum(1)
    var = (heat[..., None] * grid**2).sum(1) - coords**2
    std = var.clamp_min(1e-10).sqrt().sum(-1)
    return torch.cat([coords, std[:, None]], dim=-1)


def l2_with_std_loss(expectation: torch.Tensor, target: torch.Tensor, correct_threshold: float = 1.0) -> torch.Tensor:
    """LoFTR's ``l2_with_std`` fine loss (GIM: ``FINE_CORRECT_THR = 1.0``).

    Args:
        expectation: ``(M, 3)`` from :func:`fine_expectation`.
        target: ``(M, 2)`` in window units.
        correct_threshold: only targets with ``‖target‖∞ <`` this count (the others left the window).

    Returns:
        ``mean(‖target − xy‖² · w)`` over the counted entries with ``w = (1/std) / mean(1/std)`` (over all M,
        detached: the spread cannot be raised to lower the loss); 0 (attached to the graph) when none counts.
    """
    if len(expectation) == 0:
        return expectation.sum() * 0.0
    correct = torch.linalg.norm(target, ord=float("inf"), dim=1) < correct_threshold
    inverse = 1.0 / expectation[:, 2].clamp_min(1e-10)
    weight = (inverse / inverse.mean()).detach()
    if not bool(correct.any()):
        return expectation.sum() * 0.0
    offset = ((target[correct] - expectation[correct, :2]) ** 2).sum(-1)
    return (offset * weight[correct]).mean()
