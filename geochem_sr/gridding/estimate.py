"""Kriging and inverse-distance estimates of cells from their neighbour arrays.

Each distinct neighbour set's kriging system is solved once, in dual form (Cholesky of the
covariance form; pivoted LU of the variogram form where that fails; least squares where
that is singular), so that a cell then costs one dot product.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from geochem_sr.gridding.kernels import compiled_kernels
from geochem_sr.gridding.krige_kernels import variogram_args
from geochem_sr.gridding.neighbours import Neighbours

__all__ = ["EXACT_EPS", "idw_cells", "krige_cells"]

#: a cell closer than this to a sample takes its value exactly (as PyKrige's ``eps``)
EXACT_EPS = 1e-10


def _set_ids(nb: Neighbours) -> tuple[np.ndarray, np.ndarray]:
    """Distinct neighbour sets: a representative cell of each, and each cell's set."""
    n = len(nb.idx)
    first = np.empty(n, np.int64)
    inv = np.empty(n, np.int64)
    n_sets = compiled_kernels()["set_ids"](nb.idx, nb.key, first, inv)
    return first[:n_sets], inv


def _lapack_fallback(pts: np.ndarray, sets: np.ndarray, vg: Mapping[str, Any], z: np.ndarray,
                     alpha: np.ndarray, ainv: np.ndarray, bad: np.ndarray) -> None:
    """Least-squares solutions for the (rare) exactly singular systems."""
    k = sets.shape[1]
    a = np.empty((len(bad), k + 1, k + 1), np.float64)
    compiled_kernels()["ok_matrices"](
        np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1]),
        np.ascontiguousarray(sets[bad]), len(pts) - 1, *variogram_args(vg), a)
    for row, u in enumerate(bad):
        rhs = np.zeros((k + 1, z.shape[0]))
        rhs[:k] = z[:, sets[u]].T
        alpha[u] = np.linalg.lstsq(a[row], rhs, rcond=None)[0]
        if ainv.shape[0]:
            ainv[u] = np.linalg.pinv(a[row])


def krige_cells(pts: np.ndarray, z: np.ndarray, nb: Neighbours,
                vgs: Sequence[Mapping[str, Any]], return_variance: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Ordinary kriging of cells from their neighbours.

    Each distinct neighbour set is solved once (Cholesky of the covariance form; pivoted
    LU of the variogram form where that fails; least squares where that is singular).

    Parameters
    ----------
    pts : (n + 1, 2) sample coordinates and a sentinel row.
    z : (m, n + 1) values of m elements (0 at the sentinel).
    nb : neighbours of c cells.
    vgs : m variograms.

    Returns
    -------
    est, var : (m, c) estimates and kriging variances (var None unless asked).
    """
    sentinel = len(pts) - 1
    alone = nb.idx[:, 0] == sentinel  # no sample within the search radius: NaN
    if alone.any():
        est = np.full((len(vgs), len(nb.idx)), np.nan, np.float64)
        var = np.full(est.shape, np.nan, np.float64) if return_variance else None
        if not alone.all():
            keep = ~alone
            sub = Neighbours(nb.idx[keep], nb.d[keep], nb.key[keep], nb.d1[keep])
            e, v = krige_cells(pts, z, sub, vgs, return_variance)
            est[:, keep] = e
            if var is not None:
                var[:, keep] = v
        return est, var
    kern = compiled_kernels()
    m, (c, k) = len(vgs), nb.idx.shape
    est = np.empty((m, c), np.float64)
    var = np.empty((m, c), np.float64) if return_variance else None
    first, inv = _set_ids(nb)
    sets = np.ascontiguousarray(nb.idx[first])
    n_sets = len(sets)
    px, py = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
    by_vg: dict[str, list[int]] = {}
    for e, vg in enumerate(vgs):
        by_vg.setdefault(json.dumps(dict(vg), sort_keys=True), []).append(e)
    for members in by_vg.values():
        vg = vgs[members[0]]
        args = variogram_args(vg)
        zm = np.ascontiguousarray(z[members])
        nv = n_sets if var is not None else 0
        coef = np.empty((n_sets, k, len(members)), np.float64)
        beta = np.empty((n_sets, len(members)), np.float64)
        chol = np.zeros((nv, k, k), np.float64)
        g = np.empty((nv, k), np.float64)
        s1 = np.empty(nv, np.float64)
        status = np.zeros(n_sets, np.int64)
        kern["ch_solve"](px, py, sets, sentinel, *args, zm, coef, beta, chol, g, s1, status)
        e_out = np.full((len(members), c), np.nan, np.float64)
        v_out = np.full(c, np.nan, np.float64)
        kern["ch_eval"](nb.idx, nb.d, inv, coef, beta, chol, g, s1, status, sentinel, *args,
                        EXACT_EPS, e_out, v_out)
        if status.any():  # not positive definite: the variogram-form system by LU
            _krige_lu(pts, zm, nb, inv, sets, status, vg, var is not None, e_out, v_out)
        est[members] = e_out
        if var is not None:
            var[members] = v_out
    return est, var


def _krige_lu(pts: np.ndarray, zm: np.ndarray, nb: Neighbours, inv: np.ndarray,
              sets: np.ndarray, status: np.ndarray, vg: Mapping[str, Any], want_var: bool,
              e_out: np.ndarray, v_out: np.ndarray) -> None:
    """Cells whose set failed Cholesky: pivoted LU of [[Gamma, 1], [1, 0]] (as PyKrige)."""
    kern = compiled_kernels()
    k = sets.shape[1]
    bad = np.flatnonzero(status)
    remap = np.full(len(sets), -1, np.int64)
    remap[bad] = np.arange(len(bad))
    cells = np.flatnonzero(status[inv] != 0)
    sub_sets = np.ascontiguousarray(sets[bad])
    alpha = np.empty((len(bad), k + 1, len(zm)), np.float64)
    ainv = np.empty((len(bad) if want_var else 0, k + 1, k + 1), np.float64)
    lu_status = np.zeros(len(bad), np.int64)
    kern["ok_solve"](np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1]),
                     sub_sets, len(pts) - 1, *variogram_args(vg), zm, alpha, ainv, lu_status)
    if lu_status.any():
        _lapack_fallback(pts, sub_sets, vg, zm, alpha, ainv, np.flatnonzero(lu_status))
    e_sub = np.empty((len(zm), len(cells)), np.float64)
    v_sub = np.empty(len(cells), np.float64)
    kern["krige_eval"](np.ascontiguousarray(nb.idx[cells]), np.ascontiguousarray(nb.d[cells]),
                       remap[inv[cells]], alpha, ainv, len(pts) - 1, *variogram_args(vg),
                       EXACT_EPS, e_sub, v_sub)
    e_out[:, cells] = e_sub
    if want_var:
        v_out[cells] = v_sub


def idw_cells(z: np.ndarray, nb: Neighbours, power: float) -> np.ndarray:
    """Inverse-distance weighted estimates (m, c); exact at a coincident sample."""
    est = np.empty((z.shape[0], len(nb.idx)), np.float64)
    compiled_kernels()["idw"](nb.idx, nb.d, np.ascontiguousarray(z), z.shape[1] - 1,
                              float(power), EXACT_EPS, est)
    return est
