"""The ZEB reader on a fixture in the exact official layout (generated here): separators, extensions, identifiers,
GIM's order, and the per-subset image handling."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gim_plugins.zeb.dataset import (
    OFFICIAL_SUBSETS,
    find_subsets,
    get_subset,
    image_index,
    load_pairs,
    read_pair_file,
    resolve_image,
)
from gim_plugins.zeb.protocols import gim
from gim_plugins.zeb.protocols.gim import load_image, prepare_image

K = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
T = [1.0, 0.0, 0.0, 0.1, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def _line(name0: str, name1: str, covis: str = "0.3671084940433502") -> str:
    return " ".join([name0, name1, covis, covis, *map(str, K), *map(str, K), *map(str, T)])


def _image(path: Path, width: int, height: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)


# (folder, pair file stem, first-line names, image stems written, image extension)
LAYOUT = {
    "gl3d": [("000000000000000000000000_00000006_00000008", "00000006.png", "00000008.png", ".png")],
    "kitti": [("2011_09_30_drive_0018_sync-000005-000006", "000005.png", "000006.png", ".jpg")],
    "multifov": [("urban-img0001_0-img0022_0", "img0001_0", "img0022_0", ".png")],
    "robotcarnight": [("2014-11-14-16-34-33_1415984956291375_1415984959478441", "1415984956291375",
                       "1415984959478441", ".JPG")],
    "scenenet": [("10-1025-7125", "1025", "7125", ".png"), ("10-1025-1100", "1025", "1100", ".png")],
    "eth3di": [("delivery_area-DSC_0675-DSC_0676", "DSC_0675.JPG", "DSC_0676.JPG", ".png")],
}


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("zeb")
    for folder, entries in LAYOUT.items():
        subset = get_subset(folder)
        directory = root / folder
        directory.mkdir()
        for stem, name0, name1, ext in entries:
            (directory / f"{stem}.txt").write_text(_line(name0, name1) + "\n" + "ignored second line\n")
            scene = stem.split(subset.sep)[0]
            for name in (name0, name1):
                bare = name.rpartition(".")[0] if subset.strip_extension else name
                size = (1241, 376) if folder == "kitti" else ((450, 300) if folder == "eth3di" else (100, 75))
                _image(directory / f"{scene}{subset.sep}{bare}{ext}", *size)
    return root


def test_smoke_identifiers_of_every_layout(official: Path):
    expected = {
        "gl3d": ["000000000000000000000000#00000006#00000008"],
        "kitti": ["2011_09_30_drive_0018_sync#000005.png#000006.png"],
        "multifov": ["urban#img/img0001_0.png#img/img0022_0.png"],
        "robotcarnight": ["2014-11-14-16-34-33#1415984956291375#1415984959478441"],
        "scenenet": ["10#1025.jpg#1100.jpg", "10#1025.jpg#7125.jpg"],  # GIM's order: sorted tokens
        "eth3di": ["delivery_area#DSC_0675.JPG#DSC_0676.JPG"],
    }
    found = find_subsets(official)
    assert [s.folder for s in found] == ["gl3d", "eth3di", "kitti", "robotcarnight", "multifov", "scenenet"]
    for subset in found:
        pairs = load_pairs(official, subset)
        assert [p.identifier for p in pairs] == expected[subset.folder]
        index = image_index(official / subset.folder)
        for pair in pairs:
            for i in (0, 1):  # the images resolve, whatever their extension
                assert resolve_image(index, official / subset.folder, pair.image_stem(i)).is_file()


def test_cardinality_pair_parsing(official: Path):
    pair = read_pair_file(official / "kitti" / "2011_09_30_drive_0018_sync-000005-000006.txt", get_subset("KITTI"))
    assert pair.scene == "2011_09_30_drive_0018_sync" and (pair.name0, pair.name1) == ("000005", "000006")
    assert pair.K0.dtype == np.float32 and pair.K0.shape == (3, 3) and pair.K0[0, 2] == 320.0
    assert pair.T_0to1.dtype == np.float32 and pair.T_0to1[0, 3] == np.float32(0.1)
    assert repr(pair.covisible0) == "0.3671084940433502"


def test_exception_bad_pair_files(tmp_path: Path):
    subset = get_subset("GTASfM")
    bad = tmp_path / "scene-a-b.txt"
    bad.write_text("a b 0.5 0.5 1 2 3\n")
    with pytest.raises(ValueError, match="38"):
        read_pair_file(bad, subset)
    bad.write_text(_line("a", "b").replace("0.3671084940433502", "x", 1) + "\n")
    with pytest.raises(ValueError, match="non-numeric"):
        read_pair_file(bad, subset)
    # glue-factory's 3×4 T_0to1 (34 tokens) is accepted and completed
    short = " ".join(_line("a", "b").split()[:34])
    bad.write_text(short + "\n")
    assert read_pair_file(bad, subset).T_0to1[3].tolist() == [0.0, 0.0, 0.0, 1.0]
    with pytest.raises(FileNotFoundError, match="gtasfm"):
        load_pairs(tmp_path, subset)
    (tmp_path / "gtasfm").mkdir()
    with pytest.raises(FileNotFoundError, match="no pair files"):
        load_pairs(tmp_path, subset)
    with pytest.raises(FileNotFoundError, match="none of the ZEB subset folders"):
        find_subsets(tmp_path / "gtasfm")
    with pytest.raises(KeyError, match="unknown ZEB subset"):
        get_subset("megadepth")
    with pytest.raises(FileNotFoundError, match=r"x-y\.png"):
        resolve_image({}, tmp_path, "x-y")


def test_feature_image_handling(official: Path):
    # native subsets: floor to multiples of 8, scale = original / new (float32)
    img = load_image(official / "multifov" / "urban-img0001_0.png", get_subset("MultiFoV"))
    assert img.canvas_size == (72, 96) and img.original_size == (75, 100)
    np.testing.assert_array_equal(img.scale, np.array([100 / 96, 75 / 72], dtype=np.float32))
    # KITTI: resize long side 1241 → 1240 (no ÷8 flooring), pad bottom-right to 384×1240
    kitti = load_image(official / "kitti" / "2011_09_30_drive_0018_sync-000005.jpg", get_subset("KITTI"))
    assert kitti.resized_size == (376, 1240) and kitti.canvas_size == (384, 1240)
    assert not kitti.image[376:].any()
    # ETH3D: smaller than 1600 → not resized, padded to 1072×1600
    eth = load_image(official / "eth3di" / "delivery_area-DSC_0675.png", get_subset("ETH3DI"))
    assert eth.resized_size == (300, 450) and eth.canvas_size == (1072, 1600)
    assert eth.scale.tolist() == [1.0, 1.0] and not eth.image[300:].any() and not eth.image[:, 450:].any()
    assert get_subset("ETH3DO").canvas_size == (1072, 1600) and get_subset("KITTI").canvas_size == (384, 1240)


def test_feature_resizing_matches_gim_arithmetic():
    eth = get_subset("ETH3DO")
    big = np.zeros((4032, 6048, 3), np.uint8)
    out = prepare_image(big, eth)
    assert out.resized_size == (1067, 1600)  # round(4032 · 1600 / 6048) = round(1066.67)
    with pytest.raises(ValueError, match="does not fit"):
        prepare_image(np.zeros((1200, 1600, 3), np.uint8), eth)  # a 4:3 image cannot fit GIM's 3:2 canvas
    tiny = prepare_image(np.zeros((5, 7, 3), np.uint8), get_subset("GL3D"))
    assert tiny.canvas_size == (8, 8)  # max(w // 8, 1) · 8


def test_cardinality_subset_table():
    assert len(OFFICIAL_SUBSETS) == 12
    assert [s.abbr for s in OFFICIAL_SUBSETS] == ["GL3", "BLE", "ETI", "ETO", "KIT", "WEA", "SEA", "NIG", "MUL",
                                                  "SCE", "ICL", "GTA"]
    assert {s.folder for s in OFFICIAL_SUBSETS} == {"gl3d", "blendedmvs", "eth3di", "eth3do", "kitti",
                                                    "robotcarweather", "robotcarseason", "robotcarnight",
                                                    "multifov", "scenenet", "iclnuim", "gtasfm"}
    assert get_subset("Multi-FoV") is get_subset("multifov") is get_subset("MUL")
    assert gim.select_pairs([1, 2, 3], 2) == [1, 2]
    with pytest.raises(ValueError):
        gim.select_pairs([1], 0)
