"""Freed memory kept in the process's heap while a prediction runs (glibc only).

A network's full-size activations are fresh allocations of tens to hundreds of MB. glibc
serves each one with its own ``mmap`` and returns it to the kernel when it is freed, so
every forward of the next tile touches new pages again: with transparent huge pages on, a
forward of a base-16 multi-level U-Net over a 2048-cell window took 13.2 s, against 8.5 s
when freed memory stays in the heap for the next forward (one torch thread;
``docs/notes/inference.md``). :func:`kept_heap` raises glibc's mmap and trim thresholds
(``mallopt``) for as long as a prediction runs, then puts them back to glibc's defaults
and returns the heap's free memory to the kernel (``malloc_trim``). Nested and concurrent
uses (threads of a Dask worker) share one setting; the last to leave restores it.

Set ``GEOCHEM_SR_KEEP_HEAP=0`` to leave the allocator alone. Elsewhere than glibc (macOS,
Windows, musl) it does nothing.

Examples
--------
>>> with kept_heap():
...     pass  # predict tiles here
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["KEEP_HEAP_ENV", "kept_heap", "can_keep_heap"]

#: Environment variable: "0" leaves the allocator as it is.
KEEP_HEAP_ENV = "GEOCHEM_SR_KEEP_HEAP"
# mallopt parameters (malloc.h) and glibc's documented defaults
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_DEFAULT_TRIM, _DEFAULT_MMAP = 128 * 1024, 128 * 1024
_KEPT = 2**31 - 1  # mallopt takes an int: about 2 GB, more than any one tile's tensor

_LOCK = threading.Lock()
_DEPTH = 0
_LIBC: Any = None


def _libc() -> Any:
    """glibc's handle, or None where the C library is not glibc."""
    global _LIBC
    if _LIBC is None:
        lib: Any = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            name = ctypes.util.find_library("c") or "libc.so.6"
            with contextlib.suppress(OSError):
                cdll = ctypes.CDLL(name)
                if hasattr(cdll, "mallopt") and hasattr(cdll, "malloc_trim"):
                    lib = cdll
        _LIBC = lib
    return _LIBC or None


def can_keep_heap() -> bool:
    """Whether :func:`kept_heap` changes anything here (glibc, and not turned off)."""
    return _libc() is not None and os.environ.get(KEEP_HEAP_ENV, "1") != "0"


@contextlib.contextmanager
def kept_heap() -> Iterator[None]:
    """Keep freed memory in the heap for the block's duration, then give it back.

    Yields
    ------
    None
    """
    global _DEPTH
    lib = _libc() if can_keep_heap() else None
    if lib is None:
        yield
        return
    with _LOCK:
        if _DEPTH == 0:
            lib.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_KEPT))
            lib.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_KEPT))
        _DEPTH += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                lib.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_DEFAULT_MMAP))
                lib.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_DEFAULT_TRIM))
                lib.malloc_trim(ctypes.c_size_t(0))
