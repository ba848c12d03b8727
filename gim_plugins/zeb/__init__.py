"""ZEB, GIM's Zero-shot Evaluation Benchmark, for any registered matcher (``python -m gim_plugins.zeb``).

The default protocol is GIM's, constant for constant: the 12 subsets read from the official folder layout with their
per-subset image handling, OpenCV essential-matrix RANSAC (0.5 px over the mean focal, confidence 0.99999,
``recoverPose`` selection), rotation/translation errors in degrees, and the SuperGlue-style AUC of GIM's
``analysis.py``. Results are written as GIM's per-pair dump files, so GIM's own ``analysis.py`` can read ours and our
``report`` reads GIM's.

``run --protocol gluefactory`` evaluates with cvg/glue-factory's protocol instead (≤ 200 pairs per subset, long side
1024 px, 1.0 px RANSAC); its dumps carry the version suffix ``+gluefactory`` and are reported apart.

Modules (one responsibility each, each importable without the others' heavy dependencies):

* :mod:`.dataset` — subsets, the 38-token pair files, identifiers, image files.
* :mod:`.protocols` — one object per protocol (:mod:`.protocols.gim`, :mod:`.protocols.gluefactory`): pair
  selection, image preparation, keypoints and cameras, RANSAC threshold, AUC rounding, naming, report grouping.
* :mod:`.treatment` — ZEB's per-matcher table: how GIM's code mapped each network's keypoints back.
* :mod:`.metrics` — pose estimation, errors and AUC (numpy + OpenCV only).
* :mod:`.dumps` — GIM's dump files: names, columns, de-duplication, sorting, reading and writing.
* :mod:`.store` — the resumable per-pair result store and the run's conf sidecar.
* :mod:`.config` — :class:`~.config.RunConfig`, what a run does.
* :mod:`.method` — the matcher of a run: preset, names, treatment, fingerprint.
* :mod:`.world` — torchrun ranks and ``--shard`` jobs; :mod:`.memory` — the peak-memory meter.
* :mod:`.runner` — loop 1: match every pair, evaluate it, append it to the store; ``merge``.
* :mod:`.report` — loop 2: AUC tables, plots and the identifier check, from dump files.
* :mod:`.mini` — ZEB-mini, a small benchmark in the official layout built from offline real data.
* :mod:`.cli` — ``python -m gim_plugins.zeb`` and ``gim zeb``.
"""

from __future__ import annotations

__all__: list[str] = []
