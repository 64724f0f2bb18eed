"""Point samples -> element maps on the survey grid, in log10 space: :func:`grid_samples`.

Local inverse-distance weighting or ordinary kriging with the ``k`` nearest samples; the
result is a Dataset of concentrations, coverage and (optionally) kriging variances.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError, ParameterError
from geochem_sr.gridding.plan import (
    Plan,
    chunk_sizes,
    compute_grid,
    element_variograms,
    group_locations,
)
from geochem_sr.gridding.samples import (
    DUPLICATE_TOLERANCE,
    element_columns,
    log_values,
    merge_duplicates,
    sample_points,
)
from geochem_sr.gridding.variogram import median_spacing

if TYPE_CHECKING:
    import geopandas

__all__ = ["CONCENTRATION", "COVERAGE", "COVERAGE_FACTOR", "LOG10_VARIANCE", "METHODS",
           "grid_samples", "neighbourhood_reach"]

# names of the output variables
CONCENTRATION = "concentration"
COVERAGE = "coverage"
LOG10_VARIANCE = "log10_variance"

METHODS = ("kriging", "idw")

#: default coverage distance, in median nearest-neighbour distances between samples
COVERAGE_FACTOR = 2.0

_TILE_FACTOR = 0.5  # tile diagonal ~ this fraction of the distance to the k-th neighbour


def grid_samples(
    samples: geopandas.GeoDataFrame,
    grid: xr.Dataset,
    elements: Sequence[str] | None = None,
    method: str = "kriging",
    *,
    k: int = 16,
    power: float = 2.0,
    search_radius: float | None = None,
    max_distance: float | None = None,
    variogram: dict | None = None,
    return_variance: bool = False,
    chunks: int | dict | None = None,
    coverage_factor: float = COVERAGE_FACTOR,
    duplicate_tolerance: float = DUPLICATE_TOLERANCE,
    seed: int = 0,
) -> xr.Dataset:
    """Grid point samples onto the survey grid, in log10 space.

    Parameters
    ----------
    samples : geopandas.GeoDataFrame
        Point samples with numeric element columns (censored values already parsed by
        :func:`geochem_sr.io.read_samples`: NaN = no value) and a CRS; reprojected to the
        grid's CRS if needed. ``samples.attrs["units"]`` (element -> unit), if present,
        gives the ``element_units`` coordinate.
    grid : xarray.Dataset
        The target grid (``x``, ``y`` cell centres and a projected CRS, e.g. from
        :func:`geochem_sr.schema.make_grid`); ``y`` may ascend or descend.
    elements : sequence of str, optional
        Columns to grid; default every column named like a chemical element.
    method : {"kriging", "idw"}, default "kriging"
        Local ordinary kriging or inverse-distance weighting.
    k : int, default 16
        Neighbours per cell (all locations, with a warning, if fewer; at least 3 needed).
    power : float, default 2
        IDW power.
    search_radius : float, optional
        Neighbours farther than this from a cell are left out.
    max_distance : float, optional
        Coverage: cells farther than this from every sample are NaN (never extrapolated).
        Default ``coverage_factor`` × the median nearest-neighbour distance between sample
        locations, and at least half a cell diagonal.
    variogram : dict, optional
        Kriging variogram(s): one dict ``{"model", "range", "sill", "nugget"}`` for every
        element, or ``{element: dict}`` (other elements fitted). ``sill`` is the total sill
        of log10 values, ``range`` the practical range in metres (PyKrige's conventions).
        Default: fitted per element (:func:`~geochem_sr.gridding.variogram.fit_variogram`).
    return_variance : bool, default False
        Also return ``log10_variance``, the kriging variance (kriging only).
    chunks : int or dict, optional
        Build a lazy dask result computed chunk by chunk (``{"y": 512, "x": 512}``); default:
        the grid's own chunks if it is dask-backed, else computed now (in 512² blocks).
    coverage_factor : float, default 2
        See ``max_distance``.
    duplicate_tolerance : float, default 1e-3
        Samples closer than this (metres) are one location; their values are averaged in
        log10 space, with a warning.
    seed : int, default 0
        Seed of the variogram's pair subsample (same seed, same numbers).

    Returns
    -------
    xarray.Dataset
        ``concentration`` (element, y, x) float32 in original units, NaN off coverage;
        ``coverage`` (y, x) bool; optionally ``log10_variance`` (element, y, x) float32.
        Grid coords and CRS kept; attrs record the method, the parameters and, for
        kriging, the variogram of each element (JSON in ``variograms``).

    Raises
    ------
    GeoSRError
        ``SchemaError`` (missing columns), ``ParameterError`` (bad parameters),
        ``CRSError`` (no CRS, geographic grid), ``DataError`` (non-numeric or non-positive
        values, an element with no value, fewer than 3 locations, no sample inside the
        grid).

    Examples
    --------
    >>> out = grid_samples(samples, grid, ["As", "Cu"], method="idw")  # doctest: +SKIP
    >>> out.concentration.sel(element="As").plot()  # doctest: +SKIP
    """
    import rioxarray  # noqa: F401  (registers .rio)

    if method not in METHODS:
        raise ParameterError(f"method: expected one of {METHODS}, found {method!r}")
    if return_variance and method != "kriging":
        raise ParameterError(
            f"return_variance: a kriging variance exists only for method='kriging', "
            f"found method={method!r}"
        )
    if int(k) < 1:
        raise ParameterError(f"k: expected a positive number of neighbours, found {k}")
    for name, val in (("search_radius", search_radius), ("max_distance", max_distance)):
        if val is not None and not float(val) > 0:
            raise ParameterError(f"{name}: expected a positive distance in metres, found {val}")
    dx, dy = schema.check_grid(grid, "grid")
    schema.check_crs(grid, "grid")
    elements = element_columns(samples, elements)
    samples, xy = sample_points(samples, grid)
    z = log_values(samples, elements)
    xy, z, nn_dist = merge_duplicates(xy, z, duplicate_tolerance)

    x = np.asarray(grid[schema.X].values, np.float64)
    y = np.asarray(grid[schema.Y].values, np.float64)
    x_lo, x_hi = x.min() - abs(dx) / 2, x.max() + abs(dx) / 2
    y_lo, y_hi = y.min() - abs(dy) / 2, y.max() + abs(dy) / 2
    inside = (xy[:, 0] >= x_lo) & (xy[:, 0] <= x_hi) & (xy[:, 1] >= y_lo) & (xy[:, 1] <= y_hi)
    if not (inside & np.isfinite(z).any(axis=0)).any():
        raise DataError(
            f"samples: expected points inside the grid [{x_lo:.1f}, {x_hi:.1f}] x "
            f"[{y_lo:.1f}, {y_hi:.1f}], found none (samples span x [{xy[:, 0].min():.1f}, "
            f"{xy[:, 0].max():.1f}], y [{xy[:, 1].min():.1f}, {xy[:, 1].max():.1f}]); "
            "check the CRS"
        )
    origin = np.array([x[0], y[0]])
    groups, union, union_group = group_locations(xy - origin, z, int(k), elements)
    cell_diag = float(np.hypot(dx, dy))
    spacing = (float(np.median(nn_dist)) if nn_dist is not None and union.n == len(xy)
               else median_spacing(union.xy, union.tree))
    if max_distance is None:
        max_distance = max(coverage_factor * spacing, 0.5 * cell_diag)
    vgs, record = (element_variograms(groups, elements, variogram, seed, union, spacing)
                   if method == "kriging"
                   else ([{} for _ in elements], {}))
    kmax = max(g.k for g in groups)
    dk = spacing * np.sqrt(kmax) * 1.2  # typical distance to the k-th neighbour
    tile = int(np.clip(1 + _TILE_FACTOR * dk / cell_diag, 1, 64))
    plan = Plan(
        xc=x - origin[0], yc=y - origin[1], dx=float(dx), dy=float(dy), tile=tile,
        half_diag=0.5 * (tile - 1) * cell_diag * (1 + 1e-6) + 1e-3 * cell_diag,
        method=method, power=float(power),
        search_radius=None if search_radius is None else float(search_radius),
        max_distance=float(max_distance), groups=groups, union=union,
        union_group=union_group, variograms=vgs, return_variance=return_variance,
        n_el=len(elements),
    )
    data = compute_grid(plan, len(y), len(x), chunk_sizes(grid, chunks))
    return _as_dataset(data, plan, grid, samples, elements, record, len(xy))


def _as_dataset(data: Any, plan: Plan, grid: xr.Dataset, samples: Any,
                elements: list[str], record: dict[str, Any], n_locations: int) -> xr.Dataset:
    """The output Dataset: variables, element coords and units, attrs and the grid's CRS."""
    n_el = plan.n_el
    coords: dict[str, Any] = {schema.Y: grid[schema.Y], schema.X: grid[schema.X]}
    if schema.SPATIAL_REF in grid.coords:
        coords[schema.SPATIAL_REF] = grid[schema.SPATIAL_REF]
    units_attr = samples.attrs.get("units") if isinstance(samples.attrs, dict) else None
    units = [str((units_attr or {}).get(e, schema.DEFAULT_UNITS.get(e, "ppm")))
             for e in elements]
    coords[schema.ELEMENT] = np.array(elements, dtype=str)
    coords[schema.ELEMENT_UNITS] = (schema.ELEMENT, np.array(units, dtype=str))
    dims3 = (schema.ELEMENT, schema.Y, schema.X)
    out = xr.Dataset(coords=coords)
    out[CONCENTRATION] = xr.DataArray(data[:n_el], dims=dims3, attrs={
        "long_name": f"element concentration ({plan.method} in log10 space)",
        "units": "see element_units",
    })
    if plan.return_variance:
        out[LOG10_VARIANCE] = xr.DataArray(data[n_el:2 * n_el], dims=dims3, attrs={
            "long_name": "ordinary-kriging variance of log10 concentration",
            "units": "log10 units squared",
        })
    out[COVERAGE] = xr.DataArray(data[-1] > 0.5, dims=(schema.Y, schema.X), attrs={
        "long_name": f"a sample lies within {plan.max_distance:.1f} m",
    })
    out.attrs.update({
        "gridding_method": plan.method,
        "k": int(max(g.k for g in plan.groups)),
        "power": plan.power if plan.method == "idw" else "n/a",
        "search_radius": plan.search_radius if plan.search_radius is not None else "none",
        "max_distance": plan.max_distance,
        "n_locations": int(n_locations),
        "variograms": json.dumps(record, sort_keys=True),
    })
    out = out.rio.write_crs(grid.rio.crs)
    return out.rio.write_transform(grid.rio.transform())


def neighbourhood_reach(samples: Any, grid: xr.Dataset, covered: Any, k: int = 16, *,
                        elements: Sequence[str] | None = None,
                        block_cells: int = 1 << 20) -> float:
    """Largest distance (m) from a covered cell centre to the ``k``-th nearest sample of an
    element.

    A cell of a map interpolated from its ``k`` nearest samples (kriging or IDW here)
    depends on no sample farther away than this: the reach a buffer between training and
    held-out blocks must cover so that no training target uses a held-out sample. Each
    element is gridded from its own locations (the samples where it has a finite value),
    so an element measured at fewer sites reaches farther; the reach is the largest over
    the elements.

    Parameters
    ----------
    samples : GeoDataFrame
        The samples with numeric element columns, in the grid's CRS.
    grid : xarray.Dataset
        The survey grid.
    covered : array-like of bool, shape (y, x)
        Cells the map has a value in (e.g. the ``coverage`` of :func:`grid_samples`).
    k : int, default 16
        Neighbours per cell, as :func:`grid_samples` used them (its ``attrs["k"]``); an
        element with fewer locations uses all of them.
    elements : sequence of str, optional
        Element columns; default every column named like a chemical element.
    block_cells : int, default 2**20
        About how many grid cells are queried at once (whole rows at a time).

    Returns
    -------
    float
        The reach in metres; 0 when no cell is covered or no element has a location.

    Examples
    --------
    >>> neighbourhood_reach(dense, grid, out["coverage"], out.attrs["k"])  # doctest: +SKIP
    """
    from scipy.spatial import cKDTree

    mask = np.asarray(covered, bool)
    xy = np.column_stack([samples.geometry.x.to_numpy(), samples.geometry.y.to_numpy()])
    located = np.isfinite(xy).all(axis=1)
    trees: dict[bytes, tuple[Any, int]] = {}
    for e in element_columns(samples, elements):
        has = located & np.isfinite(samples[e].to_numpy(dtype=np.float64))
        key = has.tobytes()
        if key in trees or not has.any():
            continue
        sites = np.unique(xy[has], axis=0)
        trees[key] = (cKDTree(sites), min(int(k), len(sites)))
    if not trees or not mask.any():
        return 0.0
    gx = np.asarray(grid[schema.X].values, np.float64)
    gy = np.asarray(grid[schema.Y].values, np.float64)
    rows = max(1, int(block_cells) // max(1, len(gx)))
    reach = 0.0
    for r0 in range(0, len(gy), rows):
        r, c = np.nonzero(mask[r0:r0 + rows])
        if len(r) == 0:
            continue
        cells = np.column_stack([gx[c], gy[r0 + r]])
        for tree, kk in trees.values():
            d, _ = tree.query(cells, k=[kk])
            reach = max(reach, float(d.max()))
    return reach
