"""Reading a DEM: any raster rioxarray opens, as float32 with NaN nodata and a CRS."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import (
    CRSError,
    DataError,
    GeoSRError,
    InputFileError,
)
from geochem_sr.io.vectors import check_extent

__all__ = ["ELEVATION_RANGE", "NODATA_CODES", "read_dem", "single_band"]

#: Plausible elevations (m): the deepest ocean trench to above the highest summit.
ELEVATION_RANGE = (-11000.0, 9000.0)
#: Values that mean "no data" in DEMs that do not declare it: masked, with a warning.
NODATA_CODES = (-32768.0, -32767.0, -9999.0, -99999.0, float(np.finfo(np.float32).min))


def single_band(dem: xr.DataArray, label: str,
                error: type[GeoSRError] = InputFileError) -> xr.DataArray:
    """The ``(y, x)`` plane of a one-band raster (its ``band`` dimension dropped).

    Raises
    ------
    GeoSRError
        ``error`` (a file's by default), naming ``label``: more than one band, or other
        dimensions than ``band``, ``y`` and ``x``.
    """
    if "band" in dem.dims:
        if dem.sizes["band"] != 1:
            raise error(f"{label}: expected one band, found {dem.sizes['band']}")
        dem = dem.squeeze("band", drop=True)
    if set(dem.dims) != {schema.Y, schema.X}:
        raise error(f"{label}: expected dims ('y', 'x'), found {dem.dims}")
    return dem


def _mask_undeclared(out: xr.DataArray, label: str) -> xr.DataArray:
    """NaN where the DEM holds a common nodata code it does not declare (with a warning)."""
    values = np.asarray(out.values)
    codes = np.isin(values, np.asarray(NODATA_CODES, dtype=values.dtype))
    if codes.any():
        found = sorted({float(v) for v in values[codes]})
        warnings.warn(
            f"{label}: {int(codes.sum())} cells hold {[f'{v:g}' for v in found]}, a nodata "
            "code the file does not declare; they are read as nodata (NaN) (declare the "
            "nodata value, e.g. gdal_edit.py -a_nodata, to silence this)",
            UserWarning,
            stacklevel=3,
        )
        out = out.where(~codes)
    return out


def _check_values(out: xr.DataArray, label: str) -> None:
    values = np.asarray(out.values)
    finite = np.isfinite(values)
    if not finite.any():
        raise DataError(
            f"{label}: expected elevations, found nodata in all {values.size} cells "
            f"(nodata value {out.rio.encoded_nodata}); check the file or its nodata value"
        )
    lo, hi = ELEVATION_RANGE
    odd = ~np.isnan(values) & ((values < lo) | (values > hi))
    if odd.any():
        raise DataError(
            f"{label}: expected elevations in metres within {lo:g}..{hi:g}, found "
            f"{int(odd.sum())} cells outside (min {np.nanmin(values):g}, max "
            f"{np.nanmax(values):g}); declare the nodata value or convert to metres"
        )


def read_dem(source: str | os.PathLike | xr.DataArray, crs: Any = None) -> xr.DataArray:
    """Read a DEM as a float32 DataArray (y, x) with NaN nodata and a CRS.

    Zero and negative elevations (below sea level) are valid.

    Parameters
    ----------
    source : path or DataArray
        Any raster rioxarray opens (GeoTIFF, ...), or a DataArray already in memory.
    crs : optional
        CRS to assign when the file has none.

    Returns
    -------
    xarray.DataArray
        Named ``elevation``, ``units="m"``.

    Raises
    ------
    InputFileError
        Missing or unreadable file, more than one band, other dims than (y, x), fewer than
        2 x 2 cells.
    CRSError
        No CRS; bounds that cannot be in the CRS (degrees declared as metres or the
        reverse, :func:`~geochem_sr.io.vectors.check_extent`).
    DataError
        Every cell nodata; elevations outside :data:`ELEVATION_RANGE` (an undeclared nodata
        value, or not metres).

    Warns
    -----
    UserWarning
        Cells holding one of :data:`NODATA_CODES` that the file does not declare as its
        nodata value: read as NaN.
    """
    import rioxarray

    if isinstance(source, xr.DataArray):
        dem = source
        label = "DEM"
    else:
        path = Path(source)
        label = f"DEM file '{path}'"
        if not path.exists():
            raise InputFileError(f"{label}: file not found")
        try:
            dem = rioxarray.open_rasterio(path, masked=True)
        except Exception as exc:
            raise InputFileError(f"{label}: cannot be read as a raster ({exc})") from exc
    dem = single_band(dem, label)
    if dem.sizes[schema.Y] < 2 or dem.sizes[schema.X] < 2:
        raise InputFileError(
            f"{label}: expected at least 2 x 2 cells (to interpolate elevation and derive "
            f"slope), found {dem.sizes[schema.Y]} x {dem.sizes[schema.X]}; provide a DEM "
            "over the whole survey area"
        )
    own_crs = dem.rio.crs is not None
    if not own_crs:
        if crs is None:
            raise CRSError(f"{label}: expected a CRS, found none (pass crs=...)")
        dem = dem.rio.write_crs(crs)
    if dem.rio.crs.is_geographic:
        target = "the projected CRS of its coordinates"
        fix = ("pass crs=... with it" if not own_crs else
               "assign it (gdal_edit.py -a_srs EPSG:..., or dem.rio.write_crs(...))")
    else:
        target = "EPSG:4326"
        fix = ("pass crs='EPSG:4326'" if not own_crs else
               "assign it (gdal_edit.py -a_srs EPSG:4326, or dem.rio.write_crs('EPSG:4326'))")
    check_extent(dem.rio.bounds(), dem.rio.crs, label,
                 degrees_fix=f"its CRS should be {target}: {fix}; it is reprojected onto the "
                 "grid")
    nodata = dem.rio.nodata
    out = dem.astype("float32")
    if nodata is not None and np.isfinite(nodata):
        out = out.where(out != nodata)
    declared = [v for v in (nodata, dem.rio.encoded_nodata) if v is not None and np.isfinite(v)]
    if not declared:
        out = _mask_undeclared(out, label)
    _check_values(out, label)
    out = out.rio.write_nodata(np.nan, encoded=False)
    out.name = schema.ELEVATION
    out.attrs["units"] = "m"
    return out
