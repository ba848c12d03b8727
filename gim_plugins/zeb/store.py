"""The resumable result store of a ZEB run and its conf sidecar.

Layout inside the dump directory (GIM's dump files stay at its top level, where GIM's tools look for them)::

    DUMP_DIR/
      [T] {weight} {scene:>15} {version}.txt           the final dumps, rebuilt from the store
      runs/{weight}@{version}/
        run.json                                       the sidecar: fingerprint (what decides the numbers) + info
        {Subset}/selection.json                        the pair files of the latest run, in GIM's order
        {Subset}/records-{i}-of-{n}.jsonl              one JSON record per finished pair, per shard

Each record is appended, flushed and fsync'ed as soon as its pair is done, so a run killed at any point loses at
most the pair in flight; a truncated last line is detected and cut off on resume. Records are keyed by pair file, so a
resumed run may use a different number of shards or processes. The dump of a subset is rebuilt (atomically) from
the records whenever all pairs of the selection are present, so a killed-and-resumed run ends with the same dump as
an uninterrupted one.

The fingerprint holds the matcher, its resolved conf, the weights, the preset, the keypoint mapping, the device
type and the versions of gim-plugins, torch, OpenCV and numpy. A run whose fingerprint differs from the sidecar's
refuses to add to these results (:class:`StaleResultsError`) unless ``overwrite=True``, which deletes the method's
store and dumps first.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gim_plugins.atomic import atomic_write_text
from gim_plugins.errors import UserError
from gim_plugins.zeb.dumps import DumpRow, dump_file_name, find_dumps
from gim_plugins.zeb.metrics import PairMetrics

__all__ = ["FORMAT", "MethodStore", "Record", "StaleResultsError"]

FORMAT = "gim_plugins.zeb/1"
RUNS_DIR = "runs"


class StaleResultsError(RuntimeError, UserError):
    """Existing results were produced with another conf, weights or software versions."""


@dataclass(frozen=True)
class Record:
    """What the store keeps per finished pair: the dump row plus the cost of producing it.

    Attributes:
        file: the pair file name (the key).
        row: the GIM dump row.
        num_matches: matches given to the pose solver.
        num_inliers: pose inliers.
        seconds: wall time per stage (``load``, ``match``, ``pose``) for this pair.
        peak_memory_mb: the process's peak memory since the run started, when the pair finished (``rss`` and, on
            GPUs, ``cuda``: torch's peak allocated memory).
    """

    file: str
    row: DumpRow
    num_matches: int
    num_inliers: int
    seconds: Mapping[str, float]
    peak_memory_mb: Mapping[str, float]

    @classmethod
    def from_metrics(cls, file: str, identifier: str, covisible0: float, covisible1: float, metrics: PairMetrics,
                     seconds: Mapping[str, float], peak_memory_mb: Mapping[str, float]) -> Record:
        row = DumpRow.from_metrics(identifier, covisible0, covisible1, metrics)
        return cls(file, row, metrics.num_matches, metrics.num_inliers, dict(seconds), dict(peak_memory_mb))

    def to_json(self) -> str:
        row = self.row
        return json.dumps({
            "file": self.file, "identifier": row.identifier, "covisible0": row.covisible0,
            "covisible1": row.covisible1, "R_err": row.R_err, "t_err": row.t_err, "t_err2": row.t_err2,
            "bef_prec": row.bef_prec, "bef_num": row.bef_num, "aft_prec": row.aft_prec, "aft_num": row.aft_num,
            "num_matches": self.num_matches, "num_inliers": self.num_inliers, "seconds": dict(self.seconds),
            "peak_memory_mb": dict(self.peak_memory_mb),
        })  # floats round-trip exactly (repr); inf is written as Infinity

    @classmethod
    def from_json(cls, text: str) -> Record:
        d = json.loads(text)
        row = DumpRow(d["identifier"], d["covisible0"], d["covisible1"], d["R_err"], d["t_err"], d["t_err2"],
                      d["bef_prec"], d["bef_num"], d["aft_prec"], d["aft_num"])
        return cls(d["file"], row, d["num_matches"], d["num_inliers"], d["seconds"], d["peak_memory_mb"])


def _read_records(path: Path, *, repair: bool) -> list[Record]:
    """Records of one jsonl file. A torn last line (a killed writer) is skipped, and cut off when ``repair``."""
    with open(path, "rb") as handle:
        data = handle.read()
    records, good_end = [], 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            records.append(Record.from_json(line.decode("utf-8")))
        except (ValueError, KeyError, TypeError):
            break
        good_end += len(line)
    if repair and good_end < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(good_end)
            handle.flush()
            os.fsync(handle.fileno())
    return records


class MethodStore:
    """The results of one method (``weight@version``) in a dump directory."""

    def __init__(self, dump_dir: str | os.PathLike[str], weight: str, version: str) -> None:
        dump_file_name(weight, "x", version)  # validates both parts (single tokens)
        self.dump_dir = Path(dump_dir)
        self.weight, self.version = weight, version
        self.root = self.dump_dir / RUNS_DIR / f"{weight}@{version}"

    # --------------------------------------------------------------------------------------------- sidecar

    @property
    def sidecar(self) -> Path:
        return self.root / "run.json"

    def read_sidecar(self) -> dict[str, Any] | None:
        """The sidecar's content; ``None`` when there is none (or it is unreadable and no results depend on it)."""
        if not self.sidecar.is_file():
            return None
        try:
            with open(self.sidecar, encoding="utf-8") as handle:
                return dict(json.load(handle))
        except (ValueError, TypeError) as exc:
            if self.has_results():
                raise StaleResultsError(f"{self.sidecar} is unreadable ({exc}) but results depend on it; pass "
                                        "--overwrite to delete them and start afresh") from None
            return None

    def dump_paths(self) -> list[Path]:
        """This method's dump files present in the dump directory."""
        if not self.dump_dir.is_dir():
            return []
        return [path for path, name in find_dumps(self.dump_dir).items()
                if (name.weight, name.version) == (self.weight, self.version)]

    def open(self, fingerprint: Mapping[str, Any], info: Mapping[str, Any], *, overwrite: bool = False) -> None:
        """Create the sidecar, or check that the existing one has the same fingerprint.

        Raises:
            StaleResultsError: the fingerprint differs (the message lists what changed), or dumps of this method
                exist without a sidecar (results of unknown origin, e.g. GIM's own dumps); pass ``overwrite=True``
                to delete this method's store and dumps and start afresh.
        """
        fingerprint = json.loads(json.dumps(fingerprint))  # normalise tuples etc. as they will be read back
        existing = self.read_sidecar()
        problem = None
        if existing is not None and existing.get("fingerprint") != fingerprint and not self.has_results():
            existing = None  # a run stopped before its first pair (bad input): nothing to mix, start afresh
        if existing is not None and existing.get("fingerprint") != fingerprint:
            old = existing.get("fingerprint", {})
            changed = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
            details = "; ".join(f"{k}: {old.get(k)!r} -> {fingerprint.get(k)!r}" for k in changed)
            problem = f"results in {self.root} were produced with a different setup ({details})"
        elif existing is None and self.dump_paths():
            problem = (f"{len(self.dump_paths())} dump file(s) of {self.weight} {self.version} exist in "
                       f"{self.dump_dir} without a run record (not produced by this runner, or its runs/ folder was "
                       "deleted)")
        if problem is not None:
            if not overwrite:
                raise StaleResultsError(f"{problem}. Refusing to mix results: pass --overwrite to delete them and "
                                        "start afresh, or use another --version / --out.")
            self.delete()
            existing = None
        if existing is None:
            payload = {"format": FORMAT, "weight": self.weight, "version": self.version,
                       "fingerprint": fingerprint, "info": dict(info)}
            atomic_write_text(self.sidecar, json.dumps(payload, indent=2, sort_keys=True) + "\n")

    def has_results(self) -> bool:
        """Whether any pair was finished in this store (a record) or any dump of it exists."""
        if self.dump_paths():
            return True
        return any(path.stat().st_size > 0 for path in self.root.glob("*/records-*.jsonl"))

    def delete(self) -> None:
        """Remove this method's store and its dump files."""
        if self.root.exists():
            shutil.rmtree(self.root)
        for path in self.dump_paths():
            path.unlink()

    # --------------------------------------------------------------------------------------------- records

    def subset_dir(self, subset_key: str) -> Path:
        return self.root / subset_key

    def write_selection(self, subset_key: str, files: Sequence[str]) -> None:
        """Record the pair files of this run's selection for a subset (GIM's order)."""
        atomic_write_text(self.subset_dir(subset_key) / "selection.json", json.dumps(list(files)) + "\n")

    def read_selection(self, subset_key: str) -> list[str] | None:
        path = self.subset_dir(subset_key) / "selection.json"
        if not path.is_file():
            return None
        with open(path, encoding="utf-8") as handle:
            return list(json.load(handle))

    def subsets(self) -> list[str]:
        """Subset keys with a selection in this store."""
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob("*/selection.json"))

    def records(self, subset_key: str) -> dict[str, Record]:
        """All finished records of a subset from every shard file, keyed by pair file (first one wins)."""
        found: dict[str, Record] = {}
        directory = self.subset_dir(subset_key)
        if not directory.is_dir():
            return found
        for path in sorted(directory.glob("records-*.jsonl")):
            for record in _read_records(path, repair=False):
                found.setdefault(record.file, record)
        return found

    def writer(self, subset_key: str, shard: tuple[int, int]) -> RecordWriter:
        """An appending writer for one shard's record file (repairs a torn last line first)."""
        index, count = shard
        return RecordWriter(self.subset_dir(subset_key) / f"records-{index}-of-{count}.jsonl")

    def finalise(self, subset_key: str, dump_scene: str) -> tuple[Path | None, list[str]]:
        """Rebuild the subset's dump from the records if the selection is complete.

        Returns:
            ``(dump path, [])`` when written, else ``(None, missing pair files)``.
        """
        from gim_plugins.zeb.dumps import finalise_rows, write_dump

        selection = self.read_selection(subset_key)
        if selection is None:
            return None, []
        records = self.records(subset_key)
        missing = [name for name in selection if name not in records]
        if missing:
            return None, missing
        rows = finalise_rows(records[name].row for name in selection)
        path = self.dump_dir / dump_file_name(self.weight, dump_scene, self.version)
        return write_dump(path, rows), []

    def selected_records(self, subset_key: str) -> list[Record]:
        """Records of the current selection that exist, in selection order."""
        selection = self.read_selection(subset_key) or []
        records = self.records(subset_key)
        return [records[name] for name in selection if name in records]


class RecordWriter:
    """Appends records to one jsonl file; each append is flushed and fsync'ed before it returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            _read_records(path, repair=True)
        self._handle = open(path, "a", encoding="utf-8")  # closed in close()

    def append(self, record: Record) -> None:
        self._handle.write(record.to_json() + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def extend(self, records: Iterable[Record]) -> None:
        for record in records:
            self.append(record)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
