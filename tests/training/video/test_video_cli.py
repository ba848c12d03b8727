"""``gim video``: the subcommand is registered, options reach the right step, user errors are one line + exit 2."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from gim_plugins.conf import ConfError
from gim_plugins.training.video import cli


def gim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gim_plugins", *args], capture_output=True, text=True, timeout=300)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(["video", *argv])


def test_feature_options_reach_their_steps() -> None:
    args = parse("run", "a.mp4", "--out", "o", "--preset", "gim", "--range", "10:20", "--labellers", "root_sift,x",
                 "--shard", "1/3", "-c", "label.zoom_size=(800, 600)", "-c", "progress=false", "-c", "skips=[10]")
    confs = cli.build_confs(args, ("decode", "label"))
    assert confs["decode"] == {"range": "10:20", "shard": (1, 3), "progress": False, "skips": [10]}
    assert confs["label"] == {"static_filter": True, "zoom": True, "shard": (1, 3), "labellers": ["root_sift", "x"],
                              "zoom_size": (800, 600), "progress": False, "skips": [10]}
    preset_only = cli.build_confs(parse("decode", "a.mp4", "--out", "o", "--preset", "gim"), ("decode",))
    assert preset_only == {"decode": {"range": "300:-300"}}  # GIM's trim is a preset, not a rule
    with pytest.raises(ConfError, match="no step of this command has the option 'zoom'"):
        cli.build_confs(parse("decode", "a.mp4", "--out", "o", "-c", "zoom=true"), ("decode",))
    with pytest.raises(ValueError, match="--shard expects i/n"):
        cli.build_confs(parse("label", "--out", "o", "--shard", "3/3"), ("label",))


def test_exception_user_errors_are_one_line(tmp_path: Path) -> None:
    missing = gim("video", "decode", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "video or list not found" in missing.stderr and "Traceback" not in missing.stderr
    undecoded = gim("video", "label", "--out", str(tmp_path / "o"), "--videos", "clip")
    assert undecoded.returncode == 2 and "not decoded yet" in undecoded.stderr
    listing = gim("video", "samples", "list")
    assert listing.returncode == 0 and "bikes" in listing.stdout and "carphone" in listing.stdout
