"""Elevation, slope and aspect on the survey grid, from a DEM (via xarray-spatial).

:func:`terrain_from_dem` brings any DEM onto the grid (rioxarray ``reproject_match``,
bilinear); :func:`add_terrain` derives slope and aspect from ``elevation``, geographic
whichever way ``y`` runs, border filled, numpy and dask alike. ``xrspatial`` is imported
inside the functions (it costs about 3 s).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import CRSError, GridError, SchemaError

__all__ = ["ASPECT_CONVENTION", "add_terrain", "terrain_from_dem"]

ASPECT_CONVENTION = "degrees clockwise from north, NaN on flat cells"
#: a DEM must cover at least this fraction of the grid (edge effects of reprojection aside)
MIN_COVERAGE = 0.99
#: a DEM whose cells are more than this many times the grid's is refused: its elevation and
#: slope would be interpolated from too few cells (from COARSE_WARNING on: a warning)
MAX_COARSENING = 4.0
COARSE_WARNING = 2.0


def _masked(dem: xr.DataArray) -> xr.DataArray:
    """Float64 DEM with its nodata value turned into NaN (and declared NaN)."""
    nodata = dem.rio.nodata
    if nodata is None:
        nodata = dem.rio.encoded_nodata
    out = dem.astype(np.float64)
    if nodata is not None and np.isfinite(nodata):
        out = out.where(dem != nodata)
    return out.rio.write_nodata(np.nan, encoded=False)


def _check_resolution(dem: xr.DataArray, grid: xr.Dataset, cell: tuple[float, float],
                      max_coarsening: float) -> None:
    """GridError for a DEM of fewer than 2 x 2 cells or far coarser than the grid.

    ``cell``: the grid's ``(dx, dy)`` (:func:`geochem_sr.schema.check_grid`).
    """
    ny, nx = dem.sizes[schema.Y], dem.sizes[schema.X]
    if ny < 2 or nx < 2:
        raise GridError(
            f"DEM: expected at least 2 x 2 cells (to interpolate elevation and derive slope), "
            f"found {ny} x {nx}; provide a DEM over the whole survey area"
        )
    dx, dy = cell
    if dem.rio.crs == grid.rio.crs:
        cx, cy = (abs(v) for v in dem.rio.resolution())
    else:
        left, bottom, right, top = dem.rio.transform_bounds(grid.rio.crs, densify_pts=21)
        cx, cy = (right - left) / nx, (top - bottom) / ny
    ratio = max(cx / abs(dx), cy / abs(dy))
    size = (f"DEM: cells of about {cx:.4g} x {cy:.4g} m are {ratio:.3g} times the grid's "
            f"{abs(dx):g} x {abs(dy):g} m cells")
    if ratio > max_coarsening:
        raise GridError(
            f"{size} (at most {max_coarsening:g}): elevation, slope and aspect would be "
            f"interpolated from too few DEM cells; use a finer DEM, a cell_size of at least "
            f"{max(cx, cy) / max_coarsening:.4g} m, or terrain_from_dem(..., "
            "max_coarsening=...) to accept it"
        )
    if ratio > COARSE_WARNING:
        warnings.warn(
            f"{size}: the terrain is interpolated from few DEM cells (smooth slopes)",
            UserWarning, stacklevel=3,
        )


def _template(grid: xr.Dataset) -> xr.DataArray:
    """An empty north-up raster on the grid's cells (what GDAL warps onto)."""
    y = np.sort(np.asarray(grid[schema.Y].values, np.float64))[::-1]
    x = np.asarray(grid[schema.X].values, np.float64)
    tmpl = xr.DataArray(np.zeros((len(y), len(x)), np.float32), dims=(schema.Y, schema.X),
                        coords={schema.Y: y, schema.X: x})
    tmpl = tmpl.rio.write_crs(grid.rio.crs)
    return tmpl.rio.write_transform(tmpl.rio.transform(recalc=True))


