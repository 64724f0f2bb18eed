"""Drawing one (y, x) array: the slice to draw, coarsening, categories, hatching, colours.

Every function works on lazy (dask) data: only the selected element is computed, after
coarsening grids larger than ``max_cells`` per side.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import SchemaError
from geochem_sr.plotting.style import (
    NO_DATA_COLOR,
    map_extent,
    plain_ticks,
    robust_limits,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["select_map", "coarsen_map", "draw_categorical", "draw_hatch", "draw_array"]


def select_map(ds: xr.Dataset, var: str, element: str | None) -> xr.DataArray:
    """The (y, x) slice of ``ds[var]`` to draw (still lazy)."""
    if var not in ds.variables:
        raise SchemaError(f"variable '{var}': not in the dataset (found {sorted(ds.data_vars)})")
    da = ds[var]
    if schema.ELEMENT in da.dims:
        names = [str(e) for e in da[schema.ELEMENT].values]
        if element is None and len(names) == 1:
            element = names[0]
        if element not in names:
            raise SchemaError(f"variable '{var}': expected element= one of {names}, "
                              f"found {element!r}")
        da = da.sel({schema.ELEMENT: element})
    if set(da.dims) != {schema.Y, schema.X}:
        raise SchemaError(f"variable '{var}': expected dims (y, x) after selecting an element, "
                          f"found {da.dims}")
    return da.transpose(schema.Y, schema.X)


def coarsen_map(da: xr.DataArray, max_cells: int, average: bool = True) -> xr.DataArray:
    """At most ``max_cells`` per side: block mean, or the block's centre cell (lazy)."""
    fy, fx = (max(1, math.ceil(da.sizes[d] / max_cells)) for d in (schema.Y, schema.X))
    if fy == fx == 1:
        return da
    if average:
        return da.coarsen({schema.Y: fy, schema.X: fx}, boundary="trim").mean()
    return da.isel({d: slice(f // 2, da.sizes[d] // f * f, f)  # the same blocks as "trim"
                    for d, f in ((schema.Y, fy), (schema.X, fx))})


def draw_categorical(ax: Axes, data: xr.DataArray, names: dict[int, str],
                 colors: dict[int, Any] | None = None) -> list:
    """Draw integer codes with one colour each; return legend handles."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    vals = np.asarray(data.values)
    present = sorted({int(v) for v in np.unique(vals[np.isfinite(vals)]) if v >= 0})
    codes = sorted(set(names) | set(present))
    if not codes:
        codes = [0]
    palette = plt.get_cmap("tab20")
    cols = [(colors or {}).get(c, palette(i % 20)) for i, c in enumerate(codes)]
    idx = np.where(np.isin(vals, codes), np.searchsorted(codes, vals), np.nan)
    ext, origin = map_extent(data)
    cmap = ListedColormap(cols)
    norm = BoundaryNorm(np.arange(len(codes) + 1) - 0.5, len(codes))
    ax.imshow(idx, cmap=cmap, norm=norm, extent=ext, origin=origin, interpolation="nearest")
    return [Patch(facecolor=c, edgecolor="k", lw=0.3, label=names.get(code, f"unit {code}"))
            for code, c in zip(codes, cols, strict=True)]


def draw_hatch(ax: Axes, ds: xr.Dataset, hatch: str | xr.DataArray, max_cells: int) -> list:
    """Hatch cells where the flag is False (outside the area); return legend handles."""
    from matplotlib.patches import Patch

    flag = ds[hatch] if isinstance(hatch, str) else hatch
    if set(flag.dims) != {schema.Y, schema.X}:
        raise SchemaError(f"hatch: expected a boolean (y, x) array, found dims {flag.dims}")
    schema.check_same_grid(flag, ds, "hatch")
    inside = coarsen_map(flag.transpose(schema.Y, schema.X).astype(float), max_cells).compute()
    outside = (np.asarray(inside.values) < 0.5).astype(float)
    if not outside.any():
        return []
    xk, yk = inside[schema.X].values / 1e3, inside[schema.Y].values / 1e3
    ax.contourf(xk, yk, outside, levels=[0.5, 1.5], colors="none", hatches=["///"])
    return [Patch(facecolor="none", edgecolor="k", hatch="///", label="outside area")]


def draw_array(ax: Axes, data: xr.DataArray, var: str, kind: str, *, unit: str, names: dict,
          vmin: float | None, vmax: float | None, cmap: Any, add_colorbar: bool) -> list:
    """Draw a computed (y, x) array in ``ax``; return legend handles."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize, TwoSlopeNorm
    from matplotlib.patches import Patch

    vals = np.asarray(data.values, dtype=float)
    if kind == "categorical":
        handles = draw_categorical(ax, data, names)
        missing = (vals < 0) | np.isnan(vals)
    else:
        if kind == "cyclic":
            vals = np.where(vals < 0, np.nan, vals)  # flats (-1) carry no direction
        lo, hi = robust_limits([vals], positive=kind == "log")
        lo, hi = (lo if vmin is None else vmin), (hi if vmax is None else vmax)
        if kind == "log":
            norm, default, label = LogNorm(lo, hi), "viridis", unit
        elif kind == "diverging":
            m = max(abs(lo), abs(hi), 1e-12)
            norm = TwoSlopeNorm(0.0, -m if vmin is None else vmin, m if vmax is None else vmax)
            default, label = "RdBu_r", unit or "log10 difference"
        elif kind == "cyclic":
            norm, default, label = Normalize(0, 360), "twilight", "aspect (° from north)"
        else:
            default = {schema.ELEVATION: "terrain", schema.SLOPE: "YlOrBr"}.get(var, "viridis")
            norm = Normalize(lo, hi)
            label = unit or {schema.SLOPE: "slope (°)", schema.ELEVATION: "elevation (m)"}.get(
                var, var)
        ext, origin = map_extent(data)
        im = ax.imshow(np.ma.masked_invalid(vals), cmap=plt.get_cmap(cmap or default),
                       norm=norm, extent=ext, origin=origin, interpolation="nearest")
        if add_colorbar:
            cb = ax.figure.colorbar(im, ax=ax, shrink=0.85, label=label)
            if kind == "cyclic":
                cb.set_ticks([0, 90, 180, 270, 360], labels=["N", "E", "S", "W", "N"])
            elif kind == "log":
                plain_ticks(cb)
        handles, missing = [], np.isnan(vals)
    if missing.any():
        handles.append(Patch(facecolor=NO_DATA_COLOR, edgecolor="k", lw=0.3, label="no data"))
    return handles
