"""Samples checked for gridding: element columns, point coordinates, log10 values, and
samples at one location merged.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

from geochem_sr import schema
from geochem_sr.errors import CRSError, DataError, ParameterError, SchemaError

__all__ = ["DUPLICATE_TOLERANCE", "element_columns", "log_values", "merge_duplicates",
           "sample_points"]

#: samples closer than this (metres) are one location (their values are averaged)
DUPLICATE_TOLERANCE = 1e-3


def element_columns(samples: Any, elements: Sequence[str] | None) -> list[str]:
    """The element columns to grid (default: every column named like a chemical element),
    checked to exist, be distinct and hold numbers."""
    columns = [c for c in samples.columns if c != samples.geometry.name]
    if elements is None:
        elements = [c for c in columns if str(c) in schema.KNOWN_ELEMENTS]
        if not elements:
            raise SchemaError(
                f"samples: expected element columns (chemical symbols), found {columns}"
            )
    elements = [str(e) for e in elements]
    if not elements:
        raise ParameterError("elements: expected at least one element, found an empty list")
    if len(set(elements)) != len(elements):
        raise ParameterError(f"elements: expected distinct names, found {elements}")
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


def sample_points(samples: Any, grid: xr.Dataset) -> tuple[Any, np.ndarray]:
    """Samples in the grid's CRS (rows without geometry left out, with a warning) and their
    (n, 2) point coordinates; refuses a missing CRS and non-point or non-finite geometry."""
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


def log_values(samples: Any, elements: list[str]) -> np.ndarray:
    """log10 values (m, n) of the element columns; refuses an all-NaN column and values <= 0."""
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


def merge_duplicates(xy: np.ndarray, z: np.ndarray, tol: float
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
