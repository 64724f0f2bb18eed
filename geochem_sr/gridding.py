"""Point samples -> element maps on the survey grid, in log10 space.

Two interpolators, both with a *local* neighbourhood of the ``k`` nearest samples:

* inverse-distance weighting (``method="idw"``);
* ordinary kriging (``method="kriging"``), with a variogram fitted per element by weighted
  least squares on the empirical variogram (spherical, exponential or gaussian), or given.

The kriging is written here because PyKrige is too slow at survey scale (its constructor
builds an (N+1)² matrix of all samples and it solves one system per cell). Here:

1. the grid is cut into tiles fixed on the whole grid; the candidates of a tile (every sample
   that can be among the ``k`` nearest of one of its cells: within ``d_k(centre) + 2 h``)
   come from one ``cKDTree`` query at its centre; a compiled kernel picks each cell's ``k``
   nearest among them, visiting the tile's cells in serpentine order and repairing the
   previous cell's set by swaps (ties: lower sample index first);
2. neighbouring cells mostly share the same neighbour *set* (about 7 cells per set): each
   distinct set's kriging system is solved once, in batches, in *dual* form, so that a cell
   then costs one dot product. The system is solved in covariance form by Cholesky
   (``C = sill - Gamma``), falling back to the variogram-form ``(k+1)×(k+1)`` system by
   pivoted LU where ``C`` is not positive definite, and to LAPACK least squares (BLAS
   pinned to one thread) where that is singular. The kriging variance, when asked for,
   reuses the factor.

The small kernels are numba functions (numba comes with xarray-spatial), jitted on first use
and cached on disk; the numpy path runs them over 512² blocks, the dask path once per chunk.

The conventions follow PyKrige (``variogram_parameters`` as ``sill`` = total sill, ``range``
the practical range, ``nugget``; ``gamma(0) = 0`` on the diagonal and exact values at a
sample), so that the result equals PyKrige's ``OrdinaryKriging(...).execute(...,
n_closest_points=k)`` to rounding.

Each cell's result depends only on the samples, never on the chunk or batch it is computed
in, so the numpy path (tiles in a loop) and the dask path (one task per chunk) give equal
results, bit for bit.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

from geochem_sr import schema
from geochem_sr.errors import CRSError, DataError, GeoSRError, SchemaError

if TYPE_CHECKING:
    import geopandas

__all__ = [
    "CONCENTRATION",
    "COVERAGE",
    "LOG10_VARIANCE",
    "METHODS",
    "VARIOGRAM_MODELS",
    "empirical_variogram",
    "fit_variogram",
    "grid_samples",
    "idw_points",
    "krige_points",
    "semivariance",
]

# --- names of the output variables -------------------------------------------------------
CONCENTRATION = "concentration"
COVERAGE = "coverage"
LOG10_VARIANCE = "log10_variance"

METHODS = ("kriging", "idw")
VARIOGRAM_MODELS = ("spherical", "exponential", "gaussian")

#: default coverage distance, in median nearest-neighbour distances between samples
COVERAGE_FACTOR = 2.0
#: samples closer than this (metres) are one location (their values are averaged)
DUPLICATE_TOLERANCE = 1e-3
#: a cell closer than this to a sample takes its value exactly (as PyKrige's ``eps``)
EXACT_EPS = 1e-10

_BLOCK = 512  # cells per side of a block in the numpy path
_BATCH_CELLS = 32768  # cells solved together (bounds the memory of one batch)
_CANDIDATE_FACTOR = 3  # a tile queries 3k + 8 samples; a ball holding more: per-cell queries
_MIN_TILE = 3  # below this tile size, query the tree per cell
_TILE_FACTOR = 0.5  # tile diagonal ~ this fraction of the distance to the k-th neighbour


# --- BLAS pinning -------------------------------------------------------------------------
_BLAS_LOCK = threading.Lock()
_BLAS_STATE: dict[str, Any] = {"depth": 0, "limiter": None}


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
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


# --- variogram ----------------------------------------------------------------------------
def _check_variogram(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Normalise a variogram dict to ``{"model", "range", "sill", "nugget"}`` or raise."""
    if not isinstance(params, Mapping):
        raise DataError(f"{name}: expected a dict with model/range/sill/nugget, found {params!r}")
    model = str(params.get("model", "spherical")).lower()
    if model not in VARIOGRAM_MODELS:
        raise DataError(f"{name}: expected model in {VARIOGRAM_MODELS}, found {model!r}")
    missing = [key for key in ("range", "sill") if key not in params]
    if missing:
        raise DataError(f"{name}: expected keys 'range' and 'sill', missing {missing}")
    rng_, sill, nugget = (float(params["range"]), float(params["sill"]),
                          float(params.get("nugget", 0.0)))
    if not (np.isfinite(rng_) and rng_ > 0):
        raise DataError(f"{name}: expected a positive 'range' in metres, found {rng_}")
    if not (np.isfinite(nugget) and nugget >= 0):
        raise DataError(f"{name}: expected 'nugget' >= 0, found {nugget}")
    if not (np.isfinite(sill) and sill >= nugget and sill > 0):
        raise DataError(
            f"{name}: expected 'sill' (total sill) > 0 and >= nugget {nugget}, found {sill}"
        )
    return {"model": model, "range": rng_, "sill": sill, "nugget": nugget}


def semivariance(h: np.ndarray, variogram: Mapping[str, Any]) -> np.ndarray:
    """Semivariance of a variogram model at lags ``h`` (PyKrige's conventions).

    Parameters
    ----------
    h : numpy.ndarray
        Lags in metres.
    variogram : dict
        ``model`` (spherical, exponential, gaussian), ``range`` (practical range, metres),
        ``sill`` (total sill, nugget included) and ``nugget``.

    Returns
    -------
    numpy.ndarray
        ``nugget + (sill - nugget) * f(h / range)``; equals ``nugget`` at ``h = 0`` (the
        kriging systems put 0 on their diagonal themselves).
    """
    h = np.asarray(h, dtype=np.float64)
    model, rng_ = variogram["model"], float(variogram["range"])
    nugget = float(variogram["nugget"])
    psill = float(variogram["sill"]) - nugget
    if model == "spherical":
        r = np.minimum(h, rng_)
        return psill * ((3.0 * r) / (2.0 * rng_) - (r**3.0) / (2.0 * rng_**3.0)) + nugget
    if model == "exponential":
        return psill * (1.0 - np.exp(-h / (rng_ / 3.0))) + nugget
    if model == "gaussian":
        return psill * (1.0 - np.exp(-(h**2.0) / (rng_ * 4.0 / 7.0) ** 2.0)) + nugget
    raise DataError(f"variogram: expected model in {VARIOGRAM_MODELS}, found {model!r}")


def _median_spacing(xy: np.ndarray, tree: cKDTree | None = None) -> float:
    """Median distance from a sample to its nearest neighbour."""
    if len(xy) < 2:
        return 0.0
    tree = tree if tree is not None else cKDTree(xy)
    d, _ = tree.query(xy, k=2)
    return float(np.median(d[:, 1]))


