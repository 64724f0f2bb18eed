"""Maps of survey datasets: km axes from the CRS, log colour scales, geology legends.

Matplotlib is imported inside the functions, so importing this module costs nothing.
Every function works on lazy (dask) data: only the selected element of the plotted
variable is computed, after coarsening grids larger than ``max_cells`` per side.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError, SchemaError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Largest number of cells per side that is drawn; larger grids are coarsened first.
MAX_CELLS = 1500
NO_DATA_COLOR = "#d9d9d9"
TRUTH = "truth"
ROLE_COLORS = {"train": "#4c72b0", "val": "#dd8452", "test": "#55a868"}
#: Default role codes, as :data:`geochem_sr.patches.ROLE_NAMES` (not imported: it needs torch).
_ROLE_CODES = {"train": 1, "val": 2, "test": 3}
_LABELS = {schema.LR: "sparse survey", schema.HR: "dense survey",
           schema.HR_PRED: "super-resolved", TRUTH: "truth"}


# ----------------------------------------------------------------------------- helpers
def _kind(var: str, da: xr.DataArray) -> str:
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


def _select(ds: xr.Dataset, var: str, element: str | None) -> xr.DataArray:
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


def _coarsen(da: xr.DataArray, max_cells: int, average: bool = True) -> xr.DataArray:
    """At most ``max_cells`` per side: block mean, or the block's centre cell (lazy)."""
    fy, fx = (max(1, math.ceil(da.sizes[d] / max_cells)) for d in (schema.Y, schema.X))
    if fy == fx == 1:
        return da
    if average:
        return da.coarsen({schema.Y: fy, schema.X: fx}, boundary="trim").mean()
    return da.isel({d: slice(f // 2, da.sizes[d] // f * f, f)  # the same blocks as "trim"
                    for d, f in ((schema.Y, fy), (schema.X, fx))})


def _extent(da: xr.DataArray) -> tuple[list[float], str]:
    """imshow extent in km (cell edges) and origin for a (y, x) array."""
    x, y = (np.asarray(da[d].values, dtype=float) for d in (schema.X, schema.Y))
    dx = abs(x[1] - x[0]) if x.size > 1 else 1.0
    dy = abs(y[1] - y[0]) if y.size > 1 else 1.0
    ext = [(x.min() - dx / 2) / 1e3, (x.max() + dx / 2) / 1e3,
           (y.min() - dy / 2) / 1e3, (y.max() + dy / 2) / 1e3]
    return ext, ("upper" if y.size < 2 or y[0] > y[-1] else "lower")


def _crs_label(obj: xr.Dataset | xr.DataArray) -> str:
    import rioxarray  # noqa: F401  (registers .rio)

    crs = obj.rio.crs
    if crs is None:
        return ""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else str(getattr(crs, "name", crs))


def _setup_axes(ax: Axes, crs: str, title: str) -> None:
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.set_facecolor(NO_DATA_COLOR)
    ax.set_xlabel("Easting (km)" + (f" · {crs}" if crs else ""))
    ax.set_ylabel("Northing (km)")


def _get_ax(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.5, 5), layout="constrained")[1]


def _robust(values: Sequence[np.ndarray], positive: bool) -> tuple[float, float]:
    """2nd and 98th percentiles of the finite (and positive) values of several arrays."""
    vals = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values])
    vals = vals[np.isfinite(vals) & ((vals > 0) if positive else True)]
    if vals.size == 0:
        return (1.0, 10.0) if positive else (0.0, 1.0)
    lo, hi = np.percentile(vals, [2, 98])
    return float(lo), float(hi if hi > lo else lo * 10 if positive else lo + 1)


