"""DKM's "threshold_balanced" match sampling, with a memory-bounded kernel density estimate.

The original builds the full ``(4N)²`` distance matrix of the candidate matches (20,000² floats, 1.6 GB, and ≈3.5 GB
peak for N = 5000); :func:`kde` computes the same densities in row blocks. Each block calls the same ``torch.cdist``
and reduction as the original on a subset of rows, so the densities — and with them the second multinomial draw — are
the original's.
"""

from __future__ import annotations

import torch

__all__ = ["EXPANSION_FACTOR", "KDE_STD", "balanced_sample", "kde"]

KDE_STD = 0.1
EXPANSION_FACTOR = 4
EXP_FLOOR = -87.0
"""exp(-87) = 1.6e-38, the smallest exponent whose exp is still a normal float32."""
MIN_DENSITY = 10.0
"""Candidates with fewer than about 10 close neighbours are nearly never drawn (probability 1e-7)."""


def kde(x: torch.Tensor, std: float = KDE_STD, chunk: int = 2048, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Gaussian kernel density ``sum_j exp(-|x_i - x_j|² / (2 std²))`` of each row of ``x`` (N, D).

    ``chunk`` rows are processed at a time: memory is ``chunk × N`` floats instead of ``N × N``. The operations are
    the original's (``torch.cdist``, square, negate, divide, exp, row sum), done in place, with one addition: the
    exponent is floored at −87 so that ``exp`` never produces subnormal numbers, which are up to 10× slower on x86.
    The floor only turns terms below 1.7e-38 into 1.7e-38; each density includes the point itself (1.0), so these
    terms are far below its rounding unit and the result is bit-identical to the original's.

    ``dtype`` converts ``x`` first: RoMa's original computes its KDE in float16 (``x.half()``), and the densities,
    hence the second draw, depend on that rounding. In float16 ``exp`` of anything below −17 is already 0, so the
    floor changes nothing there either.
    """
    if dtype is not None:
        x = x.to(dtype)
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    density = x.new_empty(x.shape[0])
    for start in range(0, x.shape[0], chunk):
        scores = torch.cdist(x[start : start + chunk], x)
        scores.pow_(2).neg_().div_(2 * std**2).clamp_min_(EXP_FLOOR).exp_()
        density[start : start + chunk] = scores.sum(dim=-1)
        del scores
    return density


def balanced_sample(warp: torch.Tensor, certainty: torch.Tensor, num: int, *, threshold: float = 0.05,
                    generator: torch.Generator | None = None, chunk: int = 2048,
                    kde_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw up to ``num`` matches spread over the image from a dense warp (DKM ``sample``, GIM variant).

    1. Weights: certainty, with values above ``threshold`` set to 1; draw ``4·num`` candidates without replacement.
    2. Density of the candidates' 4-D match vectors (Gaussian KDE, std 0.1); weight ``1/(1 + density)``, and 1e-7
       where the density is below 10 (isolated candidates are likely outliers).
    3. Draw ``num`` of the candidates without replacement with these weights.

    Args:
        warp: ``(..., 4)`` normalised matches ``(x_A, y_A, x_B, y_B)``.
        certainty: ``(...)`` certainty of each match, in [0, 1].
        num: number of matches to return (fewer when the warp has fewer entries).
        threshold: certainty above which every match weighs the same.
        generator: random generator of both draws (``None``: torch's global generator, as the original).
        chunk: KDE row block size.
        kde_dtype: dtype of the KDE and of the second draw's weights (``None``: the warp's; RoMa: float16).

    Returns:
        ``(matches (K, 4), certainty (K,))`` with the **original** certainty of each drawn match (GIM returns it
        instead of the thresholded weight).
    """
    matches = warp.reshape(-1, 4)
    original = certainty.reshape(-1)
    weights = original.clone()
    weights[weights > threshold] = 1
    if not weights.sum():
        weights = weights + 1e-8
    candidates = torch.multinomial(weights, num_samples=min(EXPANSION_FACTOR * num, len(weights)),
                                   replacement=False, generator=generator)
    del weights
    good_matches, good_certainty = matches[candidates], original[candidates]
    density = kde(good_matches, std=KDE_STD, chunk=chunk, dtype=kde_dtype)
    p = 1 / (density + 1)
    p[density < MIN_DENSITY] = 1e-7
    chosen = torch.multinomial(p, num_samples=min(num, len(good_certainty)), replacement=False, generator=generator)
    return good_matches[chosen], good_certainty[chosen]
