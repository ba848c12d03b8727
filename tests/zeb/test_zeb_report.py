"""Dump files, the report and the identifier check — including the exactness test against GIM's committed dumps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gim_plugins.zeb.dumps import (
    HEADER,
    DumpRow,
    dump_file_name,
    finalise_rows,
    find_dumps,
    parse_dump_name,
    read_dump,
    write_dump,
)
from gim_plugins.zeb.report import MethodResult, check, collect, format_report, plot

# AUC@5 (%) per subset of GIM's committed dumps, computed once with GIM's analysis.py formula (README column order);
# docs/zeb.md ("Exactness") lists the same numbers
REFERENCE_AUC5 = {
    "gim_dkm 100h": [63.5, 53.1, 74.0, 76.6, 43.1, 34.8, 52.4, 24.0, 56.4, 32.2, 42.7, 61.7],
    "root_sift vanilla": [43.5, 33.6, 49.9, 48.7, 35.2, 22.3, 44.4, 14.2, 33.4, 7.6, 14.8, 35.1],
}
REFERENCE_MEAN = {"gim_dkm 100h": (51.2, 58.7, 64.0), "root_sift vanilla": (31.9, 38.1, 43.2)}
README_ORDER = ["GL3D", "BlendedMVS", "ETH3DI", "ETH3DO", "KITTI", "RobotcarWeather", "RobotcarSeason",
                "RobotcarNight", "Multi-FoV", "SceneNetRGBD", "ICL-NUIM", "GTA-SfM"]


@pytest.fixture(scope="module")
def gim_dumps(shared_reference: Path) -> Path:
    path = shared_reference / "zeb_dumps"
    if not path.is_dir():
        pytest.skip("zeb_dumps not in the shared reference")
    return path


@pytest.fixture(scope="module")
def gim_results(gim_dumps: Path):
    return {r.name: r for r in collect(gim_dumps)}


def test_feature_reproduces_gim_auc5_per_subset(gim_results):
    assert set(gim_results) == set(REFERENCE_AUC5)
    for method, expected in REFERENCE_AUC5.items():
        result = gim_results[method]
        assert list(result.subsets) == README_ORDER
        got = [100 * result.subsets[s].auc[5.0] for s in README_ORDER]
        np.testing.assert_allclose(got, expected, atol=0.05 + 1e-9, err_msg=method)
        means = [round(100 * result.mean(t), 1) for t in (5.0, 10.0, 20.0)]
        assert tuple(means) == REFERENCE_MEAN[method]
        assert sum(s.pairs for s in result.subsets.values()) == 45916


def test_feature_gim_dump_rows_round_trip_byte_exact(gim_dumps: Path):
    path = next(p for p in gim_dumps.iterdir() if "KITTI" in p.name and "root_sift" in p.name)
    lines = path.read_text().splitlines()
    rows = read_dump(path)
    assert [row.line() for row in rows] == lines[1:]
    assert lines[0] == HEADER
    failures = [row for row in rows if not np.isfinite(row.R_err)]
    assert len(failures) == 22 and all(r.aft_num == 0 and r.aft_prec == 0.0 for r in failures)


def test_feature_check_compares_every_subset(gim_dumps: Path, tmp_path: Path):
    results = check(gim_dumps)
    assert [r.scene for r in results] == README_ORDER
    assert all(r.status == "same" and len(r.files) == 2 for r in results)
    # drop one row of one file: that subset (and only it) is reported, with the identifier
    for path in gim_dumps.iterdir():
        if "ICL-NUIM" in path.name or "GL3D" in path.name:
            shutil.copy(path, tmp_path / path.name)
    victim = next(p for p in tmp_path.iterdir() if "root_sift" in p.name and "ICL-NUIM" in p.name)
    lines = victim.read_text().splitlines(keepends=True)
    victim.write_text("".join(lines[:5] + lines[6:]))
    results = {r.scene: r for r in check(tmp_path)}
    assert results["GL3D"].status == "same"
    assert results["ICL-NUIM"].status == "different"
    assert lines[5].split()[0] in results["ICL-NUIM"].problems[0]


def test_cardinality_report_formats(gim_results, tmp_path: Path):
    results = list(gim_results.values())
    md = format_report(results, "md")
    row = "| gim_dkm 100h | 51.2 | 63.5 | 53.1 | 74.0 | 76.6 | 43.1 | 34.8 | 52.4 | 24.0 | 56.4 | 32.2 | 42.7 | 61.7 |"
    assert row in md
    assert "| root_sift vanilla | 45916 | 735 | — | — | — | — |" in md
    rows = format_report(results, "csv").splitlines()
    assert rows[0].startswith("method,subset,pairs,failures,auc@5,auc@10,auc@20")
    assert len(rows) == 1 + 2 * 13
    data = json.loads(format_report(results, "json"))
    assert data["root_sift vanilla"]["subsets"]["KITTI"]["failures"] == 22
    assert round(100 * data["gim_dkm 100h"]["mean"]["auc@20"], 1) == 64.0
    with pytest.raises(ValueError, match="unknown report format"):
        format_report(results, "xlsx")
    small = [MethodResult(r.weight, r.version, {k: r.subsets[k] for k in ("GL3D", "KITTI")}) for r in results]
    written = plot(small, tmp_path / "plots")
    assert [p.name for p in written] == ["auc_curves.png", "error_cdf.png"]
    assert all(p.stat().st_size > 10_000 for p in written)


def _row(identifier: str, err: float) -> DumpRow:
    return DumpRow(identifier, 0.5, 0.5, err, err / 2, 0.1, 1.0, 10, 1.0, 8)


def test_feature_dump_names_dedup_and_order(tmp_path: Path):
    name = dump_file_name("gim_dkm", "GL3D", "100h")
    assert name == "[T] gim_dkm            GL3D 100h.txt"
    assert dump_file_name("root_sift", "RobotcarWeather", "vanilla") == "[T] root_sift RobotcarWeather vanilla.txt"
    parsed = parse_dump_name(name)
    assert parsed is not None and (parsed.weight, parsed.scene, parsed.version) == ("gim_dkm", "GL3D", "100h")
    assert parse_dump_name("notes.txt") is None and parse_dump_name("[T] a b.txt") is None
    with pytest.raises(ValueError, match="whitespace"):
        dump_file_name("my matcher", "GL3D", "v1")
    rows = finalise_rows([_row("s#b#c", 1.0), _row("s#a#b", 2.0), _row("s#b#c", 99.0)])
    assert [(r.identifier, r.R_err) for r in rows] == [("s#a#b", 2.0), ("s#b#c", 1.0)]  # first occurrence kept
    path = write_dump(tmp_path / name, rows)
    assert read_dump(path) == rows and find_dumps(tmp_path) == {path: parsed}
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    (tmp_path / "[T] x GL3D v.txt").write_text("not a dump\n")
    with pytest.raises(ValueError, match="not a ZEB dump"):
        collect(tmp_path)
    with pytest.raises(FileNotFoundError, match="no ZEB dump files of nope"):
        collect(tmp_path, ["nope"])


def test_feature_inf_and_failure_rows():
    row = DumpRow.parse("sc#a#b 0.25 0.25 inf inf inf 0.0 0 0.0 0")
    assert np.isinf(row.R_err) and row.bef_num == 0
    assert row.line() == "sc#a#b 0.25 0.25 inf inf inf 0.0 0 0.0 0"
    with pytest.raises(ValueError, match="10 columns"):
        DumpRow.parse("sc#a#b 0.25")
