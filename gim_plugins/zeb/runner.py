"""Loop 1 of ZEB: match every pair with any registered matcher, evaluate it, and store the result.

``run(config, data_dir, out_dir)`` reads the subsets from ``data_dir`` (:mod:`.dataset`), prepares each image as GIM
does, calls the matcher, maps its keypoints back to GIM's coordinates, evaluates the pair (:mod:`.metrics`) and
appends the record to the method's store (:mod:`.store`); every subset whose pairs are all done gets its GIM dump
file. Killed runs resume where they stopped; stale results are refused.

Keypoints, from the package convention back to GIM's (documented choice, ``gim-spec.md`` §2.3 and §10.6):
    Our matchers return pixels of the image they were given with the centre of the top-left pixel at (0, 0). GIM's
    ZEB code used each network's raw coordinates: corner convention for DKM, RoMa and its SuperPoint (``+0.5`` from
    ours), centre convention for OpenCV SIFT. The keypoint offset is that difference, so ``k_gim_resized = k +
    offset``. GIM then maps to the original image by plain multiplication, in one of two ways:

    * ``"scale"`` (LoFTR, LightGlue, RootSIFT): ``k_gim_resized · scale`` with ``scale = [w / w_new, h / h_new]`` of
      the resize, which ignores the padding of ETH3D/KITTI (keypoints are in the top-left, unpadded part).
    * ``"canvas"`` (DKM, RoMa): ``(x_n + 1) / 2 · W_orig`` from normalised coordinates over the whole input canvas,
      i.e. ``k_gim_canvas · (W_orig / W_canvas, H_orig / H_canvas)``. On the padded ETH3D/KITTI canvases this is
      GIM's ≈0.5 % / ≈2 % y-scale error, kept for parity; elsewhere both rules agree.

    Offset and rule come from ZEB's per-matcher table (:mod:`.treatment`: GIM's treatment of the networks it
    evaluated, and for other matchers what their class declares); ``RunConfig.rescale`` overrides the rule. Both
    steps are computed in float32 as in GIM, so the reproduction is exact up to float32 rounding.

Padding masks: on the zero-padded ETH3D/KITTI canvases GIM's LoFTR gets the validity masks of both images (padding
excluded at 1/8 resolution). A matcher whose treatment has a padding mask (gim_loftr; other matchers that accept
masks) gets them too, as ``match(image0, image1, mask0=, mask1=)`` with ``(H', W')`` bool arrays; other matchers see
the padded canvas alone, as in GIM (DKM/RoMa's black-pixel rule drops the padding, SIFT finds nothing there).

Protocols: ``protocol="gim"`` (the default) is everything above. ``protocol="gluefactory"`` is cvg/glue-factory's
ZEB evaluation (``gluefactory/eval/zeb.py``), which gives other numbers on the same data:

* at most 200 pairs per subset folder, drawn by :func:`~gim_plugins.zeb.dataset.select_pairs_gluefactory` with
  glue-factory's seed (``max_pairs`` sets that cap instead of taking the first pairs);
* every image resized to a long side of 1024 px (kornia, bilinear, antialiased; upsampled too; no ÷8, no padding),
  for every subset alike; keypoints stay in the resized image, in glue-factory's corner convention (ours ``+ 0.5``,
  whatever the matcher), and ``K`` is scaled instead (``Camera.scale``);
* OpenCV RANSAC for ``E`` with a 1.0 px threshold over ``mean(fx0, fy0, fx1, fy1)`` of the scaled cameras,
  confidence 0.99999, the same ``recoverPose`` selection and the same error definitions;
* AUC rounded to 4 decimals and, in glue-factory's summary, pooled over all pairs of the run rather than averaged
  over subsets (``report`` shows both, in their own table).

Its dumps and store carry the version suffix ``+gluefactory`` (``vanilla+gluefactory``), so they never mix with a
GIM-protocol run of the same matcher; ``rescale`` and padding masks do not apply.

Presets, names and fingerprint: :mod:`.method`. Torchrun ranks and ``--shard`` jobs: :mod:`.world`. The peak-memory
meter: :mod:`.memory`.
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
from typing import Any

import numpy as np

from gim_plugins.zeb.config import RunConfig
from gim_plugins.zeb.dataset import (
    GLUEFACTORY_MAX_PER_SCENE,
    Pair,
    Subset,
    ZebImage,
    find_subsets,
    gluefactory_camera,
    gluefactory_seed,
    image_index,
    load_image,
    load_image_gluefactory,
    load_pairs,
    resolve_image,
    select_pairs,
    select_pairs_gluefactory,
    subset_dir,
)
from gim_plugins.zeb.memory import PeakMemory
from gim_plugins.zeb.method import GLUEFACTORY_RANSAC_THRESHOLD, Method, build_method
from gim_plugins.zeb.metrics import RANSAC_PIXEL_THRESHOLD, evaluate_pair
from gim_plugins.zeb.store import MethodStore, Record
from gim_plugins.zeb.treatment import RESCALE_RULES
from gim_plugins.zeb.world import World, init_world, rank_device

__all__ = ["RunConfig", "RunSummary", "SubsetStatus", "merge", "run", "to_gim_coordinates"]

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


# ------------------------------------------------------------------------------------------------------ helpers


def to_gim_coordinates(keypoints: np.ndarray, image: ZebImage, offset: float, rule: str) -> np.ndarray:
    """Map ``(N, 2)`` keypoints of the prepared image (package convention) to GIM's original-image coordinates."""
    points = np.asarray(keypoints, dtype=np.float32) + np.float32(offset)
    if rule == "scale":
        factor = image.scale
    elif rule == "canvas":
        (height, width), (canvas_h, canvas_w) = image.original_size, image.canvas_size
        factor = np.array([width / canvas_w, height / canvas_h], dtype=np.float32)
    else:
        raise ValueError(f"rescale rule must be one of {RESCALE_RULES}, got {rule!r}")
    return points * factor


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


