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
    titles = list(titles) if titles is not None else [LABELS.get(v, v) for v in variables]
    if len(titles) != len(variables):
        raise ParameterError(f"titles: expected {len(variables)} titles, found {len(titles)}")
    pred = schema.HR_PRED if schema.HR_PRED in ds.data_vars else variables[0]
    if error and schema.HR not in ds.data_vars:
        raise SchemaError("variable 'hr': needed for the error map (error=True), found "
                          f"{sorted(ds.data_vars)}")
    ncol = len(variables) + int(error)
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
            add_legend(ax, draw_array(ax, data[v], v, "log", unit="", names={}, vmin=lo, vmax=hi,
                              cmap=None, add_colorbar=False))
        plain_ticks(fig.colorbar(row[0].images[0], ax=list(row[:len(variables)]),
                                  shrink=0.85, label=f"{el} ({units.get(el, '')})"))
        if error:
            p, h = data[pred], data[schema.HR]
            err = np.log10(p.where(p > 0)) - np.log10(h.where(h > 0))
            setup_axes(row[-1], crs, f"{el} — {LABELS.get(pred, pred)} / dense")
            add_legend(row[-1], draw_array(row[-1], err, "error", "diverging", names={}, vmin=None,
                                   unit="log10 of the ratio",
                                   vmax=None, cmap=None,
                                   add_colorbar=True))
    for ax in axes[:-1].ravel():
        ax.set_xlabel("")
    for ax in axes[:, 1:].ravel():
        ax.set_ylabel("")
    return fig
