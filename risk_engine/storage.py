"""Atomic file-system steps on a local (POSIX) file system.

:func:`swap_directories` exchanges two folders: on Linux one ``renameat2`` call with
``RENAME_EXCHANGE`` (a reader sees the old folder or the new one, never nothing), elsewhere
two renames. :func:`write_atomic` writes a file under a temporary name and renames it. The
date-level commit built from them is :mod:`risk_engine.spark.publication`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _load_renameat2() -> Callable[[bytes, bytes], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def exchange(a: bytes, b: bytes) -> int:
        return int(fn(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE))

    return exchange


_EXCHANGE = _load_renameat2()


def swap_directories(staged: Path, published: Path) -> bool:
    """Atomically exchange two existing folders; False if the platform cannot."""
    if _EXCHANGE is None:
        return False
    if _EXCHANGE(os.fsencode(staged), os.fsencode(published)) == 0:
        return True
    return False


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
