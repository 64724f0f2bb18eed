"""Reading geochemical samples: CSV, GeoPackage, Shapefile or a GeoDataFrame.

Coordinate columns are named or detected; censored values (``<0.5``, negative codes),
missing values (``NA``, ``-999``) and decimal marks are parsed by
:func:`~geochem_sr.io.values.parse_censored`, with the policy recorded in ``gdf.attrs``.
Coordinates are checked against the CRS (:func:`~geochem_sr.io.vectors.check_extent`) and
concentrations against their unit (:func:`~geochem_sr.io.values.check_concentrations`).
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from geochem_sr import schema
from geochem_sr.errors import CRSError, DataError, InputFileError, ParameterError
from geochem_sr.io.values import (
    CENSORING_POLICIES,
    MISSING_CODES,
    UPPER_LIMITS,
    check_concentrations,
    normalize_unit,
    parse_censored,
    parse_numbers,
)
from geochem_sr.io.vectors import check_points, read_vector

__all__ = ["CENSORING_POLICIES", "MISSING_CODES", "parse_censored", "read_samples"]

_X_NAMES = ("x", "easting", "east", "xcoord", "x_coord", "utm_x", "e")
_Y_NAMES = ("y", "northing", "north", "ycoord", "y_coord", "utm_y", "n")
_LON_NAMES = ("lon", "long", "longitude")
_LAT_NAMES = ("lat", "latitude")
_COORDS = frozenset((*_X_NAMES, *_Y_NAMES, *_LON_NAMES, *_LAT_NAMES))
_SEPARATORS = (",", ";", "\t", "|")
_UNIT_RE = r"(ppm|ppb|pct|%|mg/kg|[uµμ]g/kg|g/t)"
_ELEMENT_HEADER = re.compile(rf"^([A-Za-z]{{1,2}})(?:[\s_\-]*[(\[]?\s*{_UNIT_RE}\s*[)\]]?)?$")


def _sniff_separator(line: str) -> str:
    """The separator splitting a header line into the most fields (ties: the comma)."""
    counts = {s: len(next(csv.reader([line], delimiter=s))) for s in _SEPARATORS}
    best = max(_SEPARATORS, key=lambda s: counts[s])  # max keeps the first of ties
    if counts[best] == 1 and len(line.split()) > 1:
        return r"\s+"
    return best


def _header(line: str, sep: str) -> list[str]:
    fields = line.split() if sep == r"\s+" else next(csv.reader([line], delimiter=sep))
    return [f.replace("\ufeff", "").strip() for f in fields]


def _find_column(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    """A column named like a candidate: exact names first, then any case (long names first,
    so that ``Northing`` wins over yttrium ``Y``)."""
    for cand in candidates:
        if cand in columns:
            return cand
    for cand in sorted(candidates, key=len, reverse=True):
        found = [c for c in columns if c.lower() == cand]
        if len(found) == 1:
            return found[0]
    return None


def _read_csv(path: Path, label: str, sep: str | None, encoding: str,
              text_columns: set[str | None]) -> tuple[pd.DataFrame, str]:
    """The table of a CSV, with stripped unique column names, and its separator."""
    try:
        with open(path, encoding=encoding) as fh:
            line = next((ln for ln in fh if ln.strip()), "")
    except UnicodeDecodeError as exc:
        raise InputFileError(
            f"{label}: expected text in {encoding!r}, found bytes that are not ({exc.reason}); "
            "pass encoding='latin-1' (or the file's encoding) or save it as UTF-8"
        ) from exc
    if not line.strip():
        raise InputFileError(f"{label}: expected a CSV with a header, found an empty file")
    sep = sep or _sniff_separator(line)
    names = _header(line.rstrip("\r\n"), sep)
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise InputFileError(
            f"{label}: expected unique column names, found {dup} more than once; rename or "
            "delete the duplicates"
        )
    if len(names) < 3:
        raise InputFileError(
            f"{label}: expected columns for x, y and elements separated by one of "
            f"{list(_SEPARATORS)}, found {names} with separator {sep!r}; pass sep=..."
        )

    def too_long(line: Any) -> InputFileError:
        return InputFileError(
            f"{label}: expected at most {len(names)} fields per line (the header's), found "
            f"more on line {line}; quote values that contain the separator {sep!r} "
            "(\"1,500\") or pass sep=..."
        )

    dtype = {c: str for c in names if c in text_columns or c.lower() in _COORDS}
    with warnings.catch_warnings():
        # a long first data row only warns (its extra fields would be dropped): refuse it
        warnings.filterwarnings("error", "Length of header or names", pd.errors.ParserWarning)
        try:
            df = pd.read_csv(path, sep=sep, header=0, names=names, encoding=encoding,
                             index_col=False, dtype=dtype)
        except pd.errors.ParserWarning as exc:
            raise too_long(_first_data_line(path, encoding)) from exc
        except pd.errors.ParserError as exc:
            found = re.search(r"Expected \d+ fields in line (\d+), saw \d+", str(exc))
            if found:
                raise too_long(found.group(1)) from exc
            raise InputFileError(f"{label}: cannot be read as a CSV ({exc})") from exc
    return df, sep


def _first_data_line(path: Path, encoding: str) -> int:
    """Line number of the first row after the header (blank lines skipped, as pandas does)."""
    with open(path, encoding=encoding) as fh:
        filled = (i for i, line in enumerate(fh, 1) if line.strip())
        next(filled, None)
        return next(filled, 2)


def _read_table(path: Path, label: str, opts: Mapping[str, Any]) -> tuple[gpd.GeoDataFrame, str]:
    """Points from a CSV; and the fix to name if x and y look swapped."""
    x, y, crs = opts["x"], opts["y"], opts["crs"]
    text = {*schema.KNOWN_ELEMENTS, *(opts["elements"] or ()), x, y}
    df, sep = _read_csv(path, label, opts["sep"], opts["encoding"], text)
    if df.empty:
        raise InputFileError(f"{label}: expected sample rows, found none")
    cols = list(df.columns)
    geographic = False
    xcol = x or _find_column(cols, _X_NAMES)
    ycol = y or _find_column(cols, _Y_NAMES)
    if xcol is None or ycol is None:
        xcol, ycol = _find_column(cols, _LON_NAMES), _find_column(cols, _LAT_NAMES)
        geographic = xcol is not None and ycol is not None
    if xcol is None or ycol is None or xcol not in cols or ycol not in cols or xcol == ycol:
        raise InputFileError(
            f"{label}: expected coordinate columns (x/y, easting/northing or "
            f"lon/lat, or pass x=..., y=...), found columns {cols} (separator {sep!r})"
        )
    if crs is None:
        if not geographic:
            raise CRSError(
                f"{label}: a CSV has no CRS; pass crs= (e.g. 'EPSG:32650') for "
                f"columns '{xcol}', '{ycol}'"
            )
        crs = "EPSG:4326"
    marks = {"decimal": opts["decimal"], "thousands": opts["thousands"]}
    xs = parse_numbers(df[xcol], xcol, label, **marks)
    ys = parse_numbers(df[ycol], ycol, label, **marks)
    gdf = gpd.GeoDataFrame(
        df.drop(columns=[xcol, ycol]), geometry=gpd.points_from_xy(xs, ys), crs=crs
    )
    return gdf, f"pass x='{ycol}', y='{xcol}'"


def _check_element_names(elements: Sequence[str] | str | None, label: str) -> list[str] | None:
    if elements is None:
        return None
    names = [elements] if isinstance(elements, str) else list(elements)
    if not names:
        raise ParameterError(
            f"{label}: elements: expected at least one chemical symbol, found []"
        )
    bad = [e for e in names if not isinstance(e, str) or e not in schema.KNOWN_ELEMENTS]
    if bad:
        hints = {e: str(e).strip().capitalize() for e in bad
                 if str(e).strip().capitalize() in schema.KNOWN_ELEMENTS}
        raise ParameterError(
            f"{label}: elements: expected chemical symbols (e.g. 'As', 'Cu'), found {bad}"
            + (f" (did you mean {hints}?)" if hints else "")
        )
    dup = sorted({e for e in names if names.count(e) > 1})
    if dup:
        raise ParameterError(
            f"{label}: elements: expected each element once, found {dup} repeated"
        )
    return names


def _element_like(columns: Sequence[str]) -> str:
    """Columns that look like element symbols in another case or with a unit, as a hint
    (``'AS' to 'As', 'Au_ppb' to 'Au' (units={'Au': 'ppb'})``); empty if none."""
    out = []
    for c in columns:
        m = _ELEMENT_HEADER.match(str(c).strip())
        sym = m.group(1).capitalize() if m else None
        if sym in schema.KNOWN_ELEMENTS and c != sym and c not in schema.KNOWN_ELEMENTS:
            unit = f" (units={{'{sym}': '{normalize_unit(m.group(2))}'}})" if m.group(2) else ""
            out.append(f"'{c}' to '{sym}'{unit}")
    return ", ".join(out)


def _detect_elements(gdf: gpd.GeoDataFrame, label: str) -> list[str]:
    cols = [c for c in gdf.columns if c != gdf.geometry.name]
    elements = [c for c in cols if c in schema.KNOWN_ELEMENTS]
    hints = _element_like([c for c in cols if c not in elements])
    if not elements:
        raise InputFileError(
            f"{label}: expected element columns named by chemical symbol (e.g. As, Cu), "
            f"found columns {cols}"
            + (f"; rename {hints}" if hints else "")
        )
    if hints:
        warnings.warn(
            f"{label}: columns that look like elements are not read (not named by a "
            f"chemical symbol); to read them, rename {hints}",
            UserWarning, stacklevel=3,
        )
    return elements


def _unit_columns(gdf: gpd.GeoDataFrame, elements: Sequence[str], label: str) -> dict[str, str]:
    """Units given by text columns: ``As_unit`` (one element) or ``unit`` (every element)."""
    found: dict[str, str] = {}
    lower = {str(c).lower(): c for c in gdf.columns}
    for target in ("*", *elements):
        t = target.lower()
        for n in ("unit", "units") if t == "*" else (f"{t}_unit", f"{t}_units", f"unit_{t}"):
            if n not in lower:
                continue
            col = lower[n]
            vals = {normalize_unit(v) for v in gdf[col].dropna().astype(str) if v.strip()}
            if not vals or (target == "*" and not vals <= UPPER_LIMITS.keys()):
                continue  # blank, or e.g. a geological unit column
            if len(vals) != 1 or not vals <= UPPER_LIMITS.keys():
                raise DataError(
                    f"{label}: column '{col}': expected one unit of {sorted(UPPER_LIMITS)} "
                    f"for {'every element' if target == '*' else target}, found "
                    f"{sorted(vals)}; convert the values to one unit"
                )
            for el in elements if target == "*" else (target,):
                found[el] = next(iter(vals))
    return found


def _unit_map(gdf: gpd.GeoDataFrame, elements: Sequence[str], units: Mapping[str, str] | None,
              label: str) -> dict[str, str]:
    given = {k: normalize_unit(v) for k, v in (units or {}).items()}
    from_cols = _unit_columns(gdf, elements, label)
    clash = {e: (given[e], from_cols[e]) for e in elements
             if e in given and e in from_cols and given[e] != from_cols[e]}
    if clash:
        raise DataError(
            f"{label}: units= and the unit columns disagree for {clash} (given, in file); "
            "convert the values or correct units="
        )
    src = dict(gdf.attrs.get("units", {}))
    return {e: given.get(e) or from_cols.get(e) or normalize_unit(src.get(e) or
            schema.DEFAULT_UNITS.get(e, "ppm")) for e in elements}


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
    sep: str | None = None,
    decimal: str | None = None,
    thousands: str | None = None,
    missing_codes: Sequence[float] = MISSING_CODES,
    detection_limits: Mapping[str, float] | None = None,
    encoding: str = "utf-8-sig",
) -> gpd.GeoDataFrame:
    """Read geochemical samples into a GeoDataFrame with numeric element columns.

    Parameters
    ----------
    source : path or GeoDataFrame
        CSV (coordinate columns named by ``x``/``y`` or detected: x/y, easting/northing,
        lon/lat), GeoPackage, Shapefile, or an in-memory GeoDataFrame.
    elements : sequence of str, optional
        Element columns to keep (chemical symbols, each once). Default: every column named
        like a chemical symbol; one with no value at all is left out, with a warning.
    x, y : str, optional
        Coordinate column names of a CSV.
    crs : optional
        CRS of a CSV's coordinates (required unless the columns are lon/lat).
    target_crs : optional
        Reproject the points into this CRS.
    censored : {"half", "dl", "nan"}, default "half"
        Policy for values below the detection limit; recorded in ``attrs``.
    units : mapping, optional
        Element -> unit; defaults to a unit column (``As_unit``, or ``unit`` holding only
        units), ``attrs["units"]`` of the source, or the paper's units.
    layer : str, optional
        Layer of a GeoPackage.
    sep : str, optional
        Separator of a CSV; default: whichever of ``,`` ``;`` tab ``|`` splits the header
        into the most columns (whitespace if none splits it).
    decimal, thousands : str, optional
        Decimal mark and thousands separator of a CSV's numbers; default: see
        :func:`~geochem_sr.io.values.parse_censored` (an ambiguous ``1,500`` raises).
    missing_codes : sequence of float, default (-9, -99, -999, -9999, -99999)
        Element values meaning "no value" (other negative values ``-d`` mean ``<d``).
    detection_limits : mapping, optional
        Element -> detection limit, for entries like ``bdl`` or ``0`` that do not give it
        (default: ``attrs["detection_limits"]`` of the source); without one they are NaN.
    encoding : str, default "utf-8-sig"
        Text encoding of a CSV (a byte-order mark is dropped).

    Returns
    -------
    geopandas.GeoDataFrame
        Point geometry, one float64 column per element; ``attrs`` holds ``units``,
        ``censoring_policy`` and ``censored_counts``.

    Raises
    ------
    InputFileError
        Missing file, columns or rows; duplicated column names; no element column.
    CRSError
        No CRS; coordinates that cannot be in it (degrees declared as metres or the
        reverse, x and y swapped).
    DataError
        Text in numeric columns, ambiguous decimal marks, non-finite values, values above
        100 % in their unit, an unknown unit, a requested element with no value.
    ParameterError
        ``elements`` that are not chemical symbols or are repeated; an unknown ``censored``
        policy, ``decimal`` or ``thousands`` mark.

    Warns
    -----
    UserWarning
        Dropped rows without coordinates, missing-value codes, below-detection entries
        without a limit (and zeros) read as NaN, decimal commas guessed, columns that look
        like elements but are not read, coordinates outside the CRS's area of use.
    """
    label = "samples" if isinstance(source, gpd.GeoDataFrame) else f"samples file '{source}'"
    requested = _check_element_names(elements, label)
    swap_fix = "exchange the x and y of the points"
    if isinstance(source, gpd.GeoDataFrame):
        gdf = source.copy()
        gdf.attrs = dict(source.attrs)
    else:
        path = Path(source)
        if not path.exists():
            raise InputFileError(f"{label}: file not found")
        if path.suffix.lower() in (".csv", ".txt"):
            opts = {"x": x, "y": y, "crs": crs, "sep": sep, "decimal": decimal,
                    "thousands": thousands, "encoding": encoding, "elements": requested}
            gdf, swap_fix = _read_table(path, label, opts)
        else:
            gdf, _ = read_vector(path, "samples", layer)
            if crs is not None and gdf.crs is None:
                gdf = gdf.set_crs(crs)
    dup = sorted({str(c) for c in gdf.columns[gdf.columns.duplicated()]})
    if dup:
        raise InputFileError(f"{label}: expected unique column names, found {dup} repeated")
    if len(gdf) == 0:
        raise InputFileError(f"{label}: expected sample rows, found none")
    if gdf.crs is None:
        raise CRSError(f"{label}: expected a CRS, found none (pass crs=...)")
    if not (gdf.geom_type.dropna() == "Point").all():
        raise InputFileError(
            f"{label}: expected point geometries, found {sorted(set(gdf.geom_type.dropna()))}"
        )
    gdf = check_points(gdf, label, swap_fix)
    els = requested or _detect_elements(gdf, label)
    missing = [e for e in els if e not in gdf.columns]
    if missing:
        hints = _element_like([c for c in gdf.columns if c != gdf.geometry.name])
        raise InputFileError(
            f"{label}: expected element columns {missing}, found columns "
            f"{[c for c in gdf.columns if c != 'geometry']}"
            + (f"; rename {hints}" if hints else "")
        )
    unit_map = _unit_map(gdf, els, units, label)
    limits = {**gdf.attrs.get("detection_limits", {}), **(detection_limits or {})}
    counts: dict[str, int] = {}
    for el in els:
        gdf[el], counts[el] = parse_censored(
            gdf[el], policy=censored, name=el, decimal=decimal, thousands=thousands,
            missing_codes=missing_codes, detection_limit=limits.get(el), unit=unit_map[el],
            where=label,
        )
        check_concentrations(gdf[el], el, unit_map[el], label)
    empty = [e for e in els if not gdf[e].notna().any()]
    if empty and requested is not None:
        raise DataError(
            f"{label}: columns {empty}: expected values, found none in {len(gdf)} rows (all "
            "missing, or below detection without a limit); fill them or leave them out of "
            "elements="
        )
    if empty:
        warnings.warn(f"{label}: columns {empty} hold no value and are left out",
                      UserWarning, stacklevel=2)
        els = [e for e in els if e not in empty]
        if not els:
            raise DataError(f"{label}: expected element values, found none in any column")
    if target_crs is not None:
        gdf = gdf.to_crs(target_crs)
    keep = [c for c in gdf.columns if c not in schema.KNOWN_ELEMENTS or c in els]
    gdf = gdf[keep]
    gdf.attrs.update(
        {
            "units": {e: unit_map[e] for e in els},
            schema.ATTR_CENSORING: censored,
            "censored_counts": {e: counts[e] for e in els},
            "elements": list(els),
        }
    )
    return gdf
