"""GIM's ZeroMatch names: label and video folders, pair files, propagation ids, records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gim_plugins.training.video.layout import (
    LabelFolder,
    Layout,
    VideoFolder,
    method_name,
    pair_file_name,
    parse_pair_file_name,
    ppid,
    read_record,
    write_record,
)


def test_feature_names_are_gims() -> None:
    assert LabelFolder("GIM_DKM", False, 10).name == "WALK GIM_DKM [R] F [S] 10"
    assert LabelFolder("SIFT", True, 80).name == "WALK SIFT [R] T [S] 80"
    assert LabelFolder("SIFT", True, 5).name == "WALK SIFT [R] T [S]  5"  # GIM's '{:2}'
    video = VideoFolder("Od-rKbC30TM", 1920, 1080, 300, 1020, 20)
    assert video.name == "Od-rKbC30TM WH 1920 1080 RG  300 1020 SP 20 11"
    name = video.name
    assert name[: int(name.split()[-1])] == "Od-rKbC30TM"  # how GIM's readers cut the id out
    assert int(name.rpartition("SP")[-1].strip().rpartition(" ")[0]) == 20  # GIM's parse_skip
    assert ppid(["SIFT", "GIM_DKM", "GIM_GLUE", "GIM_LOFTR"], [40, 10, 20], [True, False]) == (
        "SIFT GIM_LOFTR GIM_GLUE GIM_DKM 10 20 40 F T FM 32 PM 512")
    assert [method_name(n) for n in ("gim_dkm", "gim_loftr", "gim_lightglue", "root_sift", "aliked_lightglue")] == [
        "GIM_DKM", "GIM_LOFTR", "GIM_GLUE", "SIFT", "ALIKED_LIGHTGLUE"]


@pytest.mark.parametrize("pair", [(0, 10), (5, 100), (99990, 100010), (7, 7), (123456789, 123456799)])
def test_feature_pair_file_is_numpy_str(pair: tuple[int, int]) -> None:
    assert pair_file_name(*pair) == f"{np.array(pair)}.npy"
    assert parse_pair_file_name(pair_file_name(*pair)) == pair


def test_feature_round_trips() -> None:
    for folder in (LabelFolder("ALIKED_LIGHTGLUE", True, 40), LabelFolder("SIFT", False, 120)):
        assert LabelFolder.parse(folder.name) == folder
    odd = VideoFolder("my clip SP 2 WH", 640, 272, 0, 9, 10)  # spaces and layout words inside the id
    assert VideoFolder.parse(odd.name) == odd
    assert LabelFolder.parse("WALK SIFT F 10") is None and VideoFolder.parse("bikes") is None
    assert parse_pair_file_name("nums.npy") is None


def test_feature_label_dirs_found_by_video(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    wanted = []
    for method, zoom, skip in (("SIFT", False, 10), ("SIFT", True, 10), ("GIM_DKM", False, 20)):
        folder = LabelFolder(method, zoom, skip)
        for vid in ("a", "ab"):
            path = layout.label_dir(folder, VideoFolder(vid, 64, 48, 0, 1, skip))
            path.mkdir(parents=True)
            if vid == "a":
                wanted.append((folder, path))
    (tmp_path / "pseudo" / "unrelated").mkdir()
    found = layout.label_dirs("a")
    assert sorted((f, p) for f, _, p in found) == sorted(wanted)


def test_exception_record_lengths_must_agree(tmp_path: Path) -> None:
    write_record(tmp_path, [3, 4], [[0, 10], [10, 20]])
    nums, idxs = read_record(tmp_path)
    assert nums.dtype == np.int64 and idxs.shape == (2, 2) and nums.tolist() == [3, 4]
    np.save(tmp_path / "nums.npy", np.array([3]))
    with pytest.raises(ValueError, match="delete both"):
        read_record(tmp_path)
