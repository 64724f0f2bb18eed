"""Maps on the survey grid and their scores against the dense map and the noise-free truth.

Every row of the experiment, network or baseline, is a concentration map ``(element, y,
x)`` named ``hr_pred`` (:func:`as_prediction`), scored by :func:`score_map` on the same
test windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.metrics import COLUMNS, evaluate, table_row

__all__ = ["grid_of", "as_prediction", "truth_on_grid", "score_map", "truth_rmse",
           "block_gains"]


def grid_of(ds: xr.Dataset) -> xr.Dataset:
    """The bare grid of a survey dataset: x, y and CRS."""
    grid = xr.Dataset(coords={schema.Y: ds[schema.Y], schema.X: ds[schema.X]})
    if schema.SPATIAL_REF in ds.coords:
        grid = grid.assign_coords({schema.SPATIAL_REF: ds[schema.SPATIAL_REF]})
    return grid


def as_prediction(conc: xr.DataArray, ds: xr.Dataset, elements: Sequence[str]) -> xr.DataArray:
    """A concentration map (element, y, x) on the grid of ``ds``, named ``hr_pred``."""
    da = conc.sel({schema.ELEMENT: list(elements)}).transpose(schema.ELEMENT, schema.Y, schema.X)
    out = xr.DataArray(
        np.asarray(da.values, dtype=np.float32), dims=(schema.ELEMENT, schema.Y, schema.X),
        coords={schema.ELEMENT: list(elements), schema.Y: ds[schema.Y], schema.X: ds[schema.X]},
        name=schema.HR_PRED,
    )
    if schema.ELEMENT_UNITS in ds.coords:
        out = out.assign_coords({schema.ELEMENT_UNITS: ds[schema.ELEMENT_UNITS].sel(
            {schema.ELEMENT: list(elements)})})
    return out


def truth_on_grid(region: Any, ds: xr.Dataset) -> xr.DataArray:
    """The noise-free truth on the survey grid (nearest cell centre; NaN off its extent)."""
    truth = region.truth
    half = 0.25 * float(region.cell_size)  # both grids snap to multiples of the cell
    out = truth.reindex({schema.X: ds[schema.X].values, schema.Y: ds[schema.Y].values},
                        method="nearest", tolerance=half)
    out = out.assign_coords({schema.X: ds[schema.X], schema.Y: ds[schema.Y]})
    return out.rename(schema.HR)


def score_map(ds: xr.Dataset, truth: xr.DataArray, pred: xr.DataArray,
              windows: Sequence[Any]) -> dict[str, Any]:
    """Scores against the dense map (and RMSE against the truth) on the test windows.

    Returns ``{"scores": averages over the elements, "per_element": element -> scores}``.
    """
    df = evaluate(ds, pred, windows=windows)
    truth_mean, truth_per = truth_rmse(truth, pred, windows)
    per_element = {
        str(el): {c: float(df.loc[el, c]) for c in COLUMNS} | {
            "truth_rmse_log10": truth_per[str(el)]}
        for el in df.index if el != "mean"
    }
    mean = table_row(df)
    mean["truth_rmse_log10"] = truth_mean
    return {"scores": mean, "per_element": per_element}


def truth_rmse(truth: xr.DataArray, pred: xr.DataArray, windows: Sequence[Any]
               ) -> tuple[float, dict[str, float]]:
    """RMSE (log10) of ``pred`` against the noise-free truth on the test windows.

    Returns the mean over the elements and ``element -> RMSE``.
    """
    t = evaluate(truth.to_dataset(), pred, windows=windows).drop(index="mean")
    return (float(t["rmse_log10"].mean()),
            {str(el): float(t.loc[el, "rmse_log10"]) for el in t.index})


def block_gains(ds: xr.Dataset, pred: xr.DataArray, test: np.ndarray, groups: np.ndarray
                ) -> dict[str, dict[str, float]]:
    """Per element: gain of ``pred`` over the sparse map on the ``test`` cells (``(y, x)``
    bool) and its delete-one-block jackknife error over ``groups`` (``(y, x)`` block ids),
    as the calibrated methods report theirs (a classical map has no calibration). Cells
    where the map, ``lr`` or ``hr`` is missing are left out (the methods also leave out
    cells with a missing input; on a survey without gaps the cells are the same)."""
    from geochem_sr.trust.shrinkage import held_out_gain

    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for el in pred[schema.ELEMENT].values:
            lr = np.log10(np.asarray(ds[schema.LR].sel({schema.ELEMENT: el}).values, float))
            hr = np.log10(np.asarray(ds[schema.HR].sel({schema.ELEMENT: el}).values, float))
            p = np.log10(np.asarray(pred.sel({schema.ELEMENT: el}).values, float))
            gain, se = held_out_gain((p - lr)[test], (hr - lr)[test], groups[test])
            out[str(el)] = {"gain": gain, "gain_se": se}
    return out
