"""Compiled kernels of the ordinary-kriging systems (plain Python here; numba-jitted).

Each distinct neighbour set's system is solved by Cholesky in covariance form, or by
pivoted LU in variogram form where that fails; the evaluators then give each cell's
estimate (and variance) from the solved set. :data:`KERNELS` names them for
:func:`~geochem_sr.gridding.kernels.compiled_kernels`, which jits them after
:func:`compile_helpers`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from geochem_sr.gridding.variogram import VARIOGRAM_MODELS

__all__ = ["KERNELS", "compile_helpers", "variogram_args"]

_MODEL_ID = {name: i for i, name in enumerate(VARIOGRAM_MODELS)}

# the jitted semivariance and matrix builder, called by the kernels below
# (set by compile_helpers before the kernels compile)
_nb_gamma: Any = None
_nb_build: Any = None


def variogram_args(vg: Mapping[str, Any]) -> tuple[np.ndarray]:
    """Variogram packed for the kernels: model id, range, two constants, psill, nugget."""
    model, rng_ = vg["model"], float(vg["range"])
    nugget = float(vg["nugget"])
    if model == "spherical":
        c1, c2 = 1.5 / rng_, 0.5 / rng_**3
    elif model == "exponential":
        c1, c2 = 3.0 / rng_, 0.0
    else:
        c1, c2 = 1.0 / (rng_ * 4.0 / 7.0) ** 2, 0.0
    return (np.array([_MODEL_ID[model], rng_, c1, c2, float(vg["sill"]) - nugget, nugget]),)


def _py_gamma(h, vp):  # noqa: ANN001, ANN202
    """Semivariance of one lag; ``vp`` from :func:`variogram_args` (reciprocals precomputed)."""
    model = vp[0]
    if model == 0.0:
        if h <= vp[1]:
            return vp[4] * (vp[2] * h - vp[3] * (h * h * h)) + vp[5]
        return vp[4] + vp[5]
    if model == 1.0:
        return vp[4] * (1.0 - np.exp(-h * vp[2])) + vp[5]
    return vp[4] * (1.0 - np.exp(-(h * h) * vp[2])) + vp[5]


def _py_build(px, py, set_row, sentinel, vp, a):  # noqa: ANN001, ANN202
    """Fill ``a`` with the matrix [[Gamma, 1], [1, 0]] of one set (sentinel: identity row)."""
    k = set_row.shape[0]
    for i in range(k):
        si = set_row[i]
        miss_i = si == sentinel
        a[i, i] = 1.0 if miss_i else 0.0
        a[i, k] = 0.0 if miss_i else 1.0
        a[k, i] = a[i, k]
        for j in range(i + 1, k):
            sj = set_row[j]
            if miss_i or sj == sentinel:
                g = 0.0
            else:
                dx = px[si] - px[sj]
                dy = py[si] - py[sj]
                g = _nb_gamma(np.sqrt(dx * dx + dy * dy), vp)
            a[i, j] = g
            a[j, i] = g
    a[k, k] = 0.0


def _py_ok_matrices(px, py, sets, sentinel, vp, out):  # noqa: ANN001, ANN202
    """Ordinary-kriging matrices of many sets (used for the LAPACK fallback)."""
    for u in range(sets.shape[0]):
        _nb_build(px, py, sets[u], sentinel, vp, out[u])


def _py_ok_solve(px, py, sets, sentinel, vp, z, alpha, ainv,  # noqa: ANN001, ANN202
                 status):
    """Solve each set's system by LU with partial pivoting (as LAPACK's gesv).

    ``alpha[u, :, e]`` solves ``A x = [z_e(set); 0]`` (dual kriging weights); ``ainv[u]``
    (if ``ainv`` is not empty) is ``A^-1``. ``status[u] = 1`` marks an exactly singular
    matrix, left to the caller.
    """
    n_sets, k = sets.shape
    n1 = k + 1
    m = z.shape[0]
    a = np.empty((n1, n1), np.float64)
    piv = np.empty(n1, np.int64)
    y = np.empty(n1, np.float64)
    want_inv = ainv.shape[0] > 0
    for u in range(n_sets):
        _nb_build(px, py, sets[u], sentinel, vp, a)
        status[u] = 0
        for col in range(n1):
            p = col
            best = abs(a[col, col])
            for r in range(col + 1, n1):
                if abs(a[r, col]) > best:
                    best = abs(a[r, col])
                    p = r
            piv[col] = p
            if best == 0.0:
                status[u] = 1
                break
            if p != col:
                for c2 in range(n1):
                    tmp = a[col, c2]
                    a[col, c2] = a[p, c2]
                    a[p, c2] = tmp
            inv_p = 1.0 / a[col, col]
            for r in range(col + 1, n1):
                f = a[r, col] * inv_p
                a[r, col] = f
                if f != 0.0:
                    for c2 in range(col + 1, n1):
                        a[r, c2] -= f * a[col, c2]
        if status[u]:
            continue
        for rhs in range(m + (n1 if want_inv else 0)):
            if rhs < m:
                for j in range(k):
                    y[j] = z[rhs, sets[u, j]]
                y[k] = 0.0
            else:
                for j in range(n1):
                    y[j] = 0.0
                y[rhs - m] = 1.0
            for col in range(n1):
                p = piv[col]
                if p != col:
                    tmp = y[col]
                    y[col] = y[p]
                    y[p] = tmp
            for r in range(1, n1):
                acc = y[r]
                for c2 in range(r):
                    acc -= a[r, c2] * y[c2]
                y[r] = acc
            for r in range(n1 - 1, -1, -1):
                acc = y[r]
                for c2 in range(r + 1, n1):
                    acc -= a[r, c2] * y[c2]
                y[r] = acc / a[r, r]
            if rhs < m:
                for j in range(n1):
                    alpha[u, j, rhs] = y[j]
            else:
                for j in range(n1):
                    ainv[u, j, rhs - m] = y[j]


def _py_ch_solve(px, py, sets, sentinel, vp, z, coef, beta, chol, g, s1, status):  # noqa: ANN001, ANN202
    """Dual ordinary kriging in covariance form, by Cholesky (half the work of pivoted LU).

    With ``C = sill - Gamma`` (``sill`` on the diagonal; a sentinel gets an identity row and
    a 0 in the constraint vector ``o``): ``v = C^-1 o``, ``u = C^-1 z``,
    ``beta = o.u / o.v`` and ``coef = u - beta v``, so that the estimate at a cell with
    covariances ``c`` to the set is ``beta + coef . c`` (the same number as the
    variogram-form system). For the variance, ``chol`` (``L^T`` row-major, with ``1 / L_ii``
    on its diagonal), ``g = L^-1 o`` and ``s1 = o.v`` are kept (if ``chol`` is not
    empty). ``status[u] = 1``: not positive definite (left to the LU path).
    """
    n_sets, k = sets.shape
    m = z.shape[0]
    sill = vp[4] + vp[5]
    lo = np.empty((k, k), np.float64)
    idg = np.empty(k, np.float64)  # inverse pivots (multiplications, not divisions)
    o = np.empty(k, np.float64)
    v = np.empty(k, np.float64)
    w = np.empty(k, np.float64)
    want_var = chol.shape[0] > 0
    for u in range(n_sets):
        status[u] = 0
        for i in range(k):  # lower triangle of C
            si = sets[u, i]
            miss_i = si == sentinel
            o[i] = 0.0 if miss_i else 1.0
            xi, yi = px[si], py[si]
            for j in range(i):
                sj = sets[u, j]
                if miss_i or sj == sentinel:
                    lo[i, j] = 0.0
                else:
                    dx = xi - px[sj]
                    dy = yi - py[sj]
                    lo[i, j] = sill - _nb_gamma(np.sqrt(dx * dx + dy * dy), vp)
            lo[i, i] = 1.0 if miss_i else sill
        for j in range(k):  # Cholesky-Crout, in place
            acc = lo[j, j]
            for p in range(j):
                acc -= lo[j, p] * lo[j, p]
            if not acc > 0.0:
                status[u] = 1
                break
            piv = np.sqrt(acc)
            lo[j, j] = piv
            ij = 1.0 / piv
            idg[j] = ij
            for i in range(j + 1, k):
                acc = lo[i, j]
                for p in range(j):
                    acc -= lo[i, p] * lo[j, p]
                lo[i, j] = acc * ij
        if status[u]:
            continue
        for e in range(m):
            if e == 0:  # v = C^-1 o and w = C^-1 z_0 together (two independent chains)
                for i in range(k):
                    a1 = o[i]
                    a2 = z[0, sets[u, i]]
                    for p in range(i):
                        lip = lo[i, p]
                        a1 -= lip * v[p]
                        a2 -= lip * w[p]
                    v[i] = a1 * idg[i]
                    w[i] = a2 * idg[i]
                if want_var:
                    for i in range(k):
                        g[u, i] = v[i]
                for i in range(k - 1, -1, -1):
                    a1 = v[i]
                    a2 = w[i]
                    for p in range(i + 1, k):
                        lpi = lo[p, i]
                        a1 -= lpi * v[p]
                        a2 -= lpi * w[p]
                    v[i] = a1 * idg[i]
                    w[i] = a2 * idg[i]
            else:
                for i in range(k):
                    a2 = z[e, sets[u, i]]
                    for p in range(i):
                        a2 -= lo[i, p] * w[p]
                    w[i] = a2 * idg[i]
                for i in range(k - 1, -1, -1):
                    a2 = w[i]
                    for p in range(i + 1, k):
                        a2 -= lo[p, i] * w[p]
                    w[i] = a2 * idg[i]
            ov = 0.0
            ou = 0.0
            for i in range(k):
                ov += o[i] * v[i]
                ou += o[i] * w[i]
            b = ou / ov
            beta[u, e] = b
            for i in range(k):
                coef[u, i, e] = w[i] - b * v[i]
            if want_var and e == 0:
                s1[u] = ov
        if want_var:
            for i in range(k):
                chol[u, i, i] = idg[i]  # the diagonal holds 1 / L_ii
                for j in range(i):
                    chol[u, j, i] = lo[i, j]  # L^T, row-major


def _py_ch_eval(idx, d, inv, coef, beta, chol, g, s1, status, sentinel, vp, eps,  # noqa: ANN001, ANN202
                est, var):
    """Estimates ``beta + coef . c`` and variances ``sill - |w|^2 + (1 - g.w)^2 / s1``
    (``w = L^-1 c``) of cells whose set solved by Cholesky (others left untouched)."""
    n, k = idx.shape
    m = coef.shape[2]
    sill = vp[4] + vp[5]
    c = np.empty(k, np.float64)
    w = np.empty(k, np.float64)
    want_var = chol.shape[0] > 0
    for cell in range(n):
        u = inv[cell]
        if status[u]:
            continue
        any_valid = False
        for j in range(k):
            if idx[cell, j] == sentinel:
                c[j] = 0.0
            else:
                any_valid = True
                c[j] = sill if d[cell, j] <= eps else sill - _nb_gamma(d[cell, j], vp)
        for e in range(m):
            acc = beta[u, e]
            for j in range(k):
                acc += coef[u, j, e] * c[j]
            est[e, cell] = acc if any_valid else np.nan
        if want_var:
            for i in range(k):
                w[i] = c[i]
            q1 = 0.0
            q2 = 0.0
            for j in range(k):  # forward L w = c, column-oriented on the rows of L^T
                wj = w[j] * chol[u, j, j]
                w[j] = wj
                q1 += wj * wj
                q2 += g[u, j] * wj
                for i in range(j + 1, k):
                    w[i] -= chol[u, j, i] * wj
            var[cell] = (sill - q1 + (1.0 - q2) ** 2 / s1[u]) if any_valid else np.nan


def _py_krige_eval(idx, d, inv, alpha, ainv, sentinel, vp, eps,  # noqa: ANN001, ANN202
                   est, var):
    """est[e, c] = alpha[set(c), :, e] . [gamma(d); 1]; var[c] = b^T Ainv b (if ainv given)."""
    n, k = idx.shape
    m = alpha.shape[2]
    b = np.empty(k + 1, np.float64)
    want_var = ainv.shape[0] > 0
    for c in range(n):
        u = inv[c]
        any_valid = False
        for j in range(k):
            if idx[c, j] == sentinel or d[c, j] <= eps:
                b[j] = 0.0
            else:
                b[j] = _nb_gamma(d[c, j], vp)
            if idx[c, j] != sentinel:
                any_valid = True
        b[k] = 1.0
        for e in range(m):
            acc = alpha[u, k, e]
            for j in range(k):
                acc += alpha[u, j, e] * b[j]
            est[e, c] = acc if any_valid else np.nan
        if want_var:
            q = 0.0
            for i in range(k + 1):
                t = 0.0
                for j in range(k + 1):
                    t += ainv[u, i, j] * b[j]
                q += b[i] * t
            var[c] = q if any_valid else np.nan


def compile_helpers(jit: Callable[[Any], Any]) -> None:
    """Jit the semivariance and the matrix builder the kernels call, with ``jit`` (e.g.
    ``numba.njit(cache=True)``); before the kernels of :data:`KERNELS` are compiled."""
    global _nb_gamma, _nb_build
    _nb_gamma = jit(_py_gamma)
    _nb_build = jit(_py_build)


#: Kernel name -> plain-Python kernel, jitted by
#: :func:`~geochem_sr.gridding.kernels.compiled_kernels` (after :func:`compile_helpers`).
KERNELS: dict[str, Callable[..., Any]] = {
    "ok_matrices": _py_ok_matrices, "ok_solve": _py_ok_solve, "krige_eval": _py_krige_eval,
    "ch_solve": _py_ch_solve, "ch_eval": _py_ch_eval,
}
