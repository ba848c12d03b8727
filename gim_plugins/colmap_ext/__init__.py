"""COLMAP integration: database writer, exporters and ``gim reconstruct`` (pycolmap or the colmap program).

Modules: ``database`` (transactional writer for COLMAP 3.8 + pycolmap 4.x databases), ``text_export``
(``feature_importer`` / ``matches_importer`` files), ``exporters`` (``colmap-db``, ``colmap-text``, ``hloc-h5``),
``tracks`` (dense matches → shared keypoints), ``reconstruct`` (the pipeline steps), ``model`` (reading and
measuring models), ``binary`` (the colmap program), ``_pycolmap`` (the only pycolmap importer). Importing this
package imports nothing heavy.
"""
