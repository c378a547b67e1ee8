"""Atomic file writes: results, tables, figures and checkpoints appear whole or not at all.

Everything rmtlib writes goes to a temporary file beside the target and is renamed onto it only
when complete, so an error or a crash never leaves a half-written file (and an existing file
stays untouched). The file gets the permissions a plain ``open(path, "w")`` would give.
:func:`write_or_rescue` keeps a result that cannot be written where asked (a full disk) as a copy in
the temporary folder.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from rmtlib.errors import RMTError

__all__ = ["atomic_path", "write_text_atomic", "write_or_rescue", "clean_stale", "name_max"]


def _umask() -> int:
    """The process's umask, read without changing it where Linux reports it (os.umask can only
    be read by setting it, which briefly exposes other threads' new files as world-writable)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)  # the fallback's brief window is private rather than world-writable
    os.umask(mask)
    return mask


#: temporary files are named ``.<target name>~rmtlib-<pid>-<random><suffix>``: ours, and whose writer is known
_MARK = "~rmtlib-"
_RANDOM = 8  # characters tempfile adds


def name_max(folder: str | os.PathLike) -> int:
    """The longest file name (in bytes) the file system of ``folder`` (or its nearest existing parent) takes."""
    for candidate in (Path(folder), *Path(folder).parents):
        if candidate.is_dir():
            try:
                return int(os.pathconf(candidate, "PC_NAME_MAX"))
            except (OSError, ValueError, AttributeError):
                break
    return 255


def _tmp_prefix(target: Path, suffix: str) -> str:
    """``.<name>~rmtlib-<pid>-`` with the name shortened so the whole temporary name fits the file system
    (a 247-character target name gave a temporary name over the 255-byte limit, failing after the work)."""
    # room for the pid (up to 10 digits) and a suffix of up to 16 bytes, whatever this call's are, so
    # clean_stale finds the same shortened name from any process
    room = name_max(target.parent) - len(f".{_MARK}-".encode()) - 10 - _RANDOM - max(16, len(suffix.encode()))
    name = target.name.encode()[: max(room, 1)].decode("utf-8", "ignore")
    return f".{name}{_MARK}{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's live process
    return True


def clean_stale(target: str | os.PathLike) -> list[Path]:
    """Remove temporary files of :func:`atomic_path` beside ``target`` whose writing process is gone
    (a SIGKILL leaves them, full-size, behind); returns the removed paths. Files of live writers and
    files of other naming are left alone."""
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    prefix = _tmp_prefix(target, "")
    head = prefix[: prefix.index(_MARK) + len(_MARK)]
    for entry in target.parent.glob(glob_escape(head) + "*"):
        pid_text = entry.name[len(head) :].split("-", 1)[0]
        if pid_text.isdigit() and not _alive(int(pid_text)) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters made literal."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``, on error it is removed.

    ``suffix`` (default: ``path``'s own) lets writers that look at the extension (matplotlib,
    safetensors) see the right one. Temporaries that a killed writer left beside ``path`` are removed
    first (:func:`clean_stale`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    suffix = target.suffix if suffix is None else suffix
    fd, name = tempfile.mkstemp(prefix=_tmp_prefix(target, suffix), suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o666 & ~_umask())  # mkstemp made it private
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_or_rescue(write: Callable[[Path], Any], path: str | os.PathLike, what: str) -> Path:
    """``write(path)``; if that fails with an OSError (a full disk, a folder removed meanwhile), write the
    result to the temporary folder instead and raise an :class:`RMTError` saying where it is, so the
    work done is not lost. Returns ``path``."""
    try:
        write(Path(path))
        return Path(path)
    except OSError as err:
        name = Path(path).name[:100] or "result"
        rescue = Path(tempfile.gettempdir()) / f"rmtlib-rescued-{os.getpid()}-{name}"
        try:
            write(rescue)
        except OSError as err2:
            raise RMTError(f"{what}: could not write {path} ({err}), nor a copy to {rescue} ({err2})") from err
        raise RMTError(f"{what}: could not write {path} ({err}); the result was saved to {rescue} instead") from err