def terrain_from_dem(
    dem: xr.DataArray,
    grid: xr.Dataset,
    *,
    min_coverage: float = MIN_COVERAGE,
    max_coarsening: float = MAX_COARSENING,
) -> xr.Dataset:
    """Elevation, slope and aspect of a DEM on the survey grid.

    Parameters
    ----------
    dem : xarray.DataArray
        A DEM (y, x) with a CRS (rioxarray), any resolution; a geographic CRS is fine (it
        is reprojected). Its nodata value (``dem.rio.nodata``) and NaNs are holes: a grid
        cell whose centre falls on one stays NaN.
    grid : xarray.Dataset
        The target grid (projected CRS, ``x``/``y`` cell centres; ``y`` may ascend).
        If its variables are dask-backed, the output is chunked like them.
    min_coverage : float, default 0.99
        Smallest fraction of grid cells the DEM's extent must cover. A DEM covering less
        raises; one covering between this and all of the grid leaves the uncovered edge
        cells NaN, with a warning.
    max_coarsening : float, default 4
        Largest ratio of DEM cell size (in the grid's CRS) to grid cell size; from 2 on, a
        warning.

    Returns
    -------
    xarray.Dataset
        ``elevation`` (m), ``slope`` (degrees), ``aspect`` (degrees clockwise from north,
        NaN on flats), float32 on the grid's coords, with its CRS.

    Raises
    ------
    CRSError
        The grid has no CRS or a geographic one, or the DEM has no CRS.
    GridError
        The DEM covers less than ``min_coverage`` of the grid, has fewer than 2 x 2 cells,
        or cells more than ``max_coarsening`` times the grid's.

    Warns
    -----
    UserWarning
        With the number of grid cells left NaN by DEM nodata holes (or uncovered edges); a
        DEM 2 to ``max_coarsening`` times coarser than the grid.
    """
    import rioxarray  # noqa: F401  (registers .rio)
    from rasterio.enums import Resampling

    from geochem_sr.io.rasters import single_band  # (io imports geopandas)

    if not isinstance(dem, xr.DataArray):
        raise SchemaError(f"DEM: expected an xarray.DataArray, found {type(dem).__name__}")
    cell = schema.check_grid(grid, "grid")
    schema.check_crs(grid, "grid")
    dem = single_band(dem, "DEM", SchemaError).transpose(schema.Y, schema.X)
    if dem.rio.crs is None:
        raise CRSError("DEM: expected a CRS (dem.rio.write_crs(...)), found none")
    _check_resolution(dem, grid, cell, max_coarsening)
    masked = _masked(dem)
    tmpl = _template(grid)
    elev = masked.rio.reproject_match(tmpl, resampling=Resampling.bilinear)
    extent = xr.ones_like(masked).rio.write_nodata(np.nan, encoded=False)
    extent = extent.rio.reproject_match(tmpl, resampling=Resampling.nearest)
    inside = np.isfinite(np.asarray(extent.values))
    frac = float(inside.mean())
    if frac < min_coverage:
        lb = dem.rio.bounds()
        gb = tmpl.rio.bounds()
        raise GridError(
            f"DEM: expected to cover the grid, found it covers {frac:.1%} of the grid cells "
            f"(DEM bounds {tuple(round(v, 1) for v in lb)} in {dem.rio.crs}, grid bounds "
            f"{tuple(round(v, 1) for v in gb)}, at least {min_coverage:.0%} needed); provide "
            "a DEM over the whole survey area, or limit the grid to the DEM (build_survey("
            "bounds=...))"
        )
    values = np.asarray(elev.values, np.float32)
    # bilinear downsampling interpolates over holes smaller than its kernel: a cell whose
    # centre falls on a nodata pixel stays a hole
    centre = masked.rio.reproject_match(tmpl, resampling=Resampling.nearest)
    values[~np.isfinite(np.asarray(centre.values))] = np.nan
    holes = int((~np.isfinite(values) & inside).sum())
    edge = int((~inside).sum())
    if holes or edge:
        warnings.warn(
            f"DEM: {holes} grid cells fall in nodata holes and {edge} edge cells lie outside "
            "the DEM; they stay NaN in elevation (and their neighbours in slope/aspect)",
            UserWarning,
            stacklevel=2,
        )
    if grid[schema.Y].values[0] < grid[schema.Y].values[-1]:  # ascending grid
        values = values[::-1]
    ds = xr.Dataset(coords={schema.Y: grid[schema.Y], schema.X: grid[schema.X]})
    if schema.SPATIAL_REF in grid.coords:
        ds = ds.assign_coords({schema.SPATIAL_REF: grid[schema.SPATIAL_REF]})
    ds[schema.ELEVATION] = xr.DataArray(
        np.ascontiguousarray(values), dims=(schema.Y, schema.X),
        attrs={"long_name": "elevation", "units": "m", "resampling": "bilinear"},
    )
    chunks = grid.chunksizes if grid.chunks else {}
    if schema.Y in chunks or schema.X in chunks:
        ds = ds.chunk({dim: chunks[dim] for dim in (schema.Y, schema.X) if dim in chunks})
    ds = ds.rio.write_crs(grid.rio.crs)
    return add_terrain(ds)


def _pad_linear(z: Any) -> Any:
    """Pad by one cell of linear extrapolation (odd reflection); numpy or dask alike."""
    if isinstance(z, np.ndarray):
        cat = np.concatenate
    else:
        import dask.array as da

        cat = da.concatenate
    two = z.dtype.type(2)
    z = cat([two * z[:1] - z[1:2], z, two * z[-1:] - z[-2:-1]], axis=0)
    return cat([two * z[:, :1] - z[:, 1:2], z, two * z[:, -1:] - z[:, -2:-1]], axis=1)


