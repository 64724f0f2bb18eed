"""A survey dataset and its prediction side by side: :func:`with_prediction`."""

from __future__ import annotations

import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import GridError

__all__ = ["with_prediction"]


def with_prediction(ds: xr.Dataset, pred: xr.Dataset | xr.DataArray) -> xr.Dataset:
    """``ds`` with the variables of a prediction added (``hr_pred``, ``hr_pred_std``, ...).

    What ``ds.merge(pred)`` means, without xarray's warning about its changing defaults: both
    must lie on the same grid (and the same elements, where both have them); the coordinates
    they share (``spatial_ref``, ``element_units``) are taken from ``ds``. Lazy inputs stay
    lazy.

    Raises
    ------
    GridError
        Another grid, or other elements.

    Examples
    --------
    >>> both = with_prediction(ds, ds.geosr.super_resolve(model))  # doctest: +SKIP
    >>> both.geosr.compare(["Au", "Cu"])  # doctest: +SKIP
    """
    if isinstance(pred, xr.DataArray):
        pred = pred.to_dataset(name=pred.name or schema.HR_PRED)
    schema.check_same_grid(pred, ds, "prediction vs dataset")
    if schema.ELEMENT in pred.dims and schema.ELEMENT in ds.dims:
        a = [str(e) for e in pred[schema.ELEMENT].values]
        b = [str(e) for e in ds[schema.ELEMENT].values]
        if set(a) - set(b):
            raise GridError(f"prediction vs dataset: elements {sorted(set(a) - set(b))} are "
                            f"not in the dataset ({b})")
        if a != b:  # a subset, or another order: NaN for the elements not predicted
            pred = pred.reindex({schema.ELEMENT: b})
    shared = [v for v in pred.coords if v in ds.coords and v not in pred.dims]
    return xr.merge([ds, pred.drop_vars(shared)], join="exact", compat="no_conflicts",
                    combine_attrs="override")
