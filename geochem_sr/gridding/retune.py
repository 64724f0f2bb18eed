"""Re-tuned interpolation: the sparse samples gridded with the settings that best reproduce
the dense map where it is known (:func:`retune_interpolation`).

The sparse map is kriged with a variogram fitted to the sparse samples themselves, the
only choice a survey without a denser one allows. Where a denser survey covers part of
the region, the interpolation can be tuned to it instead: per element, the neighbourhood
(``k``), the kriging nugget's share of the sill, or inverse-distance weighting with its
power, whichever map of the sparse samples is closest (log10 RMSE) to the dense map on
the cells given to fit on. It is what a geochemist would try before any regression, and
the bar a learned correction of a survey with geochemistry only has to clear. It needs
the samples, so it is a gridding step, not a model applied to grids.

Examples
--------
>>> out = retune_interpolation(samples, grid, hr, fit_mask)  # doctest: +SKIP
>>> json.loads(out.attrs["retuned"])["As"]["setting"]  # doctest: +SKIP
{'method': 'kriging', 'k': 32, 'nugget_share': 0.6}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError, SchemaError
from geochem_sr.gridding.grid import CONCENTRATION, grid_samples

__all__ = ["retune_interpolation", "RETUNE_SETTINGS", "RETUNE_MIN_GAIN"]

#: A setting replaces the default kriging of an element only when it lowers the RMSE on the
#: fitting cells by at least this share: the best of 18 settings by a hair is noise.
RETUNE_MIN_GAIN = 0.01
_DEFAULT = {"method": "kriging", "k": 16, "nugget_share": None}

#: The settings tried, per element: ordinary kriging with ``k`` neighbours and the fitted
#: variogram (``nugget_share`` None) or its nugget set to a share of the sill; IDW with
#: ``k`` neighbours and a power.
RETUNE_SETTINGS: tuple[dict[str, Any], ...] = (
    *({"method": "kriging", "k": k, "nugget_share": n}
      for k in (8, 16, 32) for n in (None, 0.3, 0.6)),
    *({"method": "idw", "k": k, "power": p} for k in (8, 16, 32) for p in (1.0, 2.0, 3.0)),
)


def _log_rmse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.log10(a) - np.log10(b)
    d = d[mask & np.isfinite(d)]
    return float(np.sqrt(np.mean(d * d))) if d.size else float("nan")


def _variograms(fitted: Mapping[str, Any], share: float | None) -> dict[str, Any] | None:
    """The fitted variogram of every element, its nugget set to ``share`` of the sill."""
    if share is None:
        return None
    out = {}
    for el, vg in fitted.items():
        sill = float(vg["sill"])
        out[el] = {"model": vg["model"], "range": float(vg["range"]), "sill": sill,
                   "nugget": float(share) * sill}
    return out


def retune_interpolation(samples: Any, grid: xr.Dataset, target: xr.DataArray,
                         fit_mask: np.ndarray | xr.DataArray, *,
                         elements: Sequence[str] | None = None,
                         settings: Sequence[Mapping[str, Any]] = RETUNE_SETTINGS,
                         min_gain: float = RETUNE_MIN_GAIN, seed: int = 0) -> xr.Dataset:
    """Grid ``samples`` per element with the setting whose map best reproduces ``target``.

    Parameters
    ----------
    samples : geopandas.GeoDataFrame
        The sparse samples (as for :func:`~geochem_sr.gridding.grid_samples`).
    grid : xarray.Dataset
        The survey grid.
    target : xarray.DataArray
        ``(element, y, x)`` concentrations of the denser survey's map on ``grid`` (NaN
        where unknown), in the samples' units.
    fit_mask : numpy.ndarray or xarray.DataArray
        ``(y, x)`` bool: the cells to tune on (the training blocks: never the cells the
        result will be scored on).
    elements : sequence of str, optional
        Default: the elements of ``target``.
    settings : sequence of dict, default :data:`RETUNE_SETTINGS`
        The settings tried.
    min_gain : float, default 0.01
        The default kriging (``k`` = 16, fitted variogram) is kept unless the best setting
        lowers the RMSE on the fitting cells by at least this share.
    seed : int, default 0
        Seed of the variogram fit.

    Returns
    -------
    xarray.Dataset
        As :func:`~geochem_sr.gridding.grid_samples` (``concentration``, ``coverage``),
        each element gridded with its best setting; ``attrs["retuned"]`` (JSON) gives per
        element the ``setting``, its log10 RMSE on the fitting cells (``rmse_fit``) and
        that of the default kriging (``rmse_fit_default``; the same map as the survey's
        ``lr`` when that was kriged with ``k`` = 16).

    Raises
    ------
    SchemaError
        ``target`` or ``fit_mask`` not on the grid.
    DataError
        No fitting cell with a known target.
    """
    els = [str(e) for e in (elements if elements is not None
                            else target[schema.ELEMENT].values)]
    tgt = target.sel({schema.ELEMENT: els}).transpose(schema.ELEMENT, schema.Y, schema.X)
    mask = np.asarray(getattr(fit_mask, "values", fit_mask), bool)
    shape = (grid.sizes[schema.Y], grid.sizes[schema.X])
    if mask.shape != shape or tgt.shape[1:] != shape:
        raise SchemaError(f"target, fit_mask: expected (y, x) = {shape}, found "
                          f"{tgt.shape[1:]} and {mask.shape}")
    t = np.asarray(tgt.values, np.float64)
    if not (mask & np.isfinite(t).any(0)).any():
        raise DataError("fit_mask: expected cells with a known target to tune on, found none")
    base = grid_samples(samples, grid, els, "kriging", k=16, seed=seed)
    fitted = json.loads(base.attrs["variograms"])
    base_conc = np.asarray(base[CONCENTRATION].values)
    default = {el: _log_rmse(base_conc[e], t[e], mask) for e, el in enumerate(els)}
    # the default kriging until a setting is at least min_gain closer on the fitting cells
    best = {el: (default[el], dict(_DEFAULT), base_conc[e]) for e, el in enumerate(els)}
    for s in settings:
        s = dict(s)
        if s == _DEFAULT:
            continue
        if s["method"] == "kriging":
            out = grid_samples(samples, grid, els, "kriging", k=int(s["k"]), seed=seed,
                               variogram=_variograms(fitted, s.get("nugget_share")))
        else:
            out = grid_samples(samples, grid, els, "idw", k=int(s["k"]),
                               power=float(s["power"]))
        conc = np.asarray(out[CONCENTRATION].values)
        for e, el in enumerate(els):
            r = _log_rmse(conc[e], t[e], mask)
            if r <= (1 - min_gain) * default[el] and r < best[el][0]:
                best[el] = (r, s, conc[e])
    result = base.copy(deep=True)
    record = {}
    for e, el in enumerate(els):
        result[CONCENTRATION].values[e] = best[el][2]
        record[el] = {"setting": best[el][1], "rmse_fit": best[el][0],
                      "rmse_fit_default": default[el]}
    result.attrs["retuned"] = json.dumps(record)
    result.attrs["gridding_method"] = "re-tuned per element (attrs['retuned'])"
    return result
