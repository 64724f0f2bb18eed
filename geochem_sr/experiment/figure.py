"""The comparison figure: one test block, two elements, every method and the dense map.

Maps on one log colour scale per element (top rows) and their log10 errors against the
dense map (bottom rows), written as ``experiment-<profile>.png``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.experiment.profiles import (
    BASELINE_LABELS,
    BASELINES,
    INPUT_SETS,
    NETWORK_LABELS,
    NETWORKS,
    row_key,
)
from geochem_sr.plotting.style import map_extent, robust_limits

if TYPE_CHECKING:  # pragma: no cover
    from geochem_sr.sampling import TrainingData

__all__ = ["FIGURE_ELEMENTS", "figure_box", "figure_elements", "crop", "draw_figure",
           "write_figure"]

#: Elements of the figure when the survey has them.
FIGURE_ELEMENTS = ("Au", "Cu")


def figure_box(data: TrainingData) -> tuple[slice, slice]:
    """Bounding box of the largest connected group of test windows (one test block)."""
    from scipy import ndimage

    from geochem_sr.sampling import windows_mask

    shape = data.roles.shape
    mask = windows_mask(data.test_windows, shape)
    lab, n = ndimage.label(mask)
    sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
    big = lab == (int(np.argmax(sizes)) + 1)
    rows, cols = np.flatnonzero(big.any(1)), np.flatnonzero(big.any(0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def figure_elements(elements: Sequence[str]) -> list[str]:
    """The two elements of the figure: Au and Cu if present, else the first two."""
    chosen = [e for e in FIGURE_ELEMENTS if e in elements]
    return chosen if len(chosen) == 2 else list(elements[:2])


def crop(da: xr.DataArray, box: tuple[slice, slice], elements: Sequence[str]) -> np.ndarray:
    """The ``box`` of a map (element, y, x) for ``elements``, as float64."""
    sel = da.sel({schema.ELEMENT: list(elements)}).transpose(schema.ELEMENT, schema.Y, schema.X)
    return np.asarray(sel.isel({schema.Y: box[0], schema.X: box[1]}).values, np.float64)


def draw_figure(panels: dict[str, np.ndarray], labels: dict[str, str], dense: np.ndarray,
                elements: Sequence[str], units: Mapping[str, str],
                extent: list[float], path: Path, title: str) -> None:
    """Maps on one log scale per element (top row), log10 errors against dense (bottom)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, TwoSlopeNorm

    keys = list(panels)
    ncol = len(keys) + 1
    fig, axes = plt.subplots(2 * len(elements), ncol, figsize=(2.1 * ncol + 1.2,
                             2.2 * 2 * len(elements) + 0.6), squeeze=False,
                             layout="constrained")
    for i, el in enumerate(elements):
        maps = [panels[k][i] for k in keys] + [dense[i]]
        norm = LogNorm(*robust_limits(maps, positive=True))
        errs = [np.log10(np.where(panels[k][i] > 0, panels[k][i], np.nan))
                - np.log10(np.where(dense[i] > 0, dense[i], np.nan)) for k in keys]
        evals = np.concatenate([np.abs(e[np.isfinite(e)]) for e in errs])
        m = float(np.percentile(evals, 98)) if evals.size else 1.0
        enorm = TwoSlopeNorm(0.0, -max(m, 1e-6), max(m, 1e-6))
        top, bottom = axes[2 * i], axes[2 * i + 1]
        for j, (k, arr) in enumerate(zip([*keys, "dense"], maps, strict=True)):
            im = top[j].imshow(np.ma.masked_invalid(arr), norm=norm, cmap="viridis",
                               extent=extent, interpolation="nearest")
            top[j].set_title(f"{el} — {labels.get(k, 'Dense map (hr)')}", fontsize=7)
        fig.colorbar(im, ax=list(top), shrink=0.8, label=f"{el} ({units.get(el, '')})")
        for j, e in enumerate(errs):
            ie = bottom[j].imshow(np.ma.masked_invalid(e), norm=enorm, cmap="RdBu_r",
                                  extent=extent, interpolation="nearest")
            rmse = float(np.sqrt(np.nanmean(e ** 2))) if np.isfinite(e).any() else math.nan
            bottom[j].set_title(f"{el} error, RMSE {rmse:.3f}", fontsize=7)
        bottom[-1].axis("off")
        fig.colorbar(ie, ax=list(bottom), shrink=0.8, label="log10(method) − log10(dense)")
    for ax in axes.ravel():
        ax.tick_params(labelsize=6)
        ax.ticklabel_format(useOffset=False, style="plain")
    for ax in axes[:, 1:].ravel():
        ax.set_yticklabels([])
    for ax in axes[0]:
        ax.set_ylabel("")
    axes[-1, 0].set_xlabel("Easting (km)", fontsize=7)
    axes[-1, 0].set_ylabel("Northing (km)", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_figure(ds: xr.Dataset, crops: Mapping[str, np.ndarray], dense: np.ndarray,
                 elements: Sequence[str], box: tuple[slice, slice], kriging_equals_lr: bool,
                 profile_name: str, path: Path) -> None:
    """Draw the comparison figure of the experiment into ``path``.

    Panels: the sparse map, IDW, ordinary kriging (unless it equals the sparse map),
    regression kriging and each network trained on all inputs, from ``crops`` (row key ->
    :func:`crop` of its map); ``dense`` is the crop of the dense map.
    """
    labels: dict[str, str] = {k: BASELINE_LABELS[k] for k in BASELINES if k != "kriging"}
    labels |= {row_key(n, INPUT_SETS[0]): f"{NETWORK_LABELS[n]} (all inputs)"
               for n in NETWORKS}
    labels["sparse"] = ("Sparse = ordinary kriging (lr)" if kriging_equals_lr
                        else labels["sparse"])
    panel_keys = [k for k in ("sparse", "idw", "regression_kriging") if k in crops]
    if not kriging_equals_lr:
        panel_keys.insert(2, "kriging")
        labels["kriging"] = BASELINE_LABELS["kriging"]
    panel_keys += [row_key(n, INPUT_SETS[0]) for n in NETWORKS]
    extent, _ = map_extent(ds[schema.HR].isel({schema.Y: box[0], schema.X: box[1]}))
    draw_figure({k: crops[k] for k in panel_keys}, labels, dense, elements,
                schema.units_of(ds), extent, path,
                f"One test block ({box[0].stop - box[0].start} x {box[1].stop - box[1].start} "
                f"cells; km, {ds.rio.crs}), profile {profile_name}")
