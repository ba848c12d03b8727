"""GIM's training losses as pure functions on tensors, one module per network family.

:mod:`.loftr` (coarse focal loss on the label diagonal, ``l2_with_std``), :mod:`.dense` (DKM's flow end-point error
and standard loss, RoMa's robust regression and anchor classification), :mod:`.lightglue` (the diagonal
log-assignment loss, glue-factory's NLL with deep supervision, token confidence) and :mod:`.geometry` (label sets,
pixel ↔ grid conversions, depth warps) that the trainers use to build the losses' inputs.
"""
