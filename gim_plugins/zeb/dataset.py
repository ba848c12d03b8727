"""ZEB on disk: the 12 subsets, the 38-token pair files, identifiers and image files.

Layout (GIM's official one, which GIM's loaders and glue-factory's read)::

    ZEB_DIR/
      gl3d/  blendedmvs/  eth3di/  eth3do/  kitti/  robotcarweather/  robotcarseason/  robotcarnight/
      multifov/  scenenet/  iclnuim/  gtasfm/
        {scene}{sep}{img0}{sep}{img1}.txt      one pair per file; only the first line is read
        {scene}{sep}{img}.png                  the images, flat (any extension OpenCV reads is accepted here)

``sep`` is ``_`` for GL3D, BlendedMVS and the RobotCar subsets and ``-`` for the others (their scene names contain
``_``). The scene id is the pair file's stem up to the first ``sep``. The pair line holds 38 tokens: ``img0 img1
covisible0 covisible1 K0(9) K1(9) T_0to1(16)``, row-major; ``T_0to1`` maps camera-0 to camera-1 coordinates.
glue-factory's 3×4 ``T_0to1`` (34 tokens) is accepted too.

Everything here reproduces GIM's loaders (``datasets/*/*.py`` of the original code) on purpose, including what is
odd about them: the image names some subsets strip of an extension and the extension they then report, and the
``float32`` parsing of ``K`` and ``T``. Each :class:`Subset` also records how GIM's protocol sizes its images (the
resize limit and ETH3D/KITTI's padded canvas); how an image is prepared is the protocol's business
(:mod:`gim_plugins.zeb.protocols`), and :class:`ZebImage` is what every protocol prepares.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "OFFICIAL_SUBSETS",
    "SUBSETS",
    "Pair",
    "Subset",
    "ZebImage",
    "find_subsets",
    "get_subset",
    "image_index",
    "load_pairs",
    "read_color",
    "read_pair_file",
    "resolve_image",
    "subset_dir",
]

DIVISOR = 8
"""GIM floors image sides to multiples of LoFTR's coarse stride (``df = LOFTR.RESOLUTION[0]``)."""

NO_RESIZE = 9999
"""GIM's default ``--img_size``: long sides above it are resized, so in practice nothing is."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")
"""Image files recognised next to the pair files (case-insensitive); ``.png`` wins when a stem has several."""


@dataclass(frozen=True)
class Subset:
    """One ZEB subset and how GIM reads it.

    Attributes:
        key: the name of GIM's ``--tests`` flag (``GL3D``, ``MultiFoV``), used by ``--subsets``.
        folder: the folder under ``ZEB_DIR``.
        dump_name: the scene token of GIM's dump file names (``Multi-FoV``, ``SceneNetRGBD``).
        abbr: the README's column header (``GL3``).
        sep: separator of scene and image names in file names.
        strip_extension: the pair file's image names carry an extension that GIM strips (``rpartition('.')``).
        name_format: how GIM reports an image name in the identifier (``"{}.JPG"`` for ETH3D).
        max_size: GIM's ``--img_size`` for the subset (long sides above it are resized, ``round``-ed).
        pad_aspect: ETH3D (1.5) and KITTI (3.25) are padded bottom-right to ``(ceil(int(max_size / pad_aspect) / 8)
            · 8, max_size)`` without ÷8 flooring; ``None``: floor both sides to multiples of 8, no padding.
        official: one of GIM's 12 subsets (ZEB-mini's subsets are not).
    """

    key: str
    folder: str
    dump_name: str
    abbr: str
    sep: str
    strip_extension: bool = False
    name_format: str = "{}"
    max_size: int = NO_RESIZE
    pad_aspect: float | None = None
    official: bool = True

    @property
    def canvas_size(self) -> tuple[int, int] | None:
        """``(H, W)`` of the zero-padded canvas (ETH3D: 1072×1600, KITTI: 384×1240), or ``None``."""
        if self.pad_aspect is None:
            return None
        height = math.ceil(int(self.max_size / self.pad_aspect) / DIVISOR) * DIVISOR
        return height, self.max_size


OFFICIAL_SUBSETS: tuple[Subset, ...] = (
    Subset("GL3D", "gl3d", "GL3D", "GL3", "_", strip_extension=True),
    Subset("BlendedMVS", "blendedmvs", "BlendedMVS", "BLE", "_", strip_extension=True),  # GIM reads it as GL3D
    Subset("ETH3DI", "eth3di", "ETH3DI", "ETI", "-", True, "{}.JPG", max_size=1600, pad_aspect=1.5),
    Subset("ETH3DO", "eth3do", "ETH3DO", "ETO", "-", True, "{}.JPG", max_size=1600, pad_aspect=1.5),
    Subset("KITTI", "kitti", "KITTI", "KIT", "-", True, "{}.png", max_size=1240, pad_aspect=3.25),
    Subset("RobotcarWeather", "robotcarweather", "RobotcarWeather", "WEA", "_"),
    Subset("RobotcarSeason", "robotcarseason", "RobotcarSeason", "SEA", "_"),
    Subset("RobotcarNight", "robotcarnight", "RobotcarNight", "NIG", "_"),
    Subset("MultiFoV", "multifov", "Multi-FoV", "MUL", "-", name_format="img/{}.png"),
    Subset("SceneNet", "scenenet", "SceneNetRGBD", "SCE", "-", name_format="{}.jpg"),
    Subset("ICLNUIM", "iclnuim", "ICL-NUIM", "ICL", "-", name_format="{}.jpg"),
    Subset("GTASfM", "gtasfm", "GTA-SfM", "GTA", "-"),
)
"""GIM's 12 subsets in the column order of GIM's README and result tables."""

MINI_SUBSETS: tuple[Subset, ...] = (
    Subset("MiniScene", "miniscene", "MiniScene", "SCN", "-", official=False),
    Subset("MiniHomography", "minihomography", "MiniHomography", "HOM", "-", official=False),
)
"""ZEB-mini's subsets (:mod:`gim_plugins.zeb.mini`): native size floored to ÷8, like most official subsets."""

