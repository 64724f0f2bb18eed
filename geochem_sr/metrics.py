"""Scores of a super-resolved map against the dense survey.

The numbers follow the data convention (``docs/design.md``):

PSNR, SSIM
    per element, on log10 maps min-max normalised per element over the evaluated region
    (the union of the windows' cells where the dense map is known), so the data range is
    1. The *same* affine map, taken from the dense (reference) map, is applied to the
    prediction; predictions outside the reference range are not clipped. Computed per
    window (test patch) and element; the table reports the maximum and the average over
    windows, as the paper's Table 6 does.
RMSE
    over the evaluated cells, in log10 and in original units.
Anomaly agreement
    IoU of the cells above the 85th / 95th percentile of the dense map (over the evaluated
    cells), the predicted map thresholded at the same value as the dense map.

NaN cells (no dense value, or no prediction) are excluded, never filled into the scores:

* PSNR of a window is ``10 log10(1 / MSE)`` over its cells known in both maps (equal to
  scikit-image's ``peak_signal_noise_ratio`` with ``data_range=1`` on complete windows);
  identical windows (MSE 0) score :data:`PSNR_CAP` (100 dB) instead of infinity, so
  averages stay finite.
* SSIM of a window is the mean of scikit-image's SSIM map (``structural_similarity``,
  ``data_range=1``, 7 x 7 uniform window, ``full=True``) over the cells whose whole 7 x 7
  neighbourhood is known, inside the border that scikit-image itself leaves out; on a
  complete window this is exactly scikit-image's value. NaN cells are filled (with the
  window's mean) only to run the filter: no score reads a filled cell.
* A window with no scorable cell is left out of the maximum and the average.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import ParameterError, SchemaError

__all__ = [
    "compare_with_sparse",
    "PSNR_CAP",
    "SSIM_WIN",
    "COLUMNS",
    "psnr",
    "ssim",
    "anomaly_iou",
    "evaluate",
    "table_row",
]

#: PSNR given to identical windows (MSE 0), in dB (data range 1: MSE 1e-10).
PSNR_CAP = 100.0
#: Side of SSIM's local window (scikit-image's default).
SSIM_WIN = 7
#: Score columns of :func:`evaluate`, in order.
COLUMNS: tuple[str, ...] = (
    "psnr_max", "psnr_avg", "ssim_max", "ssim_avg", "rmse_log10", "rmse", "iou85", "iou95",
    "n_patches", "n_cells",
)

Window = tuple[slice, slice]


# --------------------------------------------------------------------------- per window
def psnr(truth: np.ndarray, pred: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB over the cells finite in both arrays; NaN if there is none.

    Equal to ``skimage.metrics.peak_signal_noise_ratio`` on complete arrays, capped at
    :data:`PSNR_CAP` for identical ones.
    """
    t, p = np.asarray(truth, np.float64), np.asarray(pred, np.float64)
    ok = np.isfinite(t) & np.isfinite(p)
    if not ok.any():
        return float("nan")
    mse = float(np.mean((t[ok] - p[ok]) ** 2))
    floor = data_range**2 * 10 ** (-PSNR_CAP / 10)
    return float(10 * np.log10(data_range**2 / max(mse, floor)))


def ssim(truth: np.ndarray, pred: np.ndarray, data_range: float = 1.0) -> float:
    """SSIM of two 2-D arrays, NaN-aware (see the module notes); NaN if nothing to score.

    Equal to ``skimage.metrics.structural_similarity(truth, pred, data_range=data_range)``
    on complete arrays of at least 7 x 7 cells.
    """
    from scipy import ndimage
    from skimage.metrics import structural_similarity

    t, p = np.asarray(truth, np.float64), np.asarray(pred, np.float64)
    if t.ndim != 2 or t.shape != p.shape:
        raise ParameterError(
            f"ssim: expected two 2-D arrays of one shape, found {t.shape}, {p.shape}")
    if min(t.shape) < SSIM_WIN:
        return float("nan")
    ok = np.isfinite(t) & np.isfinite(p)
    if ok.all():
        return float(structural_similarity(t, p, data_range=data_range, win_size=SSIM_WIN))
    pad = (SSIM_WIN - 1) // 2
    usable = ndimage.binary_erosion(ok, np.ones((SSIM_WIN, SSIM_WIN), bool))
    usable[:pad], usable[-pad:], usable[:, :pad], usable[:, -pad:] = False, False, False, False
    if not usable.any():
        return float("nan")
    fill = float(t[ok].mean())
    _, smap = structural_similarity(
        np.where(ok, t, fill), np.where(ok, p, fill), data_range=data_range,
        win_size=SSIM_WIN, full=True,
    )
    return float(smap[usable].mean(dtype=np.float64))


