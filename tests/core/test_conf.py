from __future__ import annotations

import pickle

import pytest

from gim_plugins.conf import Conf, ConfError, merge_conf, to_plain

DEFAULT = {"num_samples": 5000, "upsample": True, "upsample_res": (1152, 1536), "sub": {"a": 1, "b": "x"},
           "free": {}, "maybe": None}


def test_smoke_defaults_are_copied_and_frozen():
    conf = merge_conf(DEFAULT)
    assert conf["num_samples"] == 5000 and conf.num_samples == 5000
    assert conf.upsample_res == (1152, 1536)
    assert isinstance(conf.sub, Conf) and conf.sub.a == 1
    with pytest.raises(TypeError):
        conf.num_samples = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        conf["num_samples"] = 1  # type: ignore[index]


def test_feature_deep_merge_keeps_sibling_keys():
    conf = merge_conf(DEFAULT, {"sub": {"a": 2}, "num_samples": 100})
    assert to_plain(conf) == {**to_plain(DEFAULT), "num_samples": 100, "sub": {"a": 2, "b": "x"}}
    assert DEFAULT["sub"] == {"a": 1, "b": "x"}  # the default is never mutated


def test_exception_unknown_key_lists_known_keys():
    with pytest.raises(ConfError) as info:
        merge_conf(DEFAULT, {"num_sample": 8192}, owner="gim_dkm")
    message = str(info.value)
    assert "num_sample" in message and "gim_dkm" in message
    for key in DEFAULT:
        assert key in message
    assert isinstance(info.value, KeyError)


def test_exception_unknown_nested_key_names_its_path():
    with pytest.raises(ConfError, match=r"'sub\.c'"):
        merge_conf(DEFAULT, {"sub": {"c": 3}})


@pytest.mark.parametrize(("key", "value"), [("upsample", 1), ("num_samples", "5000"), ("sub", {"b": 3})])
def test_exception_wrong_type(key, value):
    with pytest.raises(ConfError):
        merge_conf(DEFAULT, {key: value})


def test_feature_free_form_and_none_defaults_accept_anything():
    conf = merge_conf(DEFAULT, {"free": {"anything": [1, 2]}, "maybe": "set"})
    assert conf.free.anything == (1, 2)
    assert conf.maybe == "set"


def test_feature_int_accepted_for_float_and_equality_and_pickle():
    conf = merge_conf({"thr": 0.5}, {"thr": 1})
    assert conf.thr == 1
    assert conf == {"thr": 1}
    assert pickle.loads(pickle.dumps(conf)) == conf
    assert hash(conf) == hash(merge_conf({"thr": 0.5}, {"thr": 1}))


def test_exception_attribute_error_names_known_options():
    with pytest.raises(AttributeError, match="known: thr"):
        merge_conf({"thr": 0.5}).nope
