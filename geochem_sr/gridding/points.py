"""Kriging and inverse-distance weighting at arbitrary points (not on a grid).

Both use the ``k`` nearest samples of each point and the same kernels as
:func:`~geochem_sr.gridding.grid_samples`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from geochem_sr.errors import DataError
from geochem_sr.gridding.estimate import idw_cells, krige_cells
from geochem_sr.gridding.kernels import single_threaded_blas
from geochem_sr.gridding.neighbours import Locations, apply_radius, knn_direct
from geochem_sr.gridding.variogram import check_variogram

__all__ = ["idw_points", "krige_points"]


def _prepare_points(sample_xy: np.ndarray, values: np.ndarray, query_xy: np.ndarray, k: int
                    ) -> tuple[Locations, np.ndarray, np.ndarray, np.ndarray, int]:
    """Checked inputs around the samples' mean: locations, points and values with a
    sentinel, query points, and ``k`` capped at the number of samples."""
    xy = np.asarray(sample_xy, dtype=np.float64)
    z = np.atleast_2d(np.asarray(values, dtype=np.float64))
    q = np.asarray(query_xy, dtype=np.float64).reshape(-1, 2)
    if xy.ndim != 2 or xy.shape[1] != 2 or z.shape[1] != len(xy):
        raise DataError(
            f"sample_xy/values: expected shapes (n, 2) and (n,) or (m, n), found {xy.shape} "
            f"and {np.shape(values)}"
        )
    if len(xy) < 1:
        raise DataError("sample_xy: expected at least one sample, found none")
    origin = xy.mean(axis=0)
    ss = Locations(xy - origin, cKDTree(xy - origin))
    k = min(int(k), ss.n)
    pts = np.vstack([ss.xy, [[0.0, 0.0]]])
    zz = np.concatenate([z, np.zeros((len(z), 1))], axis=1)
    return ss, pts, zz, q - origin, k


def krige_points(
    sample_xy: np.ndarray,
    values: np.ndarray,
    query_xy: np.ndarray,
    variogram: Mapping[str, Any],
    *,
    k: int = 16,
    search_radius: float | None = None,
    return_variance: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Ordinary kriging with a local neighbourhood at arbitrary points.

    Parameters
    ----------
    sample_xy : numpy.ndarray, shape (n, 2)
        Sample coordinates (metres), distinct locations.
    values : numpy.ndarray, shape (n,) or (m, n)
        Values to krige (one row per variable sharing the variogram).
    query_xy : numpy.ndarray, shape (q, 2)
        Where to estimate.
    variogram : dict
        ``model``, ``range``, ``sill`` (total), ``nugget`` (PyKrige's conventions).
    k : int, default 16
        Neighbours per point (all samples if fewer).
    search_radius : float, optional
        Neighbours farther than this are left out (NaN where none is left).
    return_variance : bool, default False
        Also return the kriging variance.

    Returns
    -------
    est : numpy.ndarray, shape (q,) or (m, q)
    var : numpy.ndarray or None
    """
    vg = check_variogram(variogram, "variogram")
    ss, pts, zz, q, k = _prepare_points(sample_xy, values, query_xy, k)
    nb = apply_radius(knn_direct(ss, q, k), search_radius, ss.n)
    with single_threaded_blas():
        est, var = krige_cells(pts, zz, nb, [vg] * len(zz), return_variance)
    if np.ndim(values) == 1:
        return est[0], (var[0] if var is not None else None)
    return est, var


def idw_points(
    sample_xy: np.ndarray,
    values: np.ndarray,
    query_xy: np.ndarray,
    *,
    k: int = 16,
    power: float = 2.0,
    search_radius: float | None = None,
) -> np.ndarray:
    """Inverse-distance weighting with the ``k`` nearest samples at arbitrary points.

    Parameters
    ----------
    sample_xy, values, query_xy, k, search_radius
        As in :func:`krige_points`.
    power : float, default 2
        Weights ``1 / d**power``.

    Returns
    -------
    numpy.ndarray, shape (q,) or (m, q)
    """
    ss, _, zz, q, k = _prepare_points(sample_xy, values, query_xy, k)
    nb = apply_radius(knn_direct(ss, q, k), search_radius, ss.n)
    est = idw_cells(zz, nb, float(power))
    return est[0] if np.ndim(values) == 1 else est
