"""Reading survey inputs and writing/opening survey datasets as Zarr.

* Samples: CSV (coordinate columns named or detected), GeoPackage, Shapefile, or a
  GeoDataFrame, into a GeoDataFrame with numeric element columns. Censored values
  (``<0.5``, ``< 0.5``, ``ND``, negative codes such as ``-0.5``) are parsed with a
  configurable policy recorded in ``gdf.attrs``.
* DEM: any raster rioxarray opens (GeoTIFF), as a float32 DataArray with NaN nodata.
* Geology: polygons from any vector file geopandas reads.
* Survey datasets: ``write_survey`` / ``open_survey`` keep CRS and transform. Stores are
  Zarr format 2 by default so that GDAL (3.10, via rasterio) opens them, with CF
  ``grid_mapping`` and GDAL's ``_CRS`` attribute on every array and NaN ``_FillValue``.
  A store is written to a temporary path and moved into place, so a failed write never
  leaves a half-written store.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import (
    CRSError,
    DataError,
    GeoSRError,
    IncompleteStoreError,
    InputFileError,
)

__all__ = [
    "CENSORING_POLICIES",
    "parse_censored",
    "read_samples",
    "read_dem",
    "read_geology",
    "read_faults",
    "write_survey",
    "open_survey",
    "write_store_atomically",
]

#: How a value below the detection limit ``<DL`` is replaced.
CENSORING_POLICIES = ("half", "dl", "nan")

_X_NAMES = ("x", "easting", "east", "xcoord", "x_coord", "utm_x", "e")
_Y_NAMES = ("y", "northing", "north", "ycoord", "y_coord", "utm_y", "n")
_LON_NAMES = ("lon", "long", "longitude")
_LAT_NAMES = ("lat", "latitude")
_CENSORED_RE = re.compile(r"^\s*<\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")
_MISSING_TOKENS = {"", "na", "n/a", "nan", "nd", "n.d.", "-", "--", "null", "none", "is"}


# --------------------------------------------------------------------------- samples
def parse_censored(
    values: pd.Series,
    policy: str = "half",
    negative_is_censored: bool = True,
    name: str | None = None,
) -> tuple[pd.Series, int]:
    """Parse a column of lab values with censored entries into floats.

    Parameters
    ----------
    values : pandas.Series
        Numbers, or strings such as ``"12.5"``, ``"<0.5"``, ``"ND"``.
    policy : {"half", "dl", "nan"}, default "half"
        Replacement of a value below the detection limit DL: DL/2, DL itself, or NaN.
    negative_is_censored : bool, default True
        Treat a negative number ``-d`` as ``<d`` (a common lab convention).
    name : str, optional
        Column name, used in error messages.

    Returns
    -------
    (pandas.Series, int)
        Float values and the number of censored entries.

    Raises
    ------
    DataError
        Text that is neither a number, a censored value nor a missing-value token.

    Examples
    --------
    >>> import pandas as pd
    >>> s, n = parse_censored(pd.Series(["1.5", "<0.4", 2, "ND"]))
    >>> s.tolist()[:3], n
    ([1.5, 0.2, 2.0], 1)
    """
    if policy not in CENSORING_POLICIES:
        raise DataError(f"censored policy: expected one of {CENSORING_POLICIES}, found {policy!r}")
    factor = {"half": 0.5, "dl": 1.0, "nan": np.nan}[policy]
    label = f"column '{name}'" if name else "column"
    out = np.full(len(values), np.nan, dtype="float64")
    censored = np.zeros(len(values), dtype=bool)
    bad: list[tuple[Any, Any]] = []
    for i, (idx, v) in enumerate(values.items()):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            out[i] = float(v)
            continue
        s = str(v).strip()
        m = _CENSORED_RE.match(s)
        if m:
            out[i] = float(m.group(1)) * factor
            censored[i] = True
            continue
        if s.lower() in _MISSING_TOKENS:
            continue
        try:
            out[i] = float(s.replace(",", "."))
        except ValueError:
            bad.append((idx, v))
    if bad:
        raise DataError(
            f"{label}: expected numbers or censored values like '<0.5', found text "
            f"{[b[1] for b in bad[:3]]} in {len(bad)} rows (first rows {[b[0] for b in bad[:3]]})"
        )
    if negative_is_censored:
        neg = out < 0
        out[neg] = -out[neg] * factor
        censored |= neg
    return pd.Series(out, index=values.index, name=values.name), int(censored.sum())


def _find_column(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    return None


def _read_table(path: Path, x: str | None, y: str | None, crs: Any) -> gpd.GeoDataFrame:
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise InputFileError(
            f"samples file '{path}': expected a CSV with a header, found an empty file"
        ) from exc
    if df.empty:
        raise InputFileError(f"samples file '{path}': expected sample rows, found none")
    cols = list(df.columns)
    geographic = False
    xcol = x or _find_column(cols, _X_NAMES)
    ycol = y or _find_column(cols, _Y_NAMES)
    if xcol is None or ycol is None:
        xcol, ycol = _find_column(cols, _LON_NAMES), _find_column(cols, _LAT_NAMES)
        geographic = xcol is not None and ycol is not None
    if xcol is None or ycol is None or xcol not in cols or ycol not in cols:
        raise InputFileError(
            f"samples file '{path}': expected coordinate columns (x/y, easting/northing or "
            f"lon/lat, or pass x=..., y=...), found columns {cols}"
        )
    if crs is None:
        if not geographic:
            raise CRSError(
                f"samples file '{path}': a CSV has no CRS; pass crs= (e.g. 'EPSG:32650') for "
                f"columns '{xcol}', '{ycol}'"
            )
        crs = "EPSG:4326"
    xs = pd.to_numeric(df[xcol], errors="coerce")
    ys = pd.to_numeric(df[ycol], errors="coerce")
    gdf = gpd.GeoDataFrame(
        df.drop(columns=[xcol, ycol]), geometry=gpd.points_from_xy(xs, ys), crs=crs
    )
    return gdf


def read_samples(
    source: str | os.PathLike | gpd.GeoDataFrame,
    elements: Sequence[str] | None = None,
    *,
    x: str | None = None,
    y: str | None = None,
    crs: Any = None,
    target_crs: Any = None,
    censored: str = "half",
    units: Mapping[str, str] | None = None,
    layer: str | None = None,
) -> gpd.GeoDataFrame:
    """Read geochemical samples into a GeoDataFrame with numeric element columns.

    Parameters
    ----------
    source : path or GeoDataFrame
        CSV (coordinate columns named by ``x``/``y`` or detected: x/y, easting/northing,
        lon/lat), GeoPackage, Shapefile, or an in-memory GeoDataFrame.
    elements : sequence of str, optional
        Element columns to keep. Default: every column named like a chemical symbol.
    x, y : str, optional
        Coordinate column names of a CSV.
    crs : optional
        CRS of a CSV's coordinates (required unless the columns are lon/lat).
    target_crs : optional
        Reproject the points into this CRS.
    censored : {"half", "dl", "nan"}, default "half"
        Policy for values below the detection limit; recorded in ``attrs``.
    units : mapping, optional
        Element -> unit; defaults to ``attrs["units"]`` of the source or the paper's units.
    layer : str, optional
        Layer of a GeoPackage.

    Returns
    -------
    geopandas.GeoDataFrame
        Point geometry, one float64 column per element; ``attrs`` holds ``units``,
        ``censoring_policy`` and ``censored_counts``.

    Raises
    ------
    InputFileError, CRSError, DataError
        Missing file/columns, no CRS, text in numeric columns, no usable rows.
    """
    if isinstance(source, gpd.GeoDataFrame):
        gdf = source.copy()
        gdf.attrs = dict(source.attrs)
        label = "samples"
    else:
        path = Path(source)
        label = f"samples file '{path}'"
        if not path.exists():
            raise InputFileError(f"{label}: file not found")
        if path.suffix.lower() in (".csv", ".txt"):
            gdf = _read_table(path, x, y, crs)
        else:
            try:
                gdf = gpd.read_file(path, layer=layer)
            except Exception as exc:  # pyogrio raises its own errors
                raise InputFileError(f"{label}: cannot be read as a vector file ({exc})") from exc
            if crs is not None and gdf.crs is None:
                gdf = gdf.set_crs(crs)
    if len(gdf) == 0:
        raise InputFileError(f"{label}: expected sample rows, found none")
    if gdf.crs is None:
        raise CRSError(f"{label}: expected a CRS, found none (pass crs=...)")
    if not (gdf.geom_type.dropna() == "Point").all():
        raise InputFileError(
            f"{label}: expected point geometries, found {sorted(set(gdf.geom_type.dropna()))}"
        )
    # rows without coordinates
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
            stacklevel=2,
        )
        gdf = gdf.loc[~coords_bad]
    # element columns
    if elements is None:
        elements = [c for c in gdf.columns if c in schema.KNOWN_ELEMENTS]
        if not elements:
            raise InputFileError(
                f"{label}: expected element columns named by chemical symbol (e.g. As, Cu), "
                f"found columns {[c for c in gdf.columns if c != 'geometry']}"
            )
    missing = [e for e in elements if e not in gdf.columns]
    if missing:
        raise InputFileError(
            f"{label}: expected element columns {missing}, found columns "
            f"{[c for c in gdf.columns if c != 'geometry']}"
        )
    counts: dict[str, int] = {}
    for el in elements:
        gdf[el], counts[el] = parse_censored(gdf[el], policy=censored, name=el)
    src_units = dict(gdf.attrs.get("units", {}))
    unit_map = {e: (units or {}).get(e) or src_units.get(e) or schema.DEFAULT_UNITS.get(e, "ppm")
                for e in elements}
    if target_crs is not None:
        gdf = gdf.to_crs(target_crs)
    keep = [c for c in gdf.columns if c not in schema.KNOWN_ELEMENTS or c in elements]
    gdf = gdf[keep]
    gdf.attrs.update(
        {
            "units": unit_map,
            schema.ATTR_CENSORING: censored,
            "censored_counts": counts,
            "elements": list(elements),
        }
    )
    return gdf


# --------------------------------------------------------------------------- rasters
def read_dem(source: str | os.PathLike | xr.DataArray, crs: Any = None) -> xr.DataArray:
    """Read a DEM as a float32 DataArray (y, x) with NaN nodata and a CRS.

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
        if "band" in dem.dims:
            if dem.sizes["band"] != 1:
                raise InputFileError(f"{label}: expected one band, found {dem.sizes['band']}")
            dem = dem.squeeze("band", drop=True)
    if dem.rio.crs is None:
        if crs is None:
            raise CRSError(f"{label}: expected a CRS, found none (pass crs=...)")
        dem = dem.rio.write_crs(crs)
    nodata = dem.rio.nodata
    out = dem.astype("float32")
    if nodata is not None and np.isfinite(nodata):
        out = out.where(out != nodata)
    out = out.rio.write_nodata(np.nan, encoded=False)
    out.name = schema.ELEVATION
    out.attrs["units"] = "m"
    return out


