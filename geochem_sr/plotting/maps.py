"""Map one variable of a survey dataset: :func:`plot_map`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import xarray as xr

from geochem_sr import schema
from geochem_sr.covariates.geology import unit_names
from geochem_sr.plotting.draw import coarsen_map, draw_array, draw_hatch, select_map
from geochem_sr.plotting.style import (
    LABELS,
    MAX_CELLS,
    add_legend,
    crs_label,
    get_axes,
    setup_axes,
    variable_kind,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["plot_map"]


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
    da = select_map(ds, var, element)
    kind = variable_kind(var, da)
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
    ax = get_axes(ax)
    default = f"{el} — {LABELS.get(var, var)}" if el else LABELS.get(var, var)
    setup_axes(ax, crs_label(ds), default if title is None else title)
    data = coarsen_map(da, max_cells, average=kind not in ("categorical", "cyclic")).compute()
    handles = draw_array(ax, data, var, kind, unit=unit, names=unit_names(ds[var]), vmin=vmin,
                    vmax=vmax, cmap=cmap, add_colorbar=add_colorbar)
    if hatch is not None:
        handles += draw_hatch(ax, ds, hatch, max_cells)
    add_legend(ax, handles, outside=kind == "categorical")
    return ax
