"""The classical maps a geochemist would use instead of a network, on the survey grid.

The sparse map as built, IDW and ordinary kriging of the sparse samples, the re-tuned
interpolation (:func:`geochem_sr.gridding.retune_interpolation`: per element, the kriging or
IDW setting whose map of the sparse samples is closest to the dense map on the training and
validation blocks), and :func:`regression_kriging` on terrain and geology, and on every
covariate group the survey holds (terrain, geology, fault and contact distances).

The re-tuned interpolation is a gridding step, not a model kind: it grids the samples
themselves, which a survey dataset does not hold (its ``lr`` is already a map of them), so
it cannot be applied tile by tile to a dataset as a model is. It is the bar a learned
correction of a survey with geochemistry only has to clear.

Regression kriging has no use for the ``unseen:`` channels (a covariate minus what the
sparse sites see of it): at a sparse site that difference is about 0, so a regression at
the sites cannot estimate its coefficient. It needs none either: kriging is linear in
its data, so regression kriging on a covariate ``c`` is the kriged sparse map plus
``beta * (c - kriging of c from the sites)``, nearly the ``unseen:c`` channel, with
``beta`` fitted at the sparse sites. Fitting that coefficient on the dense map instead is
what the per-cell ridge does (:mod:`geochem_sr.training.cells`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError
from geochem_sr.experiment.profiles import Log, Profile
from geochem_sr.experiment.scoring import as_prediction, grid_of
from geochem_sr.features import ASPECT_COS, ASPECT_SIN, stack_inputs

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd

__all__ = ["regression_kriging", "all_covariates", "classical_baselines"]


def _site_cells(xy: np.ndarray, ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column of the grid cell holding each site; and whether it is on the grid."""
    x = np.asarray(ds[schema.X].values, float)
    y = np.asarray(ds[schema.Y].values, float)
    dx, dy = x[1] - x[0], y[1] - y[0]
    col = np.rint((xy[:, 0] - x[0]) / dx).astype(int)
    row = np.rint((xy[:, 1] - y[0]) / dy).astype(int)
    ok = (col >= 0) & (col < x.size) & (row >= 0) & (row < y.size)
    return np.clip(row, 0, y.size - 1), np.clip(col, 0, x.size - 1), ok


def _covariate_names(ds: xr.Dataset) -> list[str]:
    """Channels of the regression: terrain, aspect as sine and cosine, the word vector."""
    names = [schema.ELEVATION, schema.SLOPE, ASPECT_SIN, ASPECT_COS]
    if schema.GEOLOGY_EMBEDDING in ds.data_vars:
        names += [f"{schema.EMBEDDING}:{i}" for i in range(ds.sizes[schema.EMBEDDING])]
    return names


def all_covariates(ds: xr.Dataset) -> list[str]:
    """Every covariate channel ``ds`` provides (:func:`~geochem_sr.features.covariate_channels`:
    terrain, geology, fault and contact distances), for :func:`regression_kriging`."""
    from geochem_sr.features import covariate_channels

    return covariate_channels(ds)


