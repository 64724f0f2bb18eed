"""Reading lab values: the rules behind the sample reader's messages.

* :func:`parse_censored` turns a column of lab values (numbers or text) into floats:
  censored entries (``<0.5``), missing-value tokens and codes, decimal and thousands marks.
* :func:`check_concentrations` refuses values no concentration can take in its unit.

Rows in messages are the index labels of the column (for a CSV: 0 = the first data row).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from geochem_sr.errors import DataError, ParameterError

__all__ = ["BELOW_DETECTION_TOKENS", "CENSORING_POLICIES", "MISSING_CODES", "MISSING_TOKENS",
           "UPPER_LIMITS", "check_concentrations", "normalize_unit", "parse_censored",
           "parse_numbers"]

#: How a value below the detection limit ``<DL`` is replaced.
CENSORING_POLICIES = ("half", "dl", "nan")
#: Numbers that mean "no value" (all nines, negative): read as NaN, with a warning.
MISSING_CODES: tuple[float, ...] = (-9.0, -99.0, -999.0, -9999.0, -99999.0)
#: Text that means "no value" (compared lower-case, spaces collapsed).
MISSING_TOKENS = frozenset({
    "", "na", "n/a", "n.a.", "n.a", "nan", "nd", "n.d.", "-", "--", "---", "null", "none",
    "is", "ns", "n.s.", "not analysed", "not analyzed", "missing", "?",
})
#: Text that means "below the detection limit" without giving the limit.
BELOW_DETECTION_TOKENS = frozenset({
    "bdl", "b.d.l.", "bd", "b.d.", "dl", "<dl", "< dl", "<d.l.", "lod", "<lod", "< lod",
    "<lld", "lld", "<ld", "<mdl", "<rl", "<lor", "below detection", "below detection limit",
})
#: Largest possible concentration per unit (100 % of the sample).
UPPER_LIMITS: dict[str, float] = {
    "ppm": 1e6, "mg/kg": 1e6, "g/t": 1e6, "ppb": 1e9, "ug/kg": 1e9, "pct": 100.0, "%": 100.0,
}

_PLAIN = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_GROUPED_COMMA = re.compile(r"^[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d*)?$")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_INF = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
_CENSORED = re.compile(r"^(?:(?:nd|n\.d\.|bdl|dl|lod|bd)\s*)?<\s*(.+)$", re.IGNORECASE)
_ABOVE = re.compile(r"^>\s*(.+)$")
_UNIT_SUFFIX = re.compile(r"^(.*?\d)\s*(ppm|ppb|pct|%|mg/kg|[uµμ]g/kg|g/t)$", re.IGNORECASE)
_DECIMALS = (None, ".", ",")
_THOUSANDS = (None, ",", ".", " ", "'", "_")


def normalize_unit(unit: str) -> str:
    """``unit`` lower-case with ``µg/kg`` spelled ``ug/kg`` (the spelling of UPPER_LIMITS)."""
    return str(unit).strip().lower().replace("µ", "u").replace("μ", "u")


def rows_text(labels: Sequence[Any]) -> str:
    """``rows [3, 7]`` or ``rows [3, 7, 9, 11, 12, ...] (40 in all)``."""
    shown = [x.item() if isinstance(x, np.generic) else x for x in labels[:5]]
    more = f", ...] ({len(labels)} in all)" if len(labels) > 5 else "]"
    return f"rows {str(shown)[:-1]}{more}"


def _check_marks(decimal: str | None, thousands: str | None) -> None:
    if decimal not in _DECIMALS or thousands not in _THOUSANDS or (decimal or 0) == thousands:
        raise ParameterError(
            f"decimal / thousands: expected decimal in {_DECIMALS} and thousands in "
            f"{_THOUSANDS}, different, found decimal={decimal!r}, thousands={thousands!r}"
        )


def _number(s: str, decimal: str | None, thousands: str | None) -> tuple[float, str]:
    """(value, kind): ok, comma (decimal comma guessed), ambiguous, nonfinite, bad (NaN)."""
    if s.lower() in _INF:
        return float(s.lower()), "nonfinite"
    if thousands is not None and thousands in s:
        grouped = re.compile(
            rf"^[+-]?\d{{1,3}}(?:{re.escape(thousands)}\d{{3}})+"
            rf"(?:{re.escape(decimal or '.')}\d*)?$"
        )
        if not grouped.match(s):
            return np.nan, "bad"
        s = s.replace(thousands, "")
    if decimal == ",":
        if "." in s:
            return np.nan, "ambiguous" if re.search(r"\d\.\d", s) else "bad"
        s = s.replace(",", ".")
    elif "," in s:
        if decimal is None and _DECIMAL_COMMA.match(s) and not _GROUPED_COMMA.match(s):
            return float(s.replace(",", ".")), "comma"
        return np.nan, "ambiguous" if "," in s and re.search(r"\d,\d", s) else "bad"
    if not _PLAIN.match(s):
        return np.nan, "bad"
    value = float(s)
    return value, ("ok" if np.isfinite(value) else "nonfinite")


def parse_numbers(
    values: pd.Series,
    name: str,
    where: str = "",
    *,
    decimal: str | None = None,
    thousands: str | None = None,
) -> pd.Series:
    """Parse a column of plain numbers (e.g. coordinates); blank/NA entries become NaN.

    Parameters
    ----------
    values : pandas.Series
        Numbers or number text.
    name, where : str
        Column name and where it comes from (e.g. the file), for messages.
    decimal, thousands : str, optional
        As in :func:`parse_censored`.

    Returns
    -------
    pandas.Series
        float64 values.

    Raises
    ------
    DataError
        Text that is not a number, an ambiguous comma, or a non-finite number; the message
        names ``where``, the column, the rows and the fix.
    ParameterError
        An unknown ``decimal`` or ``thousands`` mark, or the same mark for both.
    """
    _check_marks(decimal, thousands)
    out = np.full(len(values), np.nan)
    kinds: dict[str, list[tuple[Any, Any]]] = {}
    raw = values.to_numpy(dtype=object)
    for i in _fast_numbers(raw, out):
        idx, v = values.index[i], raw[i]
        if _number_entry(v, i, idx, out, kinds):
            continue
        s = str(v).strip()
        if s.lower() in MISSING_TOKENS:
            continue
        out[i], kind = _number(s, decimal, thousands)
        if kind != "ok":
            kinds.setdefault(kind, []).append((idx, v))
    label = f"{where + ': ' if where else ''}column '{name}'"
    _raise_bad(kinds, label, "numbers")
    _warn_comma(kinds, label)
    return pd.Series(out, index=values.index, name=values.name)


def _raise_bad(kinds: dict[str, list[tuple[Any, Any]]], label: str, expected: str) -> None:
    """DataError for the first kind of bad entry found (text, ambiguous, non-finite)."""
    if kinds.get("bad"):
        bad = kinds["bad"]
        raise DataError(
            f"{label}: expected {expected}, found text {[b[1] for b in bad[:3]]} in "
            f"{rows_text([b[0] for b in bad])}; correct or blank these entries"
        )
    if kinds.get("ambiguous"):
        bad = kinds["ambiguous"]
        raise DataError(
            f"{label}: the decimal mark of {[b[1] for b in bad[:3]]} "
            f"({rows_text([b[0] for b in bad])}) is ambiguous: a comma or point may mark "
            "decimals (1,500 = 1.5) or group thousands (1,500 = 1500); pass decimal=',' or "
            "thousands=',' (or decimal=',', thousands='.') to say which"
        )
    if kinds.get("nonfinite"):
        bad = kinds["nonfinite"]
        raise DataError(
            f"{label}: expected finite numbers, found {[b[1] for b in bad[:3]]} in "
            f"{rows_text([b[0] for b in bad])}; blank them (missing) or correct them"
        )


def _warn(message: str) -> None:  # stacklevel: the caller of read_samples
    warnings.warn(message, UserWarning, stacklevel=4)


def _warn_comma(kinds: dict[str, list[tuple[Any, Any]]], label: str) -> None:
    if kinds.get("comma"):
        ex = [b[1] for b in kinds["comma"][:3]]
        _warn(
            f"{label}: read {len(kinds['comma'])} values with a decimal comma (e.g. {ex}); "
            "pass decimal=',' to confirm"
        )


def _number_entry(v: Any, i: int, idx: Any, out: np.ndarray,
                  kinds: dict[str, list[tuple[Any, Any]]]) -> bool:
    """Put a missing or numeric entry into ``out[i]`` (noting non-finite ones); False for
    anything else (text)."""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return True
    if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, bool):
        return False
    out[i] = float(v)
    if not np.isfinite(out[i]):
        kinds.setdefault("nonfinite", []).append((idx, v))
    return True


def _fast_numbers(raw: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` with the plain finite numbers of ``raw``; the positions left to parse."""
    kind = np.array([type(v) in (float, int, np.float64, np.int64) for v in raw], dtype=bool)
    text = np.array([type(v) is str for v in raw], dtype=bool)
    pos = np.flatnonzero(text)
    if pos.size:
        stripped = pd.Series(raw[pos], dtype=object).str.strip()
        plain = stripped.str.fullmatch(_PLAIN.pattern).to_numpy(dtype=bool)
        pos = pos[plain]
        out[pos] = np.array(stripped[plain].tolist(), dtype=float)
    num = np.flatnonzero(kind)
    out[num] = raw[num].astype(float)
    done = np.zeros(len(raw), dtype=bool)
    done[np.r_[pos, num]] = np.isfinite(out[np.r_[pos, num]])  # inf, 1e400: one by one
    done[num[np.isnan(out[num])]] = True  # NaN: missing
    return np.flatnonzero(~done)


