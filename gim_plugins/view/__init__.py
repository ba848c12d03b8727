"""``gim view OUT``: a reconstruction folder as one self-contained HTML page and a PNG picture.

The page (``OUT/view.html``) shows the cameras as frusta, the sparse points and the dense cloud (subsampled to a
bounded size) with orbit controls, in any browser, from the file itself: no server, no network, the viewer inlined
(:mod:`~gim_plugins.view.page`, WebGL with a 2D-canvas fallback). It links the ZEB report and ``gim video walk``
pictures found in the folder (:mod:`~gim_plugins.view.content`). The picture (``OUT/view.png``,
:mod:`~gim_plugins.view.render`) is the page's starting view, for reports.

Example:
    >>> from gim_plugins.view import main
    >>> page = main(None, {"out": "recon/"})     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_CONF", "main"]

DEFAULT_CONF: dict[str, Any] = {
    "max_points": 200_000,  # dense points in the page and the picture (seeded random subset)
    "max_sparse_points": 50_000,
    "png": True,
    "png_size": (1200, 900),
    "title": None,  # default: the folder's name
    "seed": 0,
}


def main(conf: Mapping[str, Any] | None, paths: Mapping[str, Any]) -> Path:
    """Write ``view.html`` (and ``view.png``) for the reconstruction folder ``paths["out"]``; returns the page.

    Args:
        conf: options (:data:`DEFAULT_CONF`; unknown keys are errors).
        paths: ``out`` (the reconstruction folder) and optionally ``page`` (default ``out/view.html``; the picture
            goes next to it with the suffix ``.png``).

    Raises:
        UserError: nothing to view in the folder.
    """
    from gim_plugins.atomic import atomic_write_text
    from gim_plugins.conf import merge_conf
    from gim_plugins.errors import UserError
    from gim_plugins.view.content import collect
    from gim_plugins.view.page import build_page
    from gim_plugins.view.render import render_png

    conf = merge_conf(DEFAULT_CONF, conf, owner="gim view")
    for key in ("max_points", "max_sparse_points"):
        if int(conf[key]) < 0:
            raise UserError(f"gim view: {key} must be >= 0, got {conf[key]!r}")
    out = Path(paths["out"])
    page = Path(paths.get("page") or out / "view.html")
    content = collect(out, max_points=int(conf.max_points), max_sparse_points=int(conf.max_sparse_points),
                      seed=int(conf.seed))
    atomic_write_text(page, build_page(content, page, title=conf.title))
    if conf.png:
        width, height = (int(v) for v in conf.png_size)
        render_png(content, page.with_suffix(".png"), (width, height))
    return page