def read_geology(
    source: str | os.PathLike | gpd.GeoDataFrame,
    unit_column: str = "unit",
    crs: Any = None,
    layer: str | None = None,
) -> gpd.GeoDataFrame:
    """Read geological polygons with a unit-name column.

    Raises
    ------
    InputFileError
        File missing, not polygons, or no ``unit_column``.
    CRSError
        No CRS and none given.
    """
    gdf, label = _read_vector(source, "geology", layer)
    if len(gdf) == 0:
        raise InputFileError(f"{label}: expected polygons, found none")
    if unit_column not in gdf.columns:
        raise InputFileError(
            f"{label}: expected a unit column '{unit_column}', found columns "
            f"{[c for c in gdf.columns if c != 'geometry']}"
        )
    return _with_crs(gdf, crs, label)


def _read_vector(source: str | os.PathLike | gpd.GeoDataFrame, kind: str,
                 layer: str | None) -> tuple[gpd.GeoDataFrame, str]:
    """A GeoDataFrame as given, or read from a vector file; and its label for messages."""
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
    """``gdf`` with its own CRS, else ``crs``; CRSError when it has neither."""
    if gdf.crs is None:
        if crs is None:
            raise CRSError(f"{label}: expected a CRS, found none (pass crs=...)")
        gdf = gdf.set_crs(crs)
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
        No CRS and none given.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> f = gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 0), (1, 1)])], crs=32650)
    >>> len(read_faults(f))
    1
    """
    gdf, label = _read_vector(source, "faults", layer)
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


# --------------------------------------------------------------------------- zarr
def _gis_attrs(ds: xr.Dataset) -> xr.Dataset:
    """Add CF grid_mapping and GDAL's ``_CRS`` to every gridded variable."""
    crs = ds.rio.crs
    wkt = crs.to_wkt() if crs is not None else None
    out = ds.copy()
    for name, var in out.data_vars.items():
        if schema.X in var.dims and schema.Y in var.dims:
            var.encoding.pop("grid_mapping", None)
            var.attrs["grid_mapping"] = schema.SPATIAL_REF
            if wkt:
                var.attrs["_CRS"] = {"wkt": wkt}
            if np.issubdtype(var.dtype, np.floating):
                var.encoding["_FillValue"] = np.nan
            elif name == schema.LITHOLOGY:
                var.encoding["_FillValue"] = -1
    return out


