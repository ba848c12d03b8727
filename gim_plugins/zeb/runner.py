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

Presets: a matcher module may define ``PRESETS = {"<name>-<variant>": {conf}}``. ``preset=None`` picks
``"<name>-zeb"`` when the matcher has one (GIM's ZEB settings, e.g. gim_dkm at 660×880 without padding); ``"none"``
disables that; user ``conf`` entries override the preset's.

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

Parallelism: with ``torchrun`` (``WORLD_SIZE > 1``) rank ``r`` of ``n`` takes pairs ``r::n`` of each subset
(coordination over ``torch.distributed`` with the gloo backend, which also works next to CUDA; on GPUs rank ``r``
uses ``cuda:LOCAL_RANK``) and rank 0 writes the dumps. Independent jobs use ``shard=(i, n)`` the same way; the
last one to finish, or ``merge``, writes the dumps.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gim_plugins.zeb.dataset import (
    GLUEFACTORY_MAX_PER_SCENE,
    GLUEFACTORY_RESIZE,
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
from gim_plugins.zeb.dumps import GLUEFACTORY_SUFFIX
from gim_plugins.zeb.metrics import RANSAC_PIXEL_THRESHOLD, evaluate_pair
from gim_plugins.zeb.store import MethodStore, Record
from gim_plugins.zeb.treatment import RESCALE_RULES, gim_treatment

if TYPE_CHECKING:
    from gim_plugins.models.base import BaseMatcher

__all__ = [
    "PeakMemory",
    "RunConfig",
    "RunSummary",
    "SubsetStatus",
    "merge",
    "parse_shard",
    "resolve_preset",
    "run",
    "to_gim_coordinates",
]

log = logging.getLogger(__name__)

PROTOCOLS = ("gim", "gluefactory")
GLUEFACTORY_RANSAC_THRESHOLD = 1.0
"""Pixels of the resized image: ``eval.ransac_th`` of glue-factory's ZEB pipeline."""
GLUEFACTORY_KEYPOINT_OFFSET = 0.5
"""glue-factory's extractors report corner-convention pixels (the centre of the top-left pixel at (0.5, 0.5))."""
PREFETCH = 4  # pairs whose images are read ahead in a background thread


@dataclass(frozen=True)
class RunConfig:
    """What a ZEB run does.

    Attributes:
        matcher: a registered matcher name or ``"module:Class"``; may be omitted when ``preset`` names it.
        weights: checkpoint path or weight name (default: the matcher's registered weights).
        preset: a name of the matcher module's ``PRESETS`` (default ``"<matcher>-zeb"`` when present; ``"none"``
            for the matcher's plain defaults).
        conf: matcher options on top of the preset (strictly checked by the matcher).
        version: the dump files' version token (default: from the weights, ``"vanilla"`` without weights).
        subsets: subset names (default: every known subset folder present in the data directory).
        max_pairs: GIM: evaluate only the first N pairs of each subset (GIM's order); glue-factory: its
            ``max_per_scene`` (default 200).
        shard: ``(i, n)``: this job evaluates pairs ``i::n`` (0-based); ``None`` for all (or torchrun's split).
        device: ``cpu``, ``cuda``, ``cuda:1``… (under torchrun, ``cuda`` means ``cuda:LOCAL_RANK``).
        rescale: ``"scale"`` or ``"canvas"`` (see the module docstring); ``None`` picks the matcher's rule.
        progress: show progress bars (pairs/s) on stderr.
        protocol: ``"gim"`` (GIM's ZEB protocol) or ``"gluefactory"`` (cvg/glue-factory's; see the module
            docstring).
    """

    matcher: str | None = None
    weights: str | None = None
    preset: str | None = None
    conf: Mapping[str, Any] = field(default_factory=dict)
    version: str | None = None
    subsets: Sequence[str] | None = None
    max_pairs: int | None = None
    shard: tuple[int, int] | None = None
    device: str = "cpu"
    rescale: str | None = None
    progress: bool = True
    protocol: str = "gim"


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


def parse_shard(text: str) -> tuple[int, int]:
    """``"1/4"`` → ``(1, 4)`` (0-based index).

    Raises:
        ValueError: not ``i/n`` with ``0 <= i < n``.
    """
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not sep or not 0 <= i < n:
        raise ValueError(f"--shard expects i/n with 0 <= i < n (0-based), got {text!r}")
    return i, n


def _matcher_presets(cls: type) -> Mapping[str, Mapping[str, Any]]:
    module = sys.modules.get(cls.__module__)
    presets = getattr(module, "PRESETS", None)
    return presets if isinstance(presets, Mapping) else {}


def resolve_preset(matcher: str | None, preset: str | None) -> tuple[str, str | None, dict[str, Any]]:
    """The matcher name, the preset actually used and its conf.

    Args:
        matcher: registered name or ``module:Class``; ``None`` derives it from ``preset`` (``gim_dkm-zeb`` →
            ``gim_dkm``).
        preset: a key of the matcher module's ``PRESETS``, ``None`` for ``"<matcher>-zeb"`` when present, or
            ``"none"``.

    Raises:
        ValueError: neither given, or an unknown preset (the message lists the matcher's presets).
    """
    from gim_plugins.registry import get_matcher_class

    if matcher is None:
        if not preset or preset == "none":
            raise ValueError("give --matcher (or a --preset named <matcher>-<variant>)")
        matcher = preset.rsplit("-", 1)[0]
    cls = get_matcher_class(matcher)
    presets = _matcher_presets(cls)
    if preset == "none":
        return matcher, None, {}
    if preset is None:
        name = f"{cls.name or matcher}-zeb"
        return (matcher, name, dict(presets[name])) if name in presets else (matcher, None, {})
    if preset not in presets:
        known = ", ".join(presets) or "none"
        raise ValueError(f"matcher {matcher!r} has no preset {preset!r}; its presets: {known}")
    conf = dict(presets[preset])
    model = conf.pop("model", None)
    if model is not None and model not in (matcher, cls.name):
        raise ValueError(f"preset {preset!r} is for matcher {model!r}, not {matcher!r}")
    return matcher, preset, conf


def _strip_prefix(text: str, prefix: str) -> str:
    return text[len(prefix) + 1 :] if text.startswith(prefix + "_") else ("" if text == prefix else text)


def default_version(cls: type[BaseMatcher], name: str, weights: str | None) -> str:
    """GIM-like version token: ``100h`` for ``gim_dkm_100h``, the file stem for other checkpoints, ``vanilla``
    without weights."""
    if weights is not None:
        text = Path(weights).stem if os.path.exists(weights) else weights
        return _strip_prefix(text, name) or text
    if not cls.weight_names:
        return "vanilla"
    return _strip_prefix(cls.weight_names[0], name) or "pretrained"


def _token(text: str) -> str:
    return "".join(c if (c.isalnum() or c in "._+-") else "." for c in text) or "matcher"


def software_versions(cls: type) -> dict[str, str]:
    """Versions that can change the numbers: gim-plugins, torch, OpenCV, numpy, and the matcher's own package."""
    import cv2
    import torch

    from gim_plugins import __version__

    versions = {"gim_plugins": __version__, "torch": torch.__version__, "opencv": cv2.__version__,
                "numpy": np.__version__}
    top = cls.__module__.split(".")[0]
    if top != "gim_plugins":
        from importlib.metadata import PackageNotFoundError, packages_distributions, version

        for dist in packages_distributions().get(top, []):
            try:
                versions[dist] = version(dist)
            except PackageNotFoundError:
                pass
    return versions


class PeakMemory:
    """Peak memory of this process since :meth:`reset`: resident set (Linux ``VmHWM``, reset through
    ``/proc/self/clear_refs``; elsewhere the lifetime ``ru_maxrss``) and, on CUDA, torch's peak allocation."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.device = device

    def reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            pass

    def read(self) -> dict[str, float]:
        peak: dict[str, float] = {"rss": _peak_rss_mb()}
        if self.cuda:
            import torch

            peak["cuda"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return peak


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


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


# ----------------------------------------------------------------------------------------------- distribution


@dataclass(frozen=True)
class _World:
    rank: int
    size: int
    distributed: bool
    owns_group: bool = False  # the process group was created here (and is destroyed at the end of the run)

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _init_world(shard: tuple[int, int] | None) -> _World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return _World(*(shard or (0, 1)), distributed=False)
    if shard is not None:
        raise ValueError("--shard and torchrun are alternatives: torchrun already splits the pairs over its ranks")
    import torch.distributed as dist

    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="gloo")  # only barriers are exchanged; gloo works next to CUDA too
    return _World(dist.get_rank(), dist.get_world_size(), distributed=True, owns_group=owns)


def _rank_device(device: str, world: _World) -> str:
    if world.distributed and device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', world.rank))}"
    return device


# --------------------------------------------------------------------------------------------------- the run


@dataclass
class _Method:
    matcher: BaseMatcher
    name: str
    version: str
    preset: str | None
    offset: float
    rule: str
    padding_mask: bool
    fingerprint: dict[str, Any]
    protocol: str = "gim"


def _build_method(config: RunConfig, device: str) -> _Method:
    from gim_plugins.conf import to_plain
    from gim_plugins.matching import load_matcher
    from gim_plugins.registry import get_matcher_class

    if config.protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {config.protocol!r}")
    gluefactory = config.protocol == "gluefactory"
    if gluefactory and config.rescale is not None:
        raise ValueError("--rescale applies to GIM's protocol only (glue-factory keeps keypoints in the resized image)")
    if not gluefactory and config.version and config.version.endswith(GLUEFACTORY_SUFFIX):
        raise ValueError(f"the version suffix {GLUEFACTORY_SUFFIX!r} is reserved for --protocol gluefactory")
    matcher_name, preset, preset_conf = resolve_preset(config.matcher, config.preset)
    cls = get_matcher_class(matcher_name)
    matcher = load_matcher(matcher_name, weights=config.weights, device=device, **{**preset_conf, **config.conf})
    name = _token(cls.name or matcher_name)
    version = config.version or default_version(cls, cls.name or matcher_name, config.weights)
    treatment = gim_treatment(cls, config.rescale)
    offset, rule, padding_mask = treatment.keypoint_offset, str(treatment.rescale), treatment.padding_mask
    if gluefactory:
        offset, padding_mask, rule = GLUEFACTORY_KEYPOINT_OFFSET, False, "none"  # keypoints stay in the resized image
        version = version if version.endswith(GLUEFACTORY_SUFFIX) else version + GLUEFACTORY_SUFFIX
    fingerprint = {
        "protocol": "gim",
        "matcher": name,
        "matcher_class": f"{cls.__module__}:{cls.__qualname__}",
        "preset": preset,
        "conf": to_plain(matcher.conf),
        "weights": matcher.weights_id,
        "keypoint_offset": offset,
        "rescale": rule,
        "padding_mask": padding_mask,
        "device": device.split(":")[0],
        "versions": software_versions(cls),
    }
    if gluefactory:
        import kornia

        fingerprint.update(protocol="gluefactory", rescale=None, versions={**fingerprint["versions"],
                                                                           "kornia": kornia.__version__})
        fingerprint["gluefactory"] = {"resize": GLUEFACTORY_RESIZE, "ransac_th": GLUEFACTORY_RANSAC_THRESHOLD,
                                      "focal_rule": "all", "auc_decimals": 4}
    return _Method(matcher, name, _token(version), preset, offset, rule, padding_mask, fingerprint, config.protocol)


def _evaluate(method: _Method, pair: Pair, images: tuple[ZebImage, ZebImage], load_seconds: float,
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


def _run_subset(method: _Method, store: MethodStore, subset: Subset, data_dir: Path, config: RunConfig,
                world: _World, memory: PeakMemory) -> SubsetStatus:
    if method.protocol == "gluefactory":
        pairs = select_pairs_gluefactory(load_pairs(data_dir, subset), gluefactory_seed(data_dir, subset),
                                         config.max_pairs or GLUEFACTORY_MAX_PER_SCENE)
        read = load_image_gluefactory
    else:
        pairs = select_pairs(load_pairs(data_dir, subset), config.max_pairs)

        def read(path: Path) -> ZebImage:
            return load_image(path, subset)

    if world.rank == 0 or not world.distributed:
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
    if world.rank == 0 or not world.distributed:  # torchrun: rank 0; independent shards: whoever completes it
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
    world = _init_world(config.shard)
    try:
        return _run(config, data_dir, out_dir, subsets, world, overwrite)
    finally:
        world.close()


def _run(config: RunConfig, data_dir: Path, out_dir: Path, subsets: list[Subset], world: _World,
         overwrite: bool) -> RunSummary:
    device = _rank_device(config.device, world)
    method = _build_method(config, device)
    store = MethodStore(out_dir, method.name, method.version)
    info = {"data_dir": str(data_dir), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "python": platform.python_version(), "argv": sys.argv}
    if world.rank == 0 or not world.distributed:
        store.open(method.fingerprint, info, overwrite=overwrite and world.rank == 0)
    world.barrier()
    if world.distributed and world.rank != 0:
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
