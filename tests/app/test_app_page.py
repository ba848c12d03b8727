"""The Gradio page without a browser: its widgets, and its handlers turning every outcome into page content."""

from __future__ import annotations

import logging

import pytest

from gim_plugins.app.cache import MatcherCache
from gim_plugins.app.core import option_specs
from gim_plugins.app.ui import DownloadDirs, Handlers

gr = pytest.importorskip("gradio", reason="gim app needs gradio: pip install 'gim-plugins[app]'")

PAGE_IDS = {"image0", "image1", "example", "matcher", "weights-status", "run", "status", "num-matches", "num-inliers",
            "timing", "match-picture", "warp-picture", "downloads"}


def _handlers(tmp_path, names=("app_test_grid",), loader=None):
    keys = [(name, spec.key) for name in names for spec in option_specs(name)]
    return Handlers(MatcherCache(2, loader=loader), DownloadDirs(tmp_path / "downloads", keep=2), keys)


def _defaults(names=("app_test_grid",)):
    return [spec.initial for name in names for spec in option_specs(name)]


def test_smoke_page_has_every_widget_and_one_option_group_per_matcher(test_matchers, empty_weights, tmp_path):
    from gim_plugins.app.ui import build_page

    page = build_page(matcher="app_test_grid", downloads=DownloadDirs(tmp_path))
    blocks = list(page.blocks.values())
    assert PAGE_IDS <= {b.elem_id for b in blocks if b.elem_id}
    dropdown = next(b for b in blocks if b.elem_id == "matcher")
    assert dropdown.value == "app_test_grid"
    assert ("app_test_weights (weights missing)", "app_test_weights") in dropdown.choices
    assert ("root_sift", "root_sift") in dropdown.choices
    labels = {b.label for b in blocks if isinstance(b, gr.Checkbox | gr.Number | gr.Textbox)}
    assert {"dx", "step", "flag", "mode", "extra", "size", "grid.step"} <= labels


def test_feature_run_fills_counts_pictures_and_downloads(test_matchers, image_pair, tmp_path):
    handlers = _handlers(tmp_path)
    values = _defaults()
    status, matches, inliers, timing, match_pic, warp_pic, files = handlers.run(
        str(image_pair[0]), str(image_pair[1]), "app_test_grid", "homography", 1.0, False, 1600, "cpu", "", *values)
    assert status.startswith("**app_test_grid**: ") and f"{matches} matches, {inliers} inliers (homography, 1 px)" \
        in status
    assert int(matches) == int(inliers) > 100
    assert [row.split("|")[1].strip() for row in timing.splitlines()[2:]] == [
        "decode", "load", "match", "robust fit", "drawing", "downloads", "**total**"]
    assert match_pic.shape == (402, 602, 3) and warp_pic.shape == (200, 904, 3)
    assert [f.rsplit("/", 1)[1] for f in files] == ["app_test_grid_matches.csv", "app_test_grid_matches.npz",
                                                    "app_test_grid_match.png", "app_test_grid_warp.png"]
    # the options reach the matcher: a larger grid step gives fewer matches
    step = [spec.key for spec in option_specs("app_test_grid")].index("step")
    values[step] = 16
    fewer = handlers.run(str(image_pair[0]), str(image_pair[1]), "app_test_grid", "fundamental", 1.0, False, None,
                         "cpu", "", *values)
    assert 0 < int(fewer[1]) < int(matches)


@pytest.mark.parametrize(("change", "message"), [
    ({"image1": None}, "**Error:** image1 is missing: upload or paste an image"),
    ({"threshold": None}, "**Error:** the inlier threshold must be a number of pixels"),
    ({"resize": True, "max_side": None}, "**Error:** the maximum side needs a value when downscaling is on"),
    ({"matcher": None}, "**Error:** no matcher chosen"),
    ({"device": "cuda:99"}, "**Error:** device 'cuda:99' is not available"),
    ({"option": ("dx", "far")}, "**Error:** option 'dx' of matcher 'app_test_grid' expects a number"),
    ({"option": ("step", 0)}, "**Error:** step must be positive, got 0"),
])
def test_exception_problems_become_one_line_messages(test_matchers, image_pair, tmp_path, change, message):
    handlers = _handlers(tmp_path)
    args = {"image0": str(image_pair[0]), "image1": str(image_pair[1]), "matcher": "app_test_grid",
            "robust": "fundamental", "threshold": 1.0, "resize": False, "max_side": 1600, "device": "cpu",
            "weights": ""}
    values = _defaults()
    if "option" in change:
        key, value = change.pop("option")
        values[[spec.key for spec in option_specs("app_test_grid")].index(key)] = value
    args.update(change)
    status, *outputs = handlers.run(*args.values(), *values)
    assert status.startswith(message), status
    assert "\n" not in status and "Traceback" not in status
    assert outputs == ["", "", "", None, None, None]


def test_exception_missing_weights_name_the_command(test_matchers, empty_weights, image_pair, tmp_path):
    handlers = _handlers(tmp_path, names=("app_test_weights",))
    status, *_ = handlers.run(str(image_pair[0]), str(image_pair[1]), "app_test_weights", "fundamental", 1.0, False,
                              None, "cpu", "", *_defaults(("app_test_weights",)))
    assert status.startswith("**Error:** app_test_weights cannot run yet: weights missing")
    assert "run `gim weights fetch gim_lightglue_100h`" in status


def test_exception_a_bug_is_reported_without_its_traceback(test_matchers, image_pair, tmp_path, caplog):
    def broken_loader(*args, **kwargs):
        return 1 / 0

    handlers = _handlers(tmp_path, loader=broken_loader)
    with caplog.at_level(logging.ERROR, logger="gim_plugins.app.ui"):
        status, *_ = handlers.run(str(image_pair[0]), str(image_pair[1]), "app_test_grid", "fundamental", 1.0, False,
                                  None, "cpu", "", *_defaults())
    assert status == "**Internal error** (ZeroDivisionError): division by zero. The server's log has the details."
    assert "Traceback" in caplog.text  # the traceback goes to the server's log only


def test_feature_download_dirs_keep_the_latest(tmp_path):
    dirs = DownloadDirs(tmp_path, keep=2)
    made = [dirs.new() for _ in range(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [made[2].name, made[3].name]


def test_feature_example_is_the_bundled_pair():
    left, right = Handlers.example()
    assert left.endswith("motorcycle_left.png") and right.endswith("motorcycle_right.png")