def parse_censored(
    values: pd.Series,
    policy: str = "half",
    negative_is_censored: bool = True,
    name: str | None = None,
    *,
    decimal: str | None = None,
    thousands: str | None = None,
    missing_codes: Sequence[float] = MISSING_CODES,
    detection_limit: float | None = None,
    unit: str | None = None,
    where: str = "",
) -> tuple[pd.Series, int]:
    """Parse a column of lab values with censored entries into floats.

    Parameters
    ----------
    values : pandas.Series
        Numbers, or strings such as ``"12.5"``, ``"<0.5"``, ``"ND"``, ``"12 ppm"``.
    policy : {"half", "dl", "nan"}, default "half"
        Replacement of a value below the detection limit DL: DL/2, DL itself, or NaN.
    negative_is_censored : bool, default True
        Treat a negative number ``-d`` as ``<d`` (a common lab convention), except the
        ``missing_codes``.
    name : str, optional
        Column name, used in messages.
    decimal : {None, ".", ","}, optional
        Decimal mark. None: ``"."``, and a comma where it cannot group thousands (``"1,5"``,
        ``"0,500"``, ``"1234,5"``; with a warning); ``"1,500"`` is ambiguous and raises.
    thousands : {None, ",", ".", " ", "'", "_"}, optional
        Thousands separator; accepted only in well-formed groups (``1,234,567.8``).
    missing_codes : sequence of float, default (-9, -99, -999, -9999, -99999)
        Numbers meaning "no value": NaN, with a warning (``()``: ``-999`` means ``<999``).
    detection_limit : float, optional
        The limit of entries that say "below detection" without it (``"bdl"``, ``"<LOD"``,
        ``0``); without it they are read as NaN, with a warning.
    unit : str, optional
        The column's unit; values written with a unit (``"12 ppm"``) must carry this one.
    where : str, optional
        Where the column comes from (e.g. the file), prefixed to messages.

    Returns
    -------
    (pandas.Series, int)
        Float values and the number of censored entries.

    Raises
    ------
    DataError
        Text that is no number, censored value or missing-value token; an ambiguous comma;
        a non-finite number (``inf``, ``1e400``); a value in another unit than ``unit``.
    ParameterError
        An unknown ``policy``; an unknown ``decimal`` or ``thousands`` mark, or the same
        mark for both.

    Warns
    -----
    UserWarning
        Missing-value codes, below-detection entries without a limit (and zeros), values
        above an upper limit (``>100``, read as the limit), decimal commas guessed.

    Examples
    --------
    >>> import pandas as pd
    >>> s, n = parse_censored(pd.Series(["1.5", "<0.4", 2, "ND"]))
    >>> s.tolist()[:3], n
    ([1.5, 0.2, 2.0], 1)
    """
    if policy not in CENSORING_POLICIES:
        raise ParameterError(
            f"censored policy: expected one of {CENSORING_POLICIES}, found {policy!r}"
        )
    _check_marks(decimal, thousands)
    factor = {"half": 0.5, "dl": 1.0, "nan": np.nan}[policy]
    label = f"{where + ': ' if where else ''}column '{name}'" if name else (where or "column")
    unit_n = normalize_unit(unit) if unit is not None else None
    n = len(values)
    out = np.full(n, np.nan, dtype="float64")
    limit = np.full(n, np.nan)  # detection limit of censored entries
    above = np.zeros(n, dtype=bool)
    no_limit = np.zeros(n, dtype=bool)
    kinds: dict[str, list[tuple[Any, Any]]] = {}
    raw = values.to_numpy(dtype=object)
    for i in _fast_numbers(raw, out):  # the rest: one by one
        idx, v = values.index[i], raw[i]
        if _number_entry(v, i, idx, out, kinds):
            continue
        s = " ".join(str(v).split())
        low = s.lower()
        if low in MISSING_TOKENS:
            continue
        if low in BELOW_DETECTION_TOKENS:
            no_limit[i] = True
            continue
        m = _UNIT_SUFFIX.match(s)
        if m:
            s = m.group(1)
            if normalize_unit(m.group(2)) != unit_n:
                kinds.setdefault("unit", []).append((idx, v))
                continue
        kind = "ok"
        m = _CENSORED.match(s) or _ABOVE.match(s)
        if m:
            value, kind = _number(m.group(1).strip(), decimal, thousands)
            if kind in ("ok", "comma") and not value > 0:
                kind = "bad"
            if s.startswith(">"):
                above[i] = True
                out[i] = value
            else:
                limit[i] = value
        else:
            out[i], kind = _number(s, decimal, thousands)
        if kind == "comma":
            kinds.setdefault("comma", []).append((idx, v))
        elif kind != "ok":
            kinds.setdefault(kind, []).append((idx, v))
    if kinds.get("unit"):
        bad = kinds["unit"]
        raise DataError(
            f"{label}: expected values in {unit!r}, found {[b[1] for b in bad[:3]]} in "
            f"{rows_text([b[0] for b in bad])}; convert them to one unit and declare it "
            f"(read_samples(units={{{name!r}: ...}}))"
        )
    _raise_bad(kinds, label, "numbers or censored values like '<0.5'")
    _warn_comma(kinds, label)
    codes = np.isin(out, np.asarray(missing_codes, dtype=float)) & np.isnan(limit)
    if codes.any():
        found = sorted({float(c) for c in out[codes]})
        _warn(
            f"{label}: {int(codes.sum())} values equal to missing-value codes "
            f"{[f'{c:g}' for c in found]} read as missing (NaN); pass missing_codes=() if "
            "they are censored values ('-999' = '<999')"
        )
        out[codes] = np.nan
    no_limit |= out == 0
    out[no_limit] = np.nan
    if no_limit.any():
        if detection_limit is not None and detection_limit > 0:
            limit[no_limit] = detection_limit
        else:
            _warn(
                f"{label}: {int(no_limit.sum())} entries say 'below detection' without the "
                "limit ('bdl', '<LOD', 0) and are read as missing (NaN); write them as "
                f"'<0.5' or pass detection_limits={{{name!r}: 0.5}} (your limit)"
            )
    if above.any():
        _warn(
            f"{label}: {int(above.sum())} values above an upper limit ('>1000') are read as "
            "the limit itself (a lower bound of the true value)"
        )
    if negative_is_censored:
        neg = out < 0
        limit[neg] = -out[neg]
    censored = np.isfinite(limit)
    out[censored] = limit[censored] * factor
    return pd.Series(out, index=values.index, name=values.name), int(censored.sum())


def check_concentrations(values: pd.Series, name: str, unit: str, where: str = "") -> None:
    """Refuse concentrations above 100 % of the sample in their unit.

    Raises
    ------
    DataError
        An unknown unit, or values above :data:`UPPER_LIMITS` (1e6 ppm, 1e9 ppb, 100 %).
    """
    label = f"{where + ': ' if where else ''}column '{name}'"
    u = normalize_unit(unit)
    if u not in UPPER_LIMITS:
        raise DataError(
            f"{label}: expected a unit in {sorted(UPPER_LIMITS)}, found {unit!r} "
            f"(pass units={{{name!r}: 'ppm'}})"
        )
    arr = values.to_numpy(dtype=float)
    high = arr > UPPER_LIMITS[u]
    if high.any():
        raise DataError(
            f"{label}: expected concentrations up to {UPPER_LIMITS[u]:g} {unit}"
            f"{'' if u in ('%', 'pct') else ' (100 % of the sample)'}, found "
            f"{int(high.sum())} above (max {np.nanmax(arr):g}) in "
            f"{rows_text(list(values.index[high]))}; correct the values or the unit "
            f"(units={{{name!r}: ...}})"
        )
