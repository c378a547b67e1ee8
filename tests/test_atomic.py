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
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".figure.png.")
        tmp.write_bytes(b"png")
    with atomic_path(tmp_path / "model.safetensors", suffix=".tmp") as tmp:
        assert tmp.suffix == ".tmp"
        tmp.write_bytes(b"st")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png", "model.safetensors"]
