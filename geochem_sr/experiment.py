"""The paper's experiment (Pei et al. 2025, Table 6) with classical baselines, rerunnable.

:func:`run_experiment` answers two questions with one command (``geochem-sr experiment``):
does super-resolution beat what a geochemist uses today (kriging), and do topography and
geology really help?

What it does, in order:

1. Builds the synthetic region (:func:`geochem_sr.synthetic.synthetic_region`) and its
   survey dataset (:func:`geochem_sr.survey.build_survey`, ordinary kriging of both
   surveys, terrain, geology embedding).
2. Cuts it **once** into train / validation / test blocks
   (:class:`geochem_sr.patches.BlockSplitter`, with a gap between blocks of different
   roles). Every row of the table uses this split and is scored on the same test windows
   (``TrainingData.test_windows``, patches lying entirely inside test blocks).
3. Trains the four networks (SRCNN, VDSR, U-Net, multi-level U-Net) on each of the paper's
   three input sets (geochemistry; + topography; + geology embedding): 12 rows. Early
   stopping and the choice of weights use the validation blocks only. Each model predicts
   the whole grid through the toolkit's own tiled inference
   (:func:`geochem_sr.inference.super_resolve`, no uncertainty, no shrinkage).
4. Adds rows for what a geochemist would use instead, as maps on the same grid:

   * **sparse map** -- ``lr`` as built, the network's own starting point;
   * **IDW** of the sparse samples (16 neighbours, power 2);
   * **ordinary kriging** of the sparse samples (16 neighbours, variogram fitted per
     element) -- recomputed with :func:`geochem_sr.gridding.grid_samples`; with the survey
     built by kriging it equals ``lr``, which the results state and check;
   * **regression kriging** on terrain and geology (:func:`regression_kriging`): per
     element, a linear regression of log10 sparse-sample values on the covariates at the
     sample sites (elevation, slope, aspect sine/cosine, the geology word vector), then
     ordinary kriging of the regression residuals, added back to the trend on the grid.

5. Scores every map against the dense-survey map ``hr`` on the test windows
   (:func:`geochem_sr.metrics.evaluate`): PSNR and SSIM maximum / average over windows
   (the paper's layout), RMSE (log10) and anomaly IoU (85th / 95th percentile), per
   element and averaged; and the RMSE against the noise-free truth the synthetic region
   knows.
6. For the multi-level U-Net with each input set, the trust figures of
   :mod:`geochem_sr.trust`: do-no-harm shrinkage and calibrated uncertainty fitted on the
   validation blocks, gain and coverage at 1 and 2 std measured on the test blocks
   (:func:`geochem_sr.trust.calibrate`); with the ``gpu`` profile also the spatially
   cross-validated gain (:func:`geochem_sr.trust.cross_validate`).
7. Writes ``experiment-<profile>.md`` (tables, settings, timings, findings),
   ``experiment-<profile>.json`` (everything) and ``experiment-<profile>.png`` (one test
   block, Au and Cu: the sparse map, each method, the dense map on one colour scale, and
   the error maps).

Profiles (:data:`PROFILES`): ``smoke`` (seconds per row; tiny region and shrunken networks,
for the tests), ``cpu`` (the paper's networks, a 19.2 km region and few epochs, sized for
about an hour on 2 CPU cores) and ``gpu`` (the paper's settings: 1000 epochs, batch 32, a
25.6 km region). Everything is seeded: a rerun on the same machine gives the same table.

A hand-written analysis survives reruns: text placed between the markers
``<!-- findings-notes:start -->`` and ``<!-- findings-notes:end -->`` of an existing
results file is carried into the new one.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError, SchemaError

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd

    from geochem_sr.model_file import GeoSRModel
    from geochem_sr.patches import TrainingData

__all__ = [
    "NETWORKS",
    "NETWORK_LABELS",
    "INPUT_SETS",
    "TOOLKIT_INPUTS",
    "BASELINES",
    "BASELINE_LABELS",
    "TABLE_COLUMNS",
    "Profile",
    "PROFILES",
    "get_profile",
    "regression_kriging",
    "run_experiment",
    "render_results",
    "table_frame",
]

#: The networks of Table 6, in the paper's order.
NETWORKS: tuple[str, ...] = ("srcnn", "vdsr", "unet", "multilevel_unet")
NETWORK_LABELS: dict[str, str] = {
    "srcnn": "SRCNN", "vdsr": "VDSR", "unet": "U-Net", "multilevel_unet": "Multi-level U-Net",
}
#: The input sets of Table 6, in the paper's order (all inputs first).
INPUT_SETS: tuple[str, ...] = ("geochem+terrain+geology", "geochem+terrain", "geochem")
#: Input set of the toolkit-default row (every group the survey provides).
TOOLKIT_INPUTS = "auto"
TOOLKIT_LABEL = "Multi-level U-Net, all input groups, ensemble (toolkit)"
#: What a geochemist would use instead, in table order.
BASELINES: tuple[str, ...] = ("sparse", "idw", "kriging", "regression_kriging")
BASELINE_LABELS: dict[str, str] = {
    "sparse": "Sparse map as is (lr)",
    "idw": "IDW of sparse samples",
    "kriging": "Ordinary kriging of sparse samples",
    "regression_kriging": "Regression kriging (terrain + geology)",
}
_BASELINE_INPUTS = {"sparse": "geochem", "idw": "geochem", "kriging": "geochem",
                    "regression_kriging": "geochem+terrain+geology"}
#: Score columns of the main table (averages over elements), in order.
TABLE_COLUMNS: tuple[str, ...] = (
    "psnr_max", "psnr_avg", "ssim_max", "ssim_avg", "rmse_log10", "iou95",
)
_COLUMN_HEADERS = {"psnr_max": "PSNR max", "psnr_avg": "PSNR avg", "ssim_max": "SSIM max",
                   "ssim_avg": "SSIM avg", "rmse_log10": "RMSE (log10)", "iou95": "IoU95"}
_FORMATS = {"psnr_max": "{:.2f}", "psnr_avg": "{:.2f}", "ssim_max": "{:.3f}",
            "ssim_avg": "{:.3f}", "rmse_log10": "{:.4f}", "iou95": "{:.3f}", "iou85": "{:.3f}"}
_FIGURE_ELEMENTS = ("Au", "Cu")
_NOTES_START = "<!-- findings-notes:start -->"
_NOTES_END = "<!-- findings-notes:end -->"
_FORMAT = "geochem_sr.experiment/1"

Log = Callable[[str], None]


# =========================================================================== profiles
@dataclasses.dataclass(frozen=True)
class Profile:
    """Settings of one experiment profile (see :data:`PROFILES`).

    Attributes
    ----------
    name : str
        ``"smoke"``, ``"cpu"`` or ``"gpu"``.
    size_km : (float, float)
        Width and height of the synthetic region.
    epochs : int
        Maximum training epochs per network.
    patience : int or None
        Early stopping: epochs without a better validation loss (None: all epochs).
    batch_size, patch_size, stride : int
        Training batch; patch side and step between patches, in cells.
    block_cells : int
        Side of the spatial blocks of the split, in cells.
    gap : int
        Cells between blocks of different roles.
    fractions : (float, float, float)
        Shares of train, validation and test cells.
    lr : float
        Adam learning rate of the paper's rows (Table 5: 1e-3).
    lr_step : int
        The learning rate is halved every ``lr_step`` epochs (the paper: 40).
    toolkit_row : bool
        Also train the toolkit's default: the multi-level U-Net on every input group the
        survey provides (``inputs="auto"``: + fault and contact distances + the ``unseen``
        channels) with the toolkit's learning rate, on the same split.
    toolkit_ensemble : int
        Networks averaged in the toolkit row (``train(ensemble=...)``).
    loss : str
        Training loss (:func:`geochem_sr.losses.get_loss`; the toolkit's default ``"mse"``).
    target_scale : str or None
        Per-element standardisation of the training target (``train(target_scale=...)``;
        None: the raw log10 residual, the toolkit's default).
    model_kwargs : mapping
        Network name -> extra constructor arguments (empty: the paper's networks).
    cv_folds : int
        Folds of the spatial cross-validation of the multi-level U-Net (0: not run).
    k : int
        Neighbours of the IDW and kriging baselines.
    description : str
        One line for the results file.
    """

    name: str
    size_km: tuple[float, float]
    epochs: int
    patience: int | None
    batch_size: int = 32
    patch_size: int = 32
    stride: int = 16
    block_cells: int = 64
    gap: int = 4
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    lr: float = 1e-3
    lr_step: int = 40
    toolkit_row: bool = True
    toolkit_ensemble: int = 3
    loss: str = "mse"
    target_scale: str | None = None
    model_kwargs: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    cv_folds: int = 0
    k: int = 16
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings."""
        d = dataclasses.asdict(self)
        d["model_kwargs"] = {k: dict(v) for k, v in self.model_kwargs.items()}
        d["size_km"] = list(self.size_km)
        d["fractions"] = list(self.fractions)
        return d


_SMOKE_NETS = {
    "srcnn": {"features": 8, "kernel_sizes": [5, 1, 3]},
    "vdsr": {"depth": 3, "features": 8},
    "unet": {"base_channels": 4, "depth": 2},
    "multilevel_unet": {"base_channels": 4},
}

#: The three profiles.
PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", size_km=(3.2, 3.2), epochs=1, patience=None, patch_size=16, stride=4,
        block_cells=20, gap=0, model_kwargs=_SMOKE_NETS,
        description="layout and determinism check only: tiny region, 1 epoch, shrunken "
                    "networks; the numbers mean nothing",
    ),
    "cpu": Profile(
        name="cpu", size_km=(19.2, 19.2), epochs=40, patience=10,
        description="the paper's networks at full size on a 19.2 km region (384 x 384 cells "
                    "of 50 m), at most 40 epochs with early stopping (patience 10) instead "
                    "of 1000; sized for under an hour on 2 otherwise idle CPU cores (a "
                    "12.8 km region with 30 epochs took 17 min)",
    ),
    "gpu": Profile(
        name="gpu", size_km=(25.6, 25.6), epochs=1000, patience=None, cv_folds=5,
        description="the paper's settings (Table 5): 1000 epochs, batch 32, Adam 1e-3 halved "
                    "every 40 epochs, 32 x 32 patches, on a 25.6 km region; weights of the "
                    "best validation epoch; plus 5-fold spatial cross-validation of the "
                    "multi-level U-Net",
    ),
}


def get_profile(profile: str | Profile) -> Profile:
    """The :class:`Profile` named ``profile`` (or ``profile`` itself).

    Raises
    ------
    SchemaError
        Unknown profile name.
    """
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise SchemaError(f"profile: expected one of {sorted(PROFILES)}, found {profile!r}")
    return PROFILES[profile]


# =========================================================================== small helpers
def _stderr(msg: str) -> None:
    print(f"[experiment {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _grid_of(ds: xr.Dataset) -> xr.Dataset:
    """The bare grid of a survey dataset: x, y and CRS."""
    grid = xr.Dataset(coords={schema.Y: ds[schema.Y], schema.X: ds[schema.X]})
    if schema.SPATIAL_REF in ds.coords:
        grid = grid.assign_coords({schema.SPATIAL_REF: ds[schema.SPATIAL_REF]})
    return grid


def _as_pred(conc: xr.DataArray, ds: xr.Dataset, elements: Sequence[str]) -> xr.DataArray:
    """A concentration map (element, y, x) on the grid of ``ds``, named ``hr_pred``."""
    da = conc.sel({schema.ELEMENT: list(elements)}).transpose(schema.ELEMENT, schema.Y, schema.X)
    out = xr.DataArray(
        np.asarray(da.values, dtype=np.float32), dims=(schema.ELEMENT, schema.Y, schema.X),
        coords={schema.ELEMENT: list(elements), schema.Y: ds[schema.Y], schema.X: ds[schema.X]},
        name=schema.HR_PRED,
    )
    if schema.ELEMENT_UNITS in ds.coords:
        out = out.assign_coords({schema.ELEMENT_UNITS: ds[schema.ELEMENT_UNITS].sel(
            {schema.ELEMENT: list(elements)})})
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, int | str | bool) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _fmt(v: Any, col: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return _FORMATS.get(col, "{:.3f}").format(float(v))


def _machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover - not Linux
        pass
    return info


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        return None


# =========================================================================== data
def _build(profile: Profile, seed: int) -> tuple[Any, xr.Dataset]:
    """The synthetic region and its survey dataset (kriged maps, terrain, geology)."""
    from geochem_sr.survey import build_survey
    from geochem_sr.synthetic import synthetic_region

    region = synthetic_region(seed=seed, size_km=tuple(profile.size_km))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds = build_survey(region.samples_sparse, region.samples_dense, dem=region.dem,
                          geology=region.geology, faults=region.faults,
                          cell_size=region.cell_size, method="kriging", k=profile.k, seed=seed)
    return region, ds


def _training_data(ds: xr.Dataset, profile: Profile, seed: int) -> dict[str, TrainingData]:
    """Patches of every input set on ONE block split; their test windows must agree."""
    from geochem_sr.patches import BlockSplitter, prepare_training_data

    splitter = BlockSplitter(block_size=int(profile.block_cells), fractions=profile.fractions,
                             gap=profile.gap, seed=seed)
    out: dict[str, TrainingData] = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*narrower than the patch size.*")
        for inputs in (*INPUT_SETS, TOOLKIT_INPUTS) if profile.toolkit_row else INPUT_SETS:
            out[inputs] = prepare_training_data(ds, inputs, splitter=splitter,
                                                patch_size=profile.patch_size,
                                                stride=profile.stride, seed=seed)
    ref = out[INPUT_SETS[0]]
    for inputs, data in out.items():
        same = (data.test_windows == ref.test_windows and data.train_windows ==
                ref.train_windows and np.array_equal(data.roles.values, ref.roles.values))
        if not same:  # pragma: no cover - a bug in patches if it happens
            raise DataError(f"split: input set {inputs!r} got other blocks or windows than "
                            f"{INPUT_SETS[0]!r}; every row must share one split")
    return out


def _split_summary(data: TrainingData) -> dict[str, Any]:
    from geochem_sr.patches import ROLE_NAMES

    codes = np.asarray(data.roles.values)
    return {
        "cells": {ROLE_NAMES[c]: int((codes == c).sum()) for c in (1, 2, 3)},
        "patches": {"train": len(data.train_windows), "val": len(data.val_windows),
                    "test": len(data.test_windows)},
        "block_size_cells": list(data.roles.attrs.get("block_size_cells", [])),
        "gap_cells": int(data.roles.attrs.get("gap_cells", 0)),
        "seed": int(data.roles.attrs.get("seed", 0)),
    }


# =========================================================================== baselines
def _site_cells(xy: np.ndarray, ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column of the grid cell holding each site; and whether it is on the grid."""
    x = np.asarray(ds[schema.X].values, float)
    y = np.asarray(ds[schema.Y].values, float)
    dx, dy = x[1] - x[0], y[1] - y[0]
    col = np.rint((xy[:, 0] - x[0]) / dx).astype(int)
    row = np.rint((xy[:, 1] - y[0]) / dy).astype(int)
    ok = (col >= 0) & (col < x.size) & (row >= 0) & (row < y.size)
    return np.clip(row, 0, y.size - 1), np.clip(col, 0, x.size - 1), ok


def _covariate_names(ds: xr.Dataset) -> list[str]:
    from geochem_sr.channels import ASPECT_COS, ASPECT_SIN

    names = [schema.ELEVATION, schema.SLOPE, ASPECT_SIN, ASPECT_COS]
    if schema.GEOLOGY_EMBEDDING in ds.data_vars:
        names += [f"{schema.EMBEDDING}:{i}" for i in range(ds.sizes[schema.EMBEDDING])]
    return names


def regression_kriging(
    samples: gpd.GeoDataFrame,
    ds: xr.Dataset,
    *,
    elements: Sequence[str] | None = None,
    k: int = 16,
    seed: int = 0,
) -> tuple[xr.DataArray, dict[str, Any]]:
    """Regression kriging of point samples on the terrain and geology of a survey dataset.

    For each element: ordinary least squares of the log10 sample values on the covariates
    read at the sample sites (the grid cell holding the site), the covariates being
    elevation, slope, aspect as sine and cosine (flat cells 0, as the networks see them)
    and the geology word vector, each standardised over the sites; then ordinary kriging
    (:func:`geochem_sr.gridding.grid_samples`, local neighbourhood of ``k`` samples,
    variogram fitted to the residuals) of the regression residuals; the map is
    ``10 ** (trend + kriged residual)``. Where a covariate is missing on the grid (e.g.
    no geological unit at the border) its standardised value is taken as 0, the mean of
    the sites. Sites with a missing covariate are left out of the fit and of the kriging.

    Parameters
    ----------
    samples : geopandas.GeoDataFrame
        Point samples with numeric element columns (censored values parsed, e.g. by
        :func:`geochem_sr.io.read_samples`), in the CRS of ``ds``.
    ds : xarray.Dataset
        Survey dataset with ``elevation``, ``slope``, ``aspect`` and, optionally,
        ``geology_embedding``.
    elements : sequence of str, optional
        Elements to map (default: those of ``ds``).
    k : int, default 16
        Kriging neighbours.
    seed : int, default 0
        Seed of the variogram fit's pair subsample.

    Returns
    -------
    (xarray.DataArray, dict)
        The map ``(element, y, x)`` in original units, NaN outside the kriging coverage;
        and per element the regression: ``coefficients`` (per standardised covariate),
        ``intercept``, ``r2`` over the sites, ``n_sites``.

    Raises
    ------
    SchemaError
        A covariate is missing from ``ds``.
    DataError
        An element has fewer usable sites than covariates + 2.
    """
    import geopandas as gpd

    from geochem_sr.channels import stack_inputs
    from geochem_sr.gridding import grid_samples

    elements = [str(e) for e in (elements or ds[schema.ELEMENT].values)]
    names = _covariate_names(ds)
    cov = np.asarray(stack_inputs(ds, names).values, np.float64)  # (C, y, x)
    xy = np.column_stack([samples.geometry.x.to_numpy(), samples.geometry.y.to_numpy()])
    row, col, on_grid = _site_cells(xy, ds)
    at_sites = cov[:, row, col].T  # (n, C)
    usable = on_grid & np.isfinite(at_sites).all(axis=1)
    mean = at_sites[usable].mean(axis=0)
    std = at_sites[usable].std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    xs = (at_sites - mean) / std
    grid_std = np.nan_to_num((cov - mean[:, None, None]) / std[:, None, None], nan=0.0)

    resid = {}
    trend = np.empty((len(elements), *cov.shape[1:]), np.float64)
    info: dict[str, Any] = {"covariates": names}
    for i, el in enumerate(elements):
        v = samples[el].to_numpy(dtype=float)
        z = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
        fit = usable & np.isfinite(z)
        if fit.sum() < len(names) + 2:
            raise DataError(f"regression kriging: element '{el}' has {int(fit.sum())} usable "
                            f"sites, expected at least {len(names) + 2}")
        a = np.column_stack([np.ones(int(fit.sum())), xs[fit]])
        beta, *_ = np.linalg.lstsq(a, z[fit], rcond=None)
        pred_sites = a @ beta
        ss_res = float(((z[fit] - pred_sites) ** 2).sum())
        ss_tot = float(((z[fit] - z[fit].mean()) ** 2).sum())
        r = np.full(z.shape, np.nan)
        r[fit] = z[fit] - pred_sites
        resid[el] = 10.0 ** r
        trend[i] = beta[0] + np.tensordot(beta[1:], grid_std, axes=1)
        info[el] = {"intercept": float(beta[0]),
                    "coefficients": dict(zip(names, map(float, beta[1:]), strict=True)),
                    "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan,
                    "n_sites": int(fit.sum())}
    frame = gpd.GeoDataFrame(resid, geometry=samples.geometry.values, crs=samples.crs)
    frame.attrs["units"] = {el: "1" for el in elements}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        kriged = grid_samples(frame, _grid_of(ds), elements=elements, method="kriging", k=k,
                              seed=seed)
    res = np.asarray(kriged["concentration"].transpose(schema.ELEMENT, schema.Y, schema.X)
                     .values, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = 10.0 ** (trend + np.log10(res))
    out = _as_pred(xr.DataArray(values, dims=(schema.ELEMENT, schema.Y, schema.X),
                                coords={schema.ELEMENT: elements}), ds, elements)
    out.attrs = {"long_name": "regression kriging of the sparse samples",
                 "covariates": ", ".join(names)}
    return out, info


def _baselines(region: Any, ds: xr.Dataset, profile: Profile, seed: int, log: Log
               ) -> tuple[dict[str, xr.DataArray], dict[str, Any]]:
    """Maps of the four classical baselines and what they are."""
    from geochem_sr import io
    from geochem_sr.gridding import grid_samples

    elements = [str(e) for e in ds[schema.ELEMENT].values]
    sparse = io.read_samples(region.samples_sparse, elements,
                             censored=ds.attrs.get(schema.ATTR_CENSORING, "half"),
                             target_crs=ds.rio.crs)
    maps: dict[str, xr.DataArray] = {}
    info: dict[str, Any] = {}
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    maps["sparse"] = _as_pred(ds[schema.LR], ds, elements)
    info["sparse"] = {"what": f"lr as built by build_survey ({ds.attrs.get('gridding_method')})"}
    seconds["sparse"] = time.perf_counter() - t0
    for key, method in (("idw", "idw"), ("kriging", "kriging")):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = grid_samples(sparse, _grid_of(ds), elements=elements, method=method,
                               k=profile.k, seed=seed)
        maps[key] = _as_pred(out["concentration"], ds, elements)
        info[key] = {"what": f"{method} of the {len(sparse)} sparse samples, k={profile.k}"}
        if method == "kriging":
            info[key]["variograms"] = out.attrs.get("variograms")
        seconds[key] = time.perf_counter() - t0
        log(f"baseline {key}: {seconds[key]:.1f} s")
    same = np.array_equal(np.asarray(maps["kriging"].values), np.asarray(maps["sparse"].values),
                          equal_nan=True)
    info["kriging"]["equals_lr"] = bool(same)
    t0 = time.perf_counter()
    maps["regression_kriging"], info["regression_kriging"] = regression_kriging(
        sparse, ds, elements=elements, k=profile.k, seed=seed)
    seconds["regression_kriging"] = time.perf_counter() - t0
    log(f"baseline regression_kriging: {seconds['regression_kriging']:.1f} s")
    for key in maps:
        info[key]["seconds"] = seconds[key]
    return maps, info


# =========================================================================== scoring
def _truth_on_grid(region: Any, ds: xr.Dataset) -> xr.DataArray:
    """The noise-free truth on the survey grid (nearest cell centre; NaN off its extent)."""
    truth = region.truth
    half = 0.25 * float(region.cell_size)  # both grids snap to multiples of the cell
    out = truth.reindex({schema.X: ds[schema.X].values, schema.Y: ds[schema.Y].values},
                        method="nearest", tolerance=half)
    out = out.assign_coords({schema.X: ds[schema.X], schema.Y: ds[schema.Y]})
    return out.rename(schema.HR)


def _score(ds: xr.Dataset, truth: xr.DataArray, pred: xr.DataArray,
           windows: Sequence[Any]) -> dict[str, Any]:
    """Scores against the dense map (and RMSE against the truth) on the test windows."""
    from geochem_sr.metrics import COLUMNS, evaluate, table_row

    df = evaluate(ds, pred, windows=windows)
    t = evaluate(truth.to_dataset(), pred, windows=windows)
    per_element = {
        str(el): {c: float(df.loc[el, c]) for c in COLUMNS} | {
            "truth_rmse_log10": float(t.loc[el, "rmse_log10"])}
        for el in df.index if el != "mean"
    }
    mean = table_row(df)
    mean["truth_rmse_log10"] = float(t.drop(index="mean")["rmse_log10"].mean())
    return {"scores": mean, "per_element": per_element}


# =========================================================================== networks
def _predict(ds: xr.Dataset, model: GeoSRModel) -> xr.DataArray:
    """The model's map of the whole grid through the toolkit's tiled inference."""
    from geochem_sr.inference import super_resolve

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pred = super_resolve(ds, model, uncertainty=False)
        hr_pred = pred[schema.HR_PRED].compute()
    return _as_pred(hr_pred, ds, model.elements)


def _train(ds: xr.Dataset, data: TrainingData, network: str, profile: Profile, seed: int,
           overrides: dict[str, Any] | None = None) -> tuple[GeoSRModel, list[str]]:
    """Train one row's network; ``overrides`` replace the paper's learning rate."""
    from geochem_sr.training import train

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        model = train(ds, network, data.inputs_set, epochs=profile.epochs,
                      batch_size=profile.batch_size, lr_step=profile.lr_step,
                      patience=profile.patience, loss=profile.loss,
                      target_scale=profile.target_scale,
                      model_kwargs=dict(profile.model_kwargs.get(network, {})),
                      seed=seed, data=data, progress=False,
                      **({"lr": profile.lr} if overrides is None else overrides))
    notes = sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)})
    return model, notes


def _training_info(model: GeoSRModel, notes: list[str]) -> dict[str, Any]:
    from geochem_sr.models.layers import count_parameters

    extra = model.extra or {}
    val = model.validation or {}
    gains = [v.get("gain") for v in (val.get("per_element") or {}).values()]
    gains = [g for g in gains if g is not None and math.isfinite(g)]
    hist = model.history or []
    return {
        "parameters": int(count_parameters(model.build_network(device="cpu"))),
        "network_config": model.network_config,
        "channels": len(model.channels),
        "epochs_run": extra.get("epochs_run"),
        "best_epoch": val.get("best_epoch"),
        "stopped_early": extra.get("stopped_early"),
        "val_loss": val.get("val_loss"),
        "val_loss_zero": val.get("val_loss_zero"),
        "val_gain_mean": float(np.mean(gains)) if gains else None,
        "val_per_element": val.get("per_element"),
        "train_loss_first_last": ([hist[0]["train_loss"], hist[-1]["train_loss"]]
                                  if hist else None),
        "seconds_per_epoch": (float(np.mean([h["seconds"] for h in hist])) if hist else None),
        "device": extra.get("device"),
        "loss": extra.get("loss"),
        "target_scale": extra.get("target_scale_folded"),
        "ensemble": extra.get("ensemble"),
        "warnings": notes,
    }


def _trust(ds: xr.Dataset, model: GeoSRModel, data: TrainingData, seed: int
           ) -> dict[str, Any]:
    """Do-no-harm shrinkage and calibrated coverage (test blocks) of one model."""
    try:
        from geochem_sr.trust import calibrate, trust_report
    except ImportError as exc:  # pragma: no cover - trust module missing
        return {"error": f"geochem_sr.trust not available: {exc}"}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            cal = calibrate(ds, model, roles=data.roles, seed=seed)
            df = trust_report(None, cal)
        per = {str(el): {c: _jsonable(df.loc[el, c]) for c in df.columns} for el in df.index}
        return {"per_element": per, "measured_on": df.attrs.get("measured_on", ""),
                "warnings": sorted({str(w.message) for w in caught})}
    except Exception as exc:  # noqa: BLE001 - reported in the results, the table goes on
        return {"error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=4)}


def _cross_validate(ds: xr.Dataset, inputs: str, profile: Profile, seed: int
                    ) -> dict[str, Any]:
    """Spatial k-fold cross-validation of the multi-level U-Net (``cv_folds`` > 0)."""
    try:
        from geochem_sr.trust import cross_validate

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            rep = cross_validate(
            ds, "multilevel_unet", inputs, folds=profile.cv_folds, epochs=profile.epochs,
                seed=seed, keep_oof=False, patch_size=profile.patch_size,
                stride=profile.stride, patience=profile.patience, lr=profile.lr,
                batch_size=profile.batch_size, lr_step=profile.lr_step,
                loss=profile.loss, target_scale=profile.target_scale,
                model_kwargs=dict(profile.model_kwargs.get("multilevel_unet", {})),
            )
        return _jsonable(rep.to_dict())
    except Exception as exc:  # noqa: BLE001 - reported in the results, the table goes on
        return {"error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=4)}


# =========================================================================== figure
def _figure_box(data: TrainingData) -> tuple[slice, slice]:
    """Bounding box of the largest connected group of test windows (one test block)."""
    from scipy import ndimage

    from geochem_sr.patches import windows_mask

    shape = data.roles.shape
    mask = windows_mask(data.test_windows, shape)
    lab, n = ndimage.label(mask)
    sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
    big = lab == (int(np.argmax(sizes)) + 1)
    rows, cols = np.flatnonzero(big.any(1)), np.flatnonzero(big.any(0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _figure_elements(elements: Sequence[str]) -> list[str]:
    chosen = [e for e in _FIGURE_ELEMENTS if e in elements]
    return chosen if len(chosen) == 2 else list(elements[:2])


def _crop(da: xr.DataArray, box: tuple[slice, slice], elements: Sequence[str]) -> np.ndarray:
    sel = da.sel({schema.ELEMENT: list(elements)}).transpose(schema.ELEMENT, schema.Y, schema.X)
    return np.asarray(sel.isel({schema.Y: box[0], schema.X: box[1]}).values, np.float64)


def _draw_figure(panels: dict[str, np.ndarray], labels: dict[str, str], dense: np.ndarray,
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
        vals = np.concatenate([m[np.isfinite(m) & (m > 0)] for m in maps])
        lo, hi = (np.percentile(vals, [2, 98]) if vals.size else (1.0, 10.0))
        hi = hi if hi > lo else lo * 10
        norm = LogNorm(lo, hi)
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


# =========================================================================== rows & cache
def _source_digest() -> str:
    """Digest of the package's source files: cached rows of other code are not reused."""
    import hashlib

    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _row_key(network: str, inputs: str) -> str:
    return f"{network}__{inputs.replace('+', '-')}"


class _Cache:
    """Finished rows on disk, so that an interrupted run continues (``resume=True``)."""

    def __init__(self, folder: Path, fingerprint: str, enabled: bool) -> None:
        self.folder, self.fingerprint, self.enabled = folder, fingerprint, enabled

    def get(self, key: str) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        if not self.enabled:
            return None
        js, npz = self.folder / f"{key}.json", self.folder / f"{key}.npz"
        if not (js.exists() and npz.exists()):
            return None
        row = json.loads(js.read_text())
        if row.get("_fingerprint") != self.fingerprint:
            return None
        with np.load(npz) as f:
            crops = {k: f[k] for k in f.files}
        row.pop("_fingerprint")
        return row, crops

    def put(self, key: str, row: dict[str, Any], crops: dict[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        np.savez(self.folder / f"{key}.npz", **crops)
        tmp = self.folder / f".{key}.json.tmp"
        tmp.write_text(json.dumps(_jsonable({**row, "_fingerprint": self.fingerprint})))
        os.replace(tmp, self.folder / f"{key}.json")


# =========================================================================== markdown
def _flags(inputs: str) -> tuple[str, str, str]:
    groups = schema.parse_input_set(inputs)
    return ("Yes", "Yes" if "terrain" in groups else "No",
            "Yes" if "geology" in groups else "No")


def _main_table(rows: list[dict[str, Any]]) -> list[str]:
    head = ["Network", "Geochem", "Topo", "Geology", *(_COLUMN_HEADERS[c] for c in
                                                        TABLE_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        label = r["label"] if r["kind"] != "network" else NETWORK_LABELS[r["network"]]
        cells = [label, *_flags(r["inputs"]), *(_fmt(r["scores"].get(c), c)
                                                for c in TABLE_COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _per_element_table(rows: list[dict[str, Any]], elements: Sequence[str], col: str
                       ) -> list[str]:
    head = ["Method", *elements, "mean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vals = [_fmt(r["per_element"].get(el, {}).get(col), col) for el in elements]
        lines.append("| " + " | ".join([r["label"], *vals, _fmt(r["scores"].get(col), col)])
                     + " |")
    return lines


def _trust_table(trust: dict[str, Any], elements: Sequence[str]) -> list[str]:
    cols = ("gain", "gain_raw", "shrinkage", "coverage_1std", "coverage_2std")
    heads = ("test gain (with shrinkage)", "test gain (raw network)", "shrinkage",
             "coverage 1 std", "coverage 2 std")
    lines: list[str] = []
    for inputs in INPUT_SETS:
        t = trust.get(inputs) or {}
        if "error" in t:
            lines.append(f"- {inputs}: trust calibration failed: `{t['error']}`")
            continue
        cv = (t.get("cross_validation") or {}).get("per_element") or {}
        has_cv = bool(cv)
        head = ["Input set", "Element", *heads] + (["CV gain", "CV gain (raw)"] if has_cv
                                                   else [])
        if not lines or not lines[-1].startswith("|"):
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        per = t.get("per_element") or {}
        for el in elements:
            p = per.get(el, {})
            cells = [inputs, el, *(_fmt(p.get(c)) for c in cols)]
            if has_cv:
                cells += [_fmt(cv.get(el, {}).get("gain")), _fmt(cv.get(el, {}).get("gain_raw"))]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _findings(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """What the measured table says about the issue's three expectations."""
    nets = [r for r in rows if r["kind"] == "network"]
    base = {r["key"]: r for r in rows if r["kind"] == "baseline"}
    by = {(r["network"], r["inputs"]): r for r in nets}
    checks: dict[str, Any] = {}
    out: list[str] = []

    def score(r: dict[str, Any], c: str) -> float:
        v = r["scores"].get(c)
        return float(v) if v is not None and math.isfinite(v) else -math.inf

    for c in ("psnr_avg", "ssim_avg"):
        best = max(rows, key=lambda r, c=c: score(r, c))
        checks[f"best_{c}"] = best["label"]
    target = f"{NETWORK_LABELS['multilevel_unet']} · {INPUT_SETS[0]}"
    ok1 = checks["best_psnr_avg"] == target and checks["best_ssim_avg"] == target
    checks["expect_multilevel_all_best"] = ok1
    out.append(f"1. *The multi-level U-Net with all inputs has the best average PSNR and "
               f"SSIM*: **{'holds' if ok1 else 'does not hold'}**. Best average PSNR: "
               f"{checks['best_psnr_avg']}; best average SSIM: {checks['best_ssim_avg']}.")

    geo = {}
    for n in NETWORKS:
        a, b = by.get((n, INPUT_SETS[0])), by.get((n, INPUT_SETS[1]))
        if a is None or b is None:
            continue
        d = {c: score(a, c) - score(b, c) for c in ("psnr_avg", "ssim_avg", "rmse_log10")}
        d["improves"] = d["psnr_avg"] > 0 and d["ssim_avg"] > 0
        geo[n] = d
    checks["geology_effect"] = geo
    ok2 = bool(geo) and all(d["improves"] for d in geo.values())
    checks["expect_geology_improves_each"] = ok2
    parts = [f"{NETWORK_LABELS[n]} {d['psnr_avg']:+.2f} dB / {d['ssim_avg']:+.3f} / "
             f"{d['rmse_log10']:+.4f}" for n, d in geo.items()]
    out.append(f"2. *Adding geology improves each network* (all inputs minus geochem+terrain: "
               f"PSNR avg / SSIM avg / RMSE): **{'holds' if ok2 else 'does not hold'}**: "
               + "; ".join(parts) + ".")

    beats: dict[str, dict[str, bool]] = {}
    by_metric: dict[str, dict[str, int]] = {}
    for b in (k for k in BASELINES if k in base):
        rb = base[b]
        wins = {"psnr_avg": [score(r, "psnr_avg") > score(rb, "psnr_avg") for r in nets],
                "ssim_avg": [score(r, "ssim_avg") > score(rb, "ssim_avg") for r in nets],
                "rmse_log10": [score(r, "rmse_log10") < score(rb, "rmse_log10") for r in nets]}
        by_metric[b] = {c: int(sum(v)) for c, v in wins.items()}
        for i, r in enumerate(nets):
            beats.setdefault(r["label"], {})[b] = all(v[i] for v in wins.values())
    checks["beats"] = beats
    checks["beats_by_metric"] = by_metric
    n_sparse_idw = sum(v.get("sparse", False) and v.get("idw", False) for v in beats.values())
    ok3 = n_sparse_idw == len(nets) and bool(nets)
    checks["expect_every_network_beats_sparse_and_idw"] = ok3
    short = {"sparse": "sparse map = ordinary kriging", "idw": "IDW",
             "regression_kriging": "regression kriging", "kriging": "ordinary kriging"}
    counts = "; ".join(
        f"{short[b]}: {sum(v.get(b, False) for v in beats.values())} on all three (on PSNR avg "
        f"{m['psnr_avg']}, SSIM avg {m['ssim_avg']}, RMSE {m['rmse_log10']})"
        for b, m in by_metric.items() if b != "kriging")
    out.append(f"3. *Every network beats the sparse map and IDW* (higher average PSNR and SSIM "
               f"and lower RMSE): **{'holds' if ok3 else 'does not hold'}**: {n_sparse_idw} "
               f"of {len(nets)} rows beat both. Rows better than each baseline: {counts}.")
    return out, checks


def _settings_lines(result: dict[str, Any]) -> list[str]:
    p, d, m = result["profile"], result["data"], result["machine"]
    split = d["split"]
    cv = p["cv_folds"]
    lines = [
        f"- Profile **{p['name']}**: {p['description']}.",
        f"- Region: synthetic (`synthetic_region(seed={result['seed']}, size_km="
        f"{tuple(p['size_km'])})`), grid {d['grid'][0]} x {d['grid'][1]} cells of "
        f"{d['cell_size']:g} m, {d['n_sparse']} sparse and {d['n_dense']} dense samples, "
        f"{len(d['elements'])} elements; both surveys gridded by ordinary kriging "
        f"(k = {p['k']}).",
        f"- One block split for every row: blocks of {p['block_cells']} cells, gap "
        f"{p['gap']} cells, shares train/val/test {tuple(p['fractions'])}, seed "
        f"{result['seed']}: cells {split['cells']}, patches ({p['patch_size']} x "
        f"{p['patch_size']}, stride {p['stride']}) {split['patches']}.",
        f"- Training: at most {p['epochs']} epochs, early stopping patience "
        f"{p['patience']}, batch {p['batch_size']}, Adam 1e-3 halved every {p['lr_step']} "
        f"epochs, loss `{p['loss']}` on the "
        + ("raw log10 residual" if p["target_scale"] is None else
           f"residual standardised per element ({p['target_scale']})")
        + " (the toolkit's defaults), weights of the best validation epoch (lowest validation "
        "loss), 8 rotations/mirrors as augmentation. Networks: "
        + ("the paper's sizes." if not p["model_kwargs"] else
           f"shrunk: {json.dumps(p['model_kwargs'])}."),
        "- Input channels: 10 log10 sparse maps; + elevation, slope, aspect as sine and cosine "
        "(4; the paper counts aspect as one channel, hence 19 channels here for its 18); + 5 "
        "geology word-vector dimensions.",
        "- Predictions: each trained network predicts the whole grid with the toolkit's "
        "tiled inference (`super_resolve`, no uncertainty, no do-no-harm shrinkage); every "
        "map is scored against the dense map on the same "
        f"{split['patches']['test']} test windows (PSNR/SSIM per window on log10 maps "
        "min-max normalised per element; maximum and average over windows; RMSE and IoU "
        "over the windows' cells; every score averaged over the elements).",
        "- Trust columns (multi-level U-Net): `trust.calibrate` fitted on the validation "
        "blocks, gains and coverage measured on the test blocks"
        + (f"; plus {cv}-fold spatial cross-validation." if cv else
           "; spatial cross-validation (`trust.cross_validate`) is not run in this profile "
           "(it would train 5 more networks per input set) — the gpu profile runs it."),
        f"- Date {result['date']}; machine: {m.get('cpu_model', m['processor'])}, "
        f"{m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads)"
        + (f", GPU {m['cuda']}" if m.get("cuda") else ", no GPU")
        + f"; load average {result['timings'].get('load_start')} at the start, "
        f"{result['timings'].get('load_end')} at the end (other jobs shared the CPUs when it "
        "is above the CPU count).",
        f"- Wall time: total {result['timings']['total_s'] / 60:.1f} min (survey "
        f"{result['timings']['survey_s']:.0f} s, patches {result['timings']['patches_s']:.0f} "
        f"s, baselines {result['timings']['baselines_s']:.0f} s, networks "
        f"{result['timings']['networks_s'] / 60:.1f} min, trust "
        f"{result['timings']['trust_s']:.0f} s).",
    ]
    return lines


def _toolkit_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The toolkit-default row: the paper's table format, then its calibrated gains."""
    tk = [r for r in rows if r["kind"] == "toolkit"]
    if not tk:
        return []
    r = tk[0]
    n = len((r.get("training") or {}).get("ensemble") or []) or 1
    lines = [f"The toolkit on the same windows: multi-level U-Net, inputs `{r['inputs']}` "
             f"(fault and contact distances, and each covariate minus what the sparse "
             f"sites see of it), the toolkit's learning rate, mean of {n} networks "
             "(`train(ensemble=...)`):", "", *_main_table(tk), ""]
    per = (r.get("trust") or {}).get("per_element") or {}
    if per:
        lines += ["Its test-block gains after do-no-harm calibration: " + ", ".join(
            f"{el} {_fmt(v.get('gain'))}" for el, v in per.items()) + ".", ""]
    return lines


def _markdown(result: dict[str, Any], notes: str) -> str:
    rows = result["rows"]
    elements = result["data"]["elements"]
    nets = [r for r in rows if r["kind"] == "network"]
    base = [r for r in rows if r["kind"] == "baseline"]
    ref = result["reference"]
    p = result["profile"]
    md = [
        f"# Experiment — profile `{p['name']}`",
        "",
        "The paper's Table 6 (Pei et al. 2025) on the synthetic region, with the classical "
        "maps a geochemist would use instead, all scored against the dense-survey map on the "
        "same held-out test blocks. Rerun with "
        f"`geochem-sr experiment --profile {p['name']}` (or `python benchmarks/experiment.py "
        f"--profile {p['name']}`).",
        "",
        "## Table (average over the elements; test windows)",
        "",
        *_main_table(nets),
        "",
        *_toolkit_lines(rows),
        "Baselines on the same windows (Geochem/Topo/Geology: what the method uses):",
        "",
        *_main_table(base),
        "",
        "PSNR in dB and SSIM on log10 maps min-max normalised per element; RMSE in log10 "
        "units; IoU95 = overlap of the cells above the dense map's 95th percentile. "
        "Ordinary kriging "
        + ("equals the sparse map cell for cell (the survey's `lr` is built by the same "
           "kriging)." if result["baseline_info"]["kriging"].get("equals_lr") else
           "differs from `lr` (see the JSON)."),
        "",
        f"Reference: on the test windows the sparse map is "
        f"{_fmt(ref['lr_vs_hr_rmse'], 'rmse_log10')} (log10 RMSE) from the dense map; the "
        f"dense map is {_fmt(ref['hr_vs_truth_rmse'], 'rmse_log10')} and the sparse map "
        f"{_fmt(ref['lr_vs_truth_rmse'], 'rmse_log10')} from the noise-free truth. "
        "RMSE of every method against the truth is in the JSON (`truth_rmse_log10`).",
        "",
        "## Settings",
        "",
        *_settings_lines(result),
        "",
        "## Per element: RMSE (log10) against the dense map",
        "",
        *_per_element_table(rows, elements, "rmse_log10"),
        "",
        "## Per element: anomaly IoU at the 95th percentile",
        "",
        *_per_element_table(rows, elements, "iou95"),
        "",
        "## Trust (multi-level U-Net, per input set)",
        "",
        "Gain = 1 − RMSE(prediction) / RMSE(sparse map), log10, against the dense map on the "
        "test blocks; shrinkage = do-no-harm factor on the predicted residual fitted on the "
        "validation blocks (0: returned as the sparse map); coverage = share of test cells "
        "with |dense − prediction| within 1 and 2 calibrated standard deviations (68 % and "
        "95 % expected).",
        "",
        *_trust_table(result["trust"], elements),
        "",
        "## Training and time per row",
        "",
        "Validation loss / no change: the best validation loss over that of predicting a "
        "zero residual (the sparse map) on the validation blocks; above 1, training never "
        "beat the sparse map there (training.py warns). Validation gain: mean over elements "
        "of 1 − RMSE / RMSE(sparse) on the validation blocks. Wall and CPU seconds cover "
        "training and prediction; load = 1-minute load average when the row finished.",
        "",
        "| Row | parameters | epochs run | best epoch | stopped early | validation loss / "
        "no change | validation gain | s per epoch | wall s | CPU s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in nets:
        t = r["training"]
        ratio = (t["val_loss"] / t["val_loss_zero"] if t.get("val_loss") is not None
                 and t.get("val_loss_zero") else None)
        md.append(f"| {r['label']} | {t['parameters']:,} | {t['epochs_run']} | "
                  f"{t['best_epoch']} | {t['stopped_early']} | {_fmt(ratio)} | "
                  f"{_fmt(t['val_gain_mean'])} | {_fmt(t['seconds_per_epoch'], 'psnr_avg')} | "
                  f"{r['seconds']:.0f} | {r['cpu_seconds']:.0f} | {r.get('load')} |")
    rk = result["baseline_info"]["regression_kriging"]
    r2 = {el: rk[el]["r2"] for el in elements if el in rk}
    md += [
        "",
        "Regression kriging: R² of the regression on the covariates at the sparse sites: "
        + ", ".join(f"{el} {v:.2f}" for el, v in r2.items()) + ".",
        "",
        "## Findings",
        "",
        "Automatic checks of the issue's expectations against the measured table:",
        "",
        *result["findings"],
        "",
        "### What the table says and why",
        "",
        _NOTES_START,
        notes.strip() or "(No analysis written yet for this profile.)",
        _NOTES_END,
        "",
        f"![{p['name']} comparison]({result['figure']})",
        "",
    ]
    return "\n".join(md)


def _old_notes(md_path: Path) -> str:
    if not md_path.exists():
        return ""
    text = md_path.read_text(encoding="utf-8")
    a, b = text.find(_NOTES_START), text.find(_NOTES_END)
    if a < 0 or b < a:
        return ""
    notes = text[a + len(_NOTES_START):b].strip()
    return "" if notes.startswith("(No analysis written yet") else notes


def _write_markdown(result: dict[str, Any], md_path: Path) -> None:
    """(Re)compute the findings of ``result`` and write its markdown, keeping the notes."""
    result["findings"], checks = _findings(result["rows"])
    result["checks"] = _jsonable(checks)
    md_path.write_text(_markdown(result, _old_notes(md_path)), encoding="utf-8")


def render_results(json_path: str | os.PathLike) -> Path:
    """Rewrite ``experiment-<profile>.md`` (and the findings in the JSON) from the JSON.

    The hand-written notes between the findings markers of the existing markdown are kept.
    Nothing is trained or predicted: use it after editing the notes or the report layout.

    Parameters
    ----------
    json_path : path
        An ``experiment-<profile>.json`` written by :func:`run_experiment`.

    Returns
    -------
    pathlib.Path
        The markdown file, next to the JSON.
    """
    json_path = Path(json_path)
    result = json.loads(json_path.read_text(encoding="utf-8"))
    if result.get("format") != _FORMAT:
        raise SchemaError(f"{json_path}: expected an experiment result ({_FORMAT!r}), found "
                          f"{result.get('format')!r}")
    md_path = json_path.with_suffix(".md")
    _write_markdown(result, md_path)
    json_path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return md_path


# =========================================================================== run
def run_experiment(
    profile: str | Profile = "cpu",
    out_dir: str | os.PathLike = Path("benchmarks/results"),
    seed: int = 0,
    *,
    resume: bool = False,
    log: Log | None = _stderr,
) -> Path:
    """Run the paper's experiment with classical baselines and write the results.

    Parameters
    ----------
    profile : {"cpu", "gpu", "smoke"} or Profile, default "cpu"
        Settings (:data:`PROFILES`): ``cpu`` about an hour on 2 CPU cores, ``gpu`` the
        paper's 1000 epochs, ``smoke`` seconds (tests).
    out_dir : path, default ``benchmarks/results``
        Folder of ``experiment-<profile>.md``, ``.json`` and ``.png``.
    seed : int, default 0
        Seed of the region, the embedding, the block split, the training and the trust
        calibration: the same seed gives the same table (on the same machine).
    resume : bool, default False
        Keep every finished network row in ``out_dir/.experiment-<profile>-cache`` and
        reuse the rows of an earlier, interrupted run with the same settings and seed (for
        the long ``gpu`` profile on machines with a time limit per command).
    log : callable or None
        Progress messages (default: to standard error); None is silent.

    Returns
    -------
    pathlib.Path
        The markdown results file.

    Examples
    --------
    >>> path = run_experiment("smoke", out_dir="/tmp/exp")  # doctest: +SKIP
    """
    prof = get_profile(profile)
    log = log or (lambda _msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"experiment-{prof.name}"
    md_path, json_path, png_path = (out_dir / f"{stem}.md", out_dir / f"{stem}.json",
                                    out_dir / f"{stem}.png")
    from geochem_sr import __version__

    fingerprint = json.dumps({"profile": prof.to_dict(), "seed": seed, "version": __version__,
                              "source": _source_digest()}, sort_keys=True)
    cache = _Cache(out_dir / f".{stem}-cache", fingerprint, resume)
    t_start, timings = time.perf_counter(), {"load_start": _load()}

    log(f"profile {prof.name}: building the synthetic region and survey")
    t0 = time.perf_counter()
    region, ds = _build(prof, seed)
    elements = [str(e) for e in ds[schema.ELEMENT].values]
    truth = _truth_on_grid(region, ds)
    timings["survey_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    datas = _training_data(ds, prof, seed)
    ref_data = datas[INPUT_SETS[0]]
    windows = ref_data.test_windows
    timings["patches_s"] = time.perf_counter() - t0
    split = _split_summary(ref_data)
    log(f"survey {dict(ds.sizes)}; split {split['patches']}")

    box = _figure_box(ref_data)
    fig_el = _figure_elements(elements)
    crops: dict[str, np.ndarray] = {}

    t0 = time.perf_counter()
    base_maps, base_info = _baselines(region, ds, prof, seed, log)
    rows: list[dict[str, Any]] = []
    for key in BASELINES:
        row = {"key": key, "kind": "baseline", "network": None,
               "inputs": _BASELINE_INPUTS[key], "label": BASELINE_LABELS[key],
               **_score(ds, truth, base_maps[key], windows),
               "seconds": base_info[key]["seconds"]}
        rows.append(row)
        crops[key] = _crop(base_maps[key], box, fig_el)
    timings["baselines_s"] = time.perf_counter() - t0
    hr_crop = _crop(_as_pred(ds[schema.HR], ds, elements), box, fig_el)

    t_nets, trust, t_trust = time.perf_counter(), {}, 0.0
    for network in NETWORKS:
        for inputs in INPUT_SETS:
            key = _row_key(network, inputs)
            hit = cache.get(key)
            if hit is not None:
                row, row_crops = hit
                log(f"{key}: from the cache")
            else:
                w0, c0 = time.perf_counter(), time.process_time()
                model, notes = _train(ds, datas[inputs], network, prof, seed)
                pred = _predict(ds, model)
                row = {"key": key, "kind": "network", "network": network, "inputs": inputs,
                       "label": f"{NETWORK_LABELS[network]} · {inputs}",
                       **_score(ds, truth, pred, windows),
                       "training": _training_info(model, notes),
                       "seconds": time.perf_counter() - w0,
                       "cpu_seconds": time.process_time() - c0, "load": _load()}
                row_crops = {"pred": _crop(pred, box, fig_el)}
                if network == "multilevel_unet":
                    w1 = time.perf_counter()
                    row["trust"] = _trust(ds, model, datas[inputs], seed)
                    if prof.cv_folds:
                        row["trust"]["cross_validation"] = _cross_validate(ds, inputs, prof,
                                                                           seed)
                    row["trust_seconds"] = time.perf_counter() - w1
                cache.put(key, row, row_crops)
                s = row["scores"]
                log(f"{key}: PSNR avg {s['psnr_avg']:.2f}, SSIM avg {s['ssim_avg']:.3f}, "
                    f"RMSE {s['rmse_log10']:.4f}, epochs {row['training']['epochs_run']} "
                    f"(best {row['training']['best_epoch']}), {row['seconds']:.0f} s")
            if "trust" in row:
                trust[inputs] = row["trust"]
                t_trust += float(row.get("trust_seconds", 0.0))
            rows.append(row)
            if inputs == INPUT_SETS[0]:
                crops[key] = row_crops["pred"]
    timings["networks_s"] = time.perf_counter() - t_nets - t_trust
    timings["trust_s"] = t_trust
    if prof.toolkit_row:
        row = cache.get("toolkit")
        if row is None:
            w0 = time.perf_counter()
            model, notes = _train(ds, datas[TOOLKIT_INPUTS], "multilevel_unet", prof, seed,
                                  overrides={"ensemble": prof.toolkit_ensemble})
            pred = _predict(ds, model)
            row = ({"key": "toolkit", "kind": "toolkit", "network": "multilevel_unet",
                    "inputs": datas[TOOLKIT_INPUTS].inputs_set, "label": TOOLKIT_LABEL,
                    **_score(ds, truth, pred, windows),
                    "training": _training_info(model, notes),
                    "trust": _trust(ds, model, datas[TOOLKIT_INPUTS], seed),
                    "seconds": time.perf_counter() - w0}, {})
            cache.put("toolkit", *row)
            log(f"toolkit: RMSE {row[0]['scores']['rmse_log10']:.4f}, "
                f"{row[0]['seconds']:.0f} s")
        rows.append(row[0])

    # rows in table order: networks (paper's order) then baselines
    rows = [r for kind in ("network", "toolkit", "baseline") for r in rows
            if r["kind"] == kind]
    findings, checks = _findings(rows)
    lr_row = next(r for r in rows if r["key"] == "sparse")
    hr_score = _score(truth.to_dataset(), truth, _as_pred(ds[schema.HR], ds, elements),
                      windows)
    reference = {
        "lr_vs_hr_rmse": lr_row["scores"]["rmse_log10"],
        "lr_vs_truth_rmse": lr_row["scores"]["truth_rmse_log10"],
        "hr_vs_truth_rmse": hr_score["scores"]["rmse_log10"],
        "hr_vs_truth_per_element": {el: v["rmse_log10"]
                                    for el, v in hr_score["per_element"].items()},
    }

    labels = {k: BASELINE_LABELS[k] for k in BASELINES if k != "kriging"}
    labels |= {_row_key(n, INPUT_SETS[0]): f"{NETWORK_LABELS[n]} (all inputs)"
               for n in NETWORKS}
    labels["sparse"] = "Sparse = ordinary kriging (lr)" if base_info["kriging"].get(
        "equals_lr") else labels["sparse"]
    panel_keys = [k for k in ("sparse", "idw", "regression_kriging") if k in crops]
    if not base_info["kriging"].get("equals_lr"):
        panel_keys.insert(2, "kriging")
        labels["kriging"] = BASELINE_LABELS["kriging"]
    panel_keys += [_row_key(n, INPUT_SETS[0]) for n in NETWORKS]
    x = np.asarray(ds[schema.X].values[box[1]], float) / 1e3
    y = np.asarray(ds[schema.Y].values[box[0]], float) / 1e3
    cell = float(ds.attrs.get("cell_size", 50.0)) / 1e3
    extent = [x.min() - cell / 2, x.max() + cell / 2, y.min() - cell / 2, y.max() + cell / 2]
    _draw_figure({k: crops[k] for k in panel_keys}, labels, hr_crop, fig_el,
                 schema.units_of(ds), extent, png_path,
                 f"One test block ({box[0].stop - box[0].start} x {box[1].stop - box[1].start} "
                 f"cells; km, {ds.rio.crs}), profile {prof.name}")

    timings["total_s"] = time.perf_counter() - t_start
    timings["load_end"] = _load()
    result = {
        "format": _FORMAT,
        "profile": prof.to_dict(),
        "seed": int(seed),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "data": {
            "grid": [int(ds.sizes[schema.Y]), int(ds.sizes[schema.X])],
            "cell_size": float(ds.attrs.get("cell_size", region.cell_size)),
            "elements": elements, "n_sparse": int(len(region.samples_sparse)),
            "n_dense": int(len(region.samples_dense)), "split": split,
            "test_windows": [[w[0].start, w[0].stop, w[1].start, w[1].stop] for w in windows],
            "figure_box": [box[0].start, box[0].stop, box[1].start, box[1].stop],
            "figure_elements": fig_el,
        },
        "columns": list(TABLE_COLUMNS),
        "rows": rows,
        "baseline_info": base_info,
        "trust": trust,
        "reference": reference,
        "findings": findings,
        "checks": checks,
        "timings": timings,
        "figure": png_path.name,
    }
    result = _jsonable(result)
    _write_markdown(result, md_path)
    json_path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    log(f"wrote {md_path}, {json_path.name}, {png_path.name} in {timings['total_s'] / 60:.1f} min")
    return md_path


def table_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """The main table of a results JSON as a DataFrame (rows by label, TABLE_COLUMNS)."""
    return pd.DataFrame([{"label": r["label"], **{c: r["scores"].get(c) for c in
                                                  TABLE_COLUMNS}} for r in result["rows"]]
                        ).set_index("label")
