from __future__ import annotations

import os
import stat

import pytest

from gim_plugins.atomic import atomic_path, atomic_write_bytes, atomic_write_text


def test_feature_replaces_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    assert atomic_write_text(target, "first") == target
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["out.txt"]


def test_exception_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_exception_writer_that_writes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "never.txt"):
        pass
    assert os.listdir(tmp_path) == []


def test_feature_files_follow_the_umask_not_private_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_feature_deferred_interrupts_hold_a_signal_until_the_block_ends() -> None:
    """A SIGTERM inside the block does not cut it; the handler in force before runs once the block is done."""
    import os
    import signal

    from gim_plugins.errors import deferred_interrupts

    seen: list[str] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append("handler"))
    try:
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # bytecodes at which Python would otherwise run the handler
                pass
            seen.append("block finished")
        assert seen == ["block finished", "handler"]
        assert signal.getsignal(signal.SIGTERM) is not None and seen.count("handler") == 1
    finally:
        signal.signal(signal.SIGTERM, previous)
