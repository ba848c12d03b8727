"""hloc integration: GIM matchers and confs that hloc's own API and CLI see, without a fork of hloc.

Nothing here is imported by hand. ``gim_plugins.pth`` activates :mod:`gim_plugins._bootstrap`, which serves the
entry points this package declares (``pyproject.toml``):

* ``hloc.matchers`` / ``hloc.extractors`` → the adapters in :mod:`.matchers` and :mod:`.extractors`, subclasses of
  hloc's ``BaseModel`` that run any registered ``gim_plugins`` matcher with hloc's exact inputs and outputs;
* ``hloc.match_dense.confs``, ``hloc.match_features.confs``, ``hloc.extract_features.confs`` → :mod:`.confs`.

So after ``pip install gim-plugins``::

    from hloc import match_dense
    match_dense.main(match_dense.confs["gim_dkm"], pairs, images, export_dir=outputs)

and ``python -m hloc.match_dense --conf gim_dkm ...`` work with an unmodified hloc. This is the only subpackage that
imports hloc; importing it (or :mod:`.confs`) does not.
"""

__all__: list[str] = []
