"""Unit names and codes of a ``lithology`` map, and the warning the geology steps give.

A lithology map holds int16 unit codes (:data:`NO_UNIT` where no unit is mapped) and names
its units in the attributes ``units_json`` and CF ``flag_values`` / ``flag_meanings``.
"""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import xarray as xr

from geochem_sr.errors import SchemaError

__all__ = [
    "NO_UNIT",
    "GeologyWarning",
    "flag_meaning",
    "lithology_units",
    "unit_names",
    "warn_geology",
]

#: Code of cells that no polygon covers.
NO_UNIT = -1


class GeologyWarning(UserWarning):
    """Something in the geological map was repaired, resolved or replaced: read the message."""


def warn_geology(message: str) -> None:
    """Issue a :class:`GeologyWarning`, attributed to the caller of the warning function."""
    warnings.warn(message, GeologyWarning, stacklevel=3)


def flag_meaning(name: str) -> str:
    """A unit name as a CF ``flag_meanings`` token: whitespace runs become ``_``."""
    return re.sub(r"\s+", "_", name.strip()) or "_"


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


def unit_names(da: xr.DataArray) -> dict[int, str]:
    """Code -> unit name from ``units_json`` (verbatim) or CF ``flag_values``/``flag_meanings``.

    ``units_json`` may be a JSON list (index = code) or a mapping code -> name or name ->
    code. In ``flag_meanings`` (space-separated) underscores are shown as spaces.

    The reading for labels (map legends, trust reports): lenient, an empty dict when the
    attributes name no unit. :func:`lithology_units` is the strict reading for computing.
    """
    attrs = da.attrs
    if "units_json" in attrs:
        obj = attrs["units_json"]
        obj = json.loads(obj) if isinstance(obj, str) else obj
        if isinstance(obj, dict):
            if all(isinstance(v, int | np.integer) for v in obj.values()):
                return {int(v): str(k) for k, v in obj.items()}
            return {int(k): str(v) for k, v in obj.items()}
        return {i: str(n) for i, n in enumerate(obj)}
    if "flag_meanings" in attrs:
        names = attrs["flag_meanings"]
        names = names.split() if isinstance(names, str) else [str(n) for n in names]
        names = [n.replace("_", " ") for n in names]  # CF encodes spaces as underscores
        codes = np.atleast_1d(attrs.get("flag_values", np.arange(len(names)))).tolist()
        return {int(c): n for c, n in zip(codes, names, strict=False)}
    return {}
