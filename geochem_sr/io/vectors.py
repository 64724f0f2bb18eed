"""Reading geological polygons and mapped faults from any vector file geopandas reads.

Also the CRS rule all readers share: :func:`check_extent` catches coordinates in another
CRS than declared (degrees declared as metres, metres declared as degrees, x and y swapped).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from geochem_sr.errors import (
    CRSError,
    InputFileError,
)

__all__ = ["check_extent", "check_points", "read_geology", "read_faults", "read_vector"]


def read_geology(
    source: str | os.PathLike | gpd.GeoDataFrame,
    unit_column: str = "unit",
    crs: Any = None,
    layer: str | None = None,
) -> gpd.GeoDataFrame:
    """Read geological polygons with a unit-name column.

    Features with an empty geometry are kept here: rasterizing them
    (:func:`geochem_sr.covariates.rasterize_geology`) skips them with a warning, and repairs
    invalid polygons with a warning.

    Raises
    ------
    InputFileError
        File missing, no polygon (none, or every geometry empty), geometries that are not
        polygons, or no ``unit_column``.
    CRSError
        No CRS and none given; coordinates that cannot be in the CRS (:func:`check_extent`).
    """
    gdf, label = read_vector(source, "geology", layer)
    if len(gdf) == 0:
        raise InputFileError(f"{label}: expected polygons, found none")
    if unit_column not in gdf.columns:
        raise InputFileError(
            f"{label}: expected a unit column '{unit_column}', found columns "
            f"{[c for c in gdf.columns if c != 'geometry']} (pass unit_column=... to name the "
            "right one)"
        )
    empty = gdf.geometry.isna() | gdf.geometry.is_empty
    if empty.all():
        raise InputFileError(f"{label}: expected polygons, found no non-empty geometry")
    kinds = set(gdf.geom_type[~empty]) - {"Polygon", "MultiPolygon", "GeometryCollection"}
    if kinds:
        raise InputFileError(
            f"{label}: expected polygons, found {sorted(kinds)} geometries (faults go to "
            "faults=, not geology=)"
        )
    return _with_crs(gdf, crs, label)


def read_vector(source: str | os.PathLike | gpd.GeoDataFrame, kind: str,
                layer: str | None = None) -> tuple[gpd.GeoDataFrame, str]:
    """A GeoDataFrame as given, or read from a vector file; and its label for messages.

    Parameters
    ----------
    source : path or GeoDataFrame
        A vector file geopandas reads (GPKG, SHP, ...) or a GeoDataFrame (returned as is).
    kind : str
        What the data is (``"geology"``), for messages: ``"<kind> file '<path>'"``.
    layer : str, optional
        Layer of a multi-layer file (GeoPackage).

    Returns
    -------
    (geopandas.GeoDataFrame, str)
        The features and their label.

    Raises
    ------
    InputFileError
        The file is missing or cannot be read as a vector file.
    """
    if isinstance(source, gpd.GeoDataFrame):
        return source, kind
    path = Path(source)
    label = f"{kind} file '{path}'"
    if not path.exists():
        raise InputFileError(f"{label}: file not found")
    try:
        return gpd.read_file(path, layer=layer), label
    except Exception as exc:
        raise InputFileError(f"{label}: cannot be read as a vector file ({exc})") from exc


def _with_crs(gdf: gpd.GeoDataFrame, crs: Any, label: str) -> gpd.GeoDataFrame:
    """``gdf`` with its own CRS, else ``crs``; CRSError when it has neither, or when its
    coordinates cannot be in it (:func:`check_extent`)."""
    if gdf.crs is None:
        if crs is None:
            raise CRSError(f"{label}: expected a CRS, found none (pass crs=...)")
        gdf = gdf.set_crs(crs)
    valid = ~(gdf.geometry.isna() | gdf.geometry.is_empty)
    if valid.any():
        if gdf.crs.is_geographic:
            fix = "assign the layer its projected CRS (set_crs(..., allow_override=True))"
        else:
            fix = ("assign the layer EPSG:4326 (set_crs('EPSG:4326', allow_override=True), "
                   "or ogr2ogr -a_srs EPSG:4326); it is reprojected onto the grid")
        check_extent(gdf.geometry[valid].total_bounds, gdf.crs, label, degrees_fix=fix)
    return gdf


def read_faults(
    source: str | os.PathLike | gpd.GeoDataFrame,
    crs: Any = None,
    layer: str | None = None,
) -> gpd.GeoDataFrame:
    """Read mapped faults: lines (or polygon outlines of fault zones) with a CRS.

    Empty and missing geometries are dropped with a warning; points are refused.

    Raises
    ------
    InputFileError
        File missing or unreadable, no non-empty geometry, or point geometries.
    CRSError
        No CRS and none given; coordinates that cannot be in the CRS (:func:`check_extent`).

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> f = gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 0), (1, 1)])], crs=32650)
    >>> len(read_faults(f))
    1
    """
    gdf, label = read_vector(source, "faults", layer)
    empty = gdf.geometry.isna() | gdf.geometry.is_empty
    if empty.all():
        raise InputFileError(f"{label}: expected fault lines, found no non-empty geometry")
    if empty.any():
        warnings.warn(f"{label}: dropped {int(empty.sum())} empty geometries", stacklevel=2)
        gdf = gdf[~empty]
    kinds = set(gdf.geom_type)
    if kinds & {"Point", "MultiPoint"}:
        raise InputFileError(f"{label}: expected lines, found {sorted(kinds)} geometries")
    return _with_crs(gdf, crs, label)


def _area_of_use(crs: Any) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """(area of use in degrees, in the CRS's units) of a pyproj CRS, None when unknown."""
    import pyproj

    aou = crs.area_of_use
    if aou is None:
        return None, None
    deg = tuple(aou.bounds)
    if crs.is_geographic:
        return deg, deg
    try:
        tr = pyproj.Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
        native = tuple(tr.transform_bounds(*deg, densify_pts=21))
    except Exception:  # pragma: no cover - projections without an inverse
        return deg, None
    return deg, (native if np.isfinite(native).all() else None)


def _inside(b: Sequence[float], box: Sequence[float], mx: float, my: float) -> bool:
    """Whether extent ``b`` lies in ``box`` widened by ``mx``, ``my`` on each side."""
    west, south, east, north = box
    if south - my > b[1] or b[3] > north + my:
        return False
    if west <= east:
        return west - mx <= b[0] and b[2] <= east + mx
    return b[0] >= west - mx or b[2] <= east + mx  # across the antimeridian


def check_extent(
    bounds: Sequence[float],
    crs: Any,
    label: str,
    *,
    degrees_fix: str,
    swap_fix: str | None = None,
) -> None:
    """Refuse coordinates that cannot be in ``crs``; warn when outside its area of use.

    Parameters
    ----------
    bounds : (xmin, ymin, xmax, ymax)
        Extent of the data in ``crs``.
    crs : CRS-like
        The declared CRS.
    label : str
        The data, for messages (e.g. ``"samples file 's.csv'"``).
    degrees_fix : str
        The fix when degrees are declared as a projected CRS (or the reverse).
    swap_fix : str, optional
        The fix when x and y look swapped (e.g. which columns to pass).

    Raises
    ------
    CRSError
        A geographic CRS with |x| > 180 or |y| > 90; a projected CRS whose coordinates lie
        within ±180 × ±90 and, read as degrees, inside its area of use (when it has none:
        an extent under 360 units warns); x and y swapped (swapped, they fit the CRS's area
        of use and do not as they are).

    Warns
    -----
    UserWarning
        Coordinates outside the CRS's area of use widened by a quarter of its size on each
        side (e.g. another UTM zone or datum).
    """
    import pyproj

    crs = pyproj.CRS.from_user_input(crs)
    if crs.area_of_use is None and crs.to_epsg() is not None:  # e.g. from a GeoTIFF's WKT
        crs = pyproj.CRS.from_epsg(crs.to_epsg())
    b = [float(v) for v in bounds]
    if not np.isfinite(b).all():
        return
    ext = f"x {b[0]:.6g}..{b[2]:.6g}, y {b[1]:.6g}..{b[3]:.6g}"
    name = crs.to_string()
    deg, native = _area_of_use(crs)
    if crs.is_geographic:
        if max(abs(b[0]), abs(b[2])) > 180 + 1e-6 or max(abs(b[1]), abs(b[3])) > 90 + 1e-6:
            raise CRSError(
                f"{label}: expected longitude/latitude degrees for the geographic CRS {name} "
                f"(|x| <= 180, |y| <= 90), found {ext}: these look like projected metres; "
                f"{degrees_fix}"
            )
        return
    looks_degrees = max(abs(b[0]), abs(b[2])) <= 180 and max(abs(b[1]), abs(b[3])) <= 90
    if looks_degrees and deg is not None and _inside(b, deg, 1.0, 1.0):
        raise CRSError(
            f"{label}: coordinates {ext} look like longitude/latitude degrees, not the units "
            f"of the projected CRS {name} (read as degrees they fall in its area of use, "
            f"{deg[0]:g}..{deg[2]:g} E, {deg[1]:g}..{deg[3]:g} N); {degrees_fix}"
        )
    if looks_degrees and deg is None and max(b[2] - b[0], b[3] - b[1]) < 360:
        _warn_extent(f"{label}: coordinates {ext} in {name} may be degrees, not projected units")
        return
    if native is None:
        return
    mx, my = 0.25 * (native[2] - native[0]), 0.25 * (native[3] - native[1])
    if _inside(b, native, mx, my):
        return
    swapped = (b[1], b[0], b[3], b[2])
    if swap_fix is not None and _inside(swapped, native, 0.0, 0.0):
        raise CRSError(
            f"{label}: coordinates {ext} lie outside the area of use of {name} "
            f"(x {native[0]:.6g}..{native[2]:.6g}, y {native[1]:.6g}..{native[3]:.6g}), and "
            f"fit it with x and y swapped; {swap_fix}"
        )
    _warn_extent(
        f"{label}: coordinates {ext} lie outside the area of use of {name} "
        f"(x {native[0]:.6g}..{native[2]:.6g}, y {native[1]:.6g}..{native[3]:.6g}); check "
        "that this is their CRS"
    )


def _warn_extent(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=4)


def check_points(gdf: gpd.GeoDataFrame, label: str, swap_fix: str) -> gpd.GeoDataFrame:
    """Check the points of a GeoDataFrame that has a CRS.

    Parameters
    ----------
    gdf : geopandas.GeoDataFrame
        Points with a CRS.
    label : str
        The data, for messages.
    swap_fix : str
        The fix to name if x and y look swapped.

    Returns
    -------
    geopandas.GeoDataFrame
        ``gdf`` without the rows lacking coordinates (dropped with a warning).

    Raises
    ------
    InputFileError
        No row has coordinates.
    CRSError
        Coordinates foreign to the CRS (:func:`check_extent`).
    """
    empty = gdf.geometry.isna() | gdf.geometry.is_empty
    coords_bad = empty.copy()
    if (~empty).any():
        coords_bad[~empty] = ~np.isfinite(gdf.geometry[~empty].x) | ~np.isfinite(
            gdf.geometry[~empty].y
        )
    if coords_bad.all():
        raise InputFileError(f"{label}: no row has valid coordinates")
    if coords_bad.any():
        warnings.warn(
            f"{label}: dropped {int(coords_bad.sum())} rows without coordinates",
            UserWarning,
            stacklevel=3,
        )
        gdf = gdf.loc[~coords_bad]
    if gdf.crs.is_geographic:
        fix = "pass crs= with their projected CRS (e.g. crs='EPSG:32650')"
    else:
        fix = (f"pass crs='EPSG:4326' (and target_crs='{gdf.crs.to_string()}' to work in "
               "metres)")
    check_extent(gdf.total_bounds, gdf.crs, label, degrees_fix=fix, swap_fix=swap_fix)
    return gdf
