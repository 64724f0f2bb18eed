"""Stand-ins for the inputs a real data set lacks, built from its sample table.

:func:`thin_samples` (a sparser survey of the same ground), :func:`elevation_surface` (an
elevation grid from sample elevations), :func:`voronoi_units` (unit polygons from a class
recorded at the samples); :class:`RealSurveyInputs` holds the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError, GridError, SchemaError

__all__ = ["RealSurveyInputs", "elevation_surface", "thin_samples", "voronoi_units"]


def thin_samples(
    samples: gpd.GeoDataFrame, spacing: float, seed: int = 0
) -> gpd.GeoDataFrame:
    """Keep one sample per ``spacing`` x ``spacing`` cell: a sparser survey of the same ground.

    In each cell of a square lattice the sample nearest the cell centre is kept, so the
    kept sites are spread evenly, like the sites of a survey planned at that spacing. The
    lattice origin is shifted at random by ``seed`` (same seed, same subset).

    Parameters
    ----------
    samples : geopandas.GeoDataFrame
        Point samples in a projected CRS (metres).
    spacing : float
        Lattice spacing in metres.
    seed : int, default 0
        Seed of the lattice offset.

    Returns
    -------
    geopandas.GeoDataFrame
        The kept rows in their original order, ``attrs`` kept and ``thinning_spacing`` added.

    Raises
    ------
    GridError
        ``spacing`` not positive.
    """
    if not np.isfinite(spacing) or spacing <= 0:
        raise GridError(f"spacing: expected a positive number of metres, found {spacing!r}")
    rng = np.random.default_rng(seed)
    offset = rng.uniform(0.0, spacing, 2)
    xy = np.c_[samples.geometry.x.to_numpy(), samples.geometry.y.to_numpy()]
    cell = np.floor((xy - offset) / spacing)
    centre = offset + (cell + 0.5) * spacing
    dist = np.hypot(*(xy - centre).T)
    order = np.lexsort((np.arange(len(xy)), dist, cell[:, 1], cell[:, 0]))
    key = cell[order]
    first = np.r_[True, (np.diff(key, axis=0) != 0).any(axis=1)]
    keep = np.sort(order[first])
    out = samples.iloc[keep].copy()
    out.attrs = {**samples.attrs, "thinning_spacing": float(spacing)}
    return out


def elevation_surface(
    samples: gpd.GeoDataFrame,
    cell_size: float,
    bounds: tuple[float, float, float, float] | None = None,
    column: str = "elev",
    smoothing: float = 1.0,
) -> xr.DataArray:
    """A DEM-like elevation grid interpolated from elevations measured at the samples.

    A smoothing thin-plate spline (:class:`scipy.interpolate.RBFInterpolator`) through the
    sample elevations, evaluated at the cell centres of the grid. It carries the relief
    only at the scale of the sample spacing: use a real DEM wherever one exists.

    Parameters
    ----------
    samples : geopandas.GeoDataFrame
        Points in a projected CRS with an elevation column.
    cell_size : float
        Cell size of the output grid (m).
    bounds : (xmin, ymin, xmax, ymax), optional
        Extent (default: the samples' extent plus one cell).
    column : str, default "elev"
        Elevation column (m).
    smoothing : float, default 1.0
        Spline smoothing (0 passes through every sample exactly).

    Returns
    -------
    xarray.DataArray
        ``elevation`` (y, x), float32, metres, with the samples' CRS and transform.

    Raises
    ------
    SchemaError
        No such column.
    DataError
        Fewer than 3 samples with an elevation.
    """
    from scipy.interpolate import RBFInterpolator

    if column not in samples.columns:
        raise SchemaError(f"samples: expected an elevation column '{column}', "
                          f"found {[c for c in samples.columns if c != 'geometry']}")
    z = samples[column].to_numpy(dtype=float)
    xy = np.c_[samples.geometry.x.to_numpy(), samples.geometry.y.to_numpy()]
    ok = np.isfinite(z) & np.isfinite(xy).all(axis=1)
    if ok.sum() < 3:
        raise DataError(
            f"{column}: expected at least 3 samples with an elevation, found {ok.sum()}"
        )
    if bounds is None:
        xmin, ymin, xmax, ymax = samples.total_bounds
        bounds = (xmin - cell_size, ymin - cell_size, xmax + cell_size, ymax + cell_size)
    grid = schema.make_grid(bounds, cell_size, samples.crs)
    gx, gy = np.meshgrid(grid[schema.X].values, grid[schema.Y].values)
    spline = RBFInterpolator(xy[ok], z[ok], kernel="thin_plate_spline", smoothing=smoothing)
    values = spline(np.c_[gx.ravel(), gy.ravel()]).reshape(gx.shape)
    # the spline extrapolates linearly away from the samples: keep it within what was measured
    values = np.clip(values, z[ok].min(), z[ok].max()).astype(np.float32)
    dem = xr.DataArray(values, coords={schema.Y: grid[schema.Y], schema.X: grid[schema.X]},
                       dims=(schema.Y, schema.X), name=schema.ELEVATION,
                       attrs={"units": "m", "long_name": f"elevation interpolated from '{column}'"})
    return dem.rio.write_crs(samples.crs).rio.write_transform(grid.rio.transform())


def voronoi_units(
    samples: gpd.GeoDataFrame,
    column: str,
    names: Mapping[object, str] | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    unit_column: str = "unit",
) -> gpd.GeoDataFrame:
    """Polygons of a class recorded at the samples: Voronoi cells dissolved by class.

    Each place gets the class of its nearest sample, the simplest map a field class
    observed at points gives when no map ships.

    Parameters
    ----------
    samples : geopandas.GeoDataFrame
        Points with a class column.
    column : str
        Class column (e.g. ``"soil"``).
    names : mapping, optional
        Class value -> unit name (default: the value as text).
    bounds : (xmin, ymin, xmax, ymax), optional
        Clip box (default: the samples' extent plus 5 %).
    unit_column : str, default "unit"
        Name of the output unit column.

    Returns
    -------
    geopandas.GeoDataFrame
        One (multi)polygon per class, column ``unit_column``, the samples' CRS.

    Raises
    ------
    SchemaError
        No such column.
    DataError
        No sample with a class.
    """
    import shapely
    from shapely.geometry import box

    if column not in samples.columns:
        raise SchemaError(f"samples: expected a class column '{column}', "
                          f"found {[c for c in samples.columns if c != 'geometry']}")
    sub = samples[samples[column].notna()]
    if len(sub) == 0:
        raise DataError(f"{column}: expected samples with a class, found none")
    if bounds is None:
        xmin, ymin, xmax, ymax = sub.total_bounds
        pad = 0.05 * max(xmax - xmin, ymax - ymin, 1.0)
        bounds = (xmin - pad, ymin - pad, xmax + pad, ymax + pad)
    clip = box(*bounds)
    points = sub.geometry.to_numpy()
    cells = shapely.voronoi_polygons(shapely.multipoints(points), extend_to=clip)
    cells = np.asarray(shapely.get_parts(cells))
    # match each Voronoi cell to the sample inside it
    owner = np.full(len(cells), -1)
    tree = shapely.STRtree(cells)
    pt_idx, cell_idx = tree.query(points, predicate="within")
    owner[cell_idx] = pt_idx
    cells, owner = cells[owner >= 0], owner[owner >= 0]
    labels = sub[column].to_numpy()[owner]
    names = dict(names or {})
    frame = gpd.GeoDataFrame(
        {unit_column: [names.get(v, str(v)) for v in labels]},
        geometry=shapely.intersection(cells, clip), crs=samples.crs,
    )
    out = frame.dissolve(by=unit_column, as_index=False)
    return out[[unit_column, "geometry"]]


@dataclass(frozen=True, eq=False)
class RealSurveyInputs:
    """Inputs of :func:`geochem_sr.build_survey` derived from a real data set.

    Attributes
    ----------
    samples_sparse, samples_dense : geopandas.GeoDataFrame
        The thinned survey and the full one.
    dem : xarray.DataArray
        Elevation (interpolated from the samples when no DEM ships).
    geology : geopandas.GeoDataFrame
        Unit polygons, column ``unit``.
    bounds : (xmin, ymin, xmax, ymax)
        Extent to pass to ``build_survey(bounds=...)`` so the grid covers the dense survey.
    crs : str
        Projected CRS.
    elements : tuple of str
        Element columns.
    units : dict
        Element -> unit.
    notes : str
        How each input was made, in words.
    """

    samples_sparse: gpd.GeoDataFrame
    samples_dense: gpd.GeoDataFrame
    dem: xr.DataArray
    geology: gpd.GeoDataFrame
    bounds: tuple[float, float, float, float]
    crs: str
    elements: tuple[str, ...]
    units: dict[str, str]
    notes: str