def empirical_variogram(
    xy: np.ndarray,
    values: np.ndarray,
    *,
    n_lags: int = 15,
    max_lag: float | None = None,
    max_anchors: int = 2000,
    max_pairs: int = 3_000_000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical semivariogram of point values, with bounded cost for large surveys.

    Pairs are taken between up to ``max_anchors`` samples (a seeded random subset) and every
    sample within ``max_lag`` of them, so short lags keep the full sampling density.

    Parameters
    ----------
    xy : numpy.ndarray, shape (n, 2)
        Sample coordinates in metres.
    values : numpy.ndarray, shape (n,)
        Values (log10 concentrations in this module).
    n_lags : int, default 15
        Number of equal-width lag bins.
    max_lag : float, optional
        Largest lag; default ``min(half the extent's diagonal, 12 median spacings)``.
    max_anchors, max_pairs : int
        Bounds on the anchors and on the number of pairs.
    seed : int, default 0
        Seed of the anchor subset (same seed, same variogram).

    Returns
    -------
    lags, gamma, counts : numpy.ndarray, shape (n_lags,)
        Mean lag, semivariance and number of pairs of each bin (NaN where empty).
    """
    xy = np.asarray(xy, dtype=np.float64)
    z = np.asarray(values, dtype=np.float64)
    tree = cKDTree(xy)
    if max_lag is None:
        diag = float(np.hypot(*np.ptp(xy, axis=0)))
        max_lag = min(0.5 * diag, 12.0 * _median_spacing(xy, tree)) or 0.5 * diag
    if not max_lag > 0:
        raise DataError(f"variogram: expected samples at more than one location, found {len(z)}")
    rng = np.random.default_rng(seed)
    n = len(z)
    anchors = np.arange(n) if n <= max_anchors else np.sort(rng.choice(n, max_anchors, False))
    atree = cKDTree(xy[anchors])
    n_pairs = int(atree.count_neighbors(tree, max_lag))
    if n_pairs > max_pairs:  # clustered samples: fewer anchors
        keep = max(10, int(len(anchors) * max_pairs / n_pairs))
        anchors = np.sort(rng.choice(anchors, min(keep, len(anchors)), replace=False))
        atree = cKDTree(xy[anchors])
    pairs = atree.sparse_distance_matrix(tree, max_lag, output_type="ndarray")
    i, j, h = anchors[pairs["i"]], pairs["j"], pairs["v"]
    ok = (i != j) & (h > 0)
    i, j, h = i[ok], j[ok], h[ok]
    b = np.minimum((h / max_lag * n_lags).astype(np.int64), n_lags - 1)
    counts = np.bincount(b, minlength=n_lags).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma = np.bincount(b, 0.5 * (z[i] - z[j]) ** 2, minlength=n_lags) / counts
        lags = np.bincount(b, h, minlength=n_lags) / counts
    return lags, gamma, counts.astype(np.int64)


def _fallback_variogram(z: np.ndarray, spacing: float, why: str, name: str) -> dict[str, Any]:
    var = float(np.var(z))
    vg = {"model": "exponential", "range": max(4.0 * spacing, 1e-6),
          "sill": max(var, 1e-12), "nugget": 0.0}
    warnings.warn(f"{name}: {why}; using a fallback variogram {vg}", UserWarning, stacklevel=4)
    return vg


def fit_variogram(
    xy: np.ndarray,
    values: np.ndarray,
    *,
    models: Sequence[str] = VARIOGRAM_MODELS,
    n_lags: int = 15,
    max_lag: float | None = None,
    seed: int = 0,
    name: str = "variogram",
) -> dict[str, Any]:
    """Fit a variogram model to point values by weighted least squares.

    Each model in ``models`` is fitted (nugget, partial sill, range; bounded, from three
    starting ranges) to :func:`empirical_variogram` with Cressie's weights
    ``N(h) / gamma(h)^2``, and the one with the smallest weighted misfit is kept.

    Parameters
    ----------
    xy : numpy.ndarray, shape (n, 2)
        Sample coordinates in metres.
    values : numpy.ndarray, shape (n,)
        Values (log10 concentrations).
    models : sequence of str
        Candidate models among ``spherical``, ``exponential``, ``gaussian``.
    n_lags, max_lag, seed
        See :func:`empirical_variogram`.
    name : str
        Used in warnings.

    Returns
    -------
    dict
        ``{"model", "range", "sill", "nugget"}`` (``sill`` is the total sill). With
        constant values or too few pairs, a warned exponential fallback (sill = variance).
    """
    from scipy.optimize import least_squares

    xy = np.asarray(xy, dtype=np.float64)
    z = np.asarray(values, dtype=np.float64)
    bad = [m for m in models if m not in VARIOGRAM_MODELS]
    if bad or not models:
        raise DataError(f"models: expected names from {VARIOGRAM_MODELS}, found {list(models)}")
    if np.ptp(z) == 0:
        return _fallback_variogram(z, _median_spacing(xy), "all values are equal", name)
    lags, gamma, counts = empirical_variogram(xy, z, n_lags=n_lags, max_lag=max_lag, seed=seed)
    ok = (counts >= 10) & np.isfinite(gamma)
    if ok.sum() < 3:
        return _fallback_variogram(z, _median_spacing(xy), "fewer than 3 lag bins with 10 pairs",
                                   name)
    h, g, n = lags[ok], gamma[ok], counts[ok].astype(np.float64)
    hs, gs = float(h.max()), float(g.max())
    hn, gn = h / hs, g / gs  # scaled for conditioning
    sw = np.sqrt(n / np.maximum(gn, 1e-3) ** 2)
    sw /= sw.max()
    best: tuple[float, dict[str, Any]] | None = None
    for model in models:
        for r0 in (0.25, 0.6, 1.2):
            def resid(p: np.ndarray, model: str = model) -> np.ndarray:
                vg = {"model": model, "nugget": p[0], "sill": p[0] + p[1], "range": p[2]}
                return sw * (semivariance(hn, vg) - gn)

            x0 = [min(0.5 * gn[0], 0.9), max(1.0 - 0.5 * gn[0], 0.05), r0]
            lo, hi = [0.0, 0.0, 0.5 * hn.min()], [1.5, 3.0, 4.0]
            fit = least_squares(resid, np.clip(x0, lo, hi), bounds=(lo, hi), method="trf")
            cost = float(fit.cost)
            if best is None or cost < best[0] - 1e-12:
                nug, psill, rng_ = (float(v) for v in fit.x)
                best = (cost, {"model": model, "range": rng_ * hs,
                               "sill": (nug + psill) * gs, "nugget": nug * gs})
    assert best is not None
    vg = best[1]
    if vg["sill"] <= 0:
        return _fallback_variogram(z, _median_spacing(xy), "the fitted sill is 0", name)
    return vg


# --- compiled kernels (plain Python here; jitted with numba on first use) -----------------
_MODEL_ID = {name: i for i, name in enumerate(VARIOGRAM_MODELS)}


def _py_gamma(h, vp):  # noqa: ANN001, ANN202
    """Semivariance of one lag; ``vp`` from :func:`_vg_args` (reciprocals precomputed)."""
    model = vp[0]
    if model == 0.0:
        if h <= vp[1]:
            return vp[4] * (vp[2] * h - vp[3] * (h * h * h)) + vp[5]
        return vp[4] + vp[5]
    if model == 1.0:
        return vp[4] * (1.0 - np.exp(-h * vp[2])) + vp[5]
    return vp[4] * (1.0 - np.exp(-(h * h) * vp[2])) + vp[5]


def _py_select(cell_x, cell_y, cell_tile, cand, cand_x, cand_y, n_cand, k, mult,  # noqa: ANN001, ANN202
               out_idx, out_d, out_key, out_d1):
    """k nearest of each cell among its tile's candidates (sorted by sample index).

    Order is (distance, index): ties go to the lower sample index. Rows come out in
    ascending sample index, with the set's hash key and the nearest distance. The first cell
    of a tile selects by quickselect; the next cells (visited in serpentine order, so each
    is next to the previous one) repair the previous cell's set by swaps.
    """
    width = cand.shape[1]
    d2 = np.empty(width, np.float64)
    perm = np.empty(width, np.int64)
    chosen = np.zeros(width, np.bool_)
    prev_tile = -1
    for i in range(cell_x.shape[0]):
        t = cell_tile[i]
        nc = n_cand[t]
        for j in range(nc):
            dx = cand_x[t, j] - cell_x[i]
            dy = cand_y[t, j] - cell_y[i]
            d2[j] = dx * dx + dy * dy
        if t == prev_tile:
            # repair the previous cell's set: while the largest chosen (d2, j) exceeds the
            # smallest other, swap them (each swap fixes two wrong memberships)
            while True:  # largest chosen key (d2, j) and smallest other key
                in_d, in_j, out_dd, out_j = -1.0, -1, np.inf, nc
                for j in range(nc):
                    dj = d2[j]
                    if chosen[j]:
                        if dj >= in_d:
                            in_d = dj
                            in_j = j
                    elif dj < out_dd:
                        out_dd = dj
                        out_j = j
                if out_j == nc or in_d < out_dd or (in_d == out_dd and in_j < out_j):
                    break
                chosen[in_j] = False
                chosen[out_j] = True
        else:
            for j in range(nc):
                perm[j] = j
            lo, hi, want = 0, nc - 1, k - 1  # quickselect of the k-th smallest (d2, j)
            while lo < hi:
                pj = perm[(lo + hi) // 2]
                pd = d2[pj]
                a, b = lo, hi
                while a <= b:
                    while d2[perm[a]] < pd or (d2[perm[a]] == pd and perm[a] < pj):
                        a += 1
                    while d2[perm[b]] > pd or (d2[perm[b]] == pd and perm[b] > pj):
                        b -= 1
                    if a <= b:
                        tmp = perm[a]
                        perm[a] = perm[b]
                        perm[b] = tmp
                        a += 1
                        b -= 1
                if want <= b:
                    hi = b
                elif want >= a:
                    lo = a
                else:
                    break
            kth = perm[want]
            td = d2[kth]
            for j in range(nc):
                chosen[j] = d2[j] < td or (d2[j] == td and j <= kth)
            prev_tile = t
        m = 0
        key = np.uint64(0)
        best = np.inf
        for j in range(nc):
            if chosen[j]:
                s = cand[t, j]
                out_idx[i, m] = s
                out_d[i, m] = np.sqrt(d2[j])
                key += np.uint64(s) * mult[m]
                if d2[j] < best:
                    best = d2[j]
                m += 1
        out_key[i] = key
        out_d1[i] = np.sqrt(best)


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


def _py_idw(idx, d, z, sentinel, power, eps, est):  # noqa: ANN001, ANN202
    """Inverse-distance weights over the neighbours; exact at a coincident sample."""
    n, k = idx.shape
    m = z.shape[0]
    for c in range(n):
        hit = -1
        for j in range(k):
            if idx[c, j] != sentinel and d[c, j] <= eps:
                hit = idx[c, j]
                break
        if hit >= 0:
            for e in range(m):
                est[e, c] = z[e, hit]
            continue
        den = 0.0
        for e in range(m):
            est[e, c] = 0.0
        for j in range(k):
            s = idx[c, j]
            if s == sentinel:
                continue
            dj = d[c, j]
            if power == 2.0:
                w = 1.0 / (dj * dj)
            elif power == 1.0:
                w = 1.0 / dj
            else:
                w = 1.0 / dj**power
            den += w
            for e in range(m):
                est[e, c] += w * z[e, s]
        for e in range(m):
            est[e, c] = est[e, c] / den if den > 0 else np.nan


def _py_set_ids(idx, key, first, inv):  # noqa: ANN001, ANN202
    """Distinct rows of ``idx`` (open-addressing table on ``key``, rows compared exactly).

    Returns the number of sets; ``first[s]`` is a cell of set ``s``, ``inv[c]`` the set of
    cell ``c`` (sets numbered in order of first appearance).
    """
    n, k = idx.shape
    size = 1
    while size < 2 * n:
        size *= 2
    mask = np.uint64(size - 1)
    table = np.full(size, -1, np.int64)
    n_sets = 0
    for c in range(n):
        slot = np.int64(key[c] & mask)
        while True:
            s = table[slot]
            if s < 0:
                table[slot] = n_sets
                first[n_sets] = c
                inv[c] = n_sets
                n_sets += 1
                break
            r = first[s]
            same = key[r] == key[c]
            if same:
                for j in range(k):
                    if idx[r, j] != idx[c, j]:
                        same = False
                        break
            if same:
                inv[c] = s
                break
            slot = (slot + 1) % size
    return n_sets


_nb_gamma: Any = None
_nb_build: Any = None
_KERNELS: dict[str, Any] = {}
_KERNEL_LOCK = threading.Lock()


def _kernels() -> dict[str, Any]:
    """The compiled kernels (numba imported and jitted on first use, cached on disk)."""
    if not _KERNELS:
        with _KERNEL_LOCK:
            if not _KERNELS:
                import numba

                global _nb_gamma, _nb_build
                jit = numba.njit(cache=True, nogil=True)
                _nb_gamma = jit(_py_gamma)
                _nb_build = jit(_py_build)
                _KERNELS.update(
                    select=jit(_py_select), ok_matrices=jit(_py_ok_matrices),
                    ok_solve=jit(_py_ok_solve), krige_eval=jit(_py_krige_eval),
                    idw=jit(_py_idw), set_ids=jit(_py_set_ids),
                    ch_solve=jit(_py_ch_solve), ch_eval=jit(_py_ch_eval),
                )
    return _KERNELS


# --- neighbour selection ----------------------------------------------------------------
@dataclass
class _Samples:
    """Unique sample locations of one element group, with their tree."""

    xy: np.ndarray  # (n, 2), coordinates relative to the grid origin
    tree: cKDTree = field(repr=False)

    @property
    def n(self) -> int:
        return len(self.xy)


@dataclass
class _Neighbours:
    """k nearest samples of cells: indices ascending (sentinels last), distances, set keys."""

    idx: np.ndarray  # (c, k) int64
    d: np.ndarray  # (c, k) float64
    key: np.ndarray  # (c,) uint64 hash of the row
    d1: np.ndarray  # (c,) distance to the nearest sample


_HASH_CACHE: dict[int, np.ndarray] = {}


def _hash_mult(k: int) -> np.ndarray:
    if k not in _HASH_CACHE:
        mult = np.random.default_rng(20250826).integers(1, 2**62, size=k, dtype=np.uint64)
        _HASH_CACHE[k] = mult * np.uint64(2) + np.uint64(1)
    return _HASH_CACHE[k]


def _hash_rows(idx: np.ndarray) -> np.ndarray:
    return (idx.astype(np.uint64) * _hash_mult(idx.shape[1])).sum(axis=1, dtype=np.uint64)


def _knn_direct(ss: _Samples, q: np.ndarray, k: int) -> _Neighbours:
    """k nearest samples of each query point by tree queries, in ascending sample index."""
    d, idx = ss.tree.query(q, k=k)
    d, idx = d.reshape(len(q), k), idx.reshape(len(q), k).astype(np.int64)
    order = np.argsort(idx, axis=1, kind="stable")
    idx, d = np.take_along_axis(idx, order, 1), np.take_along_axis(d, order, 1)
    return _Neighbours(idx, d, _hash_rows(idx), d.min(axis=1))


def _knn_tiles(ss: _Samples, k: int, cxy: np.ndarray, tinv: np.ndarray, centres: np.ndarray,
               h: float) -> _Neighbours:
    """k nearest samples of cells grouped in tiles (one tree query per tile).

    A cell ``p`` of a tile with centre ``c`` and half-diagonal ``h`` has its k nearest
    within ``d_k(p) <= d_k(c) + h`` of it, hence within ``d_k(c) + 2h`` of ``c``: those
    are the tile's candidates, found among the centre's ``K`` nearest samples (a tile whose
    ball holds more than ``K`` samples falls back to per-cell queries).
    """
    n = len(cxy)
    out = _Neighbours(np.empty((n, k), np.int64), np.empty((n, k), np.float64),
                      np.empty(n, np.uint64), np.empty(n, np.float64))
    n_query = min(ss.n, max(_CANDIDATE_FACTOR * k + 8, k + 1))
    dc, ic = ss.tree.query(centres, k=n_query)
    dc, ic = dc.reshape(len(centres), n_query), ic.reshape(len(centres), n_query)
    radius = dc[:, k - 1] * (1 + 1e-9) + 2.0 * h + 1e-9
    inside = dc <= radius[:, None]
    big = inside[:, -1] & (n_query < ss.n)  # the ball may hold more samples than queried
    if big.any():  # clustered samples: per-cell queries for these tiles
        cells = np.flatnonzero(big[tinv])
        nb = _knn_direct(ss, cxy[cells], k)
        out.idx[cells], out.d[cells], out.key[cells], out.d1[cells] = nb.idx, nb.d, nb.key, nb.d1
    cells = np.flatnonzero(~big[tinv])
    if len(cells):
        cand = np.sort(np.where(inside, ic, ss.n), axis=1)  # ascending sample index
        n_cand = np.where(big, 0, inside.sum(axis=1))
        width = int(n_cand.max())
        cand = np.ascontiguousarray(cand[:, :width])
        pts = np.vstack([ss.xy, [[np.inf, np.inf]]])
        all_cells = len(cells) == n
        sub = out if all_cells else _Neighbours(
            np.empty((len(cells), k), np.int64), np.empty((len(cells), k), np.float64),
            np.empty(len(cells), np.uint64), np.empty(len(cells), np.float64))
        cx = cxy[:, 0] if all_cells else cxy[cells, 0]
        cy = cxy[:, 1] if all_cells else cxy[cells, 1]
        _kernels()["select"](
            np.ascontiguousarray(cx), np.ascontiguousarray(cy),
            np.ascontiguousarray(tinv if all_cells else tinv[cells], dtype=np.int64),
            cand, pts[cand, 0], pts[cand, 1], n_cand.astype(np.int64), k,
            _hash_mult(k), sub.idx, sub.d, sub.key, sub.d1,
        )
        if not all_cells:
            out.idx[cells], out.d[cells], out.key[cells], out.d1[cells] = (
                sub.idx, sub.d, sub.key, sub.d1)
    return out


def _apply_radius(nb: _Neighbours, radius: float | None, sentinel: int) -> _Neighbours:
    """Replace neighbours beyond ``radius`` by a sentinel placed last in each row."""
    if radius is None:
        return nb
    far = nb.d > radius
    if not far.any():
        return nb
    idx = np.where(far, sentinel, nb.idx)
    d = np.where(far, np.inf, nb.d)
    order = np.argsort(idx, axis=1, kind="stable")
    idx, d = np.take_along_axis(idx, order, 1), np.take_along_axis(d, order, 1)
    return _Neighbours(idx, d, _hash_rows(idx), nb.d1)


# --- the interpolators on neighbour arrays ----------------------------------------------
def _set_ids(nb: _Neighbours) -> tuple[np.ndarray, np.ndarray]:
    """Distinct neighbour sets: a representative cell of each, and each cell's set."""
    n = len(nb.idx)
    first = np.empty(n, np.int64)
    inv = np.empty(n, np.int64)
    n_sets = _kernels()["set_ids"](nb.idx, nb.key, first, inv)
    return first[:n_sets], inv


def _vg_args(vg: Mapping[str, Any]) -> tuple[np.ndarray]:
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


def _lapack_fallback(pts: np.ndarray, sets: np.ndarray, vg: Mapping[str, Any], z: np.ndarray,
                     alpha: np.ndarray, ainv: np.ndarray, bad: np.ndarray) -> None:
    """Least-squares solutions for the (rare) exactly singular systems."""
    k = sets.shape[1]
    a = np.empty((len(bad), k + 1, k + 1), np.float64)
    _kernels()["ok_matrices"](np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1]),
                              np.ascontiguousarray(sets[bad]), len(pts) - 1, *_vg_args(vg), a)
    for row, u in enumerate(bad):
        rhs = np.zeros((k + 1, z.shape[0]))
        rhs[:k] = z[:, sets[u]].T
        alpha[u] = np.linalg.lstsq(a[row], rhs, rcond=None)[0]
        if ainv.shape[0]:
            ainv[u] = np.linalg.pinv(a[row])


