"""Pair generation and image listing."""

from __future__ import annotations

import pytest

from gim_plugins.reconstruct.pairs import list_images, make_pairs

NAMES = ["a.png", "b.png", "c.png", "d.png"]


def test_cardinality_pairs() -> None:
    assert len(make_pairs(NAMES, "exhaustive")) == 6
    assert make_pairs(NAMES, "sequential:1") == [("a.png", "b.png"), ("b.png", "c.png"), ("c.png", "d.png")]
    assert len(make_pairs(NAMES, "sequential:2")) == 5
    assert len(make_pairs(NAMES, "sequential:10")) == 6


def test_feature_pair_file(tmp_path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("a.png b.png\nb.png a.png\n# comment\n\nc.png d.png\n")
    assert make_pairs(NAMES, path) == [("a.png", "b.png"), ("c.png", "d.png")]  # (b, a) is the same pair


def test_exception_bad_pairs(tmp_path) -> None:
    with pytest.raises(ValueError, match="sequential:K"):
        make_pairs(NAMES, "sequential:x")
    with pytest.raises(ValueError, match=">= 1"):
        make_pairs(NAMES, "sequential:0")
    with pytest.raises(ValueError, match="existing pair file"):
        make_pairs(NAMES, "retrieval")
    with pytest.raises(ValueError, match="duplicate image names"):
        make_pairs(["a.png", "a.png"], "exhaustive")
    path = tmp_path / "pairs.txt"
    path.write_text("a.png a.png\n")
    with pytest.raises(ValueError, match="with itself"):
        make_pairs(NAMES, path)
    path.write_text("a.png z.png\n")
    with pytest.raises(KeyError, match=r"z\.png"):
        make_pairs(NAMES, path)


def test_feature_list_images(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "a.JPG", "sub/c.jpeg", "poses.json", ".hidden.png"):
        (tmp_path / name).write_bytes(b"")
    assert list_images(tmp_path) == ["a.JPG", "b.png", "sub/c.jpeg"]
    (tmp_path / "B.png").write_bytes(b"")
    with pytest.raises(ValueError, match="differ only in case"):
        list_images(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        list_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not found"):
        list_images(tmp_path / "missing")


def test_feature_pairs_step_writes_the_list(tmp_path) -> None:
    """The pairs step writes ``pairs.txt`` from the images and the ``pairs`` option, and rebuilds it on a rerun."""
    from gim_plugins.h5io import read_pairs
    from gim_plugins.reconstruct import pairs

    images = tmp_path / "images"
    images.mkdir()
    for name in NAMES:
        (images / name).write_bytes(b"")
    paths = {"images": images, "out": tmp_path / "out"}
    (tmp_path / "out").mkdir()
    written = pairs.main({"pairs": "sequential:1"}, paths)
    assert written == tmp_path / "out" / "pairs.txt"
    assert read_pairs(written) == make_pairs(NAMES, "sequential:1")
    assert read_pairs(pairs.main({"pairs": "exhaustive"}, paths)) == make_pairs(NAMES, "exhaustive")
    (images / "b.png").unlink()
    (images / "c.png").unlink()
    (images / "d.png").unlink()
    with pytest.raises(ValueError, match="no image pairs"):
        pairs.main({"pairs": "exhaustive"}, paths)