def unit_names(da: xr.DataArray) -> dict[int, str]:
    """Code -> unit name from ``units_json`` (verbatim) or CF ``flag_values``/``flag_meanings``.

    ``units_json`` may be a JSON list (index = code) or a mapping code -> name or name ->
    code. In ``flag_meanings`` (space-separated) underscores are shown as spaces.
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


def _categorical(ax: Axes, data: xr.DataArray, names: dict[int, str],
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
    ext, origin = _extent(data)
    cmap = ListedColormap(cols)
    norm = BoundaryNorm(np.arange(len(codes) + 1) - 0.5, len(codes))
    ax.imshow(idx, cmap=cmap, norm=norm, extent=ext, origin=origin, interpolation="nearest")
    return [Patch(facecolor=c, edgecolor="k", lw=0.3, label=names.get(code, f"unit {code}"))
            for code, c in zip(codes, cols, strict=True)]


def _hatch(ax: Axes, ds: xr.Dataset, hatch: str | xr.DataArray, max_cells: int) -> list:
    """Hatch cells where the flag is False (outside the area); return legend handles."""
    from matplotlib.patches import Patch

    flag = ds[hatch] if isinstance(hatch, str) else hatch
    if set(flag.dims) != {schema.Y, schema.X}:
        raise SchemaError(f"hatch: expected a boolean (y, x) array, found dims {flag.dims}")
    schema.check_same_grid(flag, ds, "hatch")
    inside = _coarsen(flag.transpose(schema.Y, schema.X).astype(float), max_cells).compute()
    outside = (np.asarray(inside.values) < 0.5).astype(float)
    if not outside.any():
        return []
    xk, yk = inside[schema.X].values / 1e3, inside[schema.Y].values / 1e3
    ax.contourf(xk, yk, outside, levels=[0.5, 1.5], colors="none", hatches=["///"])
    return [Patch(facecolor="none", edgecolor="k", hatch="///", label="outside area")]


def _plain_ticks(cb: Any) -> None:
    """Label a log colour bar 0.1, 1, 10 rather than 10^-1, 10^0, 10^1."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    cb.ax.yaxis.set_major_formatter(fmt)
    cb.ax.yaxis.set_minor_formatter(FuncFormatter(
        lambda v, _: f"{v:g}" if f"{v:.1e}"[0] in "25" else ""))


def _finish(ax: Axes, handles: list, outside: bool = False) -> None:
    if not handles:
        return
    kw = {"loc": "upper left", "bbox_to_anchor": (1.02, 1)} if outside else {"loc": "lower right"}
    ax.legend(handles=handles, fontsize="small", framealpha=0.85, **kw)