def regression_kriging(
    samples: gpd.GeoDataFrame,
    ds: xr.Dataset,
    *,
    elements: Sequence[str] | None = None,
    k: int = 16,
    seed: int = 0,
    covariates: Sequence[str] | None = None,
) -> tuple[xr.DataArray, dict[str, Any]]:
    """Regression kriging of point samples on the terrain and geology of a survey dataset.

    For each element: ordinary least squares of the log10 sample values on the covariates
    read at the sample sites (the grid cell holding the site), the covariates being
    elevation, slope, aspect as sine and cosine (flat cells 0, as the networks see them)
    and the geology word vector, each standardised over the sites; then ordinary kriging
    (:func:`geochem_sr.gridding.grid_samples`, local neighbourhood of ``k`` samples,
    variogram fitted to the residuals) of the regression residuals; the map is
    ``10 ** (trend + kriged residual)``. Where a covariate is missing on the grid (e.g.
    no geological unit at the border) its standardised value is taken as 0, the mean of
    the sites. Sites with a missing covariate are left out of the fit and of the kriging.

    Parameters
    ----------
    samples : geopandas.GeoDataFrame
        Point samples with numeric element columns (censored values parsed, e.g. by
        :func:`geochem_sr.io.read_samples`), in the CRS of ``ds``.
    ds : xarray.Dataset
        Survey dataset with ``elevation``, ``slope``, ``aspect`` and, optionally,
        ``geology_embedding``.
    elements : sequence of str, optional
        Elements to map (default: those of ``ds``).
    k : int, default 16
        Kriging neighbours.
    seed : int, default 0
        Seed of the variogram fit's pair subsample.
    covariates : sequence of str, optional
        Input channels of the regression (names of
        :func:`geochem_sr.features.stack_inputs`); default: elevation, slope, aspect as
        sine and cosine and the geology word vector. :func:`all_covariates` gives every
        covariate group of ``ds``.

    Returns
    -------
    (xarray.DataArray, dict)
        The map ``(element, y, x)`` in original units, NaN outside the kriging coverage;
        and per element the regression: ``coefficients`` (per standardised covariate),
        ``intercept``, ``r2`` over the sites, ``n_sites``.

    Raises
    ------
    SchemaError
        A covariate is missing from ``ds``.
    DataError
        An element has fewer usable sites than covariates + 2.
    """
    import geopandas as gpd

    from geochem_sr.gridding import grid_samples

    elements = [str(e) for e in (elements or ds[schema.ELEMENT].values)]
    names = list(covariates) if covariates is not None else _covariate_names(ds)
    cov = np.asarray(stack_inputs(ds, names).values, np.float64)  # (C, y, x)
    xy = np.column_stack([samples.geometry.x.to_numpy(), samples.geometry.y.to_numpy()])
    row, col, on_grid = _site_cells(xy, ds)
    at_sites = cov[:, row, col].T  # (n, C)
    usable = on_grid & np.isfinite(at_sites).all(axis=1)
    mean = at_sites[usable].mean(axis=0)
    std = at_sites[usable].std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    xs = (at_sites - mean) / std
    grid_std = np.nan_to_num((cov - mean[:, None, None]) / std[:, None, None], nan=0.0)

    resid = {}
    trend = np.empty((len(elements), *cov.shape[1:]), np.float64)
    info: dict[str, Any] = {"covariates": names}
    for i, el in enumerate(elements):
        v = samples[el].to_numpy(dtype=float)
        z = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
        fit = usable & np.isfinite(z)
        if fit.sum() < len(names) + 2:
            raise DataError(f"regression kriging: element '{el}' has {int(fit.sum())} usable "
                            f"sites, expected at least {len(names) + 2}")
        a = np.column_stack([np.ones(int(fit.sum())), xs[fit]])
        beta, *_ = np.linalg.lstsq(a, z[fit], rcond=None)
        pred_sites = a @ beta
        ss_res = float(((z[fit] - pred_sites) ** 2).sum())
        ss_tot = float(((z[fit] - z[fit].mean()) ** 2).sum())
        r = np.full(z.shape, np.nan)
        r[fit] = z[fit] - pred_sites
        resid[el] = 10.0 ** r
        trend[i] = beta[0] + np.tensordot(beta[1:], grid_std, axes=1)
        info[el] = {"intercept": float(beta[0]),
                    "coefficients": dict(zip(names, map(float, beta[1:]), strict=True)),
                    "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan,
                    "n_sites": int(fit.sum())}
    frame = gpd.GeoDataFrame(resid, geometry=samples.geometry.values, crs=samples.crs)
    frame.attrs["units"] = {el: "1" for el in elements}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        kriged = grid_samples(frame, grid_of(ds), elements=elements, method="kriging", k=k,
                              seed=seed)
    res = np.asarray(kriged["concentration"].transpose(schema.ELEMENT, schema.Y, schema.X)
                     .values, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = 10.0 ** (trend + np.log10(res))
    out = as_prediction(xr.DataArray(values, dims=(schema.ELEMENT, schema.Y, schema.X),
                                coords={schema.ELEMENT: elements}), ds, elements)
    out.attrs = {"long_name": "regression kriging of the sparse samples",
                 "covariates": ", ".join(names)}
    return out, info


def _retuned(sparse: gpd.GeoDataFrame, ds: xr.Dataset, elements: list[str],
             fit_mask: np.ndarray, seed: int) -> tuple[xr.DataArray, dict[str, Any]]:
    """The re-tuned interpolation's map and, per element, its setting."""
    import json

    from geochem_sr.gridding import RETUNE_SETTINGS, retune_interpolation

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = retune_interpolation(sparse, grid_of(ds), ds[schema.HR], fit_mask,
                                   elements=elements, seed=seed)
    record = json.loads(out.attrs["retuned"])
    return (as_prediction(out["concentration"], ds, elements),
            {"what": f"per element, the best of {len(RETUNE_SETTINGS)} kriging and IDW settings "
                     f"of the {len(sparse)} sparse samples on {int(np.sum(fit_mask))} "
                     "training and validation cells (the default kriging unless one is 1 % "
                     "closer)",
             "settings": {el: r["setting"] for el, r in record.items()}})


def classical_baselines(region: Any, ds: xr.Dataset, profile: Profile, seed: int, log: Log,
                        fit_mask: np.ndarray | None = None
                        ) -> tuple[dict[str, xr.DataArray], dict[str, Any]]:
    """Maps of the classical baselines (:data:`BASELINES`) and what they are.

    ``fit_mask`` (``(y, x)`` bool): the cells the re-tuned interpolation is fitted on (the
    training and validation blocks; never the test blocks); without it there is no
    ``"retuned"`` map. Returns the maps by baseline key and, per key, a description, the
    seconds it took and (ordinary kriging) the variograms and whether the map equals the
    survey's ``lr``, (re-tuned) the setting chosen per element.
    """
    from geochem_sr import io
    from geochem_sr.gridding import grid_samples

    elements = [str(e) for e in ds[schema.ELEMENT].values]
    sparse = io.read_samples(region.samples_sparse, elements,
                             censored=ds.attrs.get(schema.ATTR_CENSORING, "half"),
                             target_crs=ds.rio.crs)
    maps: dict[str, xr.DataArray] = {}
    info: dict[str, Any] = {}
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    maps["sparse"] = as_prediction(ds[schema.LR], ds, elements)
    info["sparse"] = {"what": f"lr as built by build_survey ({ds.attrs.get('gridding_method')})"}
    seconds["sparse"] = time.perf_counter() - t0
    for key, method in (("idw", "idw"), ("kriging", "kriging")):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = grid_samples(sparse, grid_of(ds), elements=elements, method=method,
                               k=profile.k, seed=seed)
        maps[key] = as_prediction(out["concentration"], ds, elements)
        info[key] = {"what": f"{method} of the {len(sparse)} sparse samples, k={profile.k}"}
        if method == "kriging":
            info[key]["variograms"] = out.attrs.get("variograms")
        seconds[key] = time.perf_counter() - t0
        log(f"baseline {key}: {seconds[key]:.1f} s")
    same = np.array_equal(np.asarray(maps["kriging"].values), np.asarray(maps["sparse"].values),
                          equal_nan=True)
    info["kriging"]["equals_lr"] = bool(same)
    if fit_mask is not None:
        t0 = time.perf_counter()
        maps["retuned"], info["retuned"] = _retuned(sparse, ds, elements, fit_mask, seed)
        seconds["retuned"] = time.perf_counter() - t0
        log(f"baseline retuned: {seconds['retuned']:.1f} s")
    t0 = time.perf_counter()
    maps["regression_kriging"], info["regression_kriging"] = regression_kriging(
        sparse, ds, elements=elements, k=profile.k, seed=seed)
    seconds["regression_kriging"] = time.perf_counter() - t0
    log(f"baseline regression_kriging: {seconds['regression_kriging']:.1f} s")
    t0 = time.perf_counter()
    maps["regression_kriging_all"], info["regression_kriging_all"] = regression_kriging(
        sparse, ds, elements=elements, k=profile.k, seed=seed, covariates=all_covariates(ds))
    seconds["regression_kriging_all"] = time.perf_counter() - t0
    log(f"baseline regression_kriging_all: {seconds['regression_kriging_all']:.1f} s")
    for key in maps:
        info[key]["seconds"] = seconds[key]
    return maps, info
