"""Training pipelines: GIM's video labels (:mod:`.video`), training data (:mod:`.data`) and ``gim train``.

``gim train`` / ``python -m gim_plugins.training`` fits the package's matchers with GIM's recipes (the four
``train-gim-*`` branches, plus ALIKED+LightGlue): :mod:`.presets` (the recipes as data), :mod:`.trainers` (one per
matcher: network + GIM's losses from :mod:`.losses`), :mod:`.engine` (the loop: DDP, accumulation, schedule,
checkpoints, resumption), :mod:`.validation` (ZEB-format validation with ZEB's metrics), :mod:`.checkpoints`,
:mod:`.optim`, :mod:`.logging_utils` and :mod:`.cli`. Nothing is imported until used.
"""
