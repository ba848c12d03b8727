"""The COLMAP adapter: writes what the GIM matchers find into COLMAP's formats and runs COLMAP on it.

Modules: ``database`` (transactional writer for databases that COLMAP 3.8 and pycolmap 4.x both open),
``text_export`` (``feature_importer`` / ``matches_importer`` files), ``exporters`` (``colmap-db``, ``colmap-text``,
``hloc-h5``), ``correspondences`` (keypoints per image + index matches per pair, what every writer takes),
``tracks`` (dense matches → shared keypoints), ``store`` (crash-safe store of raw pair matches), ``engines``
(verification and mapping by pycolmap or by the colmap program), ``model`` (reading and measuring models),
``binary`` (the colmap program), ``_pycolmap`` (the only pycolmap importer). The reconstruction pipeline built on
it (``gim reconstruct``) is :mod:`gim_plugins.reconstruct`; how the integration works inside is described in
``docs/colmap.md``. Importing this package imports nothing heavy.
"""