def _krige(pts: np.ndarray, z: np.ndarray, nb: _Neighbours,
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
    kern = _kernels()
    m, (c, k) = len(vgs), nb.idx.shape
    sentinel = len(pts) - 1
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
        args = _vg_args(vg)
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


def _krige_lu(pts: np.ndarray, zm: np.ndarray, nb: _Neighbours, inv: np.ndarray,
              sets: np.ndarray, status: np.ndarray, vg: Mapping[str, Any], want_var: bool,
              e_out: np.ndarray, v_out: np.ndarray) -> None:
    """Cells whose set failed Cholesky: pivoted LU of [[Gamma, 1], [1, 0]] (as PyKrige)."""
    kern = _kernels()
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
                     sub_sets, len(pts) - 1, *_vg_args(vg), zm, alpha, ainv, lu_status)
    if lu_status.any():
        _lapack_fallback(pts, sub_sets, vg, zm, alpha, ainv, np.flatnonzero(lu_status))
    e_sub = np.empty((len(zm), len(cells)), np.float64)
    v_sub = np.empty(len(cells), np.float64)
    kern["krige_eval"](np.ascontiguousarray(nb.idx[cells]), np.ascontiguousarray(nb.d[cells]),
                       remap[inv[cells]], alpha, ainv, len(pts) - 1, *_vg_args(vg),
                       EXACT_EPS, e_sub, v_sub)
    e_out[:, cells] = e_sub
    if want_var:
        v_out[cells] = v_sub


