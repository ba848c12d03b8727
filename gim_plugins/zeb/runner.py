"""Loop 1 of ZEB: match every pair with any registered matcher, evaluate it, and store the result.

``run(config, data_dir, out_dir)`` reads the subsets from ``data_dir`` (:mod:`.dataset`) and, for each pair of the
protocol's selection (:mod:`.protocols`), has the protocol prepare both images, calls the matcher, has the protocol
turn its keypoints (and the cameras) into pose-estimation input, evaluates the pair (:mod:`.metrics`) and appends the
record to the method's store (:mod:`.store`); every subset whose pairs are all done gets its GIM-format dump file.
Killed runs resume where they stopped; stale results are refused.

The other parts of a run live next to this loop: the matcher, its names and fingerprint in :mod:`.method`, the
per-matcher keypoint treatment in :mod:`.treatment`, torchrun ranks and ``--shard`` jobs in :mod:`.world`, and the
peak-memory meter in :mod:`.memory`.

Padding masks: on the zero-padded ETH3D/KITTI canvases, a matcher whose treatment has ``padding_mask`` (gim_loftr,
as GIM's LoFTR) gets the validity masks of both images, as ``match(image0, image1, mask0=, mask1=)`` with ``(H',
W')`` bool arrays (False on the padding); other matchers see the padded canvas alone, as in GIM (DKM/RoMa's
black-pixel rule drops the padding, SIFT finds nothing there).

Images are read ahead in a background thread (up to :data:`PREFETCH` pairs), so only the time spent waiting for them
counts against a pair's throughput.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gim_plugins.zeb.config import RunConfig
from gim_plugins.zeb.dataset import (
    Pair,
    Subset,
    ZebImage,
    find_subsets,
    image_index,
    load_pairs,
    resolve_image,
    subset_dir,
)
from gim_plugins.zeb.memory import PeakMemory
from gim_plugins.zeb.method import Method, build_method
from gim_plugins.zeb.metrics import evaluate_pair
from gim_plugins.zeb.store import MethodStore, Record
from gim_plugins.zeb.world import World, init_world, rank_device

if TYPE_CHECKING:
    from gim_plugins.types import MatchResult

__all__ = ["RunConfig", "RunSummary", "SubsetStatus", "merge", "run"]

log = logging.getLogger(__name__)

PREFETCH = 4  # pairs whose images are read ahead in a background thread


@dataclass
class SubsetStatus:
    """Where one subset stands after a run."""

    subset: str
    selected: int
    done: int
    processed_now: int
    dump: Path | None
    missing: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.dump is not None:
            return f"{self.subset}: {self.done}/{self.selected} pairs; wrote {self.dump}"
        return (f"{self.subset}: {self.done}/{self.selected} pairs done; the dump is written when the other shards "
                "have finished (or run `merge`)")


@dataclass
class RunSummary:
    """The outcome of :func:`run`."""

    method: str
    store: Path
    subsets: list[SubsetStatus]

    def lines(self) -> list[str]:
        return [f"method: {self.method} (store: {self.store})", *(s.line() for s in self.subsets)]


# --------------------------------------------------------------------------------------------------- the run


def _prefetch(items: Sequence[Pair], load: Callable[[Pair], Any], depth: int = PREFETCH) -> Iterator[tuple[Pair, Any]]:
    """Yield ``(item, future)`` with up to ``depth`` loads running ahead in one background thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        queue: list[tuple[Pair, Future[Any]]] = []
        iterator = iter(items)
        for item in iterator:
            queue.append((item, pool.submit(load, item)))
            if len(queue) > depth:
                yield queue.pop(0)
        yield from queue


def _masks(method: Method, images: tuple[ZebImage, ZebImage]) -> dict[str, np.ndarray]:
    if method.treatment.padding_mask and (images[0].padded or images[1].padded):
        return {"mask0": images[0].validity_mask(), "mask1": images[1].validity_mask()}
    return {}


