from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import ClassVar

import pytest
import torch

from gim_plugins import registry
from gim_plugins.matching import load_matcher
from gim_plugins.models.base import BaseMatcher
from gim_plugins.registry import MatcherLoadError, UnknownMatcherError, get_matcher_class, list_matchers


class _ShiftMatcher(BaseMatcher):
    """A dense test matcher: matches a grid of points to the same points shifted by ``dx``."""

    name: ClassVar[str] = "test_shift"
    default_conf: ClassVar[dict] = {"dx": 3.0, "step": 16}

    def _init(self, conf):
        self.scale = torch.nn.Parameter(torch.ones(1))

    def _match(self, image0, image1):
        h, w = image0.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(0, h, self.conf.step), torch.arange(0, w, self.conf.step),
                                indexing="ij")
        k0 = torch.stack([xs.flatten(), ys.flatten()], 1).float()
        return self._result(k0, k0 + torch.tensor([self.conf.dx, 0.0]), torch.ones(len(k0)), image0, image1)


@pytest.fixture
def shift_registered():
    registry.register_matcher("test_shift", _ShiftMatcher)
    yield
    registry.unregister_matcher("test_shift")


def test_smoke_builtin_matchers_are_registered():
    names = list_matchers()
    assert {"root_sift", "aliked_lightglue"} <= set(names)
    assert names == sorted(names)


def test_feature_runtime_registration_and_load(shift_registered):
    assert "test_shift" in list_matchers()
    matcher = load_matcher("test_shift", dx=5.0)
    result = matcher.match(torch.rand(3, 64, 48), torch.rand(3, 64, 48))
    assert len(result) == 12 and result.matcher == "test_shift"
    assert torch.equal(result.keypoints1[:, 0] - result.keypoints0[:, 0], torch.full((12,), 5.0))
    assert result.image_size0 == (64, 48)
    assert "total" in result.timing


def test_exception_duplicate_registration(shift_registered):
    with pytest.raises(ValueError, match="already registered"):
        registry.register_matcher("test_shift", _ShiftMatcher)
    registry.register_matcher("test_shift", _ShiftMatcher, overwrite=True)


def test_feature_module_class_path():
    cls = get_matcher_class("gim_plugins.models.root_sift:RootSIFT")
    assert cls.name == "root_sift"


def test_exception_unknown_name_lists_registered():
    with pytest.raises(UnknownMatcherError) as info:
        get_matcher_class("no_such_matcher")
    assert "root_sift" in str(info.value) and "aliked_lightglue" in str(info.value)
    assert isinstance(info.value, KeyError)


def test_exception_bad_module_path_and_non_matcher_class():
    with pytest.raises(MatcherLoadError):
        get_matcher_class("no_such_module_xyz:Thing")
    with pytest.raises(TypeError, match=r"not a matcher: .module:Class. must name a subclass"):
        get_matcher_class("collections:OrderedDict")


def test_exception_unknown_conf_key_names_valid_keys(shift_registered):
    with pytest.raises(KeyError) as info:
        load_matcher("test_shift", dxx=1.0)
    assert "dx" in str(info.value) and "step" in str(info.value)


def test_exception_weights_for_weightless_matcher(shift_registered):
    with pytest.raises(ValueError, match="no weights"):
        load_matcher("test_shift", weights="some.ckpt")


def test_feature_broken_plugin_is_isolated(tmp_path):
    """A plugin whose module fails to import breaks only its own name, with an error naming it."""
    dist = tmp_path / "brokenplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[gim_plugins.matchers]\nbroken = brokenplugin_mod:Matcher\n")
    (tmp_path / "brokenplugin_mod.py").write_text("raise RuntimeError('boom at import')\n")
    code = textwrap.dedent(
        """
        import sys
        from gim_plugins.registry import list_matchers, get_matcher_class, MatcherLoadError
        assert "broken" in list_matchers(), list_matchers()
        assert get_matcher_class("root_sift").name == "root_sift"
        try:
            get_matcher_class("broken")
        except MatcherLoadError as exc:
            assert "broken" in str(exc) and "boom at import" in str(exc) and "brokenplugin" in str(exc), exc
            print("ISOLATED")
        """
    )
    env_path = f"{tmp_path}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": env_path})
    assert proc.returncode == 0, proc.stderr
    assert "ISOLATED" in proc.stdout
