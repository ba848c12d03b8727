"""``gim view``: the page's data round-trips the cloud, model and links; the PNG shows the points; bad input."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from view_fixtures import DENSE_POINTS

from gim_plugins.colmap_ext.model import read_text_model
from gim_plugins.colmap_ext.ply import read_ply
from gim_plugins.errors import UserError
from gim_plugins.view import main
from gim_plugins.view.content import collect
from gim_plugins.view.render import BACKGROUND, render_view


def _data(page: Path) -> dict:
    text = page.read_text()
    block = re.search(r'<script type="application/json" id="gim-data">(.*?)</script>', text, re.S)
    assert block is not None
    return json.loads(block.group(1).replace("<\\/", "</"))


def _decoded(data: dict, key: str) -> tuple[np.ndarray, np.ndarray]:
    block = data[key]
    q = np.frombuffer(base64.b64decode(block["pos"]), dtype="<u2").reshape(-1, 3)
    rgb = np.frombuffer(base64.b64decode(block["rgb"]), dtype=np.uint8).reshape(-1, 3)
    return np.asarray(data["bbox"]["min"]) + q * np.asarray(data["bbox"]["step"]), rgb


def test_feature_page_holds_the_cloud_model_and_links(recon_dir, tmp_path) -> None:
    out = tmp_path / "recon"
    shutil.copytree(recon_dir, out)
    page = main({"max_points": 5000}, {"out": out})
    assert page == out / "view.html" and page.with_suffix(".png").is_file()
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing from the network
    data = _data(page)
    # dense: a 5000-point subset of the PLY, positions within half a quantisation step, colours exact
    cloud = read_ply(out / "dense" / "fused.ply")
    xyz, rgb = _decoded(data, "dense")
    assert data["dense"]["n"] == len(xyz) == 5000
    from scipy.spatial import cKDTree

    distance, index = cKDTree(cloud.xyz).query(xyz)
    assert distance.max() <= 0.5 * np.linalg.norm(data["bbox"]["step"]) + 1e-6
    assert np.array_equal(rgb, cloud.rgb[index])
    # sparse points and one frustum (8 segments) per registered image
    model = read_text_model(out / "sparse" / "0")
    assert data["sparse"]["n"] == len(model.points) and data["camera_count"] == len(model.images) == 4
    assert data["cameras"]["n"] == 16 * 4  # 8 segments × 2 end points per camera
    # links: the ZEB report and the walk pictures, relative to the page, pointing at the files
    links = re.findall(r'href="([^"]+)"', text)
    assert {"zeb/report.md", "zeb/plots/auc_curves.png", "walk/v1/000001.png", "walk/v2/000001.png"} <= set(links)
    assert all((out / link).is_file() for link in links if not link.startswith("data:"))
    assert f"{DENSE_POINTS:,}" in text  # the total is stated next to the shown count


def test_feature_png_shows_the_points(recon_dir) -> None:
    content = collect(recon_dir, max_points=20_000)
    image = render_view(content, (400, 300))
    background = np.all(image == np.array(BACKGROUND, np.uint8), axis=2)
    assert 0.05 < 1 - background.mean() < 0.95  # points cover a part of the picture, not all of it
    drawn = image[~background].astype(np.float64)
    assert drawn.std(axis=0).mean() > 20  # the photo's colours, not one flat colour
    # the frusta are drawn in their colour
    assert np.any(np.all(image == np.array([255, 90, 60], np.uint8), axis=2))


def test_cardinality_cloud_only_model_only_and_empty_cloud(recon_dir, tmp_path) -> None:
    dense_only = tmp_path / "dense_only"
    shutil.copytree(recon_dir / "dense", dense_only / "dense")
    data = _data(main({"png": False}, {"out": dense_only}))
    assert data["camera_count"] == 0 and data["sparse"]["n"] == 0 and data["dense"]["n"] == DENSE_POINTS
    model_only = tmp_path / "model_only"
    shutil.copytree(recon_dir / "sparse", model_only / "sparse")
    page = main(None, {"out": model_only, "page": tmp_path / "elsewhere" / "page.html"})
    data = _data(page)
    assert page.is_file() and page.with_suffix(".png").is_file()
    assert data["dense"]["n"] == 0 and data["camera_count"] == 4 and data["sparse"]["n"] > 100
    assert _data(main({"max_points": 0, "png": False}, {"out": recon_dir}))["dense"]["n"] == 0


def test_exception_nothing_to_view(tmp_path, capsys) -> None:
    from gim_plugins.cli import main as gim

    with pytest.raises(UserError, match="nothing to view"):
        main(None, {"out": tmp_path})
    with pytest.raises(UserError, match="not a folder"):
        main(None, {"out": tmp_path / "missing"})
    assert gim(["view", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nothing to view" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "view.html").exists()


def test_smoke_cli(recon_dir, tmp_path, capsys) -> None:
    from gim_plugins.cli import main as gim

    out = tmp_path / "recon"
    shutil.copytree(recon_dir, out)
    assert gim(["view", str(out), "--max-points", "1000", "--title", "motorcycle"]) == 0
    printed = capsys.readouterr().out
    assert f"page: {out / 'view.html'}" in printed and f"picture: {out / 'view.png'}" in printed
    assert "<title>motorcycle · gim view</title>" in (out / "view.html").read_text()
    assert _data(out / "view.html")["dense"]["n"] == 1000