def _evaluate(method: Method, pair: Pair, images: tuple[ZebImage, ZebImage], load_seconds: float,
              memory: PeakMemory, result: MatchResult | None = None) -> Record:
    """Score one pair; ``result`` is its match when a batch matched it already (else it is matched here)."""
    start = time.perf_counter()
    if result is None:
        result = method.matcher.match(images[0].image, images[1].image, **_masks(method, images))
        match_seconds = time.perf_counter() - start
    else:
        match_seconds = float(result.timing.get("total", 0.0))
    matched = time.perf_counter()
    protocol, treatment = method.protocol, method.treatment
    kpts0 = protocol.keypoints(result.keypoints0.numpy(), images[0], treatment)
    kpts1 = protocol.keypoints(result.keypoints1.numpy(), images[1], treatment)
    metrics = evaluate_pair(kpts0, kpts1, protocol.camera(pair.K0, images[0]), protocol.camera(pair.K1, images[1]),
                            pair.T_0to1, threshold=protocol.ransac_threshold, focal_rule=protocol.focal_rule)
    seconds = {"load": load_seconds, "match": match_seconds, "pose": time.perf_counter() - matched}
    return Record.from_metrics(pair.file, pair.identifier, pair.covisible0, pair.covisible1, metrics, seconds,
                               memory.read())


def _batched(method: Method, config: RunConfig) -> bool:
    """Whether pairs go through batched matching: a batching matcher, on CUDA or with a batch size given, and no
    padding masks (they are per pair)."""
    matcher = method.matcher
    on_cuda = str(getattr(matcher, "device", "cpu")).startswith("cuda")
    return (bool(getattr(matcher, "supports_batching", False)) and (on_cuda or config.batch_size is not None)
            and not method.treatment.padding_mask)


def _records(method: Method, todo: Sequence[Pair], load: Callable[[Pair], Any], config: RunConfig,
             memory: PeakMemory) -> Iterator[Record]:
    """The records of ``todo``, in order: one pair at a time, or batched (:func:`_batched`)."""
    if not _batched(method, config):
        for pair, future in _prefetch(todo, load):
            wait = time.perf_counter()
            images = future.result()  # read ahead in the background: only the wait counts against throughput
            yield _evaluate(method, pair, images, time.perf_counter() - wait, memory)
        return
    from gim_plugins.models.batching import iter_matches

    def items() -> Iterator[tuple[tuple[Pair, tuple[ZebImage, ZebImage], float], Any, Any]]:
        for pair, future in _prefetch(todo, load):
            wait = time.perf_counter()
            images = future.result()
            yield (pair, images, time.perf_counter() - wait), images[0].image, images[1].image

    for (pair, images, waited), result in iter_matches(method.matcher, items(), batch_size=config.batch_size,
                                                        workers=0):
        yield _evaluate(method, pair, images, waited, memory, result)


def _run_subset(method: Method, store: MethodStore, subset: Subset, data_dir: Path, config: RunConfig,
                world: World, memory: PeakMemory) -> SubsetStatus:
    protocol = method.protocol
    pairs = protocol.select_pairs(load_pairs(data_dir, subset), data_dir, subset, config.max_pairs)
    if world.writes_shared_files:
        store.write_selection(subset.key, [pair.file for pair in pairs])
    done = store.records(subset.key)
    mine = pairs[world.rank :: world.size]
    todo = [pair for pair in mine if pair.file not in done]
    directory = subset_dir(data_dir, subset)
    index = image_index(directory)

    def load(pair: Pair) -> tuple[ZebImage, ZebImage]:
        paths = [resolve_image(index, directory, pair.image_stem(i)) for i in (0, 1)]
        return protocol.load_image(paths[0], subset), protocol.load_image(paths[1], subset)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="pair", desc=f"{method.name} {subset.key}",
               disable=not config.progress or world.rank != 0, dynamic_ncols=True, file=sys.stderr)
    with store.writer(subset.key, (world.rank, world.size)) as writer, bar:
        for record in _records(method, todo, load, config, memory):
            writer.append(record)
            bar.update(1)
    world.barrier()
    dump, missing = (None, [])
    if world.writes_shared_files:  # torchrun: rank 0; independent shards: whoever completes it
        dump, missing = store.finalise(subset.key, subset.dump_name)
    finished = len(store.records(subset.key).keys() & {pair.file for pair in pairs})
    return SubsetStatus(subset.key, len(pairs), finished, len(todo), dump, missing)


