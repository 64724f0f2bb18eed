"""Build one survey dataset from raw inputs: samples, DEM and geology onto one grid."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import CRSError, GridError

__all__ = ["build_survey"]


def _grid_bounds(samples: gpd.GeoDataFrame, cell_size: float) -> tuple[float, float, float, float]:
    xmin, ymin, xmax, ymax = samples.total_bounds
    pad = cell_size / 2
    return (xmin - pad, ymin - pad, xmax + pad, ymax + pad)


def _element_maps(
    samples: gpd.GeoDataFrame,
    grid: xr.Dataset,
    elements: Sequence[str],
    method: str,
    name: str,
    gridding_kwargs: dict[str, Any],
) -> tuple[xr.DataArray, xr.DataArray, int]:
    """The element maps, their coverage, and the neighbours per cell the gridding used."""
    from geochem_sr.gridding import grid_samples

    out = grid_samples(samples, grid, elements=list(elements), method=method, **gridding_kwargs)
    conc = out["concentration"].astype("float32")
    conc.attrs = {
        "long_name": f"{'sparse' if name == schema.LR else 'dense'}-survey element map",
        "gridding": method,
    }
    return conc, out["coverage"], int(out.attrs["k"])


#: Smallest grid side, in cells, that a survey can be built on (a few network patches).
MIN_GRID_CELLS = 8


def build_survey(
    samples_sparse: str | os.PathLike | gpd.GeoDataFrame,
    samples_dense: str | os.PathLike | gpd.GeoDataFrame | None = None,
    *,
    dem: str | os.PathLike | xr.DataArray | None = None,
    geology: str | os.PathLike | gpd.GeoDataFrame | None = None,
    faults: str | os.PathLike | gpd.GeoDataFrame | None = None,
    cell_size: float = 50.0,
    bounds: tuple[float, float, float, float] | None = None,
    crs: Any = None,
    elements: Sequence[str] | None = None,
    method: str = "kriging",
    unit_column: str = "unit",
    censored: str = "half",
    embedding_size: int = schema.EMBEDDING_SIZE,
    seed: int = 0,
    **gridding_kwargs: Any,
) -> xr.Dataset:
    """Grid the surveys, derive terrain and embed the geology onto one survey grid.

    Parameters
    ----------
    samples_sparse : path or GeoDataFrame
        The low-density (1:50,000) samples; they define the grid extent unless ``bounds``.
    samples_dense : path or GeoDataFrame, optional
        The high-density (1:25,000) samples where they exist (training/evaluation).
    dem : path or DataArray, optional
        Elevation model; brought onto the grid; slope and aspect derived from it.
    geology : path or GeoDataFrame, optional
        Polygons with a ``unit_column``; rasterized and embedded as word vectors, and the
        distance to the nearest contact between units recorded (``contact_distance``).
    faults : path or GeoDataFrame, optional
        Mapped fault lines; the distance to the nearest one is recorded
        (``fault_distance``, :mod:`geochem_sr.covariates.structure`).
    cell_size : float, default 50
        Grid cell size in metres.
    bounds : (xmin, ymin, xmax, ymax), optional
        Grid extent in the grid CRS; default: the sparse samples' extent.
    crs : optional
        Grid CRS (projected); default: the sparse samples' CRS.
    elements : sequence of str, optional
        Elements to grid; default: all element columns of the sparse samples.
    method : {"kriging", "idw"}, default "kriging"
        Gridding method (:func:`geochem_sr.gridding.grid_samples`).
    unit_column : str, default "unit"
        Unit-name column of ``geology``.
    censored : {"half", "dl", "nan"}, default "half"
        Policy for values below detection limits (:func:`geochem_sr.io.parse_censored`).
    embedding_size : int, default :data:`geochem_sr.schema.EMBEDDING_SIZE` (5)
        Word-vector dimension of the geology embedding.
    seed : int, default 0
        Seed of the geology embedding.
    **gridding_kwargs
        Passed to :func:`geochem_sr.gridding.grid_samples` (``k``, ``max_distance``, ...).

    Returns
    -------
    xarray.Dataset
        A survey dataset (see :mod:`geochem_sr.schema`), validated. It records where the
        sparse samples are (``lr_sites``) and, when there are covariates, each of them as
        the sparse survey sees it (``lr_view``, :mod:`geochem_sr.features.sparse_view`).

    Examples
    --------
    >>> import geochem_sr as gs
    >>> region = gs.synthetic_region(seed=0, size_km=(3, 3))
    >>> ds = gs.build_survey(region.samples_sparse, region.samples_dense,
    ...                      dem=region.dem, geology=region.geology,
    ...                      faults=region.faults, method="idw")
    >>> sorted(ds.data_vars)[:5]
    ['aspect', 'contact_distance', 'elevation', 'fault_distance', 'geology_embedding']
    """
    from geochem_sr import io
    from geochem_sr.covariates import contact_distance, fault_distance
    from geochem_sr.features import covariate_channels, lr_view, site_counts
    from geochem_sr.gridding import neighbourhood_reach

    sparse = io.read_samples(samples_sparse, elements, censored=censored)
    elements = list(elements or sparse.attrs["elements"])
    grid_crs = crs if crs is not None else sparse.crs
    if grid_crs is None:
        raise CRSError("grid: expected a CRS from crs= or the sparse samples, found none")
    sparse = sparse.to_crs(grid_crs)
    grid = schema.make_grid(bounds or _grid_bounds(sparse, cell_size), cell_size, grid_crs)
    if min(grid.sizes[schema.Y], grid.sizes[schema.X]) < MIN_GRID_CELLS:
        raise GridError(
            f"grid: expected at least {MIN_GRID_CELLS} x {MIN_GRID_CELLS} cells, found "
            f"{grid.sizes[schema.Y]} x {grid.sizes[schema.X]} cells of {cell_size:g} m; the "
            "samples span too little ground for this cell size (coordinates in degrees "
            "declared as metres? a cell size in the wrong unit?)"
        )
    units = sparse.attrs["units"]

    lr, lr_cov, _ = _element_maps(sparse, grid, elements, method, schema.LR, gridding_kwargs)
    ds = grid.copy()
    ds[schema.LR] = lr
    ds[schema.LR_COVERAGE] = lr_cov
    ds[schema.LR_SITES] = site_counts(sparse, grid)
    if samples_dense is not None:
        dense = io.read_samples(samples_dense, elements, censored=censored, target_crs=grid_crs)
        hr, hr_cov, k = _element_maps(dense, grid, elements, method, schema.HR,
                                      gridding_kwargs)
        ds[schema.HR] = hr
        ds[schema.HR_COVERAGE] = hr_cov
        ds.attrs[schema.ATTR_HR_REACH] = neighbourhood_reach(
            dense, grid, np.asarray(hr_cov), k, elements=elements)
    ds = ds.assign_coords(
        {
            schema.ELEMENT: np.array(elements, dtype=str),
            schema.ELEMENT_UNITS: (schema.ELEMENT, np.array([units[e] for e in elements], str)),
        }
    )
    if dem is not None:
        from geochem_sr.covariates import terrain_from_dem

        terrain = terrain_from_dem(io.read_dem(dem), grid)
        for var in schema.TERRAIN_VARS:
            ds[var] = terrain[var]
    if geology is not None:
        from geochem_sr.covariates import embed_geology

        gdf = io.read_geology(geology, unit_column=unit_column)
        ds = embed_geology(
            ds, gdf, unit_column=unit_column, vector_size=embedding_size, seed=seed
        )
        ds[schema.CONTACT_DISTANCE] = contact_distance(ds[schema.LITHOLOGY])
    if faults is not None:
        ds[schema.FAULT_DISTANCE] = fault_distance(faults, grid)
    if covariate_channels(ds):
        ds[schema.LR_VIEW] = lr_view(ds)
    ds.attrs.update(
        {
            "title": "geochem_sr survey dataset",
            schema.ATTR_CENSORING: censored,
            "gridding_method": method,
            "cell_size": float(cell_size),
        }
    )
    ds = ds.rio.write_crs(grid_crs)
    if not np.isfinite(ds[schema.LR]).any():
        raise GridError("lr: the sparse samples produced no valid cell on the grid")
    return schema.validate(ds, require=(schema.LR,))