SUBSETS: tuple[Subset, ...] = OFFICIAL_SUBSETS + MINI_SUBSETS


def get_subset(name: str) -> Subset:
    """A subset by ``key``, folder or dump name, case-insensitively (``"multifov"``, ``"Multi-FoV"``).

    Raises:
        KeyError: unknown name; the message lists the known ones.
    """
    wanted = name.lower()
    for subset in SUBSETS:
        if wanted in (subset.key.lower(), subset.folder, subset.dump_name.lower(), subset.abbr.lower()):
            return subset
    raise KeyError(f"unknown ZEB subset {name!r}; known: {', '.join(s.key for s in SUBSETS)}")


@dataclass(frozen=True)
class Pair:
    """One pair file, parsed as GIM parses it.

    Attributes:
        subset: the subset it belongs to.
        file: the pair file's name (unique within the subset folder; the key of the result store).
        scene: the scene id (file stem up to the first ``subset.sep``).
        name0: image 0's name as used in image file names (extension stripped where GIM strips it).
        name1: image 1's name.
        tokens: the raw tokens of the first line (GIM sorts pairs by ``[scene] + tokens``).
        covisible0: covisibility of image 0 (``float(token)``, written back with ``repr``).
        covisible1: covisibility of image 1.
        K0: ``(3, 3)`` float32 intrinsics of image 0 (GIM parses them as ``torch.float``).
        K1: ``(3, 3)`` float32 intrinsics of image 1.
        T_0to1: ``(4, 4)`` float32 rigid transform from camera 0 to camera 1.
    """

    subset: Subset
    file: str
    scene: str
    name0: str
    name1: str
    tokens: tuple[str, ...]
    covisible0: float
    covisible1: float
    K0: np.ndarray = field(repr=False)
    K1: np.ndarray = field(repr=False)
    T_0to1: np.ndarray = field(repr=False)

    @property
    def identifier(self) -> str:
        """GIM's ``scene#name0#name1`` with the subset's reported names (``…#000005.png#000006.png``)."""
        fmt = self.subset.name_format
        return f"{self.scene}#{fmt.format(self.name0)}#{fmt.format(self.name1)}"

    @property
    def sort_key(self) -> tuple[list[str], str]:
        """GIM's order (``sorted([scene] + tokens)``), ties broken by file name."""
        return [self.scene, *self.tokens], self.file

    def image_stem(self, index: int) -> str:
        """The image file name without extension: ``{scene}{sep}{name}``."""
        return f"{self.scene}{self.subset.sep}{(self.name0, self.name1)[index]}"


def _strip_extension(name: str) -> str:
    # GIM: name.rpartition('.')[0]. A name without a dot would become '' there; keep it whole instead.
    return name.rpartition(".")[0] if "." in name else name


