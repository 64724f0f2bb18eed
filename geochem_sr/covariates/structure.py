"""Distances to geological structures: mapped faults and lithological contacts.

The distance to the nearest fault and to the nearest contact between two units, input
channels (groups ``faults`` and ``contacts``), from xarray-spatial's
:func:`xrspatial.proximity` (numpy and dask), capped at :data:`DISTANCE_CAP`.

Examples
--------
>>> import geopandas as gpd, numpy as np, shapely
>>> from geochem_sr.schema import make_grid
>>> grid = make_grid((0, 0, 500, 500), 50.0, "EPSG:32650")
>>> f = gpd.GeoDataFrame(geometry=[shapely.LineString([(275, 0), (275, 500)])], crs=32650)
>>> d = fault_distance(f, grid)
>>> [float(v) for v in d.isel(y=0).values[3:8]]
[100.0, 50.0, 0.0, 50.0, 100.0]
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import SchemaError

__all__ = ["DISTANCE_CAP", "fault_distance", "contact_distance"]

#: Largest distance recorded, metres; farther cells get this value.
DISTANCE_CAP = 5000.0


def _proximity(target: xr.DataArray, cap: float) -> xr.DataArray:
    """Distance (grid units) from every cell to the nearest True cell, capped at ``cap``."""
    from xrspatial import proximity

    raster = target.astype(np.float32)  # float: the dask path pads with NaN
    if raster.chunks is None and not bool(target.any()):
        return xr.full_like(raster, cap, dtype=np.float32)
    d = proximity(raster, x=schema.X, y=schema.Y, max_distance=float(cap))
    return d.fillna(cap).clip(max=cap).astype(np.float32)


def _finish(d: xr.DataArray, grid: xr.Dataset | xr.DataArray, name: str,
            long_name: str) -> xr.DataArray:
    d = d.assign_coords({schema.X: grid[schema.X], schema.Y: grid[schema.Y]})
    d.name = name
    d.attrs = {"long_name": long_name, "units": "m", "distance_cap": DISTANCE_CAP}
    return d.rio.write_crs(grid.rio.crs) if grid.rio.crs is not None else d


def fault_distance(
    faults: str | os.PathLike | Any,
    grid: xr.Dataset | xr.DataArray,
    cap: float = DISTANCE_CAP,
) -> xr.DataArray:
    """Distance from every cell centre to the nearest cell a mapped fault crosses.

    Parameters
    ----------
    faults : path or GeoDataFrame
        Fault lines (:func:`geochem_sr.io.read_faults`); reprojected to the grid's CRS.
    grid : xarray.Dataset or DataArray
        The survey grid (x/y coordinates and a projected CRS).
    cap : float, default :data:`DISTANCE_CAP`
        Largest distance recorded (metres); also the result everywhere when no fault
        crosses the grid.

    Returns
    -------
    xarray.DataArray
        ``fault_distance`` ``(y, x)`` float32 in metres, 0 on the cells a fault line
        touches or a fault-zone polygon covers.
    """
    from rasterio.features import rasterize

    from geochem_sr import io

    schema.check_crs(grid, "grid")
    gdf = io.read_faults(faults).to_crs(grid.rio.crs)
    ny, nx = grid.sizes[schema.Y], grid.sizes[schema.X]
    burnt = rasterize(
        [(g, 1) for g in gdf.geometry],  # lines, and fault-zone polygons filled
        out_shape=(ny, nx),
        transform=grid.rio.transform(recalc=True),
        fill=0,
        dtype="uint8",
        all_touched=True,
    )
    target = xr.DataArray(burnt.astype(bool), dims=(schema.Y, schema.X),
                          coords={schema.Y: grid[schema.Y].values, schema.X: grid[schema.X].values})
    return _finish(_proximity(target, cap), grid, schema.FAULT_DISTANCE,
                   "distance to the nearest mapped fault")


def contact_distance(lithology: xr.DataArray, cap: float = DISTANCE_CAP) -> xr.DataArray:
    """Distance from every cell centre to the nearest contact between two mapped units.

    A *contact cell* is a cell whose unit differs from one of its four neighbours' (both
    mapped). Cells without a unit (code -1) get NaN. Lazy on dask input.

    Parameters
    ----------
    lithology : xarray.DataArray
        Unit codes ``(y, x)`` (:func:`~geochem_sr.covariates.geology.rasterize_geology`),
        -1 unmapped.
    cap : float, default :data:`DISTANCE_CAP`
        Largest distance recorded (metres).

    Returns
    -------
    xarray.DataArray
        ``contact_distance`` ``(y, x)`` float32 in metres.
    """
    if lithology.dims != (schema.Y, schema.X):
        raise SchemaError(f"lithology: expected dims ('y', 'x'), found {lithology.dims}")
    if lithology.rio.crs is not None:
        schema.check_crs(lithology, "lithology")
    lith = lithology.astype(np.int32)
    mapped = lith >= 0
    contact = xr.zeros_like(mapped)
    for dim in (schema.X, schema.Y):
        for shift in (1, -1):
            other = lith.shift({dim: shift}, fill_value=-1)
            contact = contact | (mapped & (other >= 0) & (other != lith))
    d = _proximity(contact, cap).where(mapped)
    return _finish(d, lithology, schema.CONTACT_DISTANCE,
                   "distance to the nearest lithological contact")
