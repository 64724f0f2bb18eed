"""A calibrated model's corrections applied to a prediction: the do-no-harm shrinkage of
the residual, and the calibrated standard deviation (the one rule, fitted by
:mod:`geochem_sr.trust`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from geochem_sr.errors import ModelMismatchError
from geochem_sr.models import GeoSRModel

__all__ = ["apply_residual", "shrink_factors", "calibrate_spread", "calibrated_std"]


def shrink_factors(model: GeoSRModel) -> np.ndarray:
    """``(E, 1, 1)`` float32 do-no-harm factors in ``model.elements`` order (1 when unfitted)."""
    return np.array([model.shrinkage_of(e) for e in model.elements],
                    dtype=np.float32)[:, None, None]


def apply_residual(lr: Any, residual: Any, shrink: np.ndarray) -> tuple[Any, Any]:
    """(hr_pred, residual_pred) = (lr * 10**(s * r), s * r); numpy or dask, same bits.

    Where the network has no prediction (an input channel is missing, e.g. a cell with no
    mapped geological unit or outside the DEM) but the sparse map has a value, the residual
    is 0: the cell keeps the sparse map (do no harm); its std stays NaN and it lies outside
    the area of applicability.
    """
    applied = residual * shrink
    applied = np.where(np.isnan(applied) & ~np.isnan(lr), np.float32(0), applied)
    return lr * np.power(np.float32(10.0), applied), applied


def calibrate_spread(spread: Any, model: GeoSRModel) -> Any:
    """``std_scale * max(shrinkage * spread, std_floor)`` per calibrated element; raw spread
    for the elements without a ``std_scale``.

    ``spread`` is ``(element, y, x)`` in ``model.elements`` order (numpy, dask or
    xarray); the result has its type, float32. ``std_floor`` is read from
    ``model.prediction.std_floor`` (0 when absent). Where the 8 orientations agree
    (spread ~ 0) a calibrated uncertainty is not zero but the floor.
    """
    floors = model.prediction.std_floor or {}
    cal = [e in model.std_scale for e in model.elements]

    def per_element(value: Any, default: float) -> np.ndarray:
        return np.array([float(value(e)) if c else default
                         for e, c in zip(model.elements, cal, strict=True)],
                        np.float32)[:, None, None]

    s = per_element(model.shrinkage_of, 1.0)
    scale = per_element(lambda e: model.std_scale[e], 1.0)
    floor = per_element(lambda e: floors.get(e, 0.0), 0.0)
    out = (np.maximum(spread * s, floor) * scale).astype(np.float32)  # numpy, dask, xarray
    return out.assign_attrs(spread.attrs) if isinstance(spread, xr.DataArray) else out


def calibrated_std(spread: Any, model: GeoSRModel) -> Any:
    """The calibrated standard deviation from the raw spread (members' or orientations').

    Parameters
    ----------
    spread : numpy.ndarray, dask array or xarray.DataArray
        ``(element, y, x)`` spread of the residual over an ensemble's members or the 8
        rotations/mirrors (``model.prediction.spread``), in ``model.elements`` order,
        *without* ``std_scale`` applied (log10 units).
    model : GeoSRModel
        A calibrated model (:func:`geochem_sr.trust.calibrate`).

    Returns
    -------
    Same type as ``spread``
        ``std_scale * max(shrinkage * spread, std_floor)`` per calibrated element (the
        raw spread for an element without a ``std_scale``), float32; lazy on dask input.
        This is what :func:`~geochem_sr.inference.super_resolve` returns as
        ``hr_pred_std``.

    Raises
    ------
    ModelMismatchError
        The model was not calibrated (no ``std_floor``).
    """
    if not model.prediction.std_floor:
        raise ModelMismatchError(
            "model: expected a calibrated model (prediction.std_floor), found none; run "
            "geochem_sr.trust.calibrate")
    return calibrate_spread(spread, model)
