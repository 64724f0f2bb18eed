"""Constants and small helpers of every map: colour-scale kinds, limits, axes, legends.

Matplotlib is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geochem_sr import schema

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = [
    "MAX_CELLS",
    "NO_DATA_COLOR",
    "TRUTH",
    "ROLE_COLORS",
    "LABELS",
    "variable_kind",
    "map_extent",
    "crs_label",
    "setup_axes",
    "get_axes",
    "robust_limits",
    "plain_ticks",
    "add_legend",
]

#: Largest number of cells per side that is drawn; larger grids are coarsened first.
MAX_CELLS = 1500
#: Background colour of cells without data (NaN).
NO_DATA_COLOR = "#d9d9d9"
#: Name of the noise-free truth variable of a synthetic region.
TRUTH = "truth"
#: Colours of the train, validation and test blocks.
ROLE_COLORS = {"train": "#4c72b0", "val": "#dd8452", "test": "#55a868"}
#: Default titles of the concentration variables.
LABELS = {schema.LR: "sparse survey", schema.HR: "dense survey",
          schema.HR_PRED: "super-resolved", TRUTH: "truth"}


def variable_kind(var: str, da: xr.DataArray) -> str:
    """How a variable is drawn: categorical, cyclic, diverging, sequential or log."""
    if var == schema.LITHOLOGY:
        return "categorical"
    if var == schema.ASPECT:
        return "cyclic"
    if var == schema.RESIDUAL_PRED or "error" in var or "resid" in var or "diff" in var:
        return "diverging"
    if var in (*schema.CONCENTRATION_VARS, TRUTH):
        return "log"
    if var.endswith("_std") or var in (schema.SLOPE, schema.ELEVATION) or da.dtype == bool:
        return "sequential"
    has_units = schema.ELEMENT_UNITS in da.coords or "units" in da.attrs
    return "log" if schema.ELEMENT in da.dims and has_units else "sequential"


def map_extent(da: xr.DataArray) -> tuple[list[float], str]:
    """imshow extent in km (cell edges) and origin for a (y, x) array."""
    x, y = (np.asarray(da[d].values, dtype=float) for d in (schema.X, schema.Y))
    dx = abs(x[1] - x[0]) if x.size > 1 else 1.0
    dy = abs(y[1] - y[0]) if y.size > 1 else 1.0
    ext = [(x.min() - dx / 2) / 1e3, (x.max() + dx / 2) / 1e3,
           (y.min() - dy / 2) / 1e3, (y.max() + dy / 2) / 1e3]
    return ext, ("upper" if y.size < 2 or y[0] > y[-1] else "lower")


def crs_label(obj: xr.Dataset | xr.DataArray) -> str:
    """The CRS as the axis label shows it: ``EPSG:<code>``, else its name ('' if none)."""
    import rioxarray  # noqa: F401  (registers .rio)

    crs = obj.rio.crs
    if crs is None:
        return ""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else str(getattr(crs, "name", crs))


def setup_axes(ax: Axes, crs: str, title: str) -> None:
    """Title, equal aspect, no-data background and km axis labels of a map."""
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.set_facecolor(NO_DATA_COLOR)
    ax.set_xlabel("Easting (km)" + (f" · {crs}" if crs else ""))
    ax.set_ylabel("Northing (km)")


def get_axes(ax: Axes | None) -> Axes:
    """``ax``, or the axes of a new figure."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.5, 5), layout="constrained")[1]


def robust_limits(values: Sequence[np.ndarray], positive: bool) -> tuple[float, float]:
    """2nd and 98th percentiles of the finite (and positive) values of several arrays."""
    vals = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values])
    vals = vals[np.isfinite(vals) & ((vals > 0) if positive else True)]
    if vals.size == 0:
        return (1.0, 10.0) if positive else (0.0, 1.0)
    lo, hi = np.percentile(vals, [2, 98])
    return float(lo), float(hi if hi > lo else lo * 10 if positive else lo + 1)


def plain_ticks(cb: Any) -> None:
    """Label a log colour bar 0.1, 1, 10 rather than 10^-1, 10^0, 10^1."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    cb.ax.yaxis.set_major_formatter(fmt)
    cb.ax.yaxis.set_minor_formatter(FuncFormatter(
        lambda v, _: f"{v:g}" if f"{v:.1e}"[0] in "25" else ""))


def add_legend(ax: Axes, handles: list, outside: bool = False) -> None:
    """Add a legend of ``handles`` (if any): lower right, or beside the map."""
    if not handles:
        return
    kw = {"loc": "upper left", "bbox_to_anchor": (1.02, 1)} if outside else {"loc": "lower right"}
    ax.legend(handles=handles, fontsize="small", framealpha=0.85, **kw)
