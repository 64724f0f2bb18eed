"""Metrics: PSNR, SSIM (vs scikit-image), RMSE, anomaly IoU and the evaluate table."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from geochem_sr import schema
from geochem_sr.errors import GridError, SchemaError
from geochem_sr.metrics import (
    COLUMNS,
    PSNR_CAP,
    anomaly_iou,
    evaluate,
    psnr,
    ssim,
    table_row,
)

ELEMENTS = ("As", "Au")


def truth_ds(ny: int = 64, nx: int = 64, seed: int = 0) -> xr.Dataset:
    """Dense maps whose log10 spans exactly [0, 1] per element (normalisation = identity)."""
    rng = np.random.default_rng(seed)
    g = schema.make_grid((500000, 4000000, 500000 + nx * 50, 4000000 + ny * 50), 50.0,
                         "EPSG:32650")
    logs = rng.uniform(0, 1, (len(ELEMENTS), ny, nx))
    logs[:, 0, 0], logs[:, 0, 1] = 0.0, 1.0
    hr = (10.0**logs).astype("float64")
    return g.assign(hr=((schema.ELEMENT, schema.Y, schema.X), hr)).assign_coords(
        {schema.ELEMENT: list(ELEMENTS),
         schema.ELEMENT_UNITS: (schema.ELEMENT, ["ppm", "ppb"])})


# ----------------------------------------------------------------------------- per window
def test_psnr_matches_skimage_and_is_capped_for_identical():
    rng = np.random.default_rng(1)
    t = rng.uniform(0, 1, (32, 32))
    p = t + rng.normal(0, 0.05, t.shape)
    assert psnr(t, p) == pytest.approx(peak_signal_noise_ratio(t, p, data_range=1.0), rel=1e-12)
    assert psnr(t, t) == PSNR_CAP
    assert psnr(t, t + 0.1) == pytest.approx(20.0)  # MSE 0.01 -> 20 dB
    q = p.copy()
    q[:4] = np.nan
    assert psnr(t, q) == pytest.approx(peak_signal_noise_ratio(t[4:], p[4:], data_range=1.0))
    assert np.isnan(psnr(t, np.full_like(t, np.nan)))


def test_ssim_matches_skimage_and_is_one_for_identical():
    rng = np.random.default_rng(2)
    t = rng.uniform(0, 1, (32, 32))
    p = np.clip(t + rng.normal(0, 0.1, t.shape), 0, 1)
    assert ssim(t, p) == pytest.approx(structural_similarity(t, p, data_range=1.0), rel=1e-12)
    assert ssim(t, t) == pytest.approx(1.0, abs=1e-12)
    assert ssim(t, 1 - t) < 0  # anti-correlated
    assert np.isnan(ssim(t[:5, :5], p[:5, :5]))  # smaller than the 7 x 7 window


def test_ssim_with_nan_reads_no_filled_cell():
    rng = np.random.default_rng(3)
    t = rng.uniform(0, 1, (32, 32))
    p = np.clip(t + rng.normal(0, 0.1, t.shape), 0, 1)
    t_nan = t.copy()
    t_nan[10:14, 20:25] = np.nan
    p_other = p.copy()
    p_other[10:14, 20:25] = rng.uniform(0, 1, (4, 5))  # differs only where truth is NaN
    s = ssim(t_nan, p)
    assert np.isfinite(s)
    assert ssim(t_nan, p_other) == s
    # = skimage's map averaged over the cells whose 7 x 7 window is complete
    _, smap = structural_similarity(t, p, data_range=1.0, full=True)
    usable = np.zeros_like(t, bool)
    usable[3:-3, 3:-3] = True
    usable[10 - 3:14 + 3, 20 - 3:25 + 3] = False
    assert s == pytest.approx(smap[usable].mean(), rel=1e-12)


def test_anomaly_iou_identical_disjoint_and_known():
    t = np.arange(100.0)
    assert anomaly_iou(t, t, 85) == 1.0
    assert anomaly_iou(t, t[::-1], 85) == 0.0           # anomalies at the other end
    p = t.copy()
    p[95:] = 0.0                                          # misses half of the top 10
    p[:5] = 1000.0                                        # and adds 5 false cells
    assert anomaly_iou(t, p, 90) == pytest.approx(5 / 15)
    assert np.isnan(anomaly_iou(np.ones(10), np.ones(10), 95))  # nothing above


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_identical_gives_perfect_scores_and_documented_columns():
    ds = truth_ds()
    df = evaluate(ds, ds.hr)
    assert list(df.columns) == list(COLUMNS)
    assert list(df.index) == [*ELEMENTS, "mean"] and df.index.name == "element"
    for col, value in {"psnr_max": PSNR_CAP, "psnr_avg": PSNR_CAP, "ssim_max": 1.0,
                       "ssim_avg": 1.0, "rmse_log10": 0.0, "rmse": 0.0, "iou85": 1.0,
                       "iou95": 1.0}.items():
        np.testing.assert_allclose(df[col].to_numpy(float), value, atol=1e-12)
    assert (df["n_patches"] == 1).all() and (df["n_cells"] == 64 * 64).all()
    assert "As ppm" in df.attrs["rmse"] and "Au ppb" in df.attrs["rmse"]


def test_evaluate_known_values_per_window():
    ds = truth_ds()
    pred = (ds.hr * 10**0.1).rename("hr_pred")  # +0.1 in log10 everywhere
    windows = [(slice(0, 32), slice(0, 32)), (slice(32, 64), slice(16, 48))]
    df = evaluate(ds, pred.to_dataset(), windows=windows)
    np.testing.assert_allclose(df["psnr_max"], 20.0, rtol=1e-9)
    np.testing.assert_allclose(df["psnr_avg"], 20.0, rtol=1e-9)
    np.testing.assert_allclose(df["rmse_log10"], 0.1, rtol=1e-9)
    assert (df["n_patches"] == 2).all() and (df["n_cells"] == 2 * 32 * 32).all()
    # SSIM per window and element = skimage on the log10 maps normalised over the windows
    logs = np.log10(ds.hr.values)
    region = np.zeros((64, 64), bool)
    for r, c in windows:
        region[r, c] = True
    for i, el in enumerate(ELEMENTS):
        lo, hi = logs[i][region].min(), logs[i][region].max()
        scores = [structural_similarity((logs[i][r, c] - lo) / (hi - lo),
                                        (logs[i][r, c] + 0.1 - lo) / (hi - lo), data_range=1.0)
                  for r, c in windows]
        assert df.loc[el, "ssim_max"] == pytest.approx(max(scores), rel=1e-9)
        assert df.loc[el, "ssim_avg"] == pytest.approx(np.mean(scores), rel=1e-9)
        t = ds.hr.values[i][region]
        assert df.loc[el, "rmse"] == pytest.approx(np.sqrt(np.mean((t * 10**0.1 - t) ** 2)))
    row = table_row(df)
    assert set(row) == set(COLUMNS)
    assert row["rmse_log10"] == pytest.approx(0.1)
    assert row["ssim_avg"] == pytest.approx(df.loc[list(ELEMENTS), "ssim_avg"].mean())


def test_evaluate_handles_nan_dask_and_element_choice():
    ds = truth_ds(seed=5)
    rng = np.random.default_rng(5)
    pred = ds.hr * rng.lognormal(sigma=0.1, size=ds.hr.shape)
    ds["hr"][:, :10, :] = np.nan       # dense survey missing in the north
    pred[:, 30:33, 30:33] = np.nan      # prediction missing somewhere
    df = evaluate(ds, pred)
    assert np.isfinite(df[list(COLUMNS)].to_numpy(float)).all()
    assert (df.loc[list(ELEMENTS), "n_cells"] == 64 * 64 - 640 - 9).all()
    lazy = evaluate(ds.chunk({"y": 16}), pred.chunk({"x": 16}))
    np.testing.assert_allclose(lazy.to_numpy(float), df.to_numpy(float), rtol=1e-12)
    only = evaluate(ds, pred, elements=["Au"])
    assert list(only.index) == ["Au", "mean"]
    np.testing.assert_allclose(only.loc["Au"].to_numpy(float), df.loc["Au"].to_numpy(float))


def test_evaluate_rejects_bad_inputs():
    ds = truth_ds()
    with pytest.raises(SchemaError, match="Mo"):
        evaluate(ds, ds.hr, elements=["Mo"])
    with pytest.raises(SchemaError, match="hr_pred"):
        evaluate(ds, ds)
    with pytest.raises(SchemaError, match="lr"):
        evaluate(ds, ds.hr, reference="lr")
    with pytest.raises(GridError):
        evaluate(ds, ds.hr.isel(x=slice(1, None)))