def _merge_edge_chunks(z: Any) -> Any:
    """Fold the 1-cell chunks that padding adds into their neighbours (dask only)."""
    new = []
    for ch in z.chunks:
        ch = list(ch)
        if len(ch) > 2:
            ch = [ch[0] + ch[1], *ch[2:-2], ch[-2] + ch[-1]]
        new.append(tuple(ch))
    return z.rechunk(tuple(new))


def add_terrain(ds: xr.Dataset) -> xr.Dataset:
    """Add ``slope`` and ``aspect`` computed from ``ds.elevation`` (xarray-spatial).

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset on a regular projected grid holding ``elevation`` (y, x), numpy or dask.

    Returns
    -------
    xarray.Dataset
        ``ds`` with ``slope`` (degrees) and ``aspect`` (degrees clockwise from north, NaN
        on flat cells) as float32, lazy if ``elevation`` is; coords, attrs and CRS kept.
        Correct whether ``y`` descends or ascends; the border cells are filled (linear
        extrapolation by one cell); NaN elevations make their neighbours NaN. An ``lr_view``
        in ``ds`` is not refreshed: the caller does that (``ds.geosr.add_terrain`` does).

    Raises
    ------
    SchemaError
        No ``elevation`` variable, or not (y, x).
    CRSError
        No CRS, or a geographic one (slope needs metres: reproject first).

    Examples
    --------
    >>> ds = add_terrain(ds)  # doctest: +SKIP
    >>> ds.aspect.attrs["convention"]  # doctest: +SKIP
    'degrees clockwise from north, NaN on flat cells'
    """
    import rioxarray  # noqa: F401
    import xrspatial

    if schema.ELEVATION not in ds.data_vars:
        raise SchemaError(
            f"variable 'elevation': required for slope and aspect, found {sorted(ds.data_vars)}"
        )
    elev = ds[schema.ELEVATION]
    if set(elev.dims) != {schema.Y, schema.X}:
        raise SchemaError(f"variable 'elevation': expected dims ('y', 'x'), found {elev.dims}")
    elev = elev.transpose(schema.Y, schema.X)
    dx, dy = schema.check_grid(ds)
    schema.check_crs(ds)
    if not np.isclose(abs(dx), abs(dy), rtol=1e-6):
        warnings.warn(
            f"grid: cells are {abs(dx):g} x {abs(dy):g} m; xarray-spatial's aspect assumes "
            "square cells", UserWarning, stacklevel=2,
        )
    ascending = dy > 0
    z = elev.data.astype(np.float32)
    lazy = not isinstance(z, np.ndarray)
    if ascending:
        z = z[::-1]
    zp = _pad_linear(z)
    if lazy:
        zp = _merge_edge_chunks(zp)
    step_x, step_y = abs(dx), -abs(dy)
    ny, nx = elev.shape
    x0 = float(elev[schema.X].values[0])
    y0 = float(elev[schema.Y].values[-1] if ascending else elev[schema.Y].values[0])
    padded = xr.DataArray(
        zp, dims=(schema.Y, schema.X),
        coords={schema.Y: y0 + step_y * np.arange(-1, ny + 1),
                schema.X: x0 + step_x * np.arange(-1, nx + 1)},
    )
    slope = xrspatial.slope(padded).data[1:-1, 1:-1].astype(np.float32)
    aspect = xrspatial.aspect(padded).data[1:-1, 1:-1].astype(np.float32)
    aspect = (_da_where if lazy else np.where)(aspect == -1, np.float32(np.nan), aspect)
    if ascending:
        slope, aspect = slope[::-1], aspect[::-1]
    if lazy:
        slope = slope.rechunk(elev.data.chunks)
        aspect = aspect.rechunk(elev.data.chunks)
    dims = (schema.Y, schema.X)
    out = ds.copy()
    out[schema.SLOPE] = xr.DataArray(slope, dims=dims, coords=elev.coords, attrs={
        "long_name": "slope", "units": "degrees", "method": "Horn (xarray-spatial)",
    })
    out[schema.ASPECT] = xr.DataArray(aspect, dims=dims, coords=elev.coords, attrs={
        "long_name": "aspect", "units": "degrees", "convention": ASPECT_CONVENTION,
        "method": "Horn (xarray-spatial)",
    })
    if out.rio.crs is None and ds.rio.crs is not None:  # pragma: no cover - defensive
        out = out.rio.write_crs(ds.rio.crs)
    return out


def _da_where(cond: Any, a: Any, b: Any) -> Any:
    """``dask.array.where`` (kept lazy)."""
    import dask.array as da

    return da.where(cond, a, b)
