"""``gim app``: registered through the entry points, safe defaults, one-line errors, a light import, clean deps."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution, entry_points, requires
from pathlib import Path

import pytest

from gim_plugins.cli import main

APP = Path(__file__).resolve().parents[2] / "gim_plugins" / "app"


def test_smoke_subcommand_is_an_entry_point(capsys):
    assert "gim_plugins.app.cli:register" in {ep.value for ep in entry_points(group="gim_plugins.cli")}
    with pytest.raises(SystemExit) as info:
        main(["app", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--host HOST" in out and "default 127.0.0.1" in out and "--share" in out


def test_exception_without_gradio_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now raises ImportError
    assert main(["app"]) == 2
    err = capsys.readouterr().err
    assert err == "gim: error: gim app needs Gradio, which is not installed: pip install 'gim-plugins[app]'\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["--port", "0"], "--port must be between 1 and 65535, got 0"),
    (["--max-models", "0"], "--max-models must be at least 1"),
    (["--max-pixels", "-5"], "--max-pixels must be positive"),
    (["--host", " "], "--host is empty"),
])
def test_exception_bad_options(argv, message, capsys):
    assert main(["app", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gim: error: {message}") and err.count("\n") == 1


def test_exception_port_in_use(capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["app", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gim: error: cannot listen on 127.0.0.1:{port} (") and "choose another port" in err
    assert err.count("\n") == 1


def test_feature_defaults_listen_on_loopback_without_share(monkeypatch):
    """What the command hands to Gradio's launch: loopback, no public link, a queue, no telemetry or SSR."""
    gr = pytest.importorskip("gradio", reason="gim app needs gradio: pip install 'gim-plugins[app]'")
    seen = {}

    def fake_launch(self, **kwargs):
        seen.update(kwargs, queue=self._queue.max_size, limit=self._queue.default_concurrency_limit,
                    run=[(f.concurrency_limit, f.concurrency_id) for f in self.fns.values() if f.name == "run"])

    monkeypatch.setattr(gr.Blocks, "launch", fake_launch)
    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)
    import socket

    with socket.socket() as probe:  # a port free now (7860 may be taken on a shared machine)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["app", "--matcher", "root_sift", "--port", str(port)]) == 0
    assert seen["server_name"] == "127.0.0.1" and seen["server_port"] == port
    assert seen["share"] is False and seen["ssr_mode"] is False and seen["mcp_server"] is False
    assert seen["queue"] == 16 and seen["limit"] == 1 and seen["run"] == [(1, "match")]
    assert seen["max_file_size"] == "200mb" and seen["show_error"] is True
    assert all(p.endswith(("motorcycle_left.png", "motorcycle_right.png")) for p in seen["allowed_paths"])
    import os

    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_exception_unknown_matcher(capsys):
    pytest.importorskip("gradio", reason="gim app needs gradio: pip install 'gim-plugins[app]'")
    assert main(["app", "--matcher", "no_such"]) == 2
    assert "unknown matcher 'no_such'; registered matchers:" in capsys.readouterr().err


def test_feature_registering_the_command_imports_nothing_heavy():
    """`gim` loads every subcommand's register() at each start: the app's must stay light."""
    code = ("import json, sys; import gim_plugins.app.cli, gim_plugins.app; "
            "print(json.dumps([m for m in ('gradio', 'torch', 'numpy', 'cv2', 'PIL') if m in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_feature_app_never_imports_the_cli_and_gradio_only_in_ui():
    for path in sorted(APP.glob("*.py")):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        assert not any(m == "gim_plugins.cli" or m.startswith("gim_plugins.cli.") for m in imported), path.name
        if path.name not in ("ui.py", "cli.py"):
            assert not any(m.split(".")[0] == "gradio" for m in imported), path.name


def test_feature_gradio_brings_no_second_opencv_nor_torch():
    """One OpenCV distribution (opencv-python) and the project's torch: Gradio must not add others."""
    try:
        reqs = requires("gradio") or []
    except PackageNotFoundError:
        pytest.skip("gradio is not installed: pip install 'gim-plugins[app]'")
    names = {r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].split("~")[0].strip().lower()
             for r in reqs if "extra ==" not in r}
    assert not names & {"torch", "torchvision", "opencv-python", "opencv-python-headless", "opencv-contrib-python"}
    installed = set()
    for name in ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"):
        try:
            distribution(name)
            installed.add(name)
        except PackageNotFoundError:
            pass
    assert installed == {"opencv-python"}
