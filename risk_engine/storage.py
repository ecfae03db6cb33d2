"""Atomic publication of a date's results on a local (POSIX) file system.

A run writes every table into a staging folder, then :func:`publish` swaps each staged
partition folder with the published one. On Linux the swap is one ``renameat2`` call with
``RENAME_EXCHANGE``: a reader sees the old folder or the new one, never a mix and never
nothing. Elsewhere it falls back to two renames (a window of microseconds without the
folder). Files are written to a temporary name and renamed (:func:`write_atomic`).
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
