"""GIM's ZEB dump files: one text file per (method, subset) with one row per pair.

Name: ``[T] {weight} {scene:>15} {version}.txt`` (scene right-aligned in 15 characters), e.g.
``[T] gim_dkm            GL3D 100h.txt``. First line: the header :data:`HEADER`; then one whitespace-separated row
per pair, sorted by identifier, each identifier once (what GIM's evaluation writes and its ``analysis.py`` reads)::

    identifiers covisible0 covisible1 R_errs t_errs t_errs2 Bef.Prec Bef.Num Aft.Prec Aft.Num

Floats are written as Python's shortest round-trip ``repr`` (what GIM's f-strings print for Python and numpy
floats; failures are the literal ``inf``), counts as integers. GIM's own ``analysis.py`` and ``check.py`` read these
files, and :func:`read_dump` reads GIM's committed dumps.

Runs with another protocol than GIM's write the same columns, but their version token always ends in that protocol's
suffix (``[T] root_sift MiniHomography vanilla+gluefactory.txt``), so they are another method for every tool, never
the same file or store as a GIM-protocol run; ``report`` and ``check`` tell them apart by that suffix
(:func:`gim_plugins.zeb.protocols.for_version`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gim_plugins.atomic import atomic_write_text
from gim_plugins.zeb.metrics import PairMetrics

__all__ = [
    "HEADER",
    "DumpName",
    "DumpRow",
    "dump_file_name",
    "finalise_rows",
    "find_dumps",
    "parse_dump_name",
    "read_dump",
    "unique_rows",
    "write_dump",
]

HEADER = "identifiers covisible0 covisible1 R_errs t_errs t_errs2 Bef.Prec Bef.Num Aft.Prec Aft.Num"
COLUMNS = tuple(HEADER.split())
_TOKEN = re.compile(r"^\S+$")

def _check_token(value: str, what: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"{what} must be one non-empty token without whitespace, got {value!r}")
    return value


def dump_file_name(weight: str, scene: str, version: str) -> str:
    """GIM's file name ``[T] {weight} {scene:>15} {version}.txt``.

    Raises:
        ValueError: a part is empty or contains whitespace (GIM's tools split the name on whitespace).
    """
    for value, what in ((weight, "weight"), (scene, "scene"), (version, "version")):
        _check_token(value, what)
    return f"[T] {weight} {scene:>15} {version}.txt"


@dataclass(frozen=True)
class DumpName:
    """The parts of a dump file name."""

    weight: str
    scene: str
    version: str

    @property
    def method(self) -> str:
        """``weight version``, how tables name a method (``gim_dkm 100h``)."""
        return f"{self.weight} {self.version}"


def parse_dump_name(name: str) -> DumpName | None:
    """Split a dump file name as ``analysis.py`` does (whitespace-separated ``[T] weight scene version``).

    Returns ``None`` for a name that is not a dump file name.
    """
    if not (name.startswith("[T] ") and name.endswith(".txt")):
        return None
    parts = name[: -len(".txt")].split()
    if len(parts) != 4:
        return None
    return DumpName(parts[1], parts[2], parts[3])


def find_dumps(directory: str | os.PathLike[str]) -> dict[Path, DumpName]:
    """Every dump file directly in ``directory`` (not in subfolders), sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"dump directory not found: {directory}")
    found = {}
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        parsed = parse_dump_name(entry.name)
        if parsed is not None and entry.is_file():
            found[Path(entry.path)] = parsed
    return found


def _float_text(value: float) -> str:
    return repr(float(value))


@dataclass(frozen=True)
class DumpRow:
    """One row of a dump file (the column meanings are those of :class:`~gim_plugins.zeb.metrics.PairMetrics`)."""

    identifier: str
    covisible0: float
    covisible1: float
    R_err: float
    t_err: float
    t_err2: float
    bef_prec: float
    bef_num: int
    aft_prec: float
    aft_num: int

    @classmethod
    def from_metrics(cls, identifier: str, covisible0: float, covisible1: float, metrics: PairMetrics) -> DumpRow:
        return cls(_check_token(identifier, "identifier"), float(covisible0), float(covisible1), metrics.R_err,
                   metrics.t_err, metrics.t_err2, metrics.bef_prec, metrics.bef_num, metrics.aft_prec,
                   metrics.aft_num)

    def line(self) -> str:
        """The row as GIM writes it (no newline)."""
        floats = (self.covisible0, self.covisible1, self.R_err, self.t_err, self.t_err2)
        return " ".join([self.identifier, *map(_float_text, floats), _float_text(self.bef_prec), str(self.bef_num),
                         _float_text(self.aft_prec), str(self.aft_num)])

    @classmethod
    def parse(cls, line: str) -> DumpRow:
        """Parse a row (10 whitespace-separated columns).

        Raises:
            ValueError: wrong number of columns or a non-numeric value.
        """
        cols = line.split()
        if len(cols) != len(COLUMNS):
            raise ValueError(f"expected {len(COLUMNS)} columns ({HEADER}), got {len(cols)}: {line!r}")
        return cls(cols[0], float(cols[1]), float(cols[2]), float(cols[3]), float(cols[4]), float(cols[5]),
                   float(cols[6]), int(float(cols[7])), float(cols[8]), int(float(cols[9])))


def unique_rows(rows: Iterable[DumpRow]) -> list[DumpRow]:
    """Drop repeated identifiers, keeping the first occurrence (``analysis.py``), order preserved."""
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row.identifier not in seen:
            seen.add(row.identifier)
            unique.append(row)
    return unique


def finalise_rows(rows_in_pair_order: Iterable[DumpRow]) -> list[DumpRow]:
    """The rows of a dump: de-duplicated (first occurrence in GIM's pair order) and sorted by identifier."""
    return sorted(unique_rows(rows_in_pair_order), key=lambda row: row.identifier)


def write_dump(path: str | os.PathLike[str], rows: Sequence[DumpRow]) -> Path:
    """Write a dump file atomically: header, then ``rows`` as given (see :func:`finalise_rows`)."""
    return atomic_write_text(path, "".join([HEADER + "\n", *(row.line() + "\n" for row in rows)]))


def read_dump(path: str | os.PathLike[str]) -> list[DumpRow]:
    """All rows of a dump file, in file order, duplicates included.

    Raises:
        ValueError: the header is not GIM's, or a row is malformed (the message names the line).
    """
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    if not lines or lines[0].split() != list(COLUMNS):
        raise ValueError(f"{path}: not a ZEB dump (first line must be {HEADER!r})")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            rows.append(DumpRow.parse(line))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
    return rows