def anomaly_iou(truth: np.ndarray, pred: np.ndarray, q: float) -> float:
    """IoU of the cells above the ``q``-th percentile of ``truth`` in both maps.

    Parameters
    ----------
    truth, pred : numpy.ndarray
        Values of the evaluated cells (any shape), NaN excluded.
    q : float
        Percentile (e.g. 85, 95) of ``truth``; the threshold applies to both maps.

    Returns
    -------
    float
        ``|A & B| / |A | B|``; 1 for identical maps, 0 for disjoint anomalies, NaN when
        neither map has a cell above the threshold.
    """
    t, p = np.asarray(truth, np.float64), np.asarray(pred, np.float64)
    ok = np.isfinite(t) & np.isfinite(p)
    if not ok.any():
        return float("nan")
    t, p = t[ok], p[ok]
    thr = np.percentile(t, q)
    a, b = t > thr, p > thr
    union = int((a | b).sum())
    return float("nan") if union == 0 else float((a & b).sum() / union)


# --------------------------------------------------------------------------- evaluate
def _as_maps(obj: xr.Dataset | xr.DataArray, var: str, what: str) -> xr.DataArray:
    if isinstance(obj, xr.Dataset):
        if var not in obj.data_vars:
            raise SchemaError(
                f"{what}: expected variable '{var}', found {sorted(map(str, obj.data_vars))}"
            )
        obj = obj[var]
    if not isinstance(obj, xr.DataArray):
        raise SchemaError(f"{what}: expected an xarray Dataset or DataArray, found {type(obj)}")
    if set(obj.dims) != {schema.ELEMENT, schema.Y, schema.X}:
        raise SchemaError(f"{what}: expected dims ('element', 'y', 'x'), found {obj.dims}")
    return obj.transpose(schema.ELEMENT, schema.Y, schema.X)


def _log10(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, np.log10(np.where(a > 0, a, 1.0)), np.nan)


