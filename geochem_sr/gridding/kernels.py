"""The compiled kernels, jitted with numba on first use (cached on disk), and BLAS pinning.

numba is imported only when a kernel is first needed, so importing the package stays cheap.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from geochem_sr.gridding import knn_kernels, krige_kernels

__all__ = ["compiled_kernels", "single_threaded_blas"]


_BLAS_LOCK = threading.Lock()
_BLAS_STATE: dict[str, Any] = {"depth": 0, "limiter": None}


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Pin BLAS to one thread for many small solves; safe when dask threads nest it."""
    with _BLAS_LOCK:
        if _BLAS_STATE["depth"] == 0:
            if "controller" not in _BLAS_STATE:
                from threadpoolctl import ThreadpoolController

                _BLAS_STATE["controller"] = ThreadpoolController()
            _BLAS_STATE["limiter"] = _BLAS_STATE["controller"].limit(limits=1, user_api="blas")
        _BLAS_STATE["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["depth"] -= 1
            if _BLAS_STATE["depth"] == 0:
                _BLAS_STATE["limiter"].restore_original_limits()
                _BLAS_STATE["limiter"] = None


_KERNELS: dict[str, Any] = {}
_KERNEL_LOCK = threading.Lock()


def compiled_kernels() -> dict[str, Any]:
    """The compiled kernels by name (numba imported and jitted on first use, cached on disk).

    Returns
    -------
    dict
        ``select``, ``set_ids``, ``idw`` (:mod:`~geochem_sr.gridding.knn_kernels`) and
        ``ok_matrices``, ``ok_solve``, ``krige_eval``, ``ch_solve``, ``ch_eval``
        (:mod:`~geochem_sr.gridding.krige_kernels`).
    """
    if not _KERNELS:
        with _KERNEL_LOCK:
            if not _KERNELS:
                import numba

                jit = numba.njit(cache=True, nogil=True)
                krige_kernels.compile_helpers(jit)  # the kriging kernels call them
                _KERNELS.update({name: jit(kernel)
                                 for module in (krige_kernels, knn_kernels)
                                 for name, kernel in module.KERNELS.items()})
    return _KERNELS
