"""Unit polygons made ready to burn: checked, in the grid's CRS, repaired, coded.

:func:`unit_polygons` does every check of a geological layer before rasterizing (unit
column, CRS, geometries, overlap with the grid, overlaps between units) and gives the
polygons with their unit codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.covariates.geology.units import warn_geology
from geochem_sr.errors import (
    CRSError,
    DataError,
    GridError,
    InputFileError,
    ParameterError,
    SchemaError,
)

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd

__all__ = ["OVERLAP_RULES", "bounds_text", "grid_bounds", "unit_polygons"]

#: Overlap rules of :func:`unit_polygons` (and :func:`.rasterize_geology`).
OVERLAP_RULES = ("smaller", "last")


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
        warn_geology(
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
        warn_geology(
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


def grid_bounds(grid: xr.Dataset | xr.DataArray, dx: float, dy: float) -> tuple[float, ...]:
    """Outer bounds (xmin, ymin, xmax, ymax) of a grid's cells, from its cell centres."""
    xs, ys = np.asarray(grid[schema.X].values), np.asarray(grid[schema.Y].values)
    return (xs.min() - abs(dx) / 2, ys.min() - abs(dy) / 2,
            xs.max() + abs(dx) / 2, ys.max() + abs(dy) / 2)


def bounds_text(b: Sequence[float]) -> str:
    """Bounds as text for messages: ``(x0, y0, x1, y1)`` to 0.1."""
    return "(" + ", ".join(f"{float(v):.1f}" for v in b) + ")"


def _check_overlap(geoms: np.ndarray, grid: xr.Dataset | xr.DataArray, dx: float,
                   dy: float) -> None:
    """GridError when the polygons (in the grid's CRS) do not reach the grid at all."""
    import shapely

    gb = grid_bounds(grid, dx, dy)
    pb = shapely.total_bounds(geoms)
    if pb[0] >= gb[2] or pb[2] <= gb[0] or pb[1] >= gb[3] or pb[3] <= gb[1]:
        raise GridError(
            f"geology: expected polygons overlapping the survey grid, found none: geology "
            f"bounds {bounds_text(pb)}, grid bounds {bounds_text(gb)} (in "
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
        warn_geology(
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
    warn_geology(
        f"geology: {left.size} pair(s) of polygons of different units overlap "
        f"({area.sum() / cell_area:.3g} cells in all); resolved by overlap={rule!r}, {how}: "
        f"{'; '.join(pairs)}{' ...' if left.size > 5 else ''}"
    )


def unit_polygons(
    geology: gpd.GeoDataFrame,
    grid: xr.Dataset | xr.DataArray,
    unit_column: str,
    units: Sequence[str] | None,
    *,
    overlap: str,
    repair: bool,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Check a layer of unit polygons and give its polygons and unit codes on the grid.

    Takes the arguments of :func:`~geochem_sr.covariates.geology.rasterize_geology` (see
    there, also for the warnings and errors).

    Returns
    -------
    geometries : numpy.ndarray
        The kept polygons in the grid's CRS (object array, repaired where needed).
    codes : numpy.ndarray
        int16 unit code of each polygon.
    units : list of str
        Unit names in code order.
    """
    _check_geology_frame(geology, unit_column)
    schema.check_crs(grid, "grid")
    dx, dy = schema.check_grid(grid, "grid")
    if overlap not in OVERLAP_RULES:
        raise ParameterError(f"overlap: expected one of {OVERLAP_RULES}, found {overlap!r}")

    geology = _to_grid_crs(geology, grid, min(abs(dx), abs(dy)))
    raw_names = geology[unit_column]
    no_name = raw_names.isna().to_numpy() | (raw_names.astype(str).str.strip() == "").to_numpy()
    names = np.asarray(raw_names.astype(str), dtype=object)
    if no_name.any():
        labels = [f"feature {geology.index[i]!r}" for i in np.flatnonzero(no_name)[:10]]
        warn_geology(
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
    return geoms, codes, order_units
