"""``gim weights import``: verify a checkpoint obtained by hand and copy it into the weight directory.

The file is identified by name or by hash, compared with the official hash, loaded safely when it can be (or
unpickled once when it is official or trusted) and copied into place; optionally a slim state-dict copy is written
next to it, which is then what :func:`~gim_plugins.weights.resolve_weights` returns.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gim_plugins.atomic import atomic_path
from gim_plugins.errors import InputError
from gim_plugins.weights.cache import slim_name, target_dir
from gim_plugins.weights.catalogue import WEIGHTS, WeightSpec, get_spec
from gim_plugins.weights.hashes import (
    HashMismatchError,
    WeightStatus,
    file_hashes,
    identify,
    matches_spec,
    record,
    status,
)
from gim_plugins.weights.loading import UnsafeCheckpointError, extract_state_dict, load_state_dict_file, torch_load

__all__ = ["import_weights"]


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
            raise InputError(
                f"{source.name} is not a known checkpoint (sha256 {hashes['sha256']}); pass --name with one of: "
                f"{', '.join(WEIGHTS)}"
            )
        spec = by_file[0]
    verdict = matches_spec(spec, hashes)
    if verdict is False and not trust_unknown:
        expected = f"sha256 {spec.sha256}" if spec.sha256 else f"git sha1 {spec.git_sha1}"
        got = f"sha256 {hashes['sha256']}" if spec.sha256 else f"git sha1 {hashes['git_sha1']}"
        raise HashMismatchError(
            f"{source} is not the official {spec.file_name}: size {hashes['size']}, {got}, expected {expected}"
            f"{f' and size {spec.size}' if spec.size else ''}. A mirror may have re-encoded it; pass "
            "--trust-unknown to import it anyway."
        )
    try:
        state_dict = load_state_dict_file(source)  # a damaged file stops here, --trust or not
    except UnsafeCheckpointError:
        if not (verdict is True or trust):
            raise
        state_dict = extract_state_dict(torch_load(source, weights_only=False), source)
        slim = True  # the original can never be loaded safely: always keep a safe copy
    directory = target_dir()
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / spec.file_name
    if source.resolve() != dest.resolve():
        with atomic_path(dest) as tmp:
            shutil.copyfile(source, tmp)
    record(directory, spec.file_name, hashes, source_verified=verdict is True, imported_sha256=hashes["sha256"])
    old_slim = directory / slim_name(spec)
    if slim:
        _save_slim(directory, spec, state_dict, source_verified=verdict is True, source_sha256=hashes["sha256"])
    elif old_slim.is_file():
        old_slim.unlink()  # made from the previous file: it must never stand in for this one
    return status(spec.name)


def _save_slim(
    directory: Path, spec: WeightSpec, state_dict: Mapping[str, Any], *, source_verified: bool, source_sha256: str
) -> Path:
    import torch

    path = directory / slim_name(spec)
    with atomic_path(path) as tmp:
        torch.save(dict(state_dict), tmp)
    own = file_hashes(path)
    record(directory, path.name, own, source_verified=source_verified, source_sha256=source_sha256,
           imported_sha256=own["sha256"])
    return path