def run(config: RunConfig, data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
        overwrite: bool = False) -> RunSummary:
    """Evaluate one matcher on ZEB (GIM's protocol, or another) and write GIM-format dumps into ``out_dir``.

    Args:
        config: what to run (:class:`RunConfig`).
        data_dir: the ZEB folder (with ``gl3d/``, ``kitti/``, …).
        out_dir: the dump directory (GIM's ``dump/zeb``); the resumable store lives in ``out_dir/runs/``.
        overwrite: delete this method's previous results first when they are stale (else refuse).

    Raises:
        StaleResultsError: previous results of this method used another setup.
        FileNotFoundError: missing data folders or images.
        ValueError: bad options.
    """
    from gim_plugins.matching import check_device

    check_device(config.device)  # once, before any data is read or anything written
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    subsets = find_subsets(data_dir, config.subsets)
    for subset in subsets:  # fail early on a missing folder, before loading a network
        if not subset_dir(data_dir, subset).is_dir():
            raise FileNotFoundError(f"ZEB subset folder not found: {subset_dir(data_dir, subset)}")
    world = init_world(config.shard)
    try:
        return _run(config, data_dir, out_dir, subsets, world, overwrite)
    finally:
        world.close()


def _run(config: RunConfig, data_dir: Path, out_dir: Path, subsets: list[Subset], world: World,
         overwrite: bool) -> RunSummary:
    device = rank_device(config.device, world)
    method = build_method(config, device)
    store = MethodStore(out_dir, method.name, method.version)
    info = {"data_dir": str(data_dir), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "python": platform.python_version(), "argv": sys.argv}
    if world.writes_shared_files:
        store.open(method.fingerprint, info, overwrite=overwrite and world.rank == 0)
    world.barrier()
    if not world.writes_shared_files:
        store.open(method.fingerprint, info)  # the sidecar exists now: this only checks it
    memory = PeakMemory(device)
    memory.reset()
    treatment = method.treatment
    log.info("ZEB %s %s (%s protocol): preset %s, keypoint offset %+.1f, rescale %s, %d/%d", method.name,
             method.version, method.protocol.name, method.preset, treatment.keypoint_offset,
             treatment.rescale or "none", world.rank, world.size)
    statuses = [_run_subset(method, store, subset, data_dir, config, world, memory) for subset in subsets]
    return RunSummary(f"{method.name} {method.version}", store.root, statuses)


def merge(out_dir: str | os.PathLike[str], methods: Iterable[str] | None = None) -> list[SubsetStatus]:
    """Write the dumps of every complete subset from the stores in ``out_dir`` (after independent ``--shard``
    jobs). ``methods`` filters by ``weight`` or ``weight@version``."""
    from gim_plugins.zeb.dataset import get_subset
    from gim_plugins.zeb.store import RUNS_DIR

    root = Path(out_dir) / RUNS_DIR
    if not root.is_dir():
        raise FileNotFoundError(f"no ZEB run store in {out_dir} (expected {root})")
    wanted = set(methods or [])
    statuses = []
    for method_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        weight, _, version = method_dir.name.partition("@")
        if wanted and not wanted & {weight, method_dir.name}:
            continue
        store = MethodStore(out_dir, weight, version)
        for key in store.subsets():
            subset = get_subset(key)
            selection = store.read_selection(key) or []
            dump, missing = store.finalise(key, subset.dump_name)
            statuses.append(SubsetStatus(f"{method_dir.name} {key}", len(selection), len(selection) - len(missing),
                                         0, dump, missing))
    return statuses