def _idw(z: np.ndarray, nb: _Neighbours, power: float) -> np.ndarray:
    """Inverse-distance weighted estimates (m, c); exact at a coincident sample."""
    est = np.empty((z.shape[0], len(nb.idx)), np.float64)
    _kernels()["idw"](nb.idx, nb.d, np.ascontiguousarray(z), z.shape[1] - 1, float(power),
                      EXACT_EPS, est)
    return est


def _prepare_points(sample_xy: np.ndarray, values: np.ndarray, query_xy: np.ndarray, k: int
                    ) -> tuple[_Samples, np.ndarray, np.ndarray, np.ndarray, int]:
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
    ss = _Samples(xy - origin, cKDTree(xy - origin))
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
    vg = _check_variogram(variogram, "variogram")
    ss, pts, zz, q, k = _prepare_points(sample_xy, values, query_xy, k)
    nb = _apply_radius(_knn_direct(ss, q, k), search_radius, ss.n)
    with _single_threaded_blas():
        est, var = _krige(pts, zz, nb, [vg] * len(zz), return_variance)
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
    nb = _apply_radius(_knn_direct(ss, q, k), search_radius, ss.n)
    est = _idw(zz, nb, float(power))
    return est[0] if np.ndim(values) == 1 else est


# --- the gridding plan ------------------------------------------------------------------
@dataclass
class _Group:
    """Elements valid at the same sample locations."""

    samples: _Samples
    elements: list[int]  # positions in the element list
    z: np.ndarray  # (len(elements), n + 1) log10 values, 0 at the sentinel
    k: int
    pts: np.ndarray = field(default_factory=lambda: np.empty((0, 2)), repr=False)


