"""The propagate step on label folders written from a synthetic video with exact tracks: outputs in GIM's layout,
accuracy against the truth, any subset of labellers/skips/zooms, resume, shards, a killed run, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from propagation_world import SPARSE, Labeller, World, true_error, write_label_folders

from gim_plugins.conf import ConfError
from gim_plugins.errors import UserError
from gim_plugins.training.video import propagate
from gim_plugins.training.video.layout import Layout, VideoPaths, ppid, read_json

TWO = (Labeller("SIFT", SPARSE, 0.6, 0.12, 0.02), Labeller("ALIKED_LIGHTGLUE", SPARSE, 0.5, 0.15, 0.02))
QUIET = {"progress": False}


def _outputs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.load(p) for p in sorted(folder.glob("*.npy"))}


@pytest.fixture(scope="module")
def world() -> World:
    return World(num_frames=200, seed=1)


@pytest.fixture(scope="module")
def labels(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Label folders of two labellers, zoom F only, skips 10/20/40 (read-only: tests copy them)."""
    root = tmp_path_factory.mktemp("labels")
    write_label_folders(root, "clip", world, TWO, zooms=(False,))
    return root


def _copy(labels: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(labels / "pseudo", tmp_path / "pseudo")
    return tmp_path


@pytest.fixture(scope="module")
def reference(labels: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """One uninterrupted run on a copy of ``labels``."""
    root = _copy(labels, tmp_path_factory.mktemp("reference"))
    propagate.main(QUIET, VideoPaths(root))
    return _outputs(Layout(root).propagate_dir(ppid(["SIFT", "ALIKED_LIGHTGLUE"], [10, 20, 40], [False]), "clip"))


def test_smoke_outputs_in_gims_layout_and_true(world: World, reference: dict[str, np.ndarray]) -> None:
    assert len(reference) >= 8
    for name, array in reference.items():
        i0, i1 = map(int, name[:-4].split("_"))
        assert array.dtype == np.float32 and array.ndim == 2 and array.shape[1] == 4
        a, b = int(array[0, 0]), int(array[0, 1])
        assert array[0].tolist() == [a, b, a, b] and a == i0 and i0 < b <= i1
        assert b - a > 10 and len(array) - 1 >= 64
        error = true_error(world, array[1:], (a, b))
        assert np.mean(error < 2.0) > 0.97, name


def test_feature_summary_counts(labels: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(labels, tmp_path)
    propagate.main({}, VideoPaths(root, ("clip",)))
    said = capsys.readouterr().err
    assert "clip: 2 labeller(s) SIFT ALIKED_LIGHTGLUE × zoom F × skips 10 20 40 = 6 label folders" in said
    assert "pairs/s" in said and "chained frames/s" in said
    pid = "SIFT ALIKED_LIGHTGLUE 10 20 40 F FM 32 PM 512"
    entry = read_json(Layout(root).summary("clip", "propagate"))[pid]
    files = _outputs(Layout(root).propagate_dir(pid, "clip"))
    bad = propagate.read_bad_pairs(Layout(root).bad_pairs(pid, "clip"))
    assert entry["kept"] == len(files) and entry["bad"] == len(bad) and entry["pending"] == 0
    assert entry["targets"] == len(files) + len(bad) and entry["start_frames"] >= entry["targets"]
    assert entry["labels_total"] == sum(len(a) - 1 for a in files.values())
    assert entry["chain_frames"]["max"] == max(a[0, 1] - a[0, 0] for a in files.values())
    assert entry["variants"][0] == "WALK SIFT [R] F [S] 10" and len(entry["variants"]) == 6
    assert entry["conf"]["missing_hop"] == "skip" and entry["last_run"]["pairs"] == entry["targets"]


@pytest.mark.parametrize(("select", "expected"), [
    ({"methods": ["SIFT"]}, "SIFT 10 20 40 F FM 32 PM 512"),
    ({"skips": [20]}, "SIFT ALIKED_LIGHTGLUE 20 F FM 32 PM 512"),
    ({"skips": [10, 40], "methods": ["ALIKED_LIGHTGLUE"]}, "ALIKED_LIGHTGLUE 10 40 F FM 32 PM 512"),
    ({"zooms": ["F"], "methods": "SIFT"}, "SIFT 10 20 40 F FM 32 PM 512"),
])
def test_feature_any_subset(labels: Path, tmp_path: Path, world: World, select: dict, expected: str) -> None:
    root = _copy(labels, tmp_path)
    propagate.main({**QUIET, **select}, VideoPaths(root))
    entry = read_json(Layout(root).summary("clip", "propagate"))[expected]
    files = _outputs(Layout(root).propagate_dir(expected, "clip"))
    assert entry["kept"] == len(files) > 0
    largest = max(select.get("skips", [40]))
    for array in files.values():
        a, b = int(array[0, 0]), int(array[0, 1])
        assert b - a > min(select.get("skips", [10])) and (b - a) % 10 == 0
        assert np.mean(true_error(world, array[1:], (a, b)) < 2.0) > 0.97
    assert entry["skips"][-1] == largest


def test_feature_folders_present_decide_the_variants(world: World, tmp_path: Path) -> None:
    """Only a zoomed variant at two skips, no 24-folder rule."""
    write_label_folders(tmp_path, "z", world, TWO[:1], zooms=(True,), skips=(20, 40))
    propagate.main(QUIET, VideoPaths(tmp_path))
    entry = read_json(Layout(tmp_path).summary("z", "propagate"))["SIFT 20 40 T FM 32 PM 512"]
    assert entry["kept"] > 0 and entry["zooms"] == ["T"]


def test_feature_resume_recomputes_only_what_is_missing(labels: Path, tmp_path: Path,
                                                        reference: dict[str, np.ndarray]) -> None:
    root = _copy(labels, tmp_path)
    propagate.main(QUIET, VideoPaths(root))
    out = next((root / "propagate").iterdir()) / "clip"
    victim = sorted(out.glob("*.npy"))[2]
    victim.unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    bad_before = (out / "bad_pairs.txt").read_text() if (out / "bad_pairs.txt").exists() else ""
    propagate.main(QUIET, VideoPaths(root))
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy") if p.name != victim.name} == stamps
    assert (out / "bad_pairs.txt").read_text() == bad_before if bad_before else True
    result = _outputs(out)
    assert sorted(result) == sorted(reference)
    assert all(np.array_equal(result[n], reference[n]) for n in reference)


def test_feature_shards_add_up_to_one_run(labels: Path, tmp_path: Path, reference: dict[str, np.ndarray]) -> None:
    root = _copy(labels, tmp_path)
    propagate.main({**QUIET, "shard": (0, 2)}, VideoPaths(root))
    out = next((root / "propagate").iterdir()) / "clip"
    first = _outputs(out)
    assert 0 < len(first) < len(reference)
    entry = read_json(Layout(root).summary("clip", "propagate"))[out.parent.name]
    assert entry["pending"] > 0 and entry["shard"] == [0, 2]
    propagate.main({**QUIET, "shard": "1/2"}, VideoPaths(root))
    result = _outputs(out)
    assert sorted(result) == sorted(reference)
    assert all(np.array_equal(result[n], reference[n]) for n in reference)
    assert read_json(Layout(root).summary("clip", "propagate"))[out.parent.name]["pending"] == 0


def test_feature_killed_run_completes_identically(labels: Path, tmp_path: Path,
                                                  reference: dict[str, np.ndarray]) -> None:
    """SIGKILL after the fourth target (a hard stop between two files), then an ordinary rerun."""
    root = _copy(labels, tmp_path)
    script = textwrap.dedent(f"""
        import os, signal
        from gim_plugins.training.video import chain, propagate
        from gim_plugins.training.video.layout import VideoPaths
        original, calls = chain.propagate_pair, []
        def dying(*args, **kwargs):
            calls.append(1)
            if len(calls) == 5:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)
        chain.propagate_pair = dying
        propagate.main({{"progress": False}}, VideoPaths({str(root)!r}))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == -9, run.stderr
    out = next((root / "propagate").iterdir()) / "clip"
    assert 0 < len(list(out.glob("*.npy"))) + len(propagate.read_bad_pairs(out / "bad_pairs.txt")) == 4
    propagate.main(QUIET, VideoPaths(root))
    result = _outputs(out)
    assert sorted(result) == sorted(reference)
    assert all(np.array_equal(result[n], reference[n]) for n in reference)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_feature_bad_pairs_survive_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "bad_pairs.txt"
    path.write_text("10 50\n20 6")  # a kill in the middle of a line
    propagate._append_bad_pair(path, (30, 70))
    assert path.read_text() == "10 50\n20 6\n30 70\n"
    assert propagate.read_bad_pairs(path) == {(10, 50), (20, 6), (30, 70)}


def test_feature_no_start_frame_is_reported(world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_label_folders(tmp_path, "few", world, (Labeller("SIFT", SPARSE, 0.008, 0.1, 0.0),), zooms=(False,))
    propagate.main({}, VideoPaths(tmp_path))
    assert "no start frame has more than 32 labels at skip 40" in capsys.readouterr().err
    entry = read_json(Layout(tmp_path).summary("few", "propagate"))["SIFT 10 20 40 F FM 32 PM 512"]
    assert entry["targets"] == 0 and entry["kept"] == 0


def test_exception_bad_input(labels: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no label folders"):
        propagate.main(QUIET, VideoPaths(tmp_path))
    with pytest.raises(UserError, match="no label folders"):
        propagate.main(QUIET, VideoPaths(labels, ("other",)))
    with pytest.raises(UserError, match=r"methods \['GIM_DKM'\]"):
        propagate.main({**QUIET, "methods": ["GIM_DKM"]}, VideoPaths(labels))
    with pytest.raises(UserError, match="zooms"):
        propagate.main({**QUIET, "zooms": ["T"]}, VideoPaths(labels))
    with pytest.raises(UserError, match="zooms takes T/F"):
        propagate.main({**QUIET, "zooms": ["X"]}, VideoPaths(labels))
    with pytest.raises(UserError, match="shard"):
        propagate.main({**QUIET, "shard": (2, 2)}, VideoPaths(labels))
    with pytest.raises(UserError, match="missing_hop"):
        propagate.main({**QUIET, "missing_hop": "maybe"}, VideoPaths(labels))
    with pytest.raises(ConfError, match="unknown option 'min_matches'"):
        propagate.main({"min_matches": 3}, VideoPaths(labels))
    assert not (labels / "propagate").exists() and not (labels / "state").exists()


def test_exception_mixed_frame_widths_and_changed_options(labels: Path, tmp_path: Path, world: World) -> None:
    root = _copy(labels, tmp_path)
    propagate.main(QUIET, VideoPaths(root))
    with pytest.raises(UserError, match="other options"):
        propagate.main({**QUIET, "missing_hop": "stop"}, VideoPaths(root))
    other = World(num_frames=60, width=320, height=240)
    write_label_folders(root, "clip", other, (Labeller("GIM_DKM"),), zooms=(False,), skips=(10,))
    with pytest.raises(UserError, match="different frame widths"):
        propagate.main(QUIET, VideoPaths(root))
    write_label_folders(root, "clip", other, (Labeller("SIFT"),), zooms=(False,), skips=(10,))
    with pytest.raises(UserError, match="two video folders in 'WALK SIFT"):
        propagate.main(QUIET, VideoPaths(root))


def test_feature_cli_conf_spelling(labels: Path, tmp_path: Path) -> None:
    """What ``gim video propagate`` passes: a mapping for paths and KEY=VALUE options parsed by parse_conf."""
    from gim_plugins.conf import parse_conf

    root = _copy(labels, tmp_path)
    conf = parse_conf(["skips=[20, 40]", "methods=['SIFT']", "progress=false", "shard='0/1'"])
    result = propagate.main(conf, {"root": str(root), "videos": ["clip"]})
    assert result == root / "propagate"
    assert (result / "SIFT 20 40 F FM 32 PM 512" / "clip").is_dir()
    assert os.environ.get("WORLD_SIZE", "1") == "1"
