"""Training diagnostics: the loss per epoch (:func:`plot_history`) and the spatial split
(:func:`plot_block_roles`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.covariates.geology import unit_names
from geochem_sr.errors import DataError, SchemaError
from geochem_sr.plotting.draw import coarsen_map, draw_categorical
from geochem_sr.plotting.style import (
    MAX_CELLS,
    NO_DATA_COLOR,
    ROLE_COLORS,
    add_legend,
    crs_label,
    get_axes,
    setup_axes,
)
from geochem_sr.sampling import ROLE_CODES

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["plot_history", "plot_block_roles"]


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
    ax = get_axes(ax)

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

    vals = coarsen_map(roles, MAX_CELLS, average=False).compute()
    if vals.dtype.kind in "OUS":
        codes = np.vectorize(lambda v: ROLE_CODES.get(role(v), -1), otypes=[float])(vals.values)
    else:
        given = {c: role(n) for c, n in unit_names(roles).items()}
        code_of = {n: c for c, n in given.items() if n in ROLE_COLORS} or ROLE_CODES
        codes = np.full(vals.shape, -1.0)
        for n, c in code_of.items():
            codes[vals.values == c] = ROLE_CODES[n]
    vals = vals.copy(data=codes)
    names = {c: n for n, c in ROLE_CODES.items()}
    ax = get_axes(ax)
    setup_axes(ax, crs_label(roles), "spatial split")
    colors = {c: ROLE_COLORS.get(n, "0.3") for c, n in names.items()}
    handles = draw_categorical(ax, vals.astype(float), names, colors)
    if (np.asarray(vals.values, dtype=float) < 0).any() or vals.isnull().any():
        handles.append(Patch(facecolor=NO_DATA_COLOR, edgecolor="k", lw=0.3, label="not used"))
    add_legend(ax, handles, outside=True)
    return ax
