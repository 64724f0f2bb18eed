"""Maps of several variables side by side on one scale per element: :func:`compare_maps`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import ParameterError, SchemaError
from geochem_sr.plotting.draw import coarsen_map, draw_array, select_map
from geochem_sr.plotting.style import (
    LABELS,
    MAX_CELLS,
    add_legend,
    crs_label,
    plain_ticks,
    robust_limits,
    setup_axes,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["compare_maps"]


def compare_maps(ds: xr.Dataset, elements: Sequence[str],
                 variables: Sequence[str] = (schema.LR, schema.HR_PRED, schema.HR), *,
                 titles: Sequence[str] | None = None, error: bool = True,
                 max_cells: int = MAX_CELLS, roles: xr.DataArray | None = None) -> Figure:
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
    roles : xarray.DataArray, optional
        Block roles (:func:`geochem_sr.trust.training_roles`): the validation and test
        blocks are outlined on the dense-survey panel.

    What ``ds`` holds is drawn too: the sparse sample sites (``lr_sites``) as dots on the
    sparse map, cells outside the area of applicability (``aoa``) hatched on the
    prediction, and the calibrated uncertainty (``hr_pred_std``) as a last column.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import dask
    import matplotlib.pyplot as plt

    variables = list(variables)
    titles = list(titles) if titles is not None else [LABELS.get(v, v) for v in variables]
    if len(titles) != len(variables):
        raise ParameterError(f"titles: expected {len(variables)} titles, found {len(titles)}")
    pred = schema.HR_PRED if schema.HR_PRED in ds.data_vars else variables[0]
    if error and schema.HR not in ds.data_vars:
        raise SchemaError("variable 'hr': needed for the error map (error=True), found "
                          f"{sorted(ds.data_vars)}")
    std = schema.HR_PRED_STD in ds.data_vars
    ncol = len(variables) + int(error) + int(std)
    fig, axes = plt.subplots(len(elements), ncol, figsize=(3.4 * ncol + 1, 3.0 * len(elements)),
                             layout="constrained", squeeze=False)
    crs, units = crs_label(ds), schema.units_of(ds)
    for row, el in zip(axes, elements, strict=True):
        names = list(dict.fromkeys([*variables, *([pred, schema.HR] if error else [])]))
        lazy = [coarsen_map(select_map(ds, v, el), max_cells) for v in names]
        data = dict(zip(names, dask.compute(*lazy), strict=True))  # one pass, shared inputs
        lo, hi = robust_limits([data[v].values for v in variables], positive=True)
        for ax, v, t in zip(row[:len(variables)], variables, titles, strict=True):
            setup_axes(ax, crs, f"{el} — {t}")
            handles = draw_array(ax, data[v], v, "log", unit="", names={}, vmin=lo, vmax=hi,
                                 cmap=None, add_colorbar=False)
            handles += _overlays(ax, ds, v, roles, max_cells)
            add_legend(ax, handles)
        plain_ticks(fig.colorbar(row[0].images[0], ax=list(row[:len(variables)]),
                                  shrink=0.85, label=f"{el} ({units.get(el, '')})"))
        if error:
            p, h = data[pred], data[schema.HR]
            err = np.log10(p.where(p > 0)) - np.log10(h.where(h > 0))
            ax = row[len(variables)]
            setup_axes(ax, crs, f"{el} — {LABELS.get(pred, pred)} / dense")
            add_legend(ax, draw_array(ax, err, "error", "diverging", names={}, vmin=None,
                                   unit="log10 of the ratio",
                                   vmax=None, cmap=None,
                                   add_colorbar=True))
        if std:
            ax = row[len(variables) + int(error)]
            sd = coarsen_map(select_map(ds, schema.HR_PRED_STD, el), max_cells).compute()
            setup_axes(ax, crs, f"{el} — uncertainty")
            add_legend(ax, draw_array(ax, sd, schema.HR_PRED_STD, "sequential", names={},
                                      unit="1 std, log10 (0.1: ±26 %)", vmin=None, vmax=None,
                                      cmap="magma", add_colorbar=True))
    for ax in axes[:-1].ravel():
        ax.set_xlabel("")
    for ax in axes[:, 1:].ravel():
        ax.set_ylabel("")
    return fig


def _overlays(ax: object, ds: xr.Dataset, var: str, roles: xr.DataArray | None,
              max_cells: int) -> list:
    """Sample sites on the sparse map, AOA hatching on the prediction, block outlines on
    the dense map; the legend handles."""
    from matplotlib.lines import Line2D

    from geochem_sr.plotting.draw import draw_hatch

    handles: list = []
    if var == schema.LR and "lr_sites" in ds.data_vars:
        sites = ds["lr_sites"].transpose(schema.Y, schema.X)
        rows, cols = np.nonzero(np.asarray(sites.values) > 0)
        xs, ys = ds[schema.X].values[cols] / 1e3, ds[schema.Y].values[rows] / 1e3
        ax.plot(xs, ys, ".", color="k", markersize=1.5)
        handles.append(Line2D([], [], ls="", marker=".", color="k", label="sparse sites"))
    if var == schema.HR_PRED and schema.AOA in ds.data_vars:
        handles += draw_hatch(ax, ds, ds[schema.AOA].astype(bool), max_cells)
    if var == schema.HR and roles is not None:
        xk, yk = ds[schema.X].values / 1e3, ds[schema.Y].values / 1e3
        codes = np.asarray(roles.transpose(schema.Y, schema.X).values)
        for code, colour, name in ((2, "tab:orange", "validation blocks"),
                                   (3, "tab:red", "test blocks")):
            if (codes == code).any():
                ax.contour(xk, yk, (codes == code).astype(float), levels=[0.5],
                           colors=colour, linewidths=1.2)
                handles.append(Line2D([], [], color=colour, label=name))
    return handles
