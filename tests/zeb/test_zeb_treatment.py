"""ZEB's per-matcher table (how GIM's code treated each network's keypoints) against the facts the models declare
about themselves, and the treatment of matchers outside the table."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from gim_plugins.models.base import BaseMatcher
from gim_plugins.models.gim_dkm import GIMDKM
from gim_plugins.registry import get_matcher_class
from gim_plugins.types import MatchResult
from gim_plugins.zeb.treatment import GIM_TABLE, Treatment, derived_treatment, gim_treatment


class _Declares(BaseMatcher):
    """An unregistered matcher that declares every fact ZEB reads."""

    name: ClassVar[str] = "zeb_test_declares"
    gim_keypoint_offset: ClassVar[float] = 0.25
    normalised_output: ClassVar[bool] = True
    accepts_masks: ClassVar[bool] = True

    def _init(self, conf: Any) -> None:
        pass

    def _match(self, image0: torch.Tensor, image1: torch.Tensor) -> MatchResult:
        raise NotImplementedError


class _LoFTRNamesake(_Declares):
    """Calls itself gim_loftr but is not the registered class: judged by its own (default) facts."""

    name: ClassVar[str] = "gim_loftr"
    gim_keypoint_offset: ClassVar[float] = 0.0
    normalised_output: ClassVar[bool] = False
    accepts_masks: ClassVar[bool] = False


class _DKMSubclass(GIMDKM):
    """An unregistered subclass of gim_dkm inherits its facts, hence GIM's DKM treatment."""


def test_feature_table_agrees_with_the_models_declared_facts():
    assert set(GIM_TABLE) == {"gim_dkm", "gim_roma", "gim_loftr", "gim_lightglue", "root_sift"}
    for name, entry in GIM_TABLE.items():
        cls = get_matcher_class(name)
        assert gim_treatment(cls) == entry, name
        assert derived_treatment(cls) == entry, name  # a model's declarations would give GIM's treatment too
    assert GIM_TABLE["gim_dkm"] == Treatment(0.5, "canvas", False) == GIM_TABLE["gim_roma"]
    assert GIM_TABLE["gim_loftr"] == Treatment(0.5, "scale", True)
    assert GIM_TABLE["root_sift"] == Treatment(0.0, "scale", False)
    assert gim_treatment(get_matcher_class("aliked_lightglue")) == Treatment(0.0, "scale", False)  # not in GIM


def test_feature_unregistered_matchers_are_treated_by_their_declared_facts():
    assert gim_treatment(_Declares) == Treatment(0.25, "canvas", True)
    assert gim_treatment(_Declares, "scale") == Treatment(0.25, "scale", True)  # --rescale overrides the rule
    assert gim_treatment(_LoFTRNamesake) == Treatment(0.0, "scale", False)  # the name alone does not pick the table
    assert gim_treatment(_DKMSubclass) == GIM_TABLE["gim_dkm"]


def test_exception_bad_rescale():
    with pytest.raises(ValueError, match="rescale must be one of"):
        gim_treatment(_Declares, "bilinear")