@dataclass
class _Plan:
    """Everything a chunk task needs (small: sample arrays, trees, parameters)."""

    xc: np.ndarray  # grid x relative to the origin
    yc: np.ndarray
    dx: float
    dy: float
    tile: int
    half_diag: float
    method: str
    power: float
    search_radius: float | None
    max_distance: float
    groups: list[_Group]
    union: _Samples
    union_group: int | None  # index of the group whose locations are the union
    variograms: list[dict[str, Any]]
    return_variance: bool
    n_el: int

    @property
    def n_out(self) -> int:
        return self.n_el * (2 if self.return_variance else 1) + 1


def _block_cells(plan: _Plan, rows: np.ndarray, cols: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cells of a block in tile order: flat position, global row/col, tile index; centres.

    Tiles are fixed on the whole grid (``tile`` × ``tile`` cells from the origin), so a
    cell's candidates never depend on how the grid is chunked.
    """
    t = plan.tile
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    tr0, tc0 = r0 // t, c0 // t
    nty, ntx = (r1 - 1) // t + 1 - tr0, (c1 - 1) // t + 1 - tc0
    rr = np.arange(tr0 * t, (tr0 + nty) * t).reshape(nty, t)
    shape = (nty, ntx, t, t)
    r_all = np.broadcast_to(rr[:, None, :, None], shape).ravel()
    # serpentine inside a tile: odd rows right to left, so each cell neighbours the last
    offset = np.where(np.arange(t)[:, None] % 2 == 0, np.arange(t), t - 1 - np.arange(t))
    c_all = ((tc0 + np.arange(ntx))[None, :, None, None] * t + offset[None, None]).repeat(
        nty, axis=0).ravel()
    keep = (r_all >= r0) & (r_all < r1) & (c_all >= c0) & (c_all < c1)
    r_all, c_all = r_all[keep], c_all[keep]
    tid = np.repeat(np.arange(nty * ntx), t * t)[keep]
    flat = (r_all - r0) * (c1 - c0) + (c_all - c0)
    gy, gx = np.divmod(np.arange(nty * ntx), ntx)
    centres = np.column_stack([
        plan.xc[0] + plan.dx * ((tc0 + gx) * t + (t - 1) / 2.0),
        plan.yc[0] + plan.dy * ((tr0 + gy) * t + (t - 1) / 2.0),
    ])
    return flat, r_all, c_all, tid, centres


def _neighbours(plan: _Plan, ss: _Samples, k: int, cxy: np.ndarray, tinv: np.ndarray,
                centres: np.ndarray) -> _Neighbours:
    if plan.tile < _MIN_TILE:
        return _knn_direct(ss, cxy, k)
    return _knn_tiles(ss, k, cxy, tinv, centres, plan.half_diag)


def _grid_block(plan: _Plan, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Compute one block: (n_out, len(rows), len(cols)) float32.

    Channels: concentrations (original units), [log10 variances], coverage (0/1).
    """
    nr, nc = len(rows), len(cols)
    out = np.full((plan.n_out, nr * nc), np.nan, np.float32)
    out[-1] = 0.0
    if nr == 0 or nc == 0:
        return out.reshape(plan.n_out, nr, nc)
    flat, r_all, c_all, tid, centres = _block_cells(plan, rows, cols)
    # a tile whose centre is farther than max_distance + half-diagonal holds no covered cell
    d1c = plan.union.tree.query(centres, k=1)[0]
    alive = np.flatnonzero((d1c - plan.half_diag <= plan.max_distance)[tid])
    with _single_threaded_blas():
        for start in range(0, len(alive), _BATCH_CELLS):
            cells = alive[start:start + _BATCH_CELLS]
            _grid_batch(plan, flat[cells], r_all[cells], c_all[cells], tid[cells], centres, out)
    return out.reshape(plan.n_out, nr, nc)


def _grid_batch(plan: _Plan, flat: np.ndarray, r_all: np.ndarray, c_all: np.ndarray,
                tid: np.ndarray, centres: np.ndarray, out: np.ndarray) -> None:
    cxy = np.column_stack([plan.xc[c_all], plan.yc[r_all]])
    t_lo = int(tid.min())
    present = np.zeros(int(tid.max()) - t_lo + 1, bool)
    present[tid - t_lo] = True
    tinv = (np.cumsum(present) - 1)[tid - t_lo]
    centres = centres[t_lo + np.flatnonzero(present)]
    cache: dict[int, _Neighbours] = {}
    if plan.union_group is not None:
        g = plan.groups[plan.union_group]
        cache[plan.union_group] = _neighbours(plan, g.samples, g.k, cxy, tinv, centres)
        d1 = cache[plan.union_group].d1
    else:
        d1 = _neighbours(plan, plan.union, 1, cxy, tinv, centres).d1
    covered = d1 <= plan.max_distance
    out[-1, flat] = covered
    if not covered.any():
        return
    # every cell of the batch is computed (gathering the covered rows costs more than the
    # few uncovered cells of live tiles); uncovered cells are set to NaN afterwards
    for gi, g in enumerate(plan.groups):
        if gi in cache:
            nb = cache[gi]
            keep = covered
        else:
            nb = _neighbours(plan, g.samples, g.k, cxy, tinv, centres)
            keep = covered & (nb.d1 <= plan.max_distance)  # this group's own coverage
        nb = _apply_radius(nb, plan.search_radius, g.samples.n)
        if plan.method == "idw":
            est, var = _idw(g.z, nb, plan.power), None
        else:
            vgs = [plan.variograms[e] for e in g.elements]
            est, var = _krige(g.pts, g.z, nb, vgs, plan.return_variance)
        drop = ~keep
        for row, e in enumerate(g.elements):
            vals = (10.0 ** est[row]).astype(np.float32)
            vals[drop] = np.nan
            out[e, flat] = vals
            if var is not None:
                v = np.maximum(var[row], 0.0).astype(np.float32)
                v[drop] = np.nan
                out[plan.n_el + e, flat] = v


# --- input checks -------------------------------------------------------------------------
def _element_columns(samples: Any, elements: Sequence[str] | None) -> list[str]:
    columns = [c for c in samples.columns if c != samples.geometry.name]
    if elements is None:
        elements = [c for c in columns if str(c) in schema.KNOWN_ELEMENTS]
        if not elements:
            raise SchemaError(
                f"samples: expected element columns (chemical symbols), found {columns}"
            )
    elements = [str(e) for e in elements]
    if not elements:
        raise SchemaError("elements: expected at least one element, found an empty list")
    if len(set(elements)) != len(elements):
        raise SchemaError(f"elements: expected distinct names, found {elements}")
    missing = [e for e in elements if e not in samples.columns]
    if missing:
        raise SchemaError(f"samples: expected columns {missing}, found {columns}")
    import pandas as pd

    for e in elements:
        col = samples[e]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise DataError(
                f"samples column '{e}': expected numbers (censored values parsed by "
                f"geochem_sr.io.read_samples), found dtype {col.dtype}"
            )
    return elements


def _sample_points(samples: Any, grid: xr.Dataset) -> tuple[Any, np.ndarray]:
    import geopandas as gpd

    if not isinstance(samples, gpd.GeoDataFrame):
        raise SchemaError(f"samples: expected a geopandas.GeoDataFrame, found {type(samples)}")
    if samples.crs is None:
        raise CRSError("samples: expected a CRS (samples.set_crs(...)), found none")
    crs = grid.rio.crs
    if not samples.crs.equals(crs.to_wkt()):
        samples = samples.to_crs(crs.to_wkt())
    geom = samples.geometry
    missing = (geom.isna() | geom.is_empty).to_numpy()
    if missing.any():
        warnings.warn(f"samples: {int(missing.sum())} rows without geometry left out",
                      UserWarning, stacklevel=3)
        samples = samples.loc[~missing]
        geom = samples.geometry
    kinds = set(geom.geom_type.unique())
    if kinds - {"Point"}:
        raise DataError(f"samples geometry: expected points, found {sorted(kinds)}")
    xy = np.column_stack([geom.x.to_numpy(float), geom.y.to_numpy(float)])
    if not np.isfinite(xy).all():
        raise DataError("samples geometry: expected finite coordinates, found NaN/inf")
    return samples, xy


def _log_values(samples: Any, elements: list[str]) -> np.ndarray:
    z = np.empty((len(elements), len(samples)), np.float64)
    for i, e in enumerate(elements):
        v = samples[e].to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(v)
        if not finite.any():
            raise DataError(
                f"samples column '{e}': every value is NaN (all censored or missing); "
                "leave it out of `elements` or choose another censoring policy"
            )
        if (v[finite] <= 0).any():
            raise DataError(
                f"samples column '{e}': expected positive concentrations (gridding is in "
                f"log10), found {int((v[finite] <= 0).sum())} values <= 0 "
                f"(min {v[finite].min():g})"
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            z[i] = np.log10(v)
    return z


def _merge_duplicates(xy: np.ndarray, z: np.ndarray, tol: float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Average (in log10) the values of samples at one location; warn with the count.

    Also returns the nearest-neighbour distances when no location was merged (else None).
    """
    if len(xy) < 2:
        return xy, z, None
    d, _ = cKDTree(xy).query(xy, k=2)
    if d[:, 1].min() > tol:  # no two samples at one location
        return xy, z, d[:, 1]
    key = np.round(xy / tol).astype(np.int64)
    _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inv = inv.ravel()
    n_loc = len(first)
    if n_loc == len(xy):
        return xy, z, None
    counts = np.bincount(inv, minlength=n_loc)
    spread = 0.0
    out = np.empty((len(z), n_loc), np.float64)
    for i, zi in enumerate(z):
        ok = np.isfinite(zi)
        num = np.bincount(inv[ok], zi[ok], minlength=n_loc)
        cnt = np.bincount(inv[ok], minlength=n_loc)
        with np.errstate(invalid="ignore"):
            out[i] = np.where(cnt > 0, num / np.maximum(cnt, 1), np.nan)
            dev = np.abs(zi[ok] - out[i][inv[ok]])
        spread = max(spread, float(dev.max()) if dev.size else 0.0)
    warnings.warn(
        f"samples: {len(xy) - n_loc} samples share {int((counts > 1).sum())} locations "
        f"with others; their values were averaged in log10 space (largest deviation from "
        f"a mean {spread:.3g} log10 units)",
        UserWarning,
        stacklevel=3,
    )
    return xy[first], out, None


def _groups(xy: np.ndarray, z: np.ndarray, k: int, elements: list[str]
            ) -> tuple[list[_Group], _Samples, int | None]:
    valid = np.isfinite(z)
    union = valid.any(axis=0)
    xy, z, valid = xy[union], z[:, union], valid[:, union]
    union_ss = _Samples(xy, cKDTree(xy))
    groups: list[_Group] = []
    union_group = None
    seen: dict[bytes, int] = {}
    for e in range(len(z)):
        key = valid[e].tobytes()
        if key in seen:
            groups[seen[key]].elements.append(e)
            continue
        seen[key] = len(groups)
        m = valid[e]
        ss = union_ss if m.all() else _Samples(xy[m], cKDTree(xy[m]))
        if m.all():
            union_group = len(groups)
        groups.append(_Group(ss, [e], np.empty(0), 0))
    for g in groups:
        m = valid[g.elements[0]]
        n = g.samples.n
        names = [elements[e] for e in g.elements]
        if n < 3:
            raise DataError(
                f"samples {names}: expected at least 3 sample locations with values, found {n}"
            )
        if n < k:
            warnings.warn(
                f"samples {names}: {n} locations with values, fewer than k={k}; using all "
                f"{n} as the neighbourhood", UserWarning, stacklevel=3,
            )
        g.k = min(k, n)
        g.z = np.concatenate([z[g.elements][:, m], np.zeros((len(g.elements), 1))], axis=1)
        g.pts = np.vstack([g.samples.xy, [[0.0, 0.0]]])  # with the sentinel row
    return groups, union_ss, union_group


def _variograms(groups: list[_Group], elements: list[str], variogram: Any, seed: int,
                union: _Samples, spacing: float
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    given: dict[str, Any] = {}
    if variogram is not None:
        if not isinstance(variogram, Mapping):
            raise DataError(f"variogram: expected a dict, found {type(variogram).__name__}")
        if "model" in variogram or "range" in variogram:
            given = {e: _check_variogram(variogram, "variogram") for e in elements}
        else:
            given = {str(e): _check_variogram(v, f"variogram['{e}']")
                     for e, v in variogram.items() if str(e) in elements}
    out: list[dict[str, Any]] = [{} for _ in elements]
    record: dict[str, Any] = {}
    for g in groups:
        for row, e in enumerate(g.elements):
            name = elements[e]
            if name in given:
                out[e] = given[name]
                record[name] = {**given[name], "source": "given"}
            else:
                max_lag = None
                if g.samples is union:  # the spacing is known: skip its recomputation
                    diag = float(np.hypot(*np.ptp(union.xy, axis=0)))
                    max_lag = min(0.5 * diag, 12.0 * spacing) or None
                out[e] = fit_variogram(g.samples.xy, g.z[row, :-1], seed=seed,
                                       max_lag=max_lag, name=f"variogram of '{name}'")
                record[name] = {**out[e], "source": "fitted"}
    return out, record


def _chunk_sizes(grid: xr.Dataset, chunks: int | Mapping[str, int] | None
                 ) -> tuple[int, int] | None:
    if chunks is None:
        sizes = grid.chunksizes if grid.chunks else {}
        if schema.Y in sizes or schema.X in sizes:
            cy = sizes.get(schema.Y, (grid.sizes[schema.Y],))[0]
            cx = sizes.get(schema.X, (grid.sizes[schema.X],))[0]
            return int(cy), int(cx)
        return None
    if isinstance(chunks, Mapping):
        cy = chunks.get(schema.Y, _BLOCK)
        cx = chunks.get(schema.X, _BLOCK)
    else:
        cy = cx = chunks
    cy = grid.sizes[schema.Y] if cy in (-1, None) else int(cy)
    cx = grid.sizes[schema.X] if cx in (-1, None) else int(cx)
    if cy < 1 or cx < 1:
        raise SchemaError(f"chunks: expected positive sizes, found {chunks!r}")
    return cy, cx


def _compute(plan: _Plan, ny: int, nx: int, sizes: tuple[int, int] | None) -> Any:
    if sizes is None:
        data = np.empty((plan.n_out, ny, nx), np.float32)
        for r0 in range(0, ny, _BLOCK):
            for c0 in range(0, nx, _BLOCK):
                rows = np.arange(r0, min(r0 + _BLOCK, ny))
                cols = np.arange(c0, min(c0 + _BLOCK, nx))
                data[:, r0:r0 + len(rows), c0:c0 + len(cols)] = _grid_block(plan, rows, cols)
        return data
    import dask
    import dask.array as da
    from dask.base import tokenize

    token = tokenize(
        [(g.samples.xy, g.z, g.k, g.elements) for g in plan.groups], plan.xc, plan.yc,
        plan.method, plan.power, plan.search_radius, plan.max_distance,
        json.dumps(plan.variograms, sort_keys=True), plan.return_variance, sizes,
    )
    plan_d = dask.delayed(plan, name=f"grid-plan-{token}", traverse=False)
    rows = da.arange(ny, chunks=sizes[0])
    cols = da.arange(nx, chunks=sizes[1])
    with warnings.catch_warnings():  # one output chunk per (y, x) pair is the point
        warnings.simplefilter("ignore", da.PerformanceWarning)
        return da.blockwise(
            _grid_block_task, "vyx", plan_d, None, rows, "y", cols, "x",
            new_axes={"v": plan.n_out}, dtype=np.float32,
            meta=np.empty((0, 0, 0), np.float32), name=f"grid-samples-{token}",
        )


def _grid_block_task(plan: _Plan, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return _grid_block(plan, rows, cols)


def grid_samples(
    samples: geopandas.GeoDataFrame,
    grid: xr.Dataset,
    elements: Sequence[str] | None = None,
    method: str = "kriging",
    *,
    k: int = 16,
    power: float = 2.0,
    search_radius: float | None = None,
    max_distance: float | None = None,
    variogram: dict | None = None,
    return_variance: bool = False,
    chunks: int | dict | None = None,
    coverage_factor: float = COVERAGE_FACTOR,
    duplicate_tolerance: float = DUPLICATE_TOLERANCE,
    seed: int = 0,
) -> xr.Dataset:
    """Grid point samples onto the survey grid, in log10 space.

    Parameters
    ----------
    samples : geopandas.GeoDataFrame
        Point samples with numeric element columns (censored values already parsed by
        :func:`geochem_sr.io.read_samples`: NaN = no value) and a CRS; reprojected to the
        grid's CRS if needed. ``samples.attrs["units"]`` (element -> unit), if present,
        gives the ``element_units`` coordinate.
    grid : xarray.Dataset
        The target grid (``x``, ``y`` cell centres and a projected CRS, e.g. from
        :func:`geochem_sr.schema.make_grid`); ``y`` may ascend or descend.
    elements : sequence of str, optional
        Columns to grid; default every column named like a chemical element.
    method : {"kriging", "idw"}, default "kriging"
        Local ordinary kriging or inverse-distance weighting.
    k : int, default 16
        Neighbours per cell (all locations, with a warning, if fewer; at least 3 needed).
    power : float, default 2
        IDW power.
    search_radius : float, optional
        Neighbours farther than this from a cell are left out.
    max_distance : float, optional
        Coverage: cells farther than this from every sample are NaN (never extrapolated).
        Default ``coverage_factor`` × the median nearest-neighbour distance between sample
        locations, and at least half a cell diagonal.
    variogram : dict, optional
        Kriging variogram(s): one dict ``{"model", "range", "sill", "nugget"}`` for every
        element, or ``{element: dict}`` (other elements fitted). ``sill`` is the total sill
        of log10 values, ``range`` the practical range in metres (PyKrige's conventions).
        Default: fitted per element (:func:`fit_variogram`).
    return_variance : bool, default False
        Also return ``log10_variance``, the kriging variance (kriging only).
    chunks : int or dict, optional
        Build a lazy dask result computed chunk by chunk (``{"y": 512, "x": 512}``); default:
        the grid's own chunks if it is dask-backed, else computed now (in 512² blocks).
    coverage_factor : float, default 2
        See ``max_distance``.
    duplicate_tolerance : float, default 1e-3
        Samples closer than this (metres) are one location; their values are averaged in
        log10 space, with a warning.
    seed : int, default 0
        Seed of the variogram's pair subsample (same seed, same numbers).

    Returns
    -------
    xarray.Dataset
        ``concentration`` (element, y, x) float32 in original units, NaN off coverage;
        ``coverage`` (y, x) bool; optionally ``log10_variance`` (element, y, x) float32.
        Grid coords and CRS kept; attrs record the method, the parameters and, for
        kriging, the variogram of each element (JSON in ``variograms``).

    Raises
    ------
    GeoSRError
        ``SchemaError`` (missing columns, bad parameters), ``CRSError`` (no CRS, geographic
        grid), ``DataError`` (non-numeric or non-positive values, an element with no value,
        fewer than 3 locations, no sample inside the grid).

    Examples
    --------
    >>> out = grid_samples(samples, grid, ["As", "Cu"], method="idw")  # doctest: +SKIP
    >>> out.concentration.sel(element="As").plot()  # doctest: +SKIP
    """
    import rioxarray  # noqa: F401  (registers .rio)

    if method not in METHODS:
        raise GeoSRError(f"method: expected one of {METHODS}, found {method!r}")
    if return_variance and method != "kriging":
        raise GeoSRError(
            f"return_variance: a kriging variance exists only for method='kriging', "
            f"found method={method!r}"
        )
    if int(k) < 1:
        raise GeoSRError(f"k: expected a positive number of neighbours, found {k}")
    for name, val in (("search_radius", search_radius), ("max_distance", max_distance)):
        if val is not None and not float(val) > 0:
            raise GeoSRError(f"{name}: expected a positive distance in metres, found {val}")
    dx, dy = schema.check_grid(grid, "grid")
    schema.check_crs(grid, "grid")
    elements = _element_columns(samples, elements)
    samples, xy = _sample_points(samples, grid)
    z = _log_values(samples, elements)
    xy, z, nn_dist = _merge_duplicates(xy, z, duplicate_tolerance)

    x = np.asarray(grid[schema.X].values, np.float64)
    y = np.asarray(grid[schema.Y].values, np.float64)
    x_lo, x_hi = x.min() - abs(dx) / 2, x.max() + abs(dx) / 2
    y_lo, y_hi = y.min() - abs(dy) / 2, y.max() + abs(dy) / 2
    inside = (xy[:, 0] >= x_lo) & (xy[:, 0] <= x_hi) & (xy[:, 1] >= y_lo) & (xy[:, 1] <= y_hi)
    if not (inside & np.isfinite(z).any(axis=0)).any():
        raise DataError(
            f"samples: expected points inside the grid [{x_lo:.1f}, {x_hi:.1f}] x "
            f"[{y_lo:.1f}, {y_hi:.1f}], found none (samples span x [{xy[:, 0].min():.1f}, "
            f"{xy[:, 0].max():.1f}], y [{xy[:, 1].min():.1f}, {xy[:, 1].max():.1f}]); "
            "check the CRS"
        )
    origin = np.array([x[0], y[0]])
    groups, union, union_group = _groups(xy - origin, z, int(k), elements)
    cell_diag = float(np.hypot(dx, dy))
    spacing = (float(np.median(nn_dist)) if nn_dist is not None and union.n == len(xy)
               else _median_spacing(union.xy, union.tree))
    if max_distance is None:
        max_distance = max(coverage_factor * spacing, 0.5 * cell_diag)
    vgs, record = (_variograms(groups, elements, variogram, seed, union, spacing)
                   if method == "kriging"
                   else ([{} for _ in elements], {}))
    kmax = max(g.k for g in groups)
    dk = spacing * np.sqrt(kmax) * 1.2  # typical distance to the k-th neighbour
    tile = int(np.clip(1 + _TILE_FACTOR * dk / cell_diag, 1, 64))
    plan = _Plan(
        xc=x - origin[0], yc=y - origin[1], dx=float(dx), dy=float(dy), tile=tile,
        half_diag=0.5 * (tile - 1) * cell_diag * (1 + 1e-6) + 1e-3 * cell_diag,
        method=method, power=float(power),
        search_radius=None if search_radius is None else float(search_radius),
        max_distance=float(max_distance), groups=groups, union=union,
        union_group=union_group, variograms=vgs, return_variance=return_variance,
        n_el=len(elements),
    )
    data = _compute(plan, len(y), len(x), _chunk_sizes(grid, chunks))
    return _as_dataset(data, plan, grid, samples, elements, record, len(xy))


def _as_dataset(data: Any, plan: _Plan, grid: xr.Dataset, samples: Any,
                elements: list[str], record: dict[str, Any], n_locations: int) -> xr.Dataset:
    n_el = plan.n_el
    coords: dict[str, Any] = {schema.Y: grid[schema.Y], schema.X: grid[schema.X]}
    if schema.SPATIAL_REF in grid.coords:
        coords[schema.SPATIAL_REF] = grid[schema.SPATIAL_REF]
    units_attr = samples.attrs.get("units") if isinstance(samples.attrs, dict) else None
    units = [str((units_attr or {}).get(e, schema.DEFAULT_UNITS.get(e, "ppm")))
             for e in elements]
    coords[schema.ELEMENT] = np.array(elements, dtype=str)
    coords[schema.ELEMENT_UNITS] = (schema.ELEMENT, np.array(units, dtype=str))
    dims3 = (schema.ELEMENT, schema.Y, schema.X)
    out = xr.Dataset(coords=coords)
    out[CONCENTRATION] = xr.DataArray(data[:n_el], dims=dims3, attrs={
        "long_name": f"element concentration ({plan.method} in log10 space)",
        "units": "see element_units",
    })
    if plan.return_variance:
        out[LOG10_VARIANCE] = xr.DataArray(data[n_el:2 * n_el], dims=dims3, attrs={
            "long_name": "ordinary-kriging variance of log10 concentration",
            "units": "log10 units squared",
        })
    out[COVERAGE] = xr.DataArray(data[-1] > 0.5, dims=(schema.Y, schema.X), attrs={
        "long_name": f"a sample lies within {plan.max_distance:.1f} m",
    })
    out.attrs.update({
        "gridding_method": plan.method,
        "k": int(max(g.k for g in plan.groups)),
        "power": plan.power if plan.method == "idw" else "n/a",
        "search_radius": plan.search_radius if plan.search_radius is not None else "none",
        "max_distance": plan.max_distance,
        "n_locations": int(n_locations),
        "variograms": json.dumps(record, sort_keys=True),
    })
    out = out.rio.write_crs(grid.rio.crs)
    return out.rio.write_transform(grid.rio.transform())

