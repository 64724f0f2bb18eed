"""Normalisation statistics: per-channel mean and standard deviation over the training cells."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError, ParameterError, SchemaError
from geochem_sr.features.names import CHANNEL, DIRECTIONAL_CHANNELS

__all__ = ["STD_FLOOR", "fit_normalisation"]

#: Below this a channel's standard deviation is treated as zero (then scaled by 1).
STD_FLOOR = 1e-6


def fit_normalisation(
    stacked: xr.DataArray,
    mask: np.ndarray | xr.DataArray | None = None,
) -> dict[str, tuple[float, float]]:
    """Per-channel mean and standard deviation over the cells of ``mask``.

    Parameters
    ----------
    stacked : xarray.DataArray
        Un-normalised inputs ``(channel, y, x)`` from :func:`stack_inputs`.
    mask : array-like of bool ``(y, x)``, optional
        Cells to use (the training blocks only); default all cells.

    Returns
    -------
    dict
        Channel -> ``(mean, std)`` as Python floats, NaN cells ignored. A standard
        deviation below ``STD_FLOOR`` (a constant channel) becomes 1, so the channel is
        only centred. The aspect channels get ``(0.0, 1.0)``: they form one vector that
        augmentation rotates, which only stays a rotation if both components share zero
        and scale.

    Raises
    ------
    DataError
        A channel has no finite value inside the mask.
    """
    if CHANNEL not in stacked.dims:
        raise SchemaError(f"stacked: expected a '{CHANNEL}' dimension, found {stacked.dims}")
    data = stacked
    if mask is not None:
        m = mask.values if isinstance(mask, xr.DataArray) else np.asarray(mask)
        shape = (stacked.sizes[schema.Y], stacked.sizes[schema.X])
        if m.shape != shape:
            raise ParameterError(f"mask: expected shape {shape} (y, x), found {m.shape}")
        data = stacked.where(xr.DataArray(m.astype(bool), dims=(schema.Y, schema.X)))
    data = data.astype(np.float64)
    dims = (schema.Y, schema.X)
    summary = xr.Dataset(
        {"mean": data.mean(dims), "std": data.std(dims), "count": data.notnull().sum(dims)}
    ).compute()
    stats: dict[str, tuple[float, float]] = {}
    for i, name in enumerate(str(c) for c in stacked[CHANNEL].values):
        if name in DIRECTIONAL_CHANNELS:
            stats[name] = (0.0, 1.0)
            continue
        if int(summary["count"].values[i]) == 0:
            raise DataError(
                f"channel '{name}': expected finite values in the training cells, found none"
            )
        mean = float(summary["mean"].values[i])
        std = float(summary["std"].values[i])
        if not np.isfinite(std) or std < STD_FLOOR:
            warnings.warn(
                f"channel '{name}' is constant over the training cells; it is only centred",
                stacklevel=2,
            )
            std = 1.0
        stats[name] = (mean, std)
    return stats
