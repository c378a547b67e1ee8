"""Atomic writes: whole file or none, existing file untouched on error, normal permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rmtlib.atomic import atomic_path, write_text_atomic


def test_written_file_has_the_permissions_of_a_plain_open(tmp_path: Path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    path = write_text_atomic("hello\n", tmp_path / "sub" / "a.txt")
    assert path.read_text() == "hello\n"
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the umask from Linux's /proc")
def test_permissions_follow_the_umask_without_changing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real_umask = os.umask
    previous = real_umask(0o027)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        # setting the umask, even briefly, would race with other threads creating files
        monkeypatch.setattr(os, "umask", lambda *_: pytest.fail("os.umask was called"))
        path = write_text_atomic("hello\n", tmp_path / "a.txt")
        assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o640
    finally:
        real_umask(previous)


def test_error_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_temporary_carries_the_suffix_writers_look_at(tmp_path: Path):
    with atomic_path(tmp_path / "figure.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".figure.png~rmtlib-")
        tmp.write_bytes(b"png")
    with atomic_path(tmp_path / "model.safetensors", suffix=".tmp") as tmp:
        assert tmp.suffix == ".tmp"
        tmp.write_bytes(b"st")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png", "model.safetensors"]


def _dead_pid() -> int:
    """A process id that is not running (a child that has exited and been reaped)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path: Path):
    target = tmp_path / "model.safetensors"
    stale = tmp_path / f".model.safetensors~rmtlib-{_dead_pid()}-abcdefgh.tmp"
    stale.write_bytes(b"x" * 1000)  # what a SIGKILL mid-write leaves behind
    live = tmp_path / f".model.safetensors~rmtlib-{os.getpid()}-abcdefgh.tmp"
    live.write_bytes(b"y")  # a writer still running: not ours to remove
    other = tmp_path / ".model.safetensors.backup"
    other.write_bytes(b"z")  # another naming: left alone
    write_text_atomic("new", target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, live.name, other.name])


def test_a_name_near_the_file_system_limit_still_gets_a_temporary(tmp_path: Path):
    target = tmp_path / ("x" * 247 + ".csv")  # the temporary name was once 8 + 2 + 247 + 4 bytes long
    with atomic_path(target) as tmp:
        assert len(tmp.name.encode()) <= 255 and tmp.suffix == ".csv"
        tmp.write_text("a")
    assert target.read_text() == "a"
