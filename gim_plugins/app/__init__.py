"""``gim app``: the interactive matcher page (two images in, matches, pictures and downloads out), served locally.

The page is built with Gradio, an optional dependency (``pip install 'gim-plugins[app]'``). The logic lives apart
from it so that it can be used and tested without a browser:

* :mod:`gim_plugins.app.core`: matcher status, option specs from ``default_conf``, validation, the bounded cache of
  loaded matchers, the header-only image size check, and one request from image files to counts and pictures;
* :mod:`gim_plugins.app.export`: the downloads (matches as CSV and NPZ, the two pictures as PNG) and their reader;
* :mod:`gim_plugins.app.ui`: the Gradio page on top of those functions;
* :mod:`gim_plugins.app.cli`: ``gim app [--host] [--port]``, registered through the ``gim_plugins.cli`` entry points.

Importing this package imports nothing else; each module imports what it needs.
"""

from __future__ import annotations

__all__: list[str] = []