def _prepare_for_zarr(ds: xr.Dataset) -> xr.Dataset:
    out = _gis_attrs(ds)
    # attrs must be JSON-serializable: dicts and lists of str kept, others as JSON text
    for obj in (out, *out.variables.values()):
        for key, val in list(obj.attrs.items()):
            if key == "_CRS":
                continue
            if isinstance(val, dict):
                obj.attrs[key] = json.dumps(val)
            elif isinstance(val, np.ndarray):
                obj.attrs[key] = val.tolist()
    for name in out.variables:
        out[name].encoding.pop("chunks", None)
        out[name].encoding.pop("preferred_chunks", None)
    if schema.ELEMENT in out.coords:
        out = out.assign_coords({schema.ELEMENT: out[schema.ELEMENT].astype(str)})
    if schema.ELEMENT_UNITS in out.coords:
        out = out.assign_coords({schema.ELEMENT_UNITS: out[schema.ELEMENT_UNITS].astype(str)})
    return out


def write_survey(
    ds: xr.Dataset,
    path: str | os.PathLike,
    *,
    zarr_format: int = 2,
    overwrite: bool = True,
    chunks: Mapping[str, int] | None = None,
    validate: bool = True,
) -> Path:
    """Write a survey dataset to a Zarr store a GIS opens.

    The store is written to a temporary sibling path and renamed into place, so that an
    error never leaves a half-written store at ``path``.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset (validated first unless ``validate=False``).
    path : path
        Target ``.zarr`` directory.
    zarr_format : {2, 3}, default 2
        Format 2 is what GDAL 3.10 (rasterio) reads.
    overwrite : bool, default True
        Replace an existing store at ``path``.
    chunks : mapping, optional
        Chunking on disk; default :func:`geochem_sr.schema.default_chunks`.
    validate : bool, default True
        Run :func:`geochem_sr.schema.validate` (structure only) before writing.

    Returns
    -------
    pathlib.Path
        The written store.
    """
    path = Path(path)
    if validate:
        schema.validate(ds, require=(), check_values=False)
    if path.exists() and not overwrite:
        raise InputFileError(f"output store '{path}': exists (pass overwrite=True)")
    chunk_spec = dict(chunks or schema.default_chunks())
    chunk_spec = {d: (ds.sizes[d] if c == -1 else min(c, ds.sizes[d]))
                  for d, c in chunk_spec.items() if d in ds.dims}
    out = _prepare_for_zarr(ds).chunk(chunk_spec)
    return write_store_atomically(
        path, lambda tmp: out.to_zarr(tmp, mode="w", zarr_format=zarr_format, consolidated=True)
    )


