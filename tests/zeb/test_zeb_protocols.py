"""Protocols as objects: the registry, version suffixes, labels, options, treatments, and the run fingerprint's field
names (older stores must resume)."""

from __future__ import annotations

import pytest

from gim_plugins.models.gim_dkm import GIMDKM
from gim_plugins.registry import get_matcher_class
from gim_plugins.zeb.config import RunConfig
from gim_plugins.zeb.method import build_method
from gim_plugins.zeb.protocols import NAMES, all_protocols, for_version, get_protocol
from gim_plugins.zeb.treatment import Treatment

FINGERPRINT_FIELDS = {"protocol", "matcher", "matcher_class", "preset", "conf", "weights", "keypoint_offset",
                      "rescale", "padding_mask", "device", "versions"}
"""The fingerprint fields of every ``run.json`` written so far; a rename would refuse to resume those runs."""


def test_feature_protocols_by_name_and_by_version_suffix():
    gim, gluefactory = get_protocol("gim"), get_protocol("gluefactory")
    assert NAMES == ("gim", "gluefactory") and all_protocols() == [gim, gluefactory]
    assert for_version("100h") is gim and for_version("vanilla+gluefactory") is gluefactory
    assert gim.versioned("100h") == "100h"
    assert gluefactory.versioned("100h") == gluefactory.versioned("100h+gluefactory") == "100h+gluefactory"
    with pytest.raises(ValueError, match="'\\+gluefactory' is reserved for --protocol gluefactory"):
        gim.versioned("100h+gluefactory")
    assert gim.label("KITTI") == "KITTI" and gluefactory.label("KITTI") == "KITTI (gluefactory)"
    assert (gim.auc_decimals, gluefactory.auc_decimals) == (None, 4)
    assert (gim.pooled_summary, gluefactory.pooled_summary) == (False, True)
    assert (gim.ransac_threshold, gim.focal_rule) == (0.5, "gim")
    assert (gluefactory.ransac_threshold, gluefactory.focal_rule) == (1.0, "all")


def test_feature_treatment_per_protocol():
    gim, gluefactory = get_protocol("gim"), get_protocol("gluefactory")
    assert gim.treatment(GIMDKM, None) == Treatment(0.5, "canvas", False)
    assert gim.treatment(GIMDKM, "scale") == Treatment(0.5, "scale", False)
    for cls in (GIMDKM, get_matcher_class("gim_loftr"), get_matcher_class("root_sift")):
        assert gluefactory.treatment(cls, None) == Treatment(0.5, None, False)  # resized-image pixels, corners


def test_exception_bad_protocol_and_options():
    with pytest.raises(ValueError, match="rescale must be one of"):
        get_protocol("gim").check_options("bilinear")
    with pytest.raises(ValueError, match="--rescale applies to GIM's protocol only"):
        get_protocol("gluefactory").check_options("canvas")
    with pytest.raises(ValueError, match=r"protocol must be one of \('gim', 'gluefactory'\), got 'hpatches'"):
        get_protocol("hpatches")


def test_feature_fingerprint_fields_are_those_of_earlier_stores():
    gim = build_method(RunConfig(matcher="root_sift"), "cpu")
    assert set(gim.fingerprint) == FINGERPRINT_FIELDS
    assert (gim.fingerprint["protocol"], gim.fingerprint["keypoint_offset"], gim.fingerprint["rescale"],
            gim.fingerprint["padding_mask"]) == ("gim", 0.0, "scale", False)
    gf = build_method(RunConfig(matcher="root_sift", protocol="gluefactory"), "cpu")
    assert set(gf.fingerprint) == FINGERPRINT_FIELDS | {"gluefactory"}
    assert (gf.fingerprint["protocol"], gf.fingerprint["keypoint_offset"], gf.fingerprint["rescale"],
            gf.fingerprint["padding_mask"]) == ("gluefactory", 0.5, None, False)
    assert gf.fingerprint["gluefactory"] == {"resize": 1024, "ransac_th": 1.0, "focal_rule": "all",
                                             "auc_decimals": 4}
    assert gf.version == "vanilla+gluefactory" and gim.version == "vanilla"
    assert set(gf.fingerprint["versions"]) == set(gim.fingerprint["versions"]) | {"kornia"}
