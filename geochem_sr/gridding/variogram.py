"""Variograms: the model semivariance, the empirical variogram of point values, and its fit.

Conventions follow PyKrige: ``sill`` is the total sill (nugget included), ``range`` the
practical range in metres.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from geochem_sr.errors import DataError

__all__ = [
    "VARIOGRAM_MODELS",
    "check_variogram",
    "empirical_variogram",
    "fit_variogram",
    "median_spacing",
    "semivariance",
]

VARIOGRAM_MODELS = ("spherical", "exponential", "gaussian")


def check_variogram(params: Mapping[str, Any], name: str) -> dict[str, Any]:
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


def median_spacing(xy: np.ndarray, tree: cKDTree | None = None) -> float:
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
        max_lag = min(0.5 * diag, 12.0 * median_spacing(xy, tree)) or 0.5 * diag
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
        return _fallback_variogram(z, median_spacing(xy), "all values are equal", name)
    lags, gamma, counts = empirical_variogram(xy, z, n_lags=n_lags, max_lag=max_lag, seed=seed)
    ok = (counts >= 10) & np.isfinite(gamma)
    if ok.sum() < 3:
        return _fallback_variogram(z, median_spacing(xy), "fewer than 3 lag bins with 10 pairs",
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
        return _fallback_variogram(z, median_spacing(xy), "the fitted sill is 0", name)
    return vg