def write_store_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp)`` on a temporary sibling of ``path``, then move it into place.

    An exception (or an interrupt) removes the temporary store, so ``path`` never holds a
    half-written store; an existing store at ``path`` is replaced only after success.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _decode_attrs(ds: xr.Dataset) -> xr.Dataset:
    for obj in (ds, *ds.variables.values()):
        for key, val in list(obj.attrs.items()):
            if isinstance(val, str) and val[:1] == "{" and key != "_CRS":
                try:
                    obj.attrs[key] = json.loads(val)
                except ValueError:
                    pass
    return ds


def open_survey(
    path: str | os.PathLike,
    *,
    chunks: Any = None,
    allow_incomplete: bool = False,
) -> xr.Dataset:
    """Open a survey dataset written by :func:`write_survey` (or a prediction store).

    Parameters
    ----------
    path : path
        The ``.zarr`` store.
    chunks : optional
        Passed to :func:`xarray.open_zarr`; default keeps the on-disk chunks (lazy).
    allow_incomplete : bool, default False
        Open a store whose writing was not finished (with a warning) instead of raising.

    Returns
    -------
    xarray.Dataset
        Lazy (dask-backed), CRS restored (``decode_coords="all"``).

    Raises
    ------
    InputFileError
        Not a Zarr store.
    IncompleteStoreError
        The store is marked as not finished.
    """
    import rioxarray  # noqa: F401

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"survey store '{path}': not found")
    kwargs: dict[str, Any] = {"decode_coords": "all"}
    if chunks is not None:
        kwargs["chunks"] = chunks
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ds = xr.open_zarr(path, **kwargs)
    except GeoSRError:
        raise
    except Exception as exc:
        raise InputFileError(f"survey store '{path}': cannot be opened as Zarr ({exc})") from exc
    ds = _decode_attrs(ds)
    if ds.attrs.get(schema.ATTR_INCOMPLETE):
        msg = (
            f"survey store '{path}': writing was not finished "
            f"({ds.attrs.get(schema.ATTR_INCOMPLETE)}); rerun the command that writes it to resume"
        )
        if not allow_incomplete:
            raise IncompleteStoreError(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
    return ds
