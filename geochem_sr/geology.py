"""Geological map → unit codes on the grid → word vectors of the units → input channels.

The paper (Pei et al. 2025, §3.2.2 and Table 4) turns the geological map into five input
channels by training word vectors of the geological units. This module does it in four
steps, each a plain function:

1. :func:`rasterize_geology` burns the unit polygons onto the survey grid as ``lithology``
   (int16 codes, CF ``flag_values`` / ``flag_meanings``, -1 where no unit is mapped).
2. :func:`unit_sentences` reads "sentences" of unit names off the map, so that units that
   occur together in the landscape share context (transects and random walks, see there).
3. :func:`train_unit_vectors` trains gensim Word2Vec on them, seeded and single-threaded, so
   the same map and seed give bit-identical vectors in any process; the result is a
   :class:`GeologyVocabulary` (unit names + vectors) that travels with the dataset (as JSON in
   ``ds.attrs["geology_vocabulary"]``) and with every model trained on it.
4. :func:`embed_geology` puts it together: ``geology_embedding`` (embedding, y, x) float32,
   the vector of each cell's unit, lazy on dask-chunked datasets.

:func:`embedding_table` gives the paper's Table 4 as a DataFrame and :func:`plot_units`
the picture a geologist checks (units on the first two principal components).

Examples
--------
>>> import geopandas as gpd, shapely
>>> from geochem_sr.schema import make_grid
>>> grid = make_grid((0, 0, 1000, 500), 50.0, "EPSG:32650")
>>> geo = gpd.GeoDataFrame(
...     {"unit": ["Sandstone", "Granite"]},
...     geometry=[shapely.box(0, 0, 500, 500), shapely.box(500, 0, 1000, 500)],
...     crs="EPSG:32650")
>>> ds = embed_geology(grid, geo, seed=0)
>>> ds["geology_embedding"].shape
(5, 10, 20)
>>> vocabulary_of(ds).units
('Granite', 'Sandstone')
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import (
    CRSError,
    DataError,
    GridError,
    InputFileError,
    ModelMismatchError,
    SchemaError,
)

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    from matplotlib.axes import Axes

__all__ = [
    "ATTRIBUTE_TOKEN_PREFIX",
    "DEFAULT_SENTENCE_METHOD",
    "NO_UNIT",
    "SENTENCE_METHODS",
    "GeologyVocabulary",
    "GeologyWarning",
    "embed_geology",
    "embedding_table",
    "lithology_units",
    "plot_units",
    "rasterize_geology",
    "train_unit_vectors",
    "unit_adjacency",
    "unit_sentences",
    "vocabulary_of",
]

#: Code of cells that no polygon covers.
NO_UNIT = -1
#: Attribute tokens (``"@age=Triassic"``) start with this, so they are never taken for units.
ATTRIBUTE_TOKEN_PREFIX = "@"
#: Ways of reading sentences off the map (see :func:`unit_sentences`).
SENTENCE_METHODS = ("transects+walks", "walks", "transects")
#: Default of :func:`unit_sentences` (why: see its Notes).
DEFAULT_SENTENCE_METHOD = "transects+walks"
#: Overlap rules of :func:`rasterize_geology`.
OVERLAP_RULES = ("smaller", "last")

_VOCAB_FORMAT = "geochem_sr.geology_vocabulary"
_VOCAB_VERSION = 1
_MAX_TRANSECTS = 2000  # lines per direction before transects are thinned out


class GeologyWarning(UserWarning):
    """Something in the geological map was repaired, resolved or replaced: read the message."""


def _warn(message: str) -> None:
    warnings.warn(message, GeologyWarning, stacklevel=3)


# ======================================================================================
# 1. polygons -> lithology codes
# ======================================================================================
def _flag_meaning(name: str) -> str:
    return re.sub(r"\s+", "_", name.strip()) or "_"


def _feature_label(geology: gpd.GeoDataFrame, pos: int, names: Sequence[Any]) -> str:
    return f"feature {geology.index[pos]!r} (unit {names[pos]!r})"


def _check_geology_frame(geology: Any, unit_column: str) -> None:
    import geopandas as gpd

    if not isinstance(geology, gpd.GeoDataFrame):
        raise InputFileError(
            f"geology: expected a geopandas.GeoDataFrame of unit polygons, "
            f"found {type(geology).__name__}"
        )
    if unit_column not in geology.columns:
        found = [c for c in geology.columns if c != geology.geometry.name]
        raise InputFileError(
            f"geology: expected a unit-name column {unit_column!r}, found columns {found} "
            "(pass unit_column=... to name the right one)"
        )
    if geology.crs is None:
        raise CRSError(
            "geology: expected a CRS on the polygons (e.g. geology.set_crs('EPSG:32650')), "
            "found none"
        )


def _to_grid_crs(
    geology: gpd.GeoDataFrame, grid: xr.Dataset | xr.DataArray, cell: float
) -> gpd.GeoDataFrame:
    """``geology`` in the grid's CRS; edges densified first to ~4 cells, so they may bend."""
    import pyproj
    import shapely

    target = pyproj.CRS.from_user_input(grid.rio.crs.to_wkt())
    if pyproj.CRS.from_user_input(geology.crs).equals(target):
        return geology
    moved = geology.to_crs(target)
    src, dst = geology.total_bounds, moved.total_bounds
    src_extent = max(src[2] - src[0], src[3] - src[1])
    dst_extent = max(dst[2] - dst[0], dst[3] - dst[1])
    if not (np.isfinite(src_extent) and src_extent > 0 and dst_extent > 0):
        return moved
    step = 4 * cell * src_extent / dst_extent  # about 4 grid cells, in source units
    dense = geology.copy()
    dense[dense.geometry.name] = shapely.segmentize(
        np.asarray(geology.geometry.values, dtype=object), step
    )
    return dense.to_crs(target)


