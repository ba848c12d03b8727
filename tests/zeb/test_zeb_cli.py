"""``python -m gim_plugins.zeb`` / ``gim zeb``: subcommands, exit codes, errors."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from gim_plugins.zeb import cli

REPO = Path(__file__).resolve().parents[2]


def test_smoke_run_report_check(tiny_zeb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "dumps"
    assert cli.main(["run", "--matcher", "root_sift", "--data", str(tiny_zeb), "--out", str(out), "--max-pairs",
                     "2", "--no-progress"]) == 0
    assert "MiniHomography: 2/2 pairs; wrote" in capsys.readouterr().out
    assert cli.main(["report", str(out), "--format", "json", "--output", str(tmp_path / "r.json")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["root_sift vanilla"]["subsets"]["MiniHomography"]["pairs"] == 2
    assert json.loads((tmp_path / "r.json").read_text()) == data
    assert cli.main(["check", str(out)]) == 0
    assert "only one dump, nothing to compare" in capsys.readouterr().out
    assert cli.main(["merge", str(out)]) == 0


def test_exception_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["run", "--matcher", "root_sift", "--data", str(tmp_path / "missing"), "--out",
                     str(tmp_path)]) == 2
    assert "zeb: error: ZEB directory not found" in capsys.readouterr().err
    assert cli.main(["run", "--matcher", "no_such_matcher", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "zeb: error:" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "no ZEB dump files" in capsys.readouterr().err
    assert cli.main(["run", "--matcher", "root_sift", "--data", str(tmp_path), "--out", str(tmp_path), "--shard",
                     "2/2"]) == 2
    assert "0 <= i < n" in capsys.readouterr().err
    assert cli.main(["run", "--matcher", "root_sift", "--data", str(tmp_path), "--out", str(tmp_path), "--conf",
                     "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_feature_gim_subcommand_registration():
    parser = argparse.ArgumentParser(prog="gim")
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    args = parser.parse_args(["zeb", "report", "dumps", "--format", "csv"])
    assert args.format == "csv" and args.dump_dir == Path("dumps") and callable(args.handler)
    tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11
    with open(REPO / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)["project"]
    assert project["entry-points"]["gim_plugins.cli"]["zeb"] == "gim_plugins.zeb.cli:register"


def test_smoke_module_entry_point():
    import subprocess

    done = subprocess.run([sys.executable, "-m", "gim_plugins.zeb", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "run" in done.stdout and "mini" in done.stdout
