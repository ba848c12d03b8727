"""GIM's original code, wrapped for the parity tests (``tests/parity``) and the side-by-side benchmarks.

Not part of gim-plugins: the wheel ships only ``gim_plugins``. The original code itself is never in this repository;
it is imported from the ``imcui`` wheel (``imcui/third_party/gim``, MIT) in a separate reference environment, and
every helper here says how to build that environment when it is absent (see ``parity/README.md``).

* :mod:`parity.gim_networks` — GIM's ``networks`` package for LoFTR and LightGlue (no torchvision needed);
* :mod:`parity.original_dkm`, :mod:`parity.original_roma` — GIM's DKMv3 and RoMa, runnable here without changing
  their numbers (they need torchvision);
* :mod:`parity.images` — real test images and the conditioning that makes random weights match informatively.

Importable from the repository root: pytest puts it on ``sys.path`` (``pythonpath`` in ``pyproject.toml``), and the
editable install (``pip install -e .``, as ``make install-dev`` runs it) does so for the benchmarks.
"""