def _polygonal(geom: Any) -> Any:
    """The polygonal part of a geometry (a (Multi)Polygon, or None when it has none)."""
    import shapely

    parts = shapely.get_parts(geom)
    polys = [p for p in parts if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty]
    if not polys:
        return None
    out = polys[0] if len(polys) == 1 else shapely.union_all(polys)
    return out if out.area > 0 else None


def _clean_geometries(
    geology: gpd.GeoDataFrame, names: np.ndarray, repair: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Skip empty/missing geometries, repair invalid ones; return kept positions and geoms."""
    import shapely

    geoms = np.asarray(geology.geometry.values, dtype=object)
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if missing.any():
        labels = [_feature_label(geology, int(i), names) for i in np.flatnonzero(missing)[:10]]
        _warn(
            f"geology: {int(missing.sum())} feature(s) have an empty or missing geometry and "
            f"are skipped: {', '.join(labels)}"
        )
    keep = np.flatnonzero(~missing)
    out = geoms[keep].copy()
    bad_type = [
        int(keep[k])
        for k, g in enumerate(out)
        if g.geom_type not in ("Polygon", "MultiPolygon", "GeometryCollection")
    ]
    if bad_type:
        labels = [f"{_feature_label(geology, i, names)}: {geoms[i].geom_type}" for i in bad_type]
        raise InputFileError(
            f"geology: expected polygons, found other geometry types in {'; '.join(labels[:10])}"
        )
    invalid = ~shapely.is_valid(out)
    repaired = []
    for k in np.flatnonzero(invalid):
        pos = int(keep[k])
        reason = shapely.is_valid_reason(out[k])
        if not repair:
            raise InputFileError(
                f"geology: {_feature_label(geology, pos, names)} has an invalid geometry "
                f"({reason}); fix it or pass repair=True"
            )
        fixed = _polygonal(shapely.make_valid(out[k]))
        if fixed is None:
            raise InputFileError(
                f"geology: {_feature_label(geology, pos, names)} has an invalid geometry "
                f"({reason}) that make_valid cannot turn into a polygon with an area"
            )
        out[k] = fixed
        repaired.append(f"{_feature_label(geology, pos, names)}: {reason}")
    if repaired:
        _warn(
            f"geology: {len(repaired)} invalid geometr{'y' if len(repaired) == 1 else 'ies'} "
            f"repaired with shapely.make_valid: {'; '.join(repaired[:10])}"
        )
    for k, g in enumerate(out):  # collections: keep their polygonal part
        if g.geom_type == "GeometryCollection":
            poly = _polygonal(g)
            if poly is None:
                raise InputFileError(
                    f"geology: {_feature_label(geology, int(keep[k]), names)} holds no polygon"
                )
            out[k] = poly
    return keep, out


def _grid_bounds(grid: xr.Dataset | xr.DataArray, dx: float, dy: float) -> tuple[float, ...]:
    xs, ys = np.asarray(grid[schema.X].values), np.asarray(grid[schema.Y].values)
    return (xs.min() - abs(dx) / 2, ys.min() - abs(dy) / 2,
            xs.max() + abs(dx) / 2, ys.max() + abs(dy) / 2)


def _bounds_text(b: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):.1f}" for v in b) + ")"


def _check_overlap(geoms: np.ndarray, grid: xr.Dataset | xr.DataArray, dx: float,
                   dy: float) -> None:
    """GridError when the polygons (in the grid's CRS) do not reach the grid at all."""
    import shapely

    gb = _grid_bounds(grid, dx, dy)
    pb = shapely.total_bounds(geoms)
    if pb[0] >= gb[2] or pb[2] <= gb[0] or pb[1] >= gb[3] or pb[3] <= gb[1]:
        raise GridError(
            f"geology: expected polygons overlapping the survey grid, found none: geology "
            f"bounds {_bounds_text(pb)}, grid bounds {_bounds_text(gb)} (in "
            f"{grid.rio.crs}); check the geology layer's CRS and that it maps the survey area"
        )


def _unit_order(found: Iterable[str], units: Sequence[str] | None) -> list[str]:
    found_set = set(found)
    if units is None:
        return sorted(found_set)
    order = [str(u) for u in units]
    dup = sorted({u for u in order if order.count(u) > 1})
    if dup:
        raise SchemaError(f"units: expected unique unit names, found duplicates {dup}")
    extra = sorted(found_set - set(order))
    if extra:
        _warn(
            f"geology: units {extra} are not in the given `units` list; they get codes "
            f"{len(order)}..{len(order) + len(extra) - 1} after it"
        )
    return order + extra


def _report_overlaps(
    geology: gpd.GeoDataFrame,
    keep: np.ndarray,
    geoms: np.ndarray,
    names: np.ndarray,
    cell_area: float,
    rule: str,
) -> None:
    """Warn about overlapping polygons of different units (above a sliver tolerance)."""
    import shapely

    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    sel = (left < right) & (names[keep[left]] != names[keep[right]])
    left, right = left[sel], right[sel]
    if left.size == 0:
        return
    area = shapely.area(shapely.intersection(geoms[left], geoms[right]))
    big = area > 1e-6 * cell_area
    if not big.any():
        return
    left, right, area = left[big], right[big], area[big]
    pairs = [
        f"{_feature_label(geology, int(keep[a]), names)} and "
        f"{_feature_label(geology, int(keep[b]), names)} ({ar:.4g} m²)"
        for a, b, ar in zip(left[:5], right[:5], area[:5], strict=True)
    ]
    how = (
        "the smaller polygon wins (ties: the later row)"
        if rule == "smaller"
        else "the later row wins"
    )
    _warn(
        f"geology: {left.size} pair(s) of polygons of different units overlap "
        f"({area.sum() / cell_area:.3g} cells in all); resolved by overlap={rule!r}, {how}: "
        f"{'; '.join(pairs)}{' ...' if left.size > 5 else ''}"
    )


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
        raise schema.GridError(f"grid: expected a north-up or south-up grid, found {t}")
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
    _check_geology_frame(geology, unit_column)
    schema.check_crs(grid, "grid")
    dx, dy = schema.check_grid(grid, "grid")
    if overlap not in OVERLAP_RULES:
        raise SchemaError(f"overlap: expected one of {OVERLAP_RULES}, found {overlap!r}")

    geology = _to_grid_crs(geology, grid, min(abs(dx), abs(dy)))
    raw_names = geology[unit_column]
    no_name = raw_names.isna().to_numpy() | (raw_names.astype(str).str.strip() == "").to_numpy()
    names = np.asarray(raw_names.astype(str), dtype=object)
    if no_name.any():
        labels = [f"feature {geology.index[i]!r}" for i in np.flatnonzero(no_name)[:10]]
        _warn(
            f"geology: {int(no_name.sum())} feature(s) have no name in column "
            f"{unit_column!r} and are skipped: {', '.join(labels)}"
        )
        geology = geology.iloc[~no_name]
        names = names[~no_name]
    keep, geoms = _clean_geometries(geology, names, repair)
    if keep.size == 0:
        raise DataError(
            f"geology: expected at least one polygon with a unit name in {unit_column!r}, "
            "found none"
        )
    _check_overlap(geoms, grid, dx, dy)
    order_units = _unit_order(names[keep], units)
    if len(order_units) > np.iinfo(np.int16).max:
        raise DataError(
            f"geology: expected at most {np.iinfo(np.int16).max} units, found {len(order_units)}"
        )
    code_of = {u: i for i, u in enumerate(order_units)}
    codes = np.array([code_of[n] for n in names[keep]], dtype=np.int16)

    _report_overlaps(geology, keep, geoms, names, abs(dx * dy), overlap)
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
        "flag_meanings": " ".join(_flag_meaning(u) for u in units),
        "units_json": json.dumps(units, ensure_ascii=False),
        "comment": f"{NO_UNIT} = no mapped unit; unit names in units_json",
    }
    return lith.rio.write_crs(grid.rio.crs)


def lithology_units(lithology: xr.DataArray) -> list[str]:
    """Unit names of a ``lithology`` map, in code order (code = position).

    Read from the ``units_json`` attribute, else from CF ``flag_meanings``.

    Raises
    ------
    SchemaError
        Neither attribute is present, or they disagree with ``flag_values``.
    """
    attrs = lithology.attrs
    if "units_json" in attrs:
        units = [str(u) for u in json.loads(attrs["units_json"])]
    elif "flag_meanings" in attrs:
        units = str(attrs["flag_meanings"]).split()
    else:
        raise SchemaError(
            "variable 'lithology': expected attrs 'units_json' or 'flag_meanings' naming the "
            f"units, found attrs {sorted(attrs)}"
        )
    flags = attrs.get("flag_values")
    if flags is not None and [int(v) for v in np.atleast_1d(flags)] != list(range(len(units))):
        raise SchemaError(
            f"variable 'lithology': expected flag_values 0..{len(units) - 1} for {len(units)} "
            f"units, found {list(np.atleast_1d(flags))}"
        )
    return units


# ======================================================================================
# 2. sentences of units
# ======================================================================================
def _codes_array(lithology: xr.DataArray) -> np.ndarray:
    if not isinstance(lithology, xr.DataArray):
        raise SchemaError(
            f"lithology: expected an xarray.DataArray, found {type(lithology).__name__}"
        )
    if lithology.dims != (schema.Y, schema.X):
        raise SchemaError(
            f"variable 'lithology': expected dims {(schema.Y, schema.X)}, found {lithology.dims}"
        )
    if not np.issubdtype(lithology.dtype, np.integer):
        raise SchemaError(
            f"variable 'lithology': expected integer unit codes, found {lithology.dtype}"
        )
    return np.asarray(lithology.values).astype(np.int32, copy=False)


def unit_adjacency(lithology: xr.DataArray) -> tuple[list[str], np.ndarray]:
    """Shared boundary length between units, in cell sides (4-neighbour cell pairs).

    Parameters
    ----------
    lithology : xarray.DataArray
        Unit codes (y, x) with unit names in attrs (see :func:`rasterize_geology`).

    Returns
    -------
    units : list of str
        Unit names in code order.
    counts : numpy.ndarray
        (n_units, n_units) int64, symmetric, zero diagonal: ``counts[i, j]`` is the number of
        pairs of edge-sharing cells with units ``i`` and ``j`` (multiply by the cell size for
        metres). Cells with no unit (-1) or codes out of range are ignored.
    """
    units = lithology_units(lithology)
    codes = _codes_array(lithology)
    return units, _adjacency_counts(codes, len(units))


def _adjacency_counts(codes: np.ndarray, n: int) -> np.ndarray:
    counts = np.zeros(n * n, dtype=np.int64)
    for a, b in ((codes[:, :-1], codes[:, 1:]), (codes[:-1, :], codes[1:, :])):
        ok = (a != b) & (a >= 0) & (b >= 0) & (a < n) & (b < n)
        counts += np.bincount((a[ok] * n + b[ok]).ravel(), minlength=n * n)
    counts = counts.reshape(n, n)
    return counts + counts.T


def _runs(line: np.ndarray) -> list[np.ndarray]:
    """Pieces of a line between no-unit cells, with consecutive duplicates collapsed."""
    out = []
    valid = line >= 0
    if not valid.any():
        return out
    edges = np.flatnonzero(np.diff(np.r_[0, valid.astype(np.int8), 0]))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        seg = line[start:stop]
        keep = np.r_[True, seg[1:] != seg[:-1]]
        out.append(seg[keep])
    return out


def _transect_lines(codes: np.ndarray, step: int) -> Iterable[np.ndarray]:
    """Rows (W-E), columns (N-S), diagonals (NW-SE) and anti-diagonals (NE-SW), every step-th."""
    ny, nx = codes.shape
    yield from codes[::step]
    yield from codes.T[::step]
    flipped = codes[:, ::-1]
    for offset in range(-(ny - 1), nx, step):
        yield np.diagonal(codes, offset)
        yield np.diagonal(flipped, offset)


def _transects(codes: np.ndarray, n_units: int, step: int | None) -> list[np.ndarray]:
    if step is None:
        step = max(1, -(-max(codes.shape) // _MAX_TRANSECTS))
    if step < 1:
        raise SchemaError(f"transect_step: expected a positive integer, found {step}")
    codes = np.where(codes < n_units, codes, NO_UNIT)
    return [run for line in _transect_lines(codes, int(step)) for run in _runs(line)]


def _walks(
    adjacency: np.ndarray,
    present: np.ndarray,
    n_walks: int,
    walk_length: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Random walks over the unit graph; the next unit is drawn ∝ shared boundary length."""
    if n_walks < 0 or walk_length < 1:
        raise SchemaError(
            f"n_walks, walk_length: expected >= 0 and >= 1, found {n_walks}, {walk_length}"
        )
    totals = adjacency.sum(axis=1)
    cum = np.cumsum(adjacency, axis=1) / np.where(totals > 0, totals, 1)[:, None]
    walks = []
    for start in present:
        for _ in range(n_walks):
            walk = np.empty(walk_length, dtype=np.int64)
            walk[0] = cur = start
            length = 1
            for k in range(1, walk_length):
                if totals[cur] == 0:
                    break
                cur = int(np.searchsorted(cum[cur], rng.random(), side="right"))
                cur = min(cur, adjacency.shape[0] - 1)
                walk[k] = cur
                length += 1
            walks.append(walk[:length])
    return walks


def _subsample(
    lines: list[np.ndarray], share: float, other_tokens: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """A seeded random subset of ``lines`` making about ``share`` of all tokens."""
    if not 0 <= share < 1:
        raise SchemaError(f"transect_share: expected a fraction in [0, 1), found {share}")
    budget = share / (1 - share) * other_tokens
    picked, total = [], 0
    for i in rng.permutation(len(lines)):
        if total >= budget:
            break
        picked.append(lines[i])
        total += lines[i].size
    return picked


def _attribute_tokens(
    attributes: Mapping[str, Mapping[str, Any]] | None, units: Sequence[str]
) -> list[list[str]]:
    if attributes is None:
        return [[] for _ in units]
    if not isinstance(attributes, Mapping) or not all(
        isinstance(v, Mapping) for v in attributes.values()
    ):
        raise SchemaError(
            "attributes: expected {unit: {attribute: value}}, e.g. "
            "{'Granite': {'age': 'Triassic', 'class': 'intrusive'}}, "
            f"found {type(attributes).__name__}"
        )
    out = []
    for u in units:
        attrs = attributes.get(u, {})
        out.append(
            [
                f"{ATTRIBUTE_TOKEN_PREFIX}{_flag_meaning(str(k))}={_flag_meaning(str(v))}"
                for k, v in sorted(attrs.items(), key=lambda kv: str(kv[0]))
                if v is not None
            ]
        )
    return out


def unit_sentences(
    lithology: xr.DataArray,
    method: str = DEFAULT_SENTENCE_METHOD,
    n_walks: int = 50,
    walk_length: int = 20,
    seed: int = 0,
    attributes: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    transect_step: int | None = None,
    transect_share: float = 0.25,
    shuffle: bool = True,
) -> list[list[str]]:
    """Read "sentences" of unit names off a lithology map, for word vectors.

    Parameters
    ----------
    lithology : xarray.DataArray
        Unit codes (y, x), e.g. from :func:`rasterize_geology`. Loaded into memory
        (2 bytes per cell) when lazy.
    method : {"transects+walks", "walks", "transects"}, default ``"transects+walks"``
        ``"walks"``: ``n_walks`` random walks of ``walk_length`` units from every unit
        present, over the unit adjacency graph, stepping to a neighbour with probability
        proportional to the shared boundary length (:func:`unit_adjacency`).
        ``"transects"``: the units crossed, in order, along every row, column, diagonal and
        anti-diagonal of the grid (consecutive duplicates collapsed; a no-unit cell ends a
        sentence; one-unit lines dropped). ``"transects+walks"``: the walks plus a seeded
        random subset of the transects making ``transect_share`` of the tokens.
    n_walks, walk_length : int
        Walks per unit and units per walk (a walk from a unit with no neighbour stops).
    seed : int, default 0
        Seed of the walks, the transect subset and the shuffling; same map + seed → same
        sentences.
    attributes : dict, optional
        ``{unit: {"age": "Triassic", "class": "intrusive"}}``: each unit token is followed by
        tokens ``"@age=Triassic"``, ``"@class=intrusive"``, so units sharing an attribute share
        context. Attribute tokens (prefix :data:`ATTRIBUTE_TOKEN_PREFIX`) get no vector of
        their own. They space units further apart in a sentence: with ``k`` attributes, widen
        the Word2Vec window about ``k + 1`` times.
    transect_step : int, optional
        Use every ``transect_step``-th line of each direction. Default: every line up to
        2000 lines per direction, thinned beyond.
    transect_share : float, default 0.25
        With ``"transects+walks"``: the fraction of all tokens that come from transects (at
        most; fewer if the map has fewer), so the mix does not change with the grid size.
    shuffle : bool, default True
        Shuffle the sentences (seeded), so that training does not see all sentences of one
        kind, then the other.

    Returns
    -------
    list of list of str
        The sentences. Every unit present on the map occurs in at least one of them (a
        one-word sentence is added when the chosen method misses a unit), so every unit on the
        map gets a vector.

    Notes
    -----
    Why ``"transects+walks"`` is the default. The walks start ``n_walks`` times from every
    unit, so a small unit (a stock of a few cells) gets as much context as a large one, and
    their size does not depend on the grid (the same map at 50 m or 10 m cells gives the
    same walks); their steps follow shared boundary length. Transects are the map read in
    straight lines: they keep real successions (A B C D C B A across a fold), but a Word2Vec
    window of 5 along a transect spans units that never touch, and their number grows with
    the grid. Alone they can invert the picture; capped at a quarter of the tokens they add
    the succession without drowning the walks. Measured with ``vectors="in+out"``, 50 m
    cells, 3 seeds (mean cosine of touching pairs minus never-touching pairs / Spearman
    correlation of shared boundary length with cosine over all pairs):

    ============================== ============= ================= =============
    map                            walks         transects+walks   transects
    ============================== ============= ================= =============
    synthetic region, seed 0       0.37 / 0.58   0.43 / 0.53       0.54 / 0.46
    synthetic region, seed 1       0.24 / 0.44   0.26 / 0.39       0.28 / 0.29
    bands A|B|C|D                  0.87 / 0.81   0.80 / 0.88       -0.68 / -0.88
    folded succession + intrusion  1.08 / 0.72   0.98 / 0.74       0.30 / 0.12
    Voronoi cells, 8 units         0.53 / 0.75   0.53 / 0.71       0.11 / 0.07
    ============================== ============= ================= =============

    Walks and transects+walks are close; the mix does a little better on the realistic
    (synthetic) maps on the first measure, so it is the default, and ``"walks"`` is the
    choice where boundary length should rank similarity most faithfully.
    """
    if method not in SENTENCE_METHODS:
        raise SchemaError(f"method: expected one of {SENTENCE_METHODS}, found {method!r}")
    units = lithology_units(lithology)
    codes = _codes_array(lithology)
    n = len(units)
    present = np.unique(codes[(codes >= 0) & (codes < n)])
    rng = np.random.default_rng(seed)
    seqs: list[np.ndarray] = []
    if "walks" in method:
        seqs += _walks(_adjacency_counts(codes, n), present, n_walks, walk_length, rng)
    if "transects" in method:
        lines = [t for t in _transects(codes, n, transect_step) if t.size > 1]
        if method == "transects+walks":
            lines = _subsample(lines, transect_share, sum(s.size for s in seqs), rng)
        seqs += lines
    seen = np.zeros(n, dtype=bool)
    for s in seqs:
        seen[s] = True
    seqs += [np.array([u]) for u in present if not seen[u]]
    if shuffle:
        seqs = [seqs[i] for i in rng.permutation(len(seqs))]
    extra = _attribute_tokens(attributes, units)
    if attributes is None:
        return [[units[c] for c in s] for s in seqs]
    return [[tok for c in s for tok in (units[c], *extra[c])] for s in seqs]


# ======================================================================================
# 3. word vectors
# ======================================================================================
@dataclass(frozen=True, eq=False)
class GeologyVocabulary:
    """Unit names and their word vectors: what a dataset and a model must agree on.

    Attributes
    ----------
    units : tuple of str
        Unit names (row order of ``vectors``).
    vectors : numpy.ndarray
        (n_units, vector_size) float32, read-only.
    params : dict
        How the vectors were made (seed, method, Word2Vec settings, gensim version); carried
        along in JSON for provenance, ignored by ``==``.

    Notes
    -----
    :attr:`fallback`, the vector given to a unit the vocabulary does not know, is the mean of
    all unit vectors: the centre of the embedding, which biases no unit in particular and
    keeps the input channel in its usual range.
    """

    units: tuple[str, ...]
    vectors: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        units = tuple(str(u) for u in self.units)
        vectors = np.array(self.vectors, dtype=np.float32, copy=True, order="C")
        if vectors.ndim != 2 or vectors.shape[0] != len(units) or vectors.shape[1] < 1:
            raise SchemaError(
                f"geology vocabulary: expected vectors of shape ({len(units)}, vector_size), "
                f"found {vectors.shape}"
            )
        if len(set(units)) != len(units):
            dup = sorted({u for u in units if units.count(u) > 1})
            raise SchemaError(f"geology vocabulary: expected unique units, found duplicates {dup}")
        if not np.isfinite(vectors).all():
            raise SchemaError("geology vocabulary: expected finite vectors, found NaN or inf")
        vectors.flags.writeable = False
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "_index", {u: i for i, u in enumerate(units)})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GeologyVocabulary):
            return NotImplemented
        return self.units == other.units and np.array_equal(self.vectors, other.vectors)

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.units)

    def __contains__(self, unit: object) -> bool:
        return unit in self._index  # type: ignore[attr-defined]

    @property
    def vector_size(self) -> int:
        """Number of dimensions of the vectors."""
        return int(self.vectors.shape[1])

    @property
    def fallback(self) -> np.ndarray:
        """The vector for unknown units: the mean of all unit vectors (in float64, as float32)."""
        return self.vectors.astype(np.float64).mean(axis=0).astype(np.float32)

    def vector(self, unit: str) -> np.ndarray:
        """The vector of one unit; raises :class:`ModelMismatchError` if unknown.

        Use :meth:`lookup` for the fallback (with a warning) instead.
        """
        try:
            return self.vectors[self._index[unit]]  # type: ignore[attr-defined]
        except KeyError:
            raise ModelMismatchError(
                f"geology vocabulary: unit {unit!r} is unknown (known: {list(self.units)}); "
                "lookup() gives the fallback vector instead"
            ) from None

    def lookup(self, names: Iterable[str], warn: bool = True) -> np.ndarray:
        """Vectors of many units, (len(names), vector_size) float32.

        Units the vocabulary does not know get :attr:`fallback`, and a
        :class:`GeologyWarning` names them (unless ``warn=False``).
        """
        names = [str(n) for n in names]
        out = np.empty((len(names), self.vector_size), dtype=np.float32)
        unknown = []
        index = self._index  # type: ignore[attr-defined]
        for k, name in enumerate(names):
            i = index.get(name)
            if i is None:
                out[k] = self.fallback
                unknown.append(name)
            else:
                out[k] = self.vectors[i]
        if unknown and warn:
            _warn(
                f"geology vocabulary: units {sorted(set(unknown))} are unknown to the "
                f"vocabulary ({len(self.units)} units); they get the fallback vector "
                "(the mean of all unit vectors)"
            )
        return out

    def to_json(self) -> str:
        """JSON text ``{"format", "version", "units", "vectors", "params"}``, exact round trip."""
        return json.dumps(
            {
                "format": _VOCAB_FORMAT,
                "version": _VOCAB_VERSION,
                "units": list(self.units),
                "vectors": self.vectors.astype(np.float64).tolist(),
                "params": self.params,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> GeologyVocabulary:
        """Read a vocabulary written by :meth:`to_json` (or ``{"units", "vectors"}``)."""
        try:
            obj = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"geology vocabulary: expected JSON text, found {exc}") from None
        if not isinstance(obj, dict) or "units" not in obj or "vectors" not in obj:
            found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise SchemaError(
                f"geology vocabulary: expected a JSON object with 'units' and 'vectors', "
                f"found {found}"
            )
        if obj.get("version", _VOCAB_VERSION) > _VOCAB_VERSION:
            raise SchemaError(
                f"geology vocabulary: expected format version <= {_VOCAB_VERSION}, "
                f"found {obj['version']} (written by a newer geochem_sr)"
            )
        vectors = np.asarray(obj["vectors"], dtype=np.float64)
        if vectors.size == 0:
            vectors = vectors.reshape(len(obj["units"]), -1)
        return cls(tuple(obj["units"]), vectors.astype(np.float32), obj.get("params", {}))


def _is_unit_token(token: str) -> bool:
    return not token.startswith(ATTRIBUTE_TOKEN_PREFIX)


def train_unit_vectors(
    sentences: Sequence[Sequence[str]],
    vector_size: int = 5,
    seed: int = 0,
    window: int = 5,
    epochs: int = 20,
    *,
    units: Sequence[str] | None = None,
    vectors: str = "in+out",
    **w2v_kwargs: Any,
) -> GeologyVocabulary:
    """Train Word2Vec vectors of the units, seeded and deterministic.

    Parameters
    ----------
    sentences : sequence of sequence of str
        E.g. from :func:`unit_sentences`.
    vector_size : int, default 5
        Dimensions (the paper's Table 4 has 5).
    seed : int, default 0
        Word2Vec seed. With ``workers=1`` (forced unless given) the same sentences and seed
        give bit-identical vectors in any process, whatever ``PYTHONHASHSEED``.
    window : int, default 5
        Context window.
    epochs : int, default 20
        Passes over the sentences.
    units : sequence of str, optional
        Which tokens are units (the vocabulary, in this order). Default: every token that is
        not an attribute token (``"@..."``), sorted by name.
    vectors : {"in+out", "in"}, default ``"in+out"``
        ``"in"``: Word2Vec's word vectors alone. They make units close when their contexts
        are alike (second-order similarity): on a band map A|B|C|D, A and C (both next to B)
        come out closer than A and B. ``"in+out"`` adds the context (output) vectors, which
        adds first-order similarity (units that occur together), so units that share long
        boundaries end up close — what the map should teach the network (Levy, Goldberg &
        Dagan 2015).
    **w2v_kwargs
        Passed to :class:`gensim.models.Word2Vec` (defaults here: ``sg=1``, ``negative=5``,
        ``hs=0``, ``min_count=1``, ``sample=0``, ``workers=1``).

    Returns
    -------
    GeologyVocabulary
    """
    import gensim
    from gensim.models import Word2Vec

    if vectors not in ("in+out", "in"):
        raise SchemaError(f"vectors: expected 'in+out' or 'in', found {vectors!r}")
    corpus = [[str(t) for t in s] for s in sentences if len(s) > 0]
    if not corpus:
        raise DataError("sentences: expected at least one non-empty sentence, found none")
    tokens = sorted({t for s in corpus for t in s if _is_unit_token(t)})
    order = tokens if units is None else [str(u) for u in units]
    missing = sorted(set(order) - {t for s in corpus for t in s})
    if missing:
        raise DataError(f"units: expected every unit in the sentences, found none of {missing}")
    if not order:
        raise DataError("sentences: expected unit tokens, found only attribute tokens")
    params: dict[str, Any] = {
        "sg": 1,
        "negative": 5,
        "hs": 0,
        "min_count": 1,
        "sample": 0.0,
        "workers": 1,
    }
    params.update(w2v_kwargs)
    if params["workers"] != 1:
        _warn(f"train_unit_vectors: workers={params['workers']} is not deterministic; use 1")
    model = Word2Vec(
        sentences=corpus,
        vector_size=int(vector_size),
        window=int(window),
        epochs=int(epochs),
        seed=int(seed),
        **params,
    )
    idx = [model.wv.key_to_index[u] for u in order]
    out = np.array(model.wv.vectors[idx], dtype=np.float32)
    if vectors == "in+out":
        ctx = model.syn1neg if params.get("negative", 0) else model.syn1
        out = out + np.asarray(ctx[idx], dtype=np.float32)
    meta = {
        "vector_size": int(vector_size),
        "seed": int(seed),
        "window": int(window),
        "epochs": int(epochs),
        "vectors": vectors,
        "gensim": gensim.__version__,
        **{k: v for k, v in params.items() if isinstance(v, int | float | str | bool)},
    }
    return GeologyVocabulary(tuple(order), out, meta)


# ======================================================================================
# 4. onto the dataset
# ======================================================================================
def _code_table(units: Sequence[str], vocab: GeologyVocabulary, warn: bool) -> np.ndarray:
    """(n_codes + 1, k) lookup table; row 0 is NaN (code -1), row c+1 the vector of code c."""
    table = np.full((len(units) + 1, vocab.vector_size), np.nan, dtype=np.float32)
    if units:
        table[1:] = vocab.lookup(units, warn=warn)
    return table


def _embed_block(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(k, *codes.shape) float32: table rows by code; invalid codes → NaN."""
    idx = codes.astype(np.int64) + 1
    idx = np.where((idx >= 0) & (idx < table.shape[0]), idx, 0)
    return np.moveaxis(table[idx], -1, 0)


def _embedding_array(lith: xr.DataArray, table: np.ndarray) -> xr.DataArray:
    k = table.shape[1]
    data = lith.data
    if hasattr(data, "map_blocks") and not isinstance(data, np.ndarray):  # dask
        out = data.map_blocks(
            _embed_block,
            table,
            dtype=np.float32,
            new_axis=0,
            chunks=((k,), *data.chunks),
            meta=np.empty((0, 0, 0), dtype=np.float32),
        )
    else:
        out = _embed_block(np.asarray(data), table)
    coords = {
        schema.EMBEDDING: np.arange(1, k + 1),
        schema.Y: lith[schema.Y],
        schema.X: lith[schema.X],
    }
    emb = xr.DataArray(
        out,
        coords=coords,
        dims=(schema.EMBEDDING, schema.Y, schema.X),
        name=schema.GEOLOGY_EMBEDDING,
    )
    emb.attrs = {
        "long_name": "word vector of the geological unit",
        "units": "1",
        "comment": (
            f"Word2Vec vector of each cell's lithology unit (dimension 1..{k}); NaN where no "
            f"unit is mapped; vocabulary in the dataset attribute {schema.ATTR_GEOLOGY_VOCAB!r}"
        ),
    }
    return emb


def embed_geology(
    ds: xr.Dataset,
    geology: gpd.GeoDataFrame | None = None,
    unit_column: str = "unit",
    vector_size: int = 5,
    seed: int = 0,
    vocabulary: GeologyVocabulary | None = None,
    *,
    units: Sequence[str] | None = None,
    w2v_kwargs: Mapping[str, Any] | None = None,
    rasterize_kwargs: Mapping[str, Any] | None = None,
    **sentence_kwargs: Any,
) -> xr.Dataset:
    """Add ``lithology`` and ``geology_embedding`` to a survey dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        The survey dataset (or an empty grid from :func:`geochem_sr.schema.make_grid`).
    geology : geopandas.GeoDataFrame, optional
        Unit polygons, rasterized with :func:`rasterize_geology` (replacing any
        ``lithology`` already there). Default: use ``ds["lithology"]``.
    unit_column : str, default ``"unit"``
        Column of unit names in ``geology``.
    vector_size : int, default 5
        Dimensions of the trained vectors (ignored when ``vocabulary`` is given).
    seed : int, default 0
        Seed of the sentences and of Word2Vec.
    vocabulary : GeologyVocabulary, optional
        Apply these vectors (e.g. those a model was trained with) instead of training; units
        it does not know get its fallback (the mean vector), with a :class:`GeologyWarning`
        naming them.
    units : sequence of str, optional
        Code order for :func:`rasterize_geology`.
    w2v_kwargs : dict, optional
        Passed to :func:`train_unit_vectors` (``window``, ``epochs``, ``vectors``, gensim
        options).
    rasterize_kwargs : dict, optional
        Passed to :func:`rasterize_geology` (``overlap``, ``repair``, ``chunks``).
    **sentence_kwargs
        Passed to :func:`unit_sentences` (``method``, ``n_walks``, ``walk_length``,
        ``attributes``, ``transect_step``).

    Returns
    -------
    xarray.Dataset
        A copy of ``ds`` with ``lithology`` (y, x) int16, ``geology_embedding``
        (embedding, y, x) float32 (NaN where no unit) and the vocabulary as JSON in
        ``attrs["geology_vocabulary"]``; other variables, attrs and the CRS are kept. Lazy
        (dask) when ``ds`` is dask-chunked or its ``lithology`` is; training the vectors
        computes the lithology map once.

    Raises
    ------
    GridError
        The geology does not overlap the grid (no cell gets a unit), before any training.
    """
    if not isinstance(ds, xr.Dataset):
        raise SchemaError(f"ds: expected an xarray.Dataset, found {type(ds).__name__}")
    if geology is not None:
        lith = rasterize_geology(geology, ds, unit_column, units, **(rasterize_kwargs or {}))
    elif schema.LITHOLOGY in ds.data_vars:
        lith = ds[schema.LITHOLOGY]
    else:
        raise SchemaError(
            "embed_geology: expected unit polygons (geology=...) or a 'lithology' variable, "
            f"found neither (variables: {sorted(ds.data_vars)})"
        )
    names = lithology_units(lith)
    if vocabulary is None:
        sentences = unit_sentences(lith, seed=seed, **sentence_kwargs)
        if not sentences:  # every unit on the map gets one: no unit on the map
            where = "" if geology is None else (
                f" (geology bounds {_bounds_text(geology.to_crs(ds.rio.crs).total_bounds)}, "
                f"grid bounds {_bounds_text(_grid_bounds(ds, *schema.check_grid(ds)))})"
            )
            raise GridError(
                "geology: expected units on the survey grid, found no cell centre inside a "
                f"unit polygon{where}; the geology does not overlap the grid: check its CRS "
                "and extent"
            )
        vocab = train_unit_vectors(
            sentences, vector_size=vector_size, seed=seed, **(w2v_kwargs or {})
        )
        vocab = GeologyVocabulary(
            vocab.units,
            vocab.vectors,
            {
                **vocab.params,
                "sentences": sentence_kwargs.get("method", DEFAULT_SENTENCE_METHOD),
                **{
                    k: v
                    for k, v in sentence_kwargs.items()
                    if k != "method" and isinstance(v, int | float | str | bool)
                },
            },
        )
        # units listed but absent from the map have no cells: their row is never used
        table = _code_table(names, vocab, warn=False)
    else:
        if not isinstance(vocabulary, GeologyVocabulary):
            raise SchemaError(
                f"vocabulary: expected a GeologyVocabulary, found {type(vocabulary).__name__}"
            )
        vocab = vocabulary
        table = _code_table(names, vocab, warn=True)
    emb = _embedding_array(lith, table)
    out = ds.copy()
    out[schema.LITHOLOGY] = lith.drop_vars(schema.SPATIAL_REF, errors="ignore")
    out[schema.GEOLOGY_EMBEDDING] = emb
    for var in (schema.LITHOLOGY, schema.GEOLOGY_EMBEDDING):
        if schema.SPATIAL_REF in out.coords:
            out[var].encoding["grid_mapping"] = schema.SPATIAL_REF
    out.attrs[schema.ATTR_GEOLOGY_VOCAB] = vocab.to_json()
    from geochem_sr.sparse_view import refresh_lr_view

    return refresh_lr_view(out)  # the embedding changed: so does what the sparse sites see


def vocabulary_of(ds: xr.Dataset) -> GeologyVocabulary | None:
    """The geology vocabulary stored in ``ds.attrs`` by :func:`embed_geology`, or None."""
    text = ds.attrs.get(schema.ATTR_GEOLOGY_VOCAB)
    if text is None:
        return None
    return GeologyVocabulary.from_json(text)


def embedding_table(
    vocab_or_ds: GeologyVocabulary | xr.Dataset | str, decimals: int | None = None
) -> pd.DataFrame:
    """The word vectors as a table, units × dimensions 1..n, like the paper's Table 4.

    Parameters
    ----------
    vocab_or_ds : GeologyVocabulary, xarray.Dataset or str
        A vocabulary, a dataset carrying one (see :func:`vocabulary_of`) or its JSON text.
    decimals : int, optional
        Round (the paper prints 4 decimals).

    Returns
    -------
    pandas.DataFrame
        Index ``unit`` (the unit names), columns ``1..vector_size`` (named ``dimension``),
        float32 values (float64 when rounded).
    """
    if isinstance(vocab_or_ds, GeologyVocabulary):
        vocab = vocab_or_ds
    elif isinstance(vocab_or_ds, xr.Dataset):
        found = vocabulary_of(vocab_or_ds)
        if found is None:
            raise SchemaError(
                f"dataset: expected a geology vocabulary in attrs "
                f"{schema.ATTR_GEOLOGY_VOCAB!r} (run embed_geology), found attrs "
                f"{sorted(vocab_or_ds.attrs)}"
            )
        vocab = found
    elif isinstance(vocab_or_ds, str | bytes):
        vocab = GeologyVocabulary.from_json(vocab_or_ds)
    else:
        raise SchemaError(
            "embedding_table: expected a GeologyVocabulary, a Dataset or JSON text, found "
            f"{type(vocab_or_ds).__name__}"
        )
    table = pd.DataFrame(
        np.array(vocab.vectors),
        index=pd.Index(list(vocab.units), name="unit"),
        columns=pd.RangeIndex(1, vocab.vector_size + 1, name="dimension"),
    )
    return table.round(decimals) if decimals is not None else table


def _principal_components(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First two principal-component scores (n, 2) and explained-variance fractions (2,)."""
    x = vectors.astype(np.float64)
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    scores = np.zeros((x.shape[0], 2))
    explained = np.zeros(2)
    total = float((s**2).sum())
    for k in range(min(2, vt.shape[0])):
        v = vt[k]
        v = v if v[np.argmax(np.abs(v))] >= 0 else -v  # deterministic sign
        scores[:, k] = x @ v
        explained[k] = s[k] ** 2 / total if total > 0 else 0.0
    return scores, explained


def plot_units(
    vocab: GeologyVocabulary | xr.Dataset, ax: Axes | None = None, **scatter_kwargs: Any
) -> Axes:
    """Plot the units on the first two principal components of their vectors, labelled.

    Parameters
    ----------
    vocab : GeologyVocabulary or xarray.Dataset
        The vocabulary, or a dataset carrying one.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if None.
    **scatter_kwargs
        Passed to ``ax.scatter``.

    Returns
    -------
    matplotlib.axes.Axes
        One labelled point per unit; axis labels give the variance each component explains.
    """
    import matplotlib.pyplot as plt

    if isinstance(vocab, xr.Dataset):
        found = vocabulary_of(vocab)
        if found is None:
            raise SchemaError(
                f"dataset: expected a geology vocabulary in attrs {schema.ATTR_GEOLOGY_VOCAB!r}"
            )
        vocab = found
    scores, explained = _principal_components(vocab.vectors)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(scores[:, 0], scores[:, 1], **({"s": 30} | scatter_kwargs))
    for (px, py), name in zip(scores, vocab.units, strict=True):
        ax.annotate(name, (px, py), xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set_xlabel(f"PC1 ({100 * explained[0]:.0f} % of variance)")
    ax.set_ylabel(f"PC2 ({100 * explained[1]:.0f} % of variance)")
    ax.set_title("Geological units: word vectors, first two principal components")
    ax.axhline(0, color="0.8", lw=0.5, zorder=0)
    ax.axvline(0, color="0.8", lw=0.5, zorder=0)
    return ax
