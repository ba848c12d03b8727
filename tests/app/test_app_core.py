"""The page's inputs and checks: option widgets from ``default_conf``, validation, weights status, header-only probe."""

from __future__ import annotations

import math
import struct
import tracemalloc
import zlib

import pytest

from gim_plugins.app import core
from gim_plugins.app.core import (
    OptionSpec,
    check_device,
    check_request,
    matcher_status,
    option_specs,
    parse_options,
    probe_image,
)
from gim_plugins.conf import ConfError, to_plain
from gim_plugins.errors import UserError, is_user_error
from gim_plugins.registry import get_matcher_class, list_matchers


def _flat_keys(conf, prefix=""):
    keys = []
    for key, value in conf.items():
        if isinstance(value, dict) and value:
            keys += _flat_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


@pytest.mark.parametrize("name", list_matchers())
def test_cardinality_option_specs_cover_default_conf(name):
    """One widget per option of every registered matcher, typed after its default, whose initial value is a no-op."""
    specs = option_specs(name)
    default = to_plain(get_matcher_class(name).default_conf)
    assert [s.key for s in specs] == _flat_keys(default)
    for spec in specs:
        expected = {bool: "bool", int: "int", float: "float"}.get(type(spec.default), "text")
        assert spec.kind == expected, spec
    assert parse_options(name, {s.key: s.initial for s in specs}) == {}


def test_feature_parse_options_types_values_like_the_cli(test_matchers):
    values = {"dx": 3, "step": 4.0, "flag": False, "mode": "other", "extra": "7", "size": "(2, 3)"}
    parsed = parse_options("app_test_grid", values)
    assert parsed == {"dx": 3.0, "step": 4, "flag": False, "mode": "other", "extra": 7, "size": (2, 3)}
    assert type(parsed["dx"]) is float and type(parsed["step"]) is int
    # unchanged values (tuple shown as text, None as an empty field) are not overrides
    assert parse_options("app_test_grid", {"size": "(4, 4)", "extra": "", "dx": 2}) == {}
    assert parse_options("app_test_grid", {"extra": "None", "mode": "grid"}) == {}


def test_feature_nested_options_are_flattened_and_rebuilt(test_matchers):
    specs = option_specs("app_test_nested")
    assert [s.key for s in specs] == ["grid.step", "grid.offset", "dx", "dy"]
    assert parse_options("app_test_nested", {"grid.step": 4, "dy": 1.5}) == {"grid": {"step": 4}, "dy": 1.5}


@pytest.mark.parametrize(("values", "message"), [
    ({"num_step": 3}, "unknown option 'num_step'.*known options: dx, dy, extra, flag, mode, size, step"),
    ({"step": 2.5}, "expects a whole number"),
    ({"dx": None}, "needs a value"),
    ({"dx": "abc"}, "expects a number"),
    ({"dx": math.inf}, "expects a number"),
    ({"flag": "yes"}, "expects true or false"),
    ({"mode": "1"}, "'mode' .* expects a string"),
    ({"size": "(1, 2"}, r"'size' .* expects a tuple such as \(4, 4\), got '\(1, 2'"),
])
def test_exception_parse_options_rejects(test_matchers, values, message):
    with pytest.raises(ConfError, match=message) as info:
        parse_options("app_test_grid", values)
    assert is_user_error(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("robust", "threshold", "max_side", "message"), [
    ("affine", 1.0, None, "unknown robust model 'affine': choose fundamental or homography"),
    ("fundamental", 0, None, "positive number of pixels"),
    ("fundamental", -2.0, None, "positive number of pixels"),
    ("fundamental", math.nan, None, "positive number of pixels"),
    ("fundamental", None, None, "must be a number of pixels"),
    ("fundamental", "x", None, "must be a number of pixels"),
    ("homography", 3.0, 10.5, "whole number"),
    ("homography", 3.0, True, "whole number"),
    ("homography", 3.0, 8, "at least 16 px"),
])
def test_exception_check_request(robust, threshold, max_side, message):
    with pytest.raises(UserError, match=message):
        check_request(robust, threshold, max_side, 16)


def test_feature_check_request_accepts_and_normalises():
    assert check_request("homography", "2.5", 640.0, 16) == (2.5, 640)
    assert check_request("fundamental", 1, None, 16) == (1.0, None)


def test_exception_check_device():
    assert check_device("cpu") == "cpu"
    with pytest.raises(UserError, match="unknown device 'banana'"):
        check_device("banana")
    with pytest.raises(UserError, match="'cuda:99' is not available"):
        check_device("cuda:99")
    with pytest.raises(UserError, match="not supported by the page"):
        check_device("meta")


def test_feature_status_names_the_weights_command(test_matchers, empty_weights):
    missing = matcher_status("app_test_weights")
    assert not missing.ready
    assert "`gim weights fetch gim_lightglue_100h`" in missing.text
    assert matcher_status("root_sift") == core.MatcherStatus("root_sift", True, "no weights needed")


def test_exception_status_of_a_broken_plugin(test_matchers):
    from gim_plugins import registry

    registry.register_matcher("app_test_broken", "no_such_module_for_app:Matcher")
    try:
        status = matcher_status("app_test_broken")
    finally:
        registry.unregister_matcher("app_test_broken")
    assert not status.ready and status.text.startswith("cannot be loaded")


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` but whose pixel data is a few bytes: decoding it would fail."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_exception_huge_image_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header(10_000, 6_000))
    assert probe_image(path, "image0", max_pixels=60_000_000) == (10_000, 6_000)  # PIL's modules now imported
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match=r"image0 is 10000×6000 px \(60 MP\), above the page's limit of 40 MP"):
            probe_image(path, "image0")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # 60 MP of RGB would be 180 MB: nothing was decoded


def test_exception_decompression_bomb_refused(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(40_000, 40_000))
    with pytest.raises(UserError, match="far too large to decode safely"):
        probe_image(path, "image1", max_pixels=10**10)


def test_exception_probe_missing_and_not_an_image(tmp_path):
    with pytest.raises(UserError, match="image0 is missing: upload or paste an image"):
        probe_image(None, "image0")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(UserError, match="cannot read image1 as an image"):
        probe_image(text, "image1")


def test_smoke_probe_reads_the_example_size():
    from gim_plugins.datasets.motorcycle import paths

    assert probe_image(paths()["left"], "image0") == (741, 500)


def test_feature_option_spec_initial_values():
    assert OptionSpec("size", [1152, 1536], "text").initial == "(1152, 1536)"
    assert OptionSpec("seed", None, "text").initial == "None"
    assert OptionSpec("precision", "fp32", "text").initial == "fp32"
    assert OptionSpec("step", 8, "int").initial == 8
