"""A crash-safe store of raw pair matches: what makes ``gim reconstruct`` resumable.

Why SQLite and not HDF5: every pair is committed in its own transaction, so a run killed at any instant loses at
most the pair in flight and never corrupts what was stored (an HDF5 file killed mid-write can become unreadable).
Each row keeps a pair's raw ``MatchResult`` arrays (points in both images, scores, image sizes). The store records
the matcher's fingerprint (name, options, weights); opening it for another matcher is refused, because mixing the
matches of two matchers silently degrades a reconstruction.
"""

from __future__ import annotations

import io
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gim_plugins.errors import InputError

__all__ = ["MatchStore", "StoredPair", "stored_pairs"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    name0 TEXT NOT NULL, name1 TEXT NOT NULL, data BLOB NOT NULL, num_matches INTEGER NOT NULL,
    seconds REAL NOT NULL, PRIMARY KEY (name0, name1));
"""

StoredPair = tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int], tuple[int, int]]
"""``(keypoints0 (M, 2), keypoints1 (M, 2), scores (M,), size0 (H, W), size1 (H, W))``."""


def _pack(k0: np.ndarray, k1: np.ndarray, scores: np.ndarray, size0: tuple[int, int],
          size1: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, k0=np.asarray(k0, np.float32), k1=np.asarray(k1, np.float32),
             scores=np.asarray(scores, np.float32), sizes=np.array([size0, size1], np.int64))
    return buffer.getvalue()


def _unpack(blob: bytes) -> StoredPair:
    with np.load(io.BytesIO(blob)) as data:
        sizes = data["sizes"]
        return (data["k0"], data["k1"], data["scores"], (int(sizes[0, 0]), int(sizes[0, 1])),
                (int(sizes[1, 0]), int(sizes[1, 1])))


class MatchStore:
    """Raw matches of image pairs, one committed row per pair.

    Args:
        path: the SQLite file (created if missing).
        fingerprint: identifies the matcher; a store written with another fingerprint is refused unless
            ``overwrite`` (which empties it).
    """

    def __init__(self, path: str | os.PathLike[str], fingerprint: str, *, overwrite: bool = False,
                 timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout)
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path} is not a readable match store ({exc}); delete it to start over") from exc
        stored = self._db.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
        if stored is not None and stored[0] != fingerprint:
            if not overwrite:
                self._db.close()
                raise InputError(f"{self.path} holds matches of another matcher or configuration:\n"
                                 f"  stored:  {stored[0]}\n  current: {fingerprint}\n"
                                 "use another output directory or --overwrite")
            with self._db:
                self._db.execute("DELETE FROM pairs")
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('fingerprint', ?)", (fingerprint,))
        self.fingerprint = fingerprint

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> MatchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __contains__(self, pair: tuple[str, str]) -> bool:
        return self._db.execute("SELECT 1 FROM pairs WHERE name0=? AND name1=?", pair).fetchone() is not None

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0])

    def done(self) -> set[tuple[str, str]]:
        """The stored pairs."""
        return {(a, b) for a, b in self._db.execute("SELECT name0, name1 FROM pairs")}

    def put(self, name0: str, name1: str, k0: np.ndarray, k1: np.ndarray, scores: np.ndarray,
            size0: tuple[int, int], size1: tuple[int, int], seconds: float = 0.0) -> None:
        """Store (or replace) one pair, committed before returning."""
        if len(k0) != len(k1) or len(k0) != len(scores):
            raise ValueError(f"pair ({name0}, {name1}): {len(k0)}, {len(k1)}, {len(scores)} points/scores")
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO pairs(name0, name1, data, num_matches, seconds) "
                             "VALUES(?,?,?,?,?)",
                             (name0, name1, _pack(k0, k1, scores, size0, size1), len(k0), float(seconds)))

    def get(self, name0: str, name1: str) -> StoredPair:
        row = self._db.execute("SELECT data FROM pairs WHERE name0=? AND name1=?", (name0, name1)).fetchone()
        if row is None:
            raise KeyError(f"pair ({name0}, {name1}) is not in {self.path}")
        return _unpack(row[0])

    def items(self) -> Iterator[tuple[tuple[str, str], StoredPair]]:
        """All stored pairs (sorted by names)."""
        for name0, name1, blob in self._db.execute("SELECT name0, name1, data FROM pairs ORDER BY name0, name1"):
            yield (name0, name1), _unpack(blob)

    def merge_from(self, path: str | os.PathLike[str]) -> int:
        """Copy the pairs of another store (a shard of the same run) that this one lacks; returns how many.

        Raises:
            ValueError: the other store holds matches of another matcher or configuration.
        """
        with MatchStore(path, self.fingerprint) as other:
            rows = [row for row in other._db.execute("SELECT name0, name1, data, num_matches, seconds FROM pairs")
                    if (row[0], row[1]) not in self]
        with self._db:
            self._db.executemany("INSERT INTO pairs(name0, name1, data, num_matches, seconds) VALUES(?,?,?,?,?)",
                                 rows)
        return len(rows)

    def seconds(self) -> float:
        """Total matching time recorded for the stored pairs."""
        return float(self._db.execute("SELECT COALESCE(SUM(seconds), 0) FROM pairs").fetchone()[0])



def stored_pairs(path: str | os.PathLike[str], fingerprint: str) -> set[tuple[str, str]]:
    """The pairs a store at ``path`` holds for ``fingerprint`` (empty when it is missing or holds another matcher's
    matches); read-only, so processes matching shards of the same run can all ask."""
    if not Path(path).is_file():
        return set()
    db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=30.0)
    try:
        stored = db.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
        if stored is None or stored[0] != fingerprint:
            return set()
        return {(a, b) for a, b in db.execute("SELECT name0, name1 FROM pairs")}
    except sqlite3.DatabaseError:
        return set()
    finally:
        db.close()
