"""Training logs on rank 0: ``RUN/metrics.csv``, TensorBoard event files in ``RUN/tensorboard/``, a progress bar.

The CSV has one row per optimizer step (``kind=train``) and one per validation (``kind=val``); its columns are fixed
when the run starts (a resumed run appends to the same file after cutting rows past the checkpoint's step, so a
killed-and-resumed run leaves the same CSV as an unbroken one). TensorBoard needs the ``tensorboard`` package
(``pip install gim-plugins[train]``); without it the event files are skipped with one warning.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CSV_COLUMNS", "RunLog"]

log = logging.getLogger(__name__)

CSV_COLUMNS = ("kind", "step", "epoch", "lr", "loss", "auc5", "auc10", "auc20", "seconds", "scalars")
"""Fixed columns; ``scalars`` holds the trainer's per-step numbers as ``name=value;…``."""


class RunLog:
    """Writes the CSV and TensorBoard logs of one run (rank 0 only; other ranks get a no-op instance).

    Args:
        run_dir: ``RUN``.
        enabled: False on ranks other than 0.
        resume_step: when resuming, rows with a larger step are cut from the CSV first.
        total_steps: length of the progress bar (None: unknown).
        progress: show a progress bar on stderr.
    """

    def __init__(self, run_dir: Path, *, enabled: bool = True, resume_step: int | None = None,
                 total_steps: int | None = None, progress: bool = True, initial_step: int = 0) -> None:
        self.enabled = enabled
        self.csv_path = run_dir / "metrics.csv"
        self._writer: Any = None
        self._bar: Any = None
        if not enabled:
            return
        if resume_step is not None:
            self._truncate(resume_step)
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        self._file = open(self.csv_path, "a", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(CSV_COLUMNS)
            self._file.flush()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)
        except ImportError:
            log.warning("tensorboard is not installed (pip install gim-plugins[train]): writing metrics.csv only")
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=initial_step, unit="step", desc="train", file=sys.stderr,
                             dynamic_ncols=True)

    def _truncate(self, step: int) -> None:
        if not self.csv_path.is_file():
            return
        with open(self.csv_path, newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            return
        header, body = rows[0], rows[1:]
        keep = [row for row in body if row and int(row[1]) <= step]
        import io

        from gim_plugins.atomic import atomic_write_text

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows(keep)
        atomic_write_text(self.csv_path, buffer.getvalue())

    def train(self, step: int, epoch: int, lr: float, loss: float, scalars: Mapping[str, float],
              seconds: float) -> None:
        """One optimizer step."""
        if not self.enabled:
            return
        self._row("train", step, epoch, lr, loss, None, seconds, scalars)
        if self._writer is not None:
            self._writer.add_scalar("train/loss", loss, step)
            self._writer.add_scalar("train/lr", lr, step)
            for name, value in scalars.items():
                if math.isfinite(value):
                    self._writer.add_scalar(f"train/{name}", value, step)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)

    def validation(self, step: int, epoch: int, result: Mapping[str, float]) -> None:
        """One validation (AUC@5/10/20 as fractions; per-subset ``aucN/<subset>`` values go into the scalars
        column and TensorBoard)."""
        if not self.enabled:
            return
        aucs = [result["auc5"], result["auc10"], result["auc20"]]
        per_subset = {k: v for k, v in result.items() if k.startswith("auc") and "/" in k}  # auc5/<subset>, …
        self._row("val", step, epoch, None, None, aucs, result.get("seconds", 0.0),
                  {"pairs": result["pairs"], **per_subset})
        if self._writer is not None:
            for name, value in (*zip(("auc5", "auc10", "auc20"), aucs), *per_subset.items()):
                self._writer.add_scalar(f"val/{name}", value, step)

    def _row(self, kind: str, step: int, epoch: int, lr: float | None, loss: float | None,
             aucs: Sequence[float] | None, seconds: float, scalars: Mapping[str, float]) -> None:
        def fmt(value: float | None) -> str:
            return "" if value is None else repr(float(value))

        packed = ";".join(f"{k}={float(v)!r}" for k, v in sorted(scalars.items()))
        auc = [fmt(a) for a in aucs] if aucs is not None else ["", "", ""]
        self._csv.writerow([kind, step, epoch, fmt(lr), fmt(loss), *auc, f"{seconds:.3f}", packed])
        self._file.flush()

    def close(self) -> None:
        """Flush and close everything."""
        if not self.enabled:
            return
        self._file.close()
        if self._writer is not None:
            self._writer.close()
        if self._bar is not None:
            self._bar.close()