# --------------------------------------------------------------------------------------------------- the run


def _evaluate(method: Method, pair: Pair, images: tuple[ZebImage, ZebImage], load_seconds: float,
              memory: PeakMemory) -> Record:
    start = time.perf_counter()
    masks: dict[str, np.ndarray] = {}
    if method.padding_mask and (images[0].padded or images[1].padded):
        masks = {"mask0": images[0].validity_mask(), "mask1": images[1].validity_mask()}
    result = method.matcher.match(images[0].image, images[1].image, **masks)
    matched = time.perf_counter()
    if method.protocol == "gluefactory":  # resized-image pixels, corner convention, scaled cameras
        kpts0 = result.keypoints0.numpy().astype(np.float32) + np.float32(method.offset)
        kpts1 = result.keypoints1.numpy().astype(np.float32) + np.float32(method.offset)
        metrics = evaluate_pair(kpts0, kpts1, gluefactory_camera(pair.K0, images[0]),
                                gluefactory_camera(pair.K1, images[1]), pair.T_0to1,
                                threshold=GLUEFACTORY_RANSAC_THRESHOLD, focal_rule="all")
    else:
        kpts0 = to_gim_coordinates(result.keypoints0.numpy(), images[0], method.offset, method.rule)
        kpts1 = to_gim_coordinates(result.keypoints1.numpy(), images[1], method.offset, method.rule)
        metrics = evaluate_pair(kpts0, kpts1, pair.K0, pair.K1, pair.T_0to1, threshold=RANSAC_PIXEL_THRESHOLD)
    seconds = {"load": load_seconds, "match": matched - start, "pose": time.perf_counter() - matched}
    return Record.from_metrics(pair.file, pair.identifier, pair.covisible0, pair.covisible1, metrics, seconds,
                               memory.read())


def _run_subset(method: Method, store: MethodStore, subset: Subset, data_dir: Path, config: RunConfig,
                world: World, memory: PeakMemory) -> SubsetStatus:
    if method.protocol == "gluefactory":
        pairs = select_pairs_gluefactory(load_pairs(data_dir, subset), gluefactory_seed(data_dir, subset),
                                         config.max_pairs or GLUEFACTORY_MAX_PER_SCENE)
        read = load_image_gluefactory
    else:
        pairs = select_pairs(load_pairs(data_dir, subset), config.max_pairs)

        def read(path: Path) -> ZebImage:
            return load_image(path, subset)

    if world.writes_shared_files:
        store.write_selection(subset.key, [pair.file for pair in pairs])
    done = store.records(subset.key)
    mine = pairs[world.rank :: world.size]
    todo = [pair for pair in mine if pair.file not in done]
    directory = subset_dir(data_dir, subset)
    index = image_index(directory)

    def load(pair: Pair) -> tuple[ZebImage, ZebImage]:
        paths = [resolve_image(index, directory, pair.image_stem(i)) for i in (0, 1)]
        return read(paths[0]), read(paths[1])

    from tqdm.auto import tqdm

    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="pair", desc=f"{method.name} {subset.key}",
               disable=not config.progress or world.rank != 0, dynamic_ncols=True, file=sys.stderr)
    with store.writer(subset.key, (world.rank, world.size)) as writer, bar:
        for pair, future in _prefetch(todo, load):
            wait = time.perf_counter()
            images = future.result()  # read ahead in the background: only the wait counts against throughput
            record = _evaluate(method, pair, images, time.perf_counter() - wait, memory)
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
    """Evaluate one matcher on ZEB (GIM's protocol, or glue-factory's) and write GIM-format dumps into ``out_dir``.

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
    log.info("ZEB %s %s (%s protocol): preset %s, keypoint offset %+.1f, rescale %s, %d/%d", method.name,
             method.version, method.protocol, method.preset, method.offset, method.rule, world.rank, world.size)
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