def _draw(ax: Axes, data: xr.DataArray, var: str, kind: str, *, unit: str, names: dict,
          vmin: float | None, vmax: float | None, cmap: Any, add_colorbar: bool) -> list:
    """Draw a computed (y, x) array in ``ax``; return legend handles."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize, TwoSlopeNorm
    from matplotlib.patches import Patch

    vals = np.asarray(data.values, dtype=float)
    if kind == "categorical":
        handles = _categorical(ax, data, names)
        missing = (vals < 0) | np.isnan(vals)
    else:
        if kind == "cyclic":
            vals = np.where(vals < 0, np.nan, vals)  # flats (-1) carry no direction
        lo, hi = _robust([vals], positive=kind == "log")
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
        ext, origin = _extent(data)
        im = ax.imshow(np.ma.masked_invalid(vals), cmap=plt.get_cmap(cmap or default),
                       norm=norm, extent=ext, origin=origin, interpolation="nearest")
        if add_colorbar:
            cb = ax.figure.colorbar(im, ax=ax, shrink=0.85, label=label)
            if kind == "cyclic":
                cb.set_ticks([0, 90, 180, 270, 360], labels=["N", "E", "S", "W", "N"])
            elif kind == "log":
                _plain_ticks(cb)
        handles, missing = [], np.isnan(vals)
    if missing.any():
        handles.append(Patch(facecolor=NO_DATA_COLOR, edgecolor="k", lw=0.3, label="no data"))
    return handles


# ----------------------------------------------------------------------------- public
def plot_map(ds: xr.Dataset, var: str, element: str | None = None, *, ax: Axes | None = None,
             log: bool | None = None, vmin: float | None = None, vmax: float | None = None,
             cmap: Any = None, title: str | None = None,
             hatch: str | xr.DataArray | None = None, add_colorbar: bool = True,
             max_cells: int = MAX_CELLS) -> Axes:
    """Map one variable of a survey dataset, axes in km of its CRS.

    Parameters
    ----------
    ds : xarray.Dataset
        Survey dataset (numpy or dask backed; it is not loaded, only the slice drawn is).
    var : str
        Variable name: concentrations (``lr``, ``hr``, ``hr_pred``, ``truth``, any
        (element, y, x) variable with units) on a log scale with units on the colour bar;
        ``lithology`` with a categorical legend; ``slope``; ``aspect`` (cyclic);
        ``residual_pred`` / error maps (diverging, centred on 0); ``hr_pred_std``
        (sequential); any other (y, x) variable (sequential).
    element : str, optional
        Element to draw for (element, y, x) variables; needed unless there is only one.
    ax : matplotlib Axes, optional
        Axes to draw in; a new figure otherwise.
    log : bool, optional
        Force a log (True) or linear (False) colour scale; default by variable.
    vmin, vmax : float, optional
        Colour limits; default the 2nd and 98th percentiles (symmetric for diverging maps).
    cmap : str or Colormap, optional
        Colormap; default by variable.
    title : str, optional
        Axes title; default the element and variable.
    hatch : str or xarray.DataArray, optional
        Boolean (y, x) flag (or the name of one, e.g. ``"aoa"``), True = inside the area of
        applicability; cells outside it are hatched.
    add_colorbar : bool, default True
        Add a colour bar (lithology gets a legend instead).
    max_cells : int, default 1500
        Grids larger than this per side are coarsened first (block mean; centre cell for
        lithology and aspect).

    Returns
    -------
    matplotlib.axes.Axes
        NaN cells show the light-grey background, listed as "no data" in the legend.

    Examples
    --------
    >>> ax = plot_map(ds, "lr", "Au", hatch="aoa")  # doctest: +SKIP
    """
    da = _select(ds, var, element)
    kind = _kind(var, da)
    el = str(da[schema.ELEMENT].values) if schema.ELEMENT in da.coords else None
    unit = str(da.attrs.get("units", ""))
    if kind == "log" and el:
        unit = f"{el} ({schema.units_of(ds).get(el, unit)})"
    elif var == schema.RESIDUAL_PRED:
        unit = unit or "log10(hr / lr)"
    elif var.endswith("_std"):
        unit = f"{var} ({unit or 'log10 units'})"
    elif unit:
        unit = f"{var} ({unit})"
    if log is not None and kind in ("log", "sequential"):
        kind = "log" if log else "sequential"
    ax = _get_ax(ax)
    default = f"{el} — {_LABELS.get(var, var)}" if el else _LABELS.get(var, var)
    _setup_axes(ax, _crs_label(ds), default if title is None else title)
    data = _coarsen(da, max_cells, average=kind not in ("categorical", "cyclic")).compute()
    handles = _draw(ax, data, var, kind, unit=unit, names=unit_names(ds[var]), vmin=vmin,
                    vmax=vmax, cmap=cmap, add_colorbar=add_colorbar)
    if hatch is not None:
        handles += _hatch(ax, ds, hatch, max_cells)
    _finish(ax, handles, outside=kind == "categorical")
    return ax


def compare_maps(ds: xr.Dataset, elements: Sequence[str],
                 variables: Sequence[str] = (schema.LR, schema.HR_PRED, schema.HR), *,
                 titles: Sequence[str] | None = None, error: bool = True,
                 max_cells: int = MAX_CELLS) -> Figure:
    """One row per element: the variables on one shared log scale, then the error map.

    Parameters
    ----------
    ds : xarray.Dataset
        Holds every variable (e.g. a survey merged with a prediction and the truth).
    elements : sequence of str
        Elements, one row each.
    variables : sequence of str, default ``("lr", "hr_pred", "hr")``
        Concentration variables, one column each, sharing one LogNorm per row whose limits
        are the joint 2nd and 98th percentiles of all of them.
    titles : sequence of str, optional
        Column titles, one per variable.
    error : bool, default True
        Add a column ``log10(pred) - log10(hr)`` on a diverging scale centred on 0, where
        ``pred`` is ``hr_pred`` if present, else the first variable.
    max_cells : int, default 1500
        Coarsening threshold per side.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import dask
    import matplotlib.pyplot as plt

    variables = list(variables)
    titles = list(titles) if titles is not None else [_LABELS.get(v, v) for v in variables]
    if len(titles) != len(variables):
        raise SchemaError(f"titles: expected {len(variables)} titles, found {len(titles)}")
    pred = schema.HR_PRED if schema.HR_PRED in ds.data_vars else variables[0]
    if error and schema.HR not in ds.data_vars:
        raise SchemaError("variable 'hr': needed for the error map (error=True), found "
                          f"{sorted(ds.data_vars)}")
    ncol = len(variables) + int(error)
    fig, axes = plt.subplots(len(elements), ncol, figsize=(3.4 * ncol + 1, 3.0 * len(elements)),
                             layout="constrained", squeeze=False)
    crs, units = _crs_label(ds), schema.units_of(ds)
    for row, el in zip(axes, elements, strict=True):
        names = list(dict.fromkeys([*variables, *([pred, schema.HR] if error else [])]))
        lazy = [_coarsen(_select(ds, v, el), max_cells) for v in names]
        data = dict(zip(names, dask.compute(*lazy), strict=True))  # one pass, shared inputs
        lo, hi = _robust([data[v].values for v in variables], positive=True)
        for ax, v, t in zip(row[:len(variables)], variables, titles, strict=True):
            _setup_axes(ax, crs, f"{el} — {t}")
            _finish(ax, _draw(ax, data[v], v, "log", unit="", names={}, vmin=lo, vmax=hi,
                              cmap=None, add_colorbar=False))
        _plain_ticks(fig.colorbar(row[0].images[0], ax=list(row[:len(variables)]),
                                  shrink=0.85, label=f"{el} ({units.get(el, '')})"))
        if error:
            p, h = data[pred], data[schema.HR]
            err = np.log10(p.where(p > 0)) - np.log10(h.where(h > 0))
            _setup_axes(row[-1], crs, f"{el} — error")
            _finish(row[-1], _draw(row[-1], err, "error", "diverging", names={}, vmin=None,
                                   unit=f"log10({pred}) − log10(hr)", vmax=None, cmap=None,
                                   add_colorbar=True))
    for ax in axes[:-1].ravel():
        ax.set_xlabel("")
    for ax in axes[:, 1:].ravel():
        ax.set_ylabel("")
    return fig


