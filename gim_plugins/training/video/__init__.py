"""``gim video``: local videos → GIM's ZeroMatch labels (decode, shots, pairs, labellers, masks, propagation).

Steps, each an importable ``main(conf, paths) -> Path`` that skips finished work:

* :mod:`~gim_plugins.training.video.decode` — frames by 0-based decoded index (PyAV), shot cuts (PySceneDetect),
  the sampled frames cached as correct-colour PNGs;
* :mod:`~gim_plugins.training.video.label` — every labeller on every in-shot pair at every skip (and the zoom
  pass), GIM's filters, the per-pair label files and the ``nums.npy``/``idxs.npy`` resume record;
* :mod:`~gim_plugins.training.video.propagate` / :mod:`~gim_plugins.training.video.walk` — chaining the labels
  into long-range pairs and their pictures.

Every folder and file name of the on-disk layout (GIM's ``data/ZeroMatch`` tree) is in
:mod:`~gim_plugins.training.video.layout`. Importing this package loads nothing heavy.
"""
