"""GIM's label propagation rules as plain functions: start frames, hop chaining, linking, the final check.

Why a module of its own: the rules decide which long-range pairs GIM's training sees, so they are kept exactly as
GIM's ``datasets/walk/walk.py`` applies them (a propagation step whose output differs from GIM's would train a
different model) and separate from the file handling of :mod:`~gim_plugins.training.video.propagate`, so that they
can be tested on arrays.

Terms: a *variant* is one labeller × zoom flag at one pair spacing (*skip*); its labels of a frame pair ``(a, b)``
are an ``(N, 4)`` float32 array ``x_a, y_a, x_b, y_b``. The skips of a propagation are sorted ascending.

Rules (GIM's, with the generalisation to any number of skips marked *general*):

1. **Start frames** (:func:`start_frames`). A frame ``s`` starts a chain when the pair ``(s, s + S)`` at the largest
   skip ``S`` has more than ``min_filter_matches`` (32) labels in *every* variant of that skip, the pair starting at
   ``s + S`` qualifies the same way, and for every smaller skip ``k`` the pairs starting at ``s + m·k`` exist (any
   number of labels) in every variant of skip ``k`` for ``m = 0 … S/k − 1``. With GIM's skips 10/20/40 that is
   ``m ∈ {0, 1}`` at 20 and ``m ∈ {0, 1, 2, 3}`` at 10, exactly GIM's checks (*general*: the same formula for any
   skips).
2. **Targets** (:func:`target_pairs`): ``(s, min(s + step·S, last))`` where ``last`` is the end frame of the last
   start's first hop; targets shorter than ``S`` are dropped.
3. **Chaining** (:meth:`Chainer.propagate`): ``[i0, i1]`` is cut into hops of the largest skip (plus a shorter last
   hop). A hop's label is the concatenation of every variant's stored label of that exact pair (when the hop has the
   skip's length) and of the label obtained by recursing with the smaller skips, when that recursion reaches exactly
   the same hop. Consecutive hop labels are *linked* (:func:`link`) through the points they share in the middle
   frame, identified by their rounded pixel ``round(x) + round(y)·W`` (the last point of each label wins a pixel;
   pairs are unique). When fewer than ``min_final_matches`` (512) links survive, the failing hop is dropped and
   replaced by the same hop shortened by the smallest skip; the rest of the planned chain is abandoned.
4. **Per target** (:func:`propagate_pair`): chain with all skips; when the chain reached exactly one hop of the
   largest skip, chain that hop again with the smaller skips only, and so on down the skips; a chain that reached
   only the smallest skip, or none, is a bad pair. The chained label is filtered by a fundamental matrix
   (``cv2.findFundamentalMat``, USAC_MAGSAC, 1 px, confidence 0.999999, 1000 iterations); fewer than 64 inliers is
   a bad pair.

A quirk kept on purpose (``missing_hop="skip"``, GIM's behaviour): a hop without any label is passed over and the
next hop is linked to the chain as if it continued it, although it starts at a later frame; when the *first* hop has
no label, the chain is reported as starting at ``i0`` while its points belong to the next hop's first frame. Start
frames guarantee labels for the first hops of a target, so this happens inside the chain, where missing labels are
possible. ``missing_hop="stop"`` ends the chain at the first hop without labels instead (the chain then never spans
frames it has no labels for); the measured difference is in ``docs/video.md``.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GIM_METHOD_ORDER",
    "Chainer",
    "LabelCache",
    "Outcome",
    "intersect_rows",
    "link",
    "propagate_pair",
    "start_frames",
    "target_pairs",
    "variant_order",
]

GIM_METHOD_ORDER = ("SIFT", "GIM_DKM", "GIM_GLUE", "GIM_LOFTR")
"""The order of GIM's list of label folders; a hop's labels are concatenated in this order (it decides which point
wins a shared pixel and the order of the rows the final fit sees)."""

Pair = tuple[int, int]
Reader = Callable[[int, Pair], "np.ndarray | None"]


def variant_order(method: str, zoom: bool) -> tuple[int, str, bool]:
    """Sort key of a variant: GIM's four methods in GIM's list order, any other method after them by name; within a
    method, unzoomed before zoomed (GIM's ``F`` before ``T``)."""
    rank = GIM_METHOD_ORDER.index(method) if method in GIM_METHOD_ORDER else len(GIM_METHOD_ORDER)
    return rank, method, zoom


def intersect_rows(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Rows ``(i, j)`` present in every ``(M, 2)`` array, sorted and unique (GIM's ``reduce(intersected, …)``)."""
    if not arrays:
        return np.zeros((0, 2), np.int64)
    common: set[tuple[int, int]] | None = None
    for array in arrays:
        rows = {(int(a), int(b)) for a, b in np.asarray(array, np.int64).reshape(-1, 2)}
        common = rows if common is None else common & rows
    return np.array(sorted(common or ()), dtype=np.int64).reshape(-1, 2)


def start_frames(records: Mapping[int, Sequence[tuple[np.ndarray, np.ndarray]]], min_filter_matches: int) -> np.ndarray:
    """Rows ``(s, s + S)`` of the start frames (rule 1), sorted.

    Args:
        records: per skip, the ``(nums (M,), idxs (M, 2))`` record of every variant of that skip.
        min_filter_matches: a first hop needs more than this many labels in every variant.
    """
    skips = sorted(records)
    largest = skips[-1]
    strong = intersect_rows([idxs[nums > min_filter_matches] for nums, idxs in records[largest]])
    starts = set(strong[:, 0].tolist())
    keep = np.array([s + largest in starts for s in strong[:, 0]], dtype=bool)
    for skip in skips[:-1]:
        present = set(intersect_rows([idxs for _, idxs in records[skip]])[:, 0].tolist())
        for m in range(largest // skip):
            keep &= np.array([s + m * skip in present for s in strong[:, 0]], dtype=bool)
    return strong[keep]


def target_pairs(starts: np.ndarray, largest: int, step: int) -> list[Pair]:
    """The target pairs of the start rows (rule 2), in start order; ``step`` ≤ 0 keeps the first hops themselves."""
    if len(starts) == 0:
        return []
    if step <= 0:
        pairs = starts
    else:
        ends = np.clip(starts[:, 0] + step * largest, a_min=starts[0, 0], a_max=starts[-1, 1])
        pairs = np.stack([starts[:, 0], ends], axis=1)
    pairs = pairs[(pairs[:, 1] - pairs[:, 0]) >= largest]
    return [(int(a), int(b)) for a, b in pairs]


def _last_per_key(label_points: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique pixel keys of ``(N, 2)`` points and, per key, the index of its last point (a dict built in order)."""
    keys = np.round(label_points[:, 0].astype(np.float64)) + np.round(label_points[:, 1].astype(np.float64)) * width
    finite = np.flatnonzero(np.isfinite(keys))  # NaN keys never equal anything in GIM's dict
    keys = keys[finite]
    unique, first_from_end = np.unique(keys[::-1], return_index=True)
    return unique, finite[len(keys) - 1 - first_from_end]


def link(label0: np.ndarray, label1: np.ndarray, width: int, min_final_matches: int) -> np.ndarray | None:
    """Chain ``a → b`` labels with ``b → c`` labels through shared rounded pixels of frame ``b`` (rule 3).

    Returns:
        ``(K, 4)`` float32 ``a → c`` labels, ordered by their row in ``label0``; ``None`` when fewer than
        ``min_final_matches`` points are shared.
    """
    keys0, rows0 = _last_per_key(label0[:, 2:], width)
    keys1, rows1 = _last_per_key(label1[:, :2], width)
    _, at0, at1 = np.intersect1d(keys0, keys1, assume_unique=True, return_indices=True)
    i, j = rows0[at0], rows1[at1]
    if len(i) < min_final_matches:
        return None
    order = np.argsort(i, kind="stable")
    i, j = i[order], j[order]
    return np.concatenate([label0[i, :2], label1[j, 2:]], axis=1)


class LabelCache:
    """Stored hop labels by ``(skip, pair)``, kept in memory up to ``max_bytes`` (least recently used out first).

    Why: overlapping targets chain the same hops again and again (targets start every few frames and run for
    hundreds of hops), and a hop's label is several files; reading them once per run instead of once per use makes
    propagation I/O-light. ``read`` returns ``None`` when no variant has labels for the pair.
    """

    def __init__(self, read: Reader, max_bytes: int) -> None:
        self._read = read
        self._max = max_bytes
        self._items: OrderedDict[tuple[int, Pair], np.ndarray | None] = OrderedDict()
        self._bytes = 0
        self.reads = 0

    def __call__(self, skip: int, pair: Pair) -> np.ndarray | None:
        key = (skip, pair)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._read(skip, pair)
        self.reads += 1
        size = 0 if value is None else value.nbytes
        if size <= self._max:
            self._items[key] = value
            self._bytes += size
            while self._bytes > self._max:
                _, old = self._items.popitem(last=False)
                self._bytes -= 0 if old is None else old.nbytes
        return value


@dataclass(frozen=True)
class Chainer:
    """Rule 3 for one video: stored labels in, chained labels out.

    Attributes:
        labels: ``(skip, pair) → (N, 4) float32`` labels of every variant concatenated, or ``None`` (or empty).
        width: frame width in pixels (the row length of the pixel keys).
        min_final_matches: links a chained hop needs.
        missing_hop: ``"skip"`` (GIM: pass over a hop without labels) or ``"stop"`` (end the chain there).
    """

    labels: Reader
    width: int
    min_final_matches: int = 512
    missing_hop: str = "skip"

    def __post_init__(self) -> None:
        if self.missing_hop not in ("skip", "stop"):
            raise ValueError(f"missing_hop must be 'skip' or 'stop', got {self.missing_hop!r}")

    def propagate(self, i0: int, i1: int, skips: Sequence[int]) -> tuple[np.ndarray | None, int | None, int | None]:
        """Chain ``[i0, i1]`` with ``skips`` (ascending): ``(label, first frame, last frame reached)`` or Nones."""
        skip = skips[-1]
        marks = [i0] + [i0 + skip * (n + 1) for n in range((i1 - i0) // skip)]
        if marks[-1] != i1:
            marks.append(i1)
        hops = list(itertools.pairwise(marks))
        chain: list[np.ndarray] = []
        frames = [i0]
        while hops:
            hop = hops.pop(0)
            if hop[0] == hop[1]:
                break
            parts = []
            if hop[1] - hop[0] == skip:
                stored = self.labels(skip, hop)
                if stored is not None and len(stored) > 0:
                    parts.append(stored)
            if len(skips) > 1:
                sub, first, last = self.propagate(hop[0], hop[1], skips[:-1])
                if sub is not None and (first, last) == hop:
                    parts.append(sub)
            if parts:
                chain.append(np.concatenate(parts, axis=0))
                frames.append(hop[1])
            elif self.missing_hop == "stop":
                break
            if len(chain) > 1:
                linked = link(chain[0], chain[1], self.width, self.min_final_matches)
                if linked is not None:
                    chain, frames = [linked], [frames[0], frames[-1]]
                else:
                    chain.pop()
                    frames.pop()
                    hops = [(hop[0], hop[1] - skips[0])]
        if len(chain) == 1 and len(frames) == 2:
            return chain[0], frames[0], frames[-1]
        return None, None, None


@dataclass(frozen=True)
class Outcome:
    """The result of one target pair: ``label`` ``(N, 4)`` float32 and the frames reached, or ``label`` None with
    the reason it is a bad pair."""

    target: Pair
    label: np.ndarray | None
    reached: Pair | None
    reason: str = ""


def _fundamental_inliers(label: np.ndarray, threshold: float, confidence: float, max_iters: int) -> np.ndarray | None:
    import cv2

    if len(label) < 8:
        return None
    try:
        _, mask = cv2.findFundamentalMat(label[:, :2], label[:, 2:], cv2.USAC_MAGSAC, ransacReprojThreshold=threshold,
                                         confidence=confidence, maxIters=max_iters)
    except cv2.error:
        return None
    return None if mask is None else mask.ravel() > 0


def propagate_pair(chainer: Chainer, target: Pair, skips: Sequence[int], *, min_inliers: int = 64,
                   threshold: float = 1.0, confidence: float = 0.999999, max_iters: int = 1000) -> Outcome:
    """Rule 4 for one target pair: chain, retry single hops with smaller skips, fit F, keep its inliers."""
    skips = sorted(skips)
    label, first, last = chainer.propagate(target[0], target[1], skips)
    for level in range(1, len(skips)):
        if label is None or first is None or last is None:
            break
        if last - first == skips[-level]:
            label, first, last = chainer.propagate(first, last, skips[:-level])
    if label is None or first is None or last is None:
        return Outcome(target, None, None, "no chain")
    inliers = _fundamental_inliers(label, threshold, confidence, max_iters)
    if inliers is None:
        return Outcome(target, None, (first, last), "no fundamental matrix")
    label = label[inliers]
    if len(label) < min_inliers:
        return Outcome(target, None, (first, last), f"{len(label)} inliers < {min_inliers}")
    if last - first == skips[0]:
        return Outcome(target, None, (first, last), "reached only the smallest skip")
    return Outcome(target, label, (first, last))