def plot_history(history: list[dict], ax: Axes | None = None) -> Axes:
    """Training and validation loss per epoch, the best (lowest validation) epoch marked.

    Parameters
    ----------
    history : list of dict
        One dict per epoch with ``epoch`` (optional), ``train_loss`` or ``loss``, and
        ``val_loss`` (optional).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    if not history:
        raise DataError("history: expected at least one epoch, found an empty list")
    ax = _get_ax(ax)

    def col(*keys: str) -> np.ndarray | None:
        for k in keys:
            if all(k in h for h in history):
                return np.array([np.nan if h[k] is None else h[k] for h in history], float)
        return None

    epochs = col("epoch")
    epochs = epochs if epochs is not None else np.arange(1, len(history) + 1, dtype=float)
    train, val = col("train_loss", "loss"), col("val_loss", "valid_loss", "validation_loss")
    if train is None and val is None:
        raise DataError(f"history: expected 'train_loss'/'loss' or 'val_loss' keys, found "
                        f"{sorted(history[0])}")
    if train is not None:
        ax.plot(epochs, train, "-o", ms=3, label="train loss")
    ref = val if val is not None else train
    if val is not None:
        ax.plot(epochs, val, "-o", ms=3, label="validation loss")
    if np.isfinite(ref).any():
        best = int(np.nanargmin(ref))
        ax.axvline(epochs[best], color="0.5", ls="--", lw=1)
        ax.plot(epochs[best], ref[best], "*", color="crimson", ms=12,
                label=f"best epoch {epochs[best]:g}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    return ax


def plot_block_roles(roles: xr.DataArray, ax: Axes | None = None) -> Axes:
    """Train / validation / test blocks of a spatial split, in three colours with a legend.

    Parameters
    ----------
    roles : xarray.DataArray
        (y, x) roles, e.g. ``BlockSplitter.split``'s ``block_role``: integer codes named by
        CF ``flag_values``/``flag_meanings`` attrs (default 1 train, 2 val, 3 test, anything
        else no role), or strings ``"train"``/``"val"``/``"test"`` (others: no role).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    from matplotlib.patches import Patch

    if set(roles.dims) != {schema.Y, schema.X}:
        raise SchemaError(f"roles: expected dims (y, x), found {roles.dims}")
    roles = roles.transpose(schema.Y, schema.X)
    alias = {"validation": "val", "valid": "val", "training": "train"}

    def role(name: Any) -> str:
        return alias.get(str(name).lower(), str(name).lower())

    vals = _coarsen(roles, MAX_CELLS, average=False).compute()
    if vals.dtype.kind in "OUS":
        codes = np.vectorize(lambda v: _ROLE_CODES.get(role(v), -1), otypes=[float])(vals.values)
    else:
        given = {c: role(n) for c, n in unit_names(roles).items()}
        code_of = {n: c for c, n in given.items() if n in ROLE_COLORS} or _ROLE_CODES
        codes = np.full(vals.shape, -1.0)
        for n, c in code_of.items():
            codes[vals.values == c] = _ROLE_CODES[n]
    vals = vals.copy(data=codes)
    names = {c: n for n, c in _ROLE_CODES.items()}
    ax = _get_ax(ax)
    _setup_axes(ax, _crs_label(roles), "spatial split")
    colors = {c: ROLE_COLORS.get(n, "0.3") for c, n in names.items()}
    handles = _categorical(ax, vals.astype(float), names, colors)
    if (np.asarray(vals.values, dtype=float) < 0).any() or vals.isnull().any():
        handles.append(Patch(facecolor=NO_DATA_COLOR, edgecolor="k", lw=0.3, label="not used"))
    _finish(ax, handles, outside=True)
    return ax