def read_pair_file(path: str | os.PathLike[str], subset: Subset) -> Pair:
    """Parse one pair file (first line only, as GIM).

    Raises:
        ValueError: the first line does not hold 38 (or glue-factory's 34) numbers-and-names tokens, or a number
            does not parse.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        tokens = tuple(handle.readline().strip().split())
    if len(tokens) not in (38, 34):
        raise ValueError(f"{path}: expected 38 whitespace-separated tokens on the first line (img0 img1 covisible0 "
                         f"covisible1 K0(9) K1(9) T_0to1(16)), got {len(tokens)}")
    try:
        numbers = [float(token) for token in tokens[2:]]
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric token after the two image names: {exc}") from exc
    transform = numbers[20:]
    if len(transform) == 12:
        transform = [*transform, 0.0, 0.0, 0.0, 1.0]
    stem = path.name.rpartition(".")[0]
    name0, name1 = tokens[0], tokens[1]
    if subset.strip_extension:
        name0, name1 = _strip_extension(name0), _strip_extension(name1)
    return Pair(
        subset=subset,
        file=path.name,
        scene=stem.split(subset.sep)[0],
        name0=name0,
        name1=name1,
        tokens=tokens,
        covisible0=numbers[0],
        covisible1=numbers[1],
        K0=np.asarray(numbers[2:11], dtype=np.float32).reshape(3, 3),
        K1=np.asarray(numbers[11:20], dtype=np.float32).reshape(3, 3),
        T_0to1=np.asarray(transform, dtype=np.float32).reshape(4, 4),
    )


def subset_dir(root: str | os.PathLike[str], subset: Subset) -> Path:
    """``ZEB_DIR/<folder>``."""
    return Path(root) / subset.folder


def load_pairs(root: str | os.PathLike[str], subset: Subset) -> list[Pair]:
    """All pairs of a subset in GIM's order (every ``*.txt`` of the folder; no subsampling).

    Raises:
        FileNotFoundError: the subset folder is missing or holds no pair file.
    """
    directory = subset_dir(root, subset)
    if not directory.is_dir():
        raise FileNotFoundError(f"ZEB subset folder not found: {directory} (expected ZEB_DIR/{subset.folder}/ "
                                "with the pair .txt files and the images; see docs/zeb.md)")
    files = sorted(entry.name for entry in os.scandir(directory)
                   if entry.is_file() and entry.name.endswith(".txt") and not entry.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no pair files (*.txt) in {directory}")
    pairs = [read_pair_file(directory / name, subset) for name in files]
    return sorted(pairs, key=lambda pair: pair.sort_key)


def find_subsets(root: str | os.PathLike[str], names: Sequence[str] | None = None) -> list[Subset]:
    """The subsets to run: ``names`` (any spelling :func:`get_subset` accepts), else every known subset whose folder
    exists under ``root``, in the README's order.

    Raises:
        FileNotFoundError: ``root`` is not a directory, or holds none of the known subset folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ZEB directory not found: {root}")
    if names:
        return [get_subset(name) for name in dict.fromkeys(names)]
    found = [subset for subset in SUBSETS if subset_dir(root, subset).is_dir()]
    if not found:
        known = ", ".join(s.folder for s in SUBSETS)
        raise FileNotFoundError(f"{root} holds none of the ZEB subset folders ({known}); pass the folder that "
                                "contains them (GIM's `zeb/`)")
    return found


def image_index(directory: str | os.PathLike[str]) -> dict[str, Path]:
    """``{stem: path}`` of the image files in a subset folder (any extension; ``.png`` first, then sorted)."""
    found: dict[str, Path] = {}
    entries = sorted(os.scandir(directory), key=lambda e: (not e.name.lower().endswith(".png"), e.name))
    for entry in entries:
        stem, dot, ext = entry.name.rpartition(".")
        if dot and ("." + ext.lower()) in IMAGE_EXTENSIONS and entry.is_file():
            found.setdefault(stem, Path(entry.path))
    return found


def resolve_image(index: dict[str, Path], directory: Path, stem: str) -> Path:
    """The file of image ``stem`` (see :func:`image_index`).

    Raises:
        FileNotFoundError: no image with that stem (the message names the expected ``.png``).
    """
    path = index.get(stem)
    if path is None:
        raise FileNotFoundError(f"image not found: {directory / (stem + '.png')} (any of {', '.join(IMAGE_EXTENSIONS)}"
                                " is accepted)")
    return path


@dataclass(frozen=True)
class ZebImage:
    """An image prepared by a ZEB protocol for the matcher.

    Attributes:
        image: ``(H', W', 3)`` RGB, what the matcher gets: uint8 for GIM's protocol (resized, floored to ÷8 or
            padded), float32 in [0, 1] for glue-factory's (:mod:`gim_plugins.zeb.protocols`).
        original_size: ``(H, W)`` of the file.
        resized_size: ``(h, w)`` after resizing, before padding (GIM's ``resize``).
        scale: ``[w / w_new, h / h_new]`` as float32 (GIM's ``scale``): resized → original pixels by multiplication.
    """

    image: np.ndarray
    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    scale: np.ndarray

    @property
    def canvas_size(self) -> tuple[int, int]:
        """``(H', W')`` of the array given to the matcher."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    @property
    def padded(self) -> bool:
        """Whether the canvas has ETH3D/KITTI's bottom-right zero padding (some of it lies outside the image)."""
        return self.canvas_size != self.resized_size

    def validity_mask(self) -> np.ndarray:
        """``(H', W')`` bool, True on the resized image and False on the padding (GIM's ``read_images`` mask)."""
        mask = np.zeros(self.canvas_size, dtype=bool)
        mask[: self.resized_size[0], : self.resized_size[1]] = True
        return mask


def read_color(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB, as ``cv2.imread(path, IMREAD_COLOR)`` then BGR → RGB.

    Raises:
        ValueError: the file does not decode as an image.
    """
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None  # = cv2.imread(path, IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode {path} as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def scenes(pairs: Iterable[Pair]) -> list[str]:
    """The distinct scene ids, sorted."""
    return sorted({pair.scene for pair in pairs})
