"""Geological unit polygons burnt onto the survey grid as ``lithology`` codes.

:func:`rasterize_geology` gives ``lithology`` (y, x) int16 with CF ``flag_values`` /
``flag_meanings``, -1 where no unit is mapped; numpy, or dask chunk by chunk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.covariates.geology.polygons import unit_polygons
from geochem_sr.covariates.geology.units import NO_UNIT, flag_meaning
from geochem_sr.errors import GridError

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd

__all__ = ["rasterize_geology"]


def _burn_order(geoms: np.ndarray, rule: str) -> np.ndarray:
    """Order in which polygons are burned: the last burned wins where they overlap."""
    import shapely

    pos = np.arange(len(geoms))
    if rule == "last":
        return pos
    return np.lexsort((pos, -shapely.area(geoms)))  # large first, ties in row order


def _pixel_geometries(geoms: np.ndarray, grid: xr.Dataset | xr.DataArray) -> np.ndarray:
    """Geometries in pixel coordinates (col, row) of the grid, for any sign of dy."""
    import shapely

    t = grid.rio.transform(recalc=True)
    if t.b != 0 or t.d != 0:  # pragma: no cover - grids built from 1-D coords have none
        raise GridError(f"grid: expected a north-up or south-up grid, found {t}")
    origin = np.array([t.c, t.f])
    step = np.array([t.a, t.e])
    return shapely.transform(geoms, lambda xy: (xy - origin) / step)


def _rasterize_window(
    shapes: list[tuple[Any, int]], row0: int, col0: int, height: int, width: int
) -> np.ndarray:
    """Burn pixel-space shapes into the window starting at (row0, col0)."""
    from affine import Affine
    from rasterio.features import rasterize

    if not shapes:
        return np.full((height, width), NO_UNIT, dtype=np.int16)
    return rasterize(
        shapes,
        out_shape=(height, width),
        transform=Affine.translation(col0, row0),
        fill=NO_UNIT,
        dtype="int16",
        all_touched=False,
    )


def _grid_chunks(grid: xr.Dataset | xr.DataArray) -> tuple[tuple[int, ...], ...] | None:
    """(y chunks, x chunks) of the first dask-backed variable on the grid, else None."""
    arrays = [grid] if isinstance(grid, xr.DataArray) else list(grid.data_vars.values())
    for arr in arrays:
        if arr.chunks is not None and schema.Y in arr.dims and schema.X in arr.dims:
            chunks = dict(zip(arr.dims, arr.chunks, strict=True))
            return chunks[schema.Y], chunks[schema.X]
    return None


def _normalize_chunks(
    chunks: Any, shape: tuple[int, int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    import dask.array as dsa

    if isinstance(chunks, Mapping):
        chunks = (chunks.get(schema.Y, -1), chunks.get(schema.X, -1))
    return dsa.core.normalize_chunks(chunks, shape, dtype=np.int16)


def _lazy_burn(
    shapes: list[tuple[Any, int]], pix: np.ndarray, chunks: tuple[tuple[int, ...], ...]
) -> Any:
    """A dask array burning, per chunk, only the shapes whose bounds touch it."""
    import dask
    import dask.array as dsa
    import shapely

    tree = shapely.STRtree(pix)
    rows = np.cumsum((0, *chunks[0]))
    cols = np.cumsum((0, *chunks[1]))
    blocks = []
    for i in range(len(chunks[0])):
        line = []
        for j in range(len(chunks[1])):
            box = shapely.box(cols[j], rows[i], cols[j + 1], rows[i + 1])
            idx = np.sort(tree.query(box))
            sub = [shapes[k] for k in idx]
            h, w = chunks[0][i], chunks[1][j]
            task = dask.delayed(_rasterize_window, pure=True)(sub, rows[i], cols[j], h, w)
            line.append(dsa.from_delayed(task, shape=(h, w), dtype=np.int16))
        blocks.append(line)
    return dsa.block(blocks)


def rasterize_geology(
    geology: gpd.GeoDataFrame,
    grid: xr.Dataset | xr.DataArray,
    unit_column: str = "unit",
    units: Sequence[str] | None = None,
    *,
    overlap: str = "smaller",
    repair: bool = True,
    chunks: Any = None,
) -> xr.DataArray:
    """Burn geological unit polygons onto the survey grid as ``lithology`` codes.

    A cell takes the unit of the polygon that contains its centre (GDAL's rule,
    ``all_touched=False``), so a unit's area on the grid matches its polygon area to within
    about one cell per boundary crossed.

    Parameters
    ----------
    geology : geopandas.GeoDataFrame
        Unit polygons (Polygon / MultiPolygon) with a CRS. A layer in another CRS than the
        grid is reprojected with ``to_crs``, its edges first densified to about 4 cells so
        that straight edges can bend as they should.
    grid : xarray.Dataset or xarray.DataArray
        The survey grid: ``x``/``y`` cell-centre coordinates (``y`` ascending or descending)
        and a projected CRS, e.g. :func:`geochem_sr.schema.make_grid`.
    unit_column : str, default ``"unit"``
        Column holding the unit names (taken as ``str``).
    units : sequence of str, optional
        Unit names in code order (code = position). Units of the map missing from it are
        appended in sorted order, with a warning. Default: all units, sorted by name.
    overlap : {"smaller", "last"}, default ``"smaller"``
        Where polygons of different units overlap: ``"smaller"`` — the polygon of smaller
        area wins (an intrusion or inlier drawn over its host; independent of row order;
        equal areas: the later row); ``"last"`` — the later row wins. Either way the overlaps
        are reported in a :class:`GeologyWarning`.
    repair : bool, default True
        Repair invalid geometries (e.g. a self-intersecting "bow-tie") with
        ``shapely.make_valid``, warning with the feature and the reason; with ``False`` an
        invalid geometry raises :class:`~geochem_sr.errors.InputFileError`.
    chunks : dict or tuple, optional
        Chunks ``{"y": 512, "x": 512}`` for a lazy (dask) result rasterized chunk by chunk.
        Default: the chunks of the first dask-backed variable of ``grid``; numpy if none.

    Returns
    -------
    xarray.DataArray
        ``lithology`` (y, x) int16 on the grid's coordinates and CRS; -1 where no polygon is
        mapped. Attributes: CF ``flag_values`` (codes) and ``flag_meanings`` (names, spaces
        replaced by ``_``), ``units_json`` (the exact names as a JSON list), ``long_name``.

    Raises
    ------
    InputFileError
        No unit column (the message lists the columns found), a non-polygon geometry, or an
        invalid geometry that cannot be repaired.
    CRSError
        The polygons or the grid have no CRS (or the grid a geographic one).
    DataError
        No polygon with a geometry and a unit name is left.
    GridError
        No polygon reaches the grid (both extents in the message: often a wrong CRS).

    Notes
    -----
    Features with an empty or missing geometry, or a missing unit name, are skipped with a
    :class:`GeologyWarning` naming them (real layers often carry a few); only a layer with
    nothing left raises. Polygons covering part of the grid are fine: the other cells are -1.
    """
    geoms, codes, order_units = unit_polygons(
        geology, grid, unit_column, units, overlap=overlap, repair=repair
    )
    burn = _burn_order(geoms, overlap)
    pix = _pixel_geometries(geoms[burn], grid)
    shapes = [(g, int(c)) for g, c in zip(pix, codes[burn], strict=True)]
    shape = (grid.sizes[schema.Y], grid.sizes[schema.X])
    if chunks is None:
        chunks = _grid_chunks(grid)
    if chunks is None:
        data: Any = _rasterize_window(shapes, 0, 0, *shape)
    else:
        data = _lazy_burn(shapes, pix, _normalize_chunks(chunks, shape))
    return _lithology_array(data, grid, order_units)


def _lithology_array(data: Any, grid: xr.Dataset | xr.DataArray, units: list[str]) -> xr.DataArray:
    coords = {schema.Y: grid[schema.Y], schema.X: grid[schema.X]}
    lith = xr.DataArray(data, coords=coords, dims=(schema.Y, schema.X), name=schema.LITHOLOGY)
    lith.attrs = {
        "long_name": "geological unit code",
        "flag_values": list(range(len(units))),
        "flag_meanings": " ".join(flag_meaning(u) for u in units),
        "units_json": json.dumps(units, ensure_ascii=False),
        "comment": f"{NO_UNIT} = no mapped unit; unit names in units_json",
    }
    return lith.rio.write_crs(grid.rio.crs)

