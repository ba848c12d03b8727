"""Matching many pairs: images prepared by background workers, batches sized by the memory there is.

Why: a pipeline over many pairs (``gim reconstruct``, the ZEB runner, hloc's ``match_dense``) spends its time in
two places that can overlap — decoding/resizing images on the CPU and the network on the accelerator — and a dense
warp matcher on a GPU runs B pairs of its fixed canvas in one forward pass for much less than B times the cost of
one. :func:`iter_matches` does both for any matcher:

* ``workers`` threads run :meth:`~gim_plugins.models.base.BaseMatcher.prepare_pair` (OpenCV decoding and torch
  resizing release the GIL) up to two batches ahead of the network;
* :meth:`~gim_plugins.models.base.BaseMatcher.match_prepared` matches each batch; matchers without
  ``supports_batching`` get batches of one.

Batch size (``batch_size=None``): 1 on the CPU (the networks already use every core for one pair and their
refiners run one image at a time, so a larger batch only costs memory), and on CUDA the largest that fits: the first
pair runs alone while its peak memory is measured, then ``B = ⌊0.8 · (free memory) / (peak per pair)⌋`` (at most
``max_batch``). A batch that still runs out of GPU memory is split in half and retried. A given ``batch_size`` is used
as it is (also on the CPU).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from gim_plugins.types import MatchResult

__all__ = ["MAX_BATCH", "MEMORY_SHARE", "BatchSizer", "batch_size_for_memory", "check_batch_size", "default_workers",
           "iter_matches"]

log = logging.getLogger(__name__)

K = TypeVar("K")
MAX_BATCH = 16
"""Upper bound of an automatic batch size."""
MEMORY_SHARE = 0.8
"""Share of the free GPU memory an automatic batch may use."""


def default_workers() -> int:
    """Background threads preparing images: half the cores, 1 to 4."""
    return min(4, max(1, (os.cpu_count() or 2) // 2))


def check_batch_size(value: Any) -> int | None:
    """``value`` as a batch size: a positive integer, or ``None`` for automatic.

    Raises:
        ValueError: anything else (``True`` included: a flag is not a size).
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"batch_size must be a positive integer or None (automatic), got {value!r}")
    return value


def batch_size_for_memory(available_bytes: float, per_pair_bytes: float, max_batch: int = MAX_BATCH) -> int:
    """The number of pairs whose working memory fits ``MEMORY_SHARE`` of ``available_bytes`` (1 … ``max_batch``)."""
    if per_pair_bytes <= 0:
        return max_batch
    return int(max(1, min(max_batch, MEMORY_SHARE * available_bytes // per_pair_bytes)))


class BatchSizer:
    """Chooses and adapts the batch size of one matching run (see the module docstring).

    Args:
        matcher: the matcher (its ``supports_batching`` and device decide).
        requested: a fixed batch size, or ``None`` for automatic.
        max_batch: the largest automatic batch.
    """

    def __init__(self, matcher: Any, requested: int | None = None, max_batch: int = MAX_BATCH) -> None:
        check_batch_size(requested)
        self.matcher = matcher
        self.device = torch.device(matcher.device)
        batching = bool(getattr(matcher, "supports_batching", False))
        self.calibrating = batching and requested is None and self.device.type == "cuda"
        self.size = (requested or 1) if batching else 1
        self.max_batch = max(1, max_batch)

    def run(self, prepared: Sequence[Any]) -> list[MatchResult]:
        """Match one batch (halving it on CUDA out-of-memory errors); calibrates the size after the first batch."""
        if not self.calibrating:
            return self._run_splitting(prepared)
        torch.cuda.synchronize(self.device)
        before = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        results = self._run_splitting(prepared)
        per_pair = (torch.cuda.max_memory_allocated(self.device) - before) / max(1, len(prepared))
        free, _ = torch.cuda.mem_get_info(self.device)
        cached = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        self.size = batch_size_for_memory(free + cached, per_pair, self.max_batch)
        self.calibrating = False
        log.info("batch size %d: %.2f GB per pair, %.1f GB free on %s", self.size, per_pair / 2**30,
                 (free + cached) / 2**30, self.device)
        return results

    def _run_splitting(self, prepared: Sequence[Any]) -> list[MatchResult]:
        try:
            return list(self.matcher.match_prepared(prepared))
        except torch.cuda.OutOfMemoryError:
            if len(prepared) == 1:
                raise
            torch.cuda.empty_cache()
            half = max(1, len(prepared) // 2)
            self.size = min(self.size, half)
            log.warning("out of GPU memory with %d pairs per batch; continuing with %d", len(prepared), half)
            return self._run_splitting(prepared[:half]) + self._run_splitting(prepared[half:])


def iter_matches(matcher: Any, items: Iterable[tuple[K, Any, Any]], *, batch_size: int | None = None,
                 workers: int | None = None, max_batch: int = MAX_BATCH) -> Iterator[tuple[K, MatchResult]]:
    """Match ``(key, image0, image1)`` items; yields ``(key, result)`` in the order of ``items``.

    Args:
        matcher: any :class:`~gim_plugins.models.base.BaseMatcher`.
        items: the pairs, each with a key of the caller's choice (consumed lazily).
        batch_size: pairs per forward pass (``None``: automatic, see the module docstring).
        workers: background threads preparing images (``None``: :func:`default_workers`; 0: none, the caller's
            thread prepares each batch).
        max_batch: the largest automatic batch.

    Raises:
        whatever preparing or matching a pair raises (for the first pair that fails, in order).
    """
    sizer = BatchSizer(matcher, batch_size, max_batch)
    workers = default_workers() if workers is None else workers
    iterator = iter(items)
    if workers <= 0:
        yield from _serial(matcher, iterator, sizer)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gim-prepare")
    pending: deque[tuple[K, Future[Any]]] = deque()

    def fill(count: int) -> None:
        while len(pending) < count:
            try:
                key, image0, image1 = next(iterator)
            except StopIteration:
                return
            pending.append((key, pool.submit(_prepare, matcher.prepare_pair, image0, image1)))

    try:
        while True:
            fill(2 * sizer.size + workers)
            if not pending:
                return
            batch = [pending.popleft() for _ in range(min(sizer.size, len(pending)))]
            prepared = [future.result() for _, future in batch]
            fill(2 * sizer.size + workers)  # the workers prepare the next batches while the network runs
            for (key, _), result in zip(batch, sizer.run(prepared)):
                yield key, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _prepare(prepare: Callable[[Any, Any], Any], image0: Any, image1: Any) -> Any:
    with torch.inference_mode():
        return prepare(image0, image1)


def _serial(matcher: Any, iterator: Iterator[tuple[K, Any, Any]], sizer: BatchSizer
            ) -> Iterator[tuple[K, MatchResult]]:
    while True:
        batch = []
        for key, image0, image1 in iterator:
            batch.append((key, _prepare(matcher.prepare_pair, image0, image1)))
            if len(batch) >= sizer.size:
                break
        if not batch:
            return
        for (key, _), result in zip(batch, sizer.run([p for _, p in batch])):
            yield key, result
