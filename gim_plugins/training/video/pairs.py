"""Which frames are sampled and which frame pairs are labelled: GIM's gaps and skips, within one shot only.

GIM's ``video_preprocessor.py``: with ``fps = ceil(fps)``, frames are sampled every ``gap`` frames (10 at ≤ 30 fps,
else 20) and each sampled frame ``i`` is paired with ``i + skip`` for ``skip`` in (10, 20, 40) at ≤ 30 fps, else
(20, 40, 80). Here both are options (:func:`gim_gap_and_skips` gives GIM's), frame numbers are 0-based indices of
decoded frames, the range is ``[start, end)``, and a pair whose two frames lie in different shots is never made.

Sharding (``--shard i/n`` and torchrun ranks): with at least as many videos as workers, worker ``r`` takes videos
``r::n`` whole; with fewer, every worker takes the ``r``-th contiguous block of each video's sampled frames (and the
pairs starting there), so that each worker decodes and caches a compact set of frames. The split is made on the
sampled frames before shots are known, so every worker gets the same split whatever the shot detector finds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "gim_gap_and_skips",
    "needed_frames",
    "sampled_frames",
    "shard_block",
    "shot_of",
    "video_pairs",
    "videos_of_shard",
]


def gim_gap_and_skips(fps: float) -> tuple[int, tuple[int, int, int]]:
    """GIM's sampling gap and pair spacings for a frame rate: ``(10, (10, 20, 40))`` at ≤ 30 fps (after ``ceil``),
    else ``(20, (20, 40, 80))``."""
    if fps <= 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    return (10, (10, 20, 40)) if math.ceil(fps) <= 30 else (20, (20, 40, 80))


def sampled_frames(start: int, end: int, gap: int) -> range:
    """Frames ``start, start + gap, …`` below ``end``."""
    if gap < 1:
        raise ValueError(f"gap must be a positive number of frames, got {gap}")
    return range(start, end, gap)


def videos_of_shard(videos: Sequence[str], shard: tuple[int, int]) -> tuple[list[str], bool]:
    """The videos worker ``shard = (r, n)`` handles, and whether it handles them whole.

    Returns:
        ``(videos r::n, True)`` when there are at least ``n`` videos; else ``(all videos, False)``: the worker then
        takes block ``r`` of each video's frames (:func:`shard_block`).
    """
    rank, size = shard
    if size <= 1:
        return list(videos), True
    if len(videos) >= size:
        return list(videos[rank::size]), True
    return list(videos), False


def shard_block(frames: Sequence[int], shard: tuple[int, int] | None) -> Sequence[int]:
    """The ``r``-th of ``n`` contiguous, nearly equal blocks of ``frames`` (all of them for ``None``)."""
    if shard is None or shard[1] <= 1:
        return frames
    rank, size = shard
    count = len(frames)
    return frames[rank * count // size : (rank + 1) * count // size]


def shot_of(shots: Sequence[Sequence[int]], frame: int) -> int:
    """Index of the shot ``[start, end)`` holding ``frame``; -1 when none does."""
    lo, hi = 0, len(shots)
    while lo < hi:
        mid = (lo + hi) // 2
        if shots[mid][1] <= frame:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < len(shots) and shots[lo][0] <= frame else -1


def video_pairs(starts: Sequence[int], skip: int, end: int, shots: Sequence[Sequence[int]] | None = None) -> list[
        tuple[int, int]]:
    """Pairs ``(i, i + skip)`` for ``i`` in ``starts`` with ``i + skip < end``, both frames in the same shot.

    ``shots=None`` keeps every pair (the candidate list before shot detection).
    """
    pairs = []
    for i in starts:
        j = i + skip
        if j >= end:
            continue
        if shots is not None:
            shot = shot_of(shots, i)
            if shot < 0 or shot != shot_of(shots, j):
                continue
        pairs.append((i, j))
    return pairs


def needed_frames(starts: Sequence[int], skips: Sequence[int], end: int) -> list[int]:
    """Every frame of the candidate pairs starting at ``starts`` (the frames the decode step caches)."""
    frames = set()
    for skip in skips:
        for i, j in video_pairs(starts, skip, end):
            frames.update((i, j))
    return sorted(frames)