def _bounds(w: Window, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(row start, row stop, col start, col stop) of a window, clipped to the grid."""
    (a, b, _), (c, d, _) = w[0].indices(shape[0]), w[1].indices(shape[1])
    if b <= a or d <= c:
        raise ParameterError(f"windows: expected non-empty windows inside {shape}, found {w}")
    return a, b, c, d


def _element_scores(
    t: np.ndarray, p: np.ndarray, region: np.ndarray, windows: Sequence[Window]
) -> dict[str, float]:
    """Scores of one element: ``t``, ``p`` original units (y, x); region = evaluated cells."""
    lt, lp = _log10(t), _log10(p)
    known = region & np.isfinite(lt)
    both = known & np.isfinite(lp)
    row: dict[str, float] = dict.fromkeys(COLUMNS, float("nan"))
    row["n_cells"] = int(both.sum())
    if known.any():
        lo, hi = float(lt[known].min()), float(lt[known].max())
        span = hi - lo if hi > lo else 1.0
        nt = np.where(known, (lt - lo) / span, np.nan)
        np_ = np.where(region, (lp - lo) / span, np.nan)
        ps, ss = [], []
        for rows, cols in windows:
            ps.append(psnr(nt[rows, cols], np_[rows, cols]))
            ss.append(ssim(nt[rows, cols], np_[rows, cols]))
        ps_a, ss_a = np.asarray(ps, float), np.asarray(ss, float)
        row["n_patches"] = int(np.isfinite(ps_a).sum())
        if np.isfinite(ps_a).any():
            row["psnr_max"], row["psnr_avg"] = float(np.nanmax(ps_a)), float(np.nanmean(ps_a))
        if np.isfinite(ss_a).any():
            row["ssim_max"], row["ssim_avg"] = float(np.nanmax(ss_a)), float(np.nanmean(ss_a))
    if both.any():
        row["rmse_log10"] = float(np.sqrt(np.mean((lp[both] - lt[both]) ** 2)))
        row["rmse"] = float(np.sqrt(np.mean((p[both].astype(float) - t[both]) ** 2)))
        row["iou85"] = anomaly_iou(t[both], p[both], 85)
        row["iou95"] = anomaly_iou(t[both], p[both], 95)
    return row


def evaluate(
    ds_or_truth: xr.Dataset | xr.DataArray,
    pred: xr.Dataset | xr.DataArray,
    elements: Sequence[str] | None = None,
    windows: Sequence[Window] | None = None,
    reference: str = schema.HR,
) -> pd.DataFrame:
    """Score a prediction against the dense map, per element.

    Parameters
    ----------
    ds_or_truth : xarray.Dataset or xarray.DataArray
        A survey dataset (its ``reference`` variable is the truth) or the truth itself
        ``(element, y, x)`` in original units.
    pred : xarray.DataArray or xarray.Dataset
        The prediction ``(element, y, x)`` in original units, or a Dataset with
        ``hr_pred``. Same grid as the truth.
    elements : sequence of str, optional
        Elements to score (default: those of ``pred``).
    windows : sequence of (slice, slice), optional
        Windows (e.g. ``TrainingData.test_windows``) in grid indices: PSNR/SSIM are
        computed per window, the other scores over the union of their cells. Default:
        the whole grid as one window (then maximum = average).
    reference : str, default ``"hr"``
        Variable of ``ds_or_truth`` to compare with.

    Returns
    -------
    pandas.DataFrame
        Index ``element`` — one row per element, then a row ``"mean"`` (average over
        elements) — and columns :data:`COLUMNS`: ``psnr_max``, ``psnr_avg``, ``ssim_max``,
        ``ssim_avg``, ``rmse_log10``, ``rmse``, ``iou85``, ``iou95``, ``n_patches``
        (windows scored), ``n_cells`` (cells known in both maps). Units in ``df.attrs``.

    Raises
    ------
    SchemaError
        A variable or an element is missing, or the dims are wrong.
    GridError
        The prediction is on another grid.
    """
    truth = _as_maps(ds_or_truth, reference, "truth")
    pred_da = _as_maps(pred, schema.HR_PRED, "pred")
    schema.check_same_grid(truth, pred_da, "pred vs truth")
    if elements is None:
        elements = [str(e) for e in pred_da[schema.ELEMENT].values]
    elements = [str(e) for e in elements]
    for name, da in (("truth", truth), ("pred", pred_da)):
        have = [str(e) for e in da[schema.ELEMENT].values]
        missing = [e for e in elements if e not in have]
        if missing:
            raise SchemaError(f"{name}: expected elements {missing}, found {have}")
    shape = (truth.sizes[schema.Y], truth.sizes[schema.X])
    if windows is None:
        windows = [(slice(0, shape[0]), slice(0, shape[1]))]
    windows = list(windows)
    if not windows:
        raise ParameterError("windows: expected at least one window, found none")
    bounds = [_bounds(w, shape) for w in windows]
    r0, c0 = min(b[0] for b in bounds), min(b[2] for b in bounds)
    r1, c1 = max(b[1] for b in bounds), max(b[3] for b in bounds)
    box = {schema.Y: slice(r0, r1), schema.X: slice(c0, c1)}
    sel = {schema.ELEMENT: elements}
    import dask  # load only the windows' bounding box, both maps in one compute

    t_all, p_all = dask.compute(truth.sel(sel).isel(box).data, pred_da.sel(sel).isel(box).data)
    local = [(slice(a - r0, b - r0), slice(c - c0, d - c0)) for a, b, c, d in bounds]
    region = np.zeros((r1 - r0, c1 - c0), bool)
    for rows, cols in local:
        region[rows, cols] = True
    rows_out = [_element_scores(np.asarray(t_all[i]), np.asarray(p_all[i]), region, local)
                for i in range(len(elements))]
    df = pd.DataFrame(rows_out, index=pd.Index(elements, name=schema.ELEMENT),
                      columns=list(COLUMNS))
    df.loc["mean"] = df.mean(numeric_only=True)
    units = schema.units_of(truth.to_dataset(name="truth"))
    df.attrs = {
        "psnr": "dB, log10 maps min-max normalised per element over the evaluated cells",
        "psnr_cap": PSNR_CAP,
        "ssim_window": SSIM_WIN,
        "rmse_log10": "log10 units",
        "rmse": "original units: " + ", ".join(f"{e} {units.get(e, '?')}" for e in elements),
        "n_windows": len(windows),
        "reference": reference,
    }
    return df


def table_row(df: pd.DataFrame) -> dict[str, float]:
    """Average the scores over elements: one row of the experiment table.

    Parameters
    ----------
    df : pandas.DataFrame
        From :func:`evaluate` (its ``"mean"`` row, if present, is ignored and recomputed).

    Returns
    -------
    dict
        Column -> mean over elements (NaN ignored), for the columns of :data:`COLUMNS`
        present in ``df``.
    """
    per_element = df.drop(index="mean", errors="ignore")
    cols = [c for c in COLUMNS if c in per_element.columns]
    return {c: float(per_element[c].mean()) for c in cols}


def compare_with_sparse(ds: xr.Dataset, pred: xr.Dataset | xr.DataArray,
                        windows: Sequence[Window] | None = None,
                        columns: Sequence[str] = ("psnr_avg", "ssim_avg", "rmse_log10",
                                                  "iou95")) -> pd.DataFrame:
    """The sparse map's scores beside the prediction's, and the gain, per element.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset with ``lr`` and ``hr``.
    pred : xarray.Dataset or xarray.DataArray
        The prediction (``hr_pred``), as for :func:`evaluate`.
    windows : sequence of (slice, slice), optional
        Where to score (e.g. a model's test blocks:
        :func:`geochem_sr.trust.training_roles`); default the whole grid.
    columns : sequence of str
        Scores of :func:`evaluate` to show.

    Returns
    -------
    pandas.DataFrame
        Columns ``("sparse map", c)`` and ``("prediction", c)`` for each score ``c``, and
        ``("", "gain")`` = 1 - RMSE(prediction) / RMSE(sparse map) (log10); rows the
        elements and ``"mean"``.
    """
    cols = list(columns)
    pred_da = _as_maps(pred, schema.HR_PRED, "pred")
    elements = [str(e) for e in pred_da[schema.ELEMENT].values]
    sparse = evaluate(ds, ds[schema.LR], elements=elements, windows=windows)
    predicted = evaluate(ds, pred_da, elements=elements, windows=windows)
    table = pd.concat({"sparse map": sparse[cols], "prediction": predicted[cols]}, axis=1)
    table[("", "gain")] = 1 - predicted["rmse_log10"] / sparse["rmse_log10"]
    return table

