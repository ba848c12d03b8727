"""What a labeller has done on a video at one spacing: the resume record of one label folder.

GIM's record is the label folder's ``nums.npy``/``idxs.npy``: the labelled pairs and their label counts. A pair tried
without a label (empty mask, too few matches, no fundamental matrix) leaves no trace there, so GIM retries it on
every rerun; we also keep those in ``state/<vid>/<label folder>/empty.npy``. Independent shard jobs cannot share one
``nums.npy``: each writes ``shard-<i>-of-<n>.npz`` in the same state folder, and once every shard's file says it is
complete, whoever notices first (or an unsharded rerun) writes the folder's ``nums.npy``/``idxs.npy`` from all of
them. Records are always written in pair order, so a run resumed after a kill, a sharded run and an unbroken run leave
identical files.

Every file is written atomically; pair files are written before the record that lists them. A kill between the
two renames of ``idxs.npy`` and ``nums.npy`` leaves them of different lengths: :meth:`LabelRecord.load` then
rebuilds ``nums`` from the pair files that ``idxs`` lists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gim_plugins.atomic import atomic_path
from gim_plugins.training.video.layout import Layout, read_pair_label, read_record, write_record

__all__ = ["LabelRecord"]

_EMPTY = "empty.npy"


class LabelRecord:
    """Done pairs of one label folder: ``pair → number of labels`` (0: tried, no label).

    Args:
        label_dir: the label folder (``pseudo/<label folder>/<video folder>``).
        state_dir: our bookkeeping folder for it (``state/<vid>/<label folder>``).
        shard: ``(i, n)`` of an independent shard job, or ``None`` for an unsharded run (or a torchrun rank: ranks
            record per shard too, and rank 0 merges at the end).
    """

    def __init__(self, label_dir: Path, state_dir: Path, shard: tuple[int, int] | None = None) -> None:
        self.label_dir = label_dir
        self.state_dir = state_dir
        self.shard = shard if shard is not None and shard[1] > 1 else None
        self.done: dict[tuple[int, int], int] = {}
        self._mine: dict[tuple[int, int], int] = {}
        self.load()

    # ------------------------------------------------------------------------------------------------- reading

    def load(self) -> None:
        """Read every record of the folder (its own, ``empty.npy`` and all shard files) into :attr:`done`."""
        self.done = {}
        for pair, count in self._folder_record().items():
            self.done[pair] = count
        if (self.state_dir / _EMPTY).is_file():
            for i, j in np.load(self.state_dir / _EMPTY).reshape(-1, 2).tolist():
                self.done.setdefault((i, j), 0)
        for path in sorted(self.state_dir.glob("shard-*-of-*.npz")):
            with np.load(path) as data:
                for (i, j), count in zip(data["idxs"].reshape(-1, 2).tolist(), data["nums"].tolist()):
                    self.done.setdefault((i, j), int(count))
        if self.shard is not None:
            path = self._shard_file(self.shard)
            if path.is_file():
                with np.load(path) as data:
                    self._mine = {(i, j): int(c) for (i, j), c in zip(data["idxs"].reshape(-1, 2).tolist(),
                                                                       data["nums"].tolist())}

    def _folder_record(self) -> dict[tuple[int, int], int]:
        try:
            nums, idxs = read_record(self.label_dir)
        except ValueError:  # killed between the renames of idxs.npy and nums.npy: idxs (written first) is newer
            idxs = np.load(self.label_dir / "idxs.npy").astype(np.int64).reshape(-1, 2)
            pairs = [(int(i), int(j)) for i, j in idxs]
            return {p: len(read_pair_label(Layout.pair_file(self.label_dir, *p))) for p in pairs
                    if Layout.pair_file(self.label_dir, *p).is_file()}
        return {(int(i), int(j)): int(n) for (i, j), n in zip(idxs.tolist(), nums.tolist())}

    def __contains__(self, pair: tuple[int, int]) -> bool:
        return pair in self.done

    # ------------------------------------------------------------------------------------------------- writing

    def add(self, pair: tuple[int, int], count: int, *, flush: bool = True) -> None:
        """Record ``pair`` as done with ``count`` labels (its pair file, if any, is already written)."""
        self.done[pair] = count
        self._mine[pair] = count
        if flush:
            self.flush()

    def flush(self) -> None:
        """Write the record (unsharded: the folder's ``nums``/``idxs`` and ``empty.npy``; sharded: the shard file)."""
        if self.shard is None:
            self._write_folder(self.done)
        else:
            self._write_shard(self._mine, complete=False)

    def finish(self, expected: list[tuple[int, int]]) -> bool:
        """Mark this run's share complete (``expected``: every pair it had to do) and merge if all shards are.

        Returns:
            Whether the folder's ``nums.npy``/``idxs.npy`` now hold every shard's pairs.
        """
        if self.shard is None:
            self._write_folder(self.done)
            return True
        missing = [p for p in expected if p not in self._mine and p in self.done]
        for pair in missing:  # done by an earlier run with another split: carry it into this shard's file
            self._mine[pair] = self.done[pair]
        self._write_shard(self._mine, complete=all(p in self._mine for p in expected))
        return self.merge(self.shard[1])

    def merge(self, size: int) -> bool:
        """Write the folder record from the ``size`` shard files if all are complete; whether it did."""
        merged: dict[tuple[int, int], int] = {}
        for rank in range(size):
            path = self._shard_file((rank, size))
            if not path.is_file():
                return False
            with np.load(path) as data:
                if not bool(data["complete"]):
                    return False
                for (i, j), count in zip(data["idxs"].reshape(-1, 2).tolist(), data["nums"].tolist()):
                    merged[(i, j)] = int(count)
        self._write_folder({**self._folder_record(), **merged})
        return True

    def _write_folder(self, done: dict[tuple[int, int], int]) -> None:
        labelled = sorted(p for p, c in done.items() if c > 0)
        empty = sorted(p for p, c in done.items() if c == 0)
        self.label_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.state_dir / _EMPTY) as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.asarray(empty, dtype=np.int64).reshape(-1, 2))
        write_record(self.label_dir, [done[p] for p in labelled], np.asarray(labelled, dtype=np.int64).reshape(-1, 2))

    def _shard_file(self, shard: tuple[int, int]) -> Path:
        return self.state_dir / f"shard-{shard[0]}-of-{shard[1]}.npz"

    def _write_shard(self, mine: dict[tuple[int, int], int], *, complete: bool) -> None:
        assert self.shard is not None
        pairs = sorted(mine)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._shard_file(self.shard)) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, idxs=np.asarray(pairs, dtype=np.int64).reshape(-1, 2),
                     nums=np.asarray([mine[p] for p in pairs], dtype=np.int64), complete=np.bool_(complete))
