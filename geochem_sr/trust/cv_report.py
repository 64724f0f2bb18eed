"""The result of a spatial cross-validation (:class:`CrossValidationReport`) and the pooling
of its folds into one row per element."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError
from geochem_sr.jsonable import to_jsonable
from geochem_sr.models import GeoSRModel
from geochem_sr.sampling import ROLE_NONE, ROLE_VAL, BlockSplitter, describe_gap
from geochem_sr.trust.shrinkage import MIN_GAIN, STD_FLOOR_FRACTION, element_calibration

__all__ = ["CrossValidationReport", "aggregate_folds"]


@dataclasses.dataclass
class CrossValidationReport:
    """Result of :func:`~geochem_sr.trust.cross_validate`.

    Attributes
    ----------
    per_fold : pandas.DataFrame
        One row per (fold, element), scores on the held-out fold (see
        :func:`~geochem_sr.trust.cross_validate`).
    per_element : pandas.DataFrame
        Index ``element`` (and a final ``"mean"`` row): RMSE pooled over every held-out cell
        of every fold, gains, coverage, mean PSNR/SSIM/IoU over folds.
    settings : dict
        Network, inputs, folds, block size, gap, epochs, seed.
    oof : xarray.Dataset or None
        Out-of-fold predictions on the grid: ``residual_pred`` (raw network residual, no
        shrinkage), ``residual_spread`` (raw TTA spread), ``residual_true``
        (``log10(hr) - log10(lr)``), and ``fold`` (y, x; -1 outside every held-out fold).
    """

    per_fold: pd.DataFrame
    per_element: pd.DataFrame
    settings: dict[str, Any]
    oof: xr.Dataset | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable dict: settings, per-element and per-fold tables."""
        def records(df: pd.DataFrame) -> Any:
            return json.loads(df.to_json(orient="index" if df.index.name else "records"))

        return {
            "settings": json.loads(json.dumps(self.settings, default=to_jsonable)),
            "per_element": records(self.per_element),
            "per_fold": json.loads(self.per_fold.to_json(orient="records")),
        }

    def fit_shrinkage(self, min_gain: float = MIN_GAIN) -> dict[str, float]:
        """Do-no-harm factors fitted on the pooled out-of-fold predictions.

        The same rule as :func:`~geochem_sr.trust.calibrate`, over every held-out cell of
        every fold; the evidence blocks are as wide as the dense map's reach
        (``settings["leakage_gap_cells"]``, at least 8 cells) when recorded, else the
        cross-validation's blocks.
        """
        if self.oof is None:
            raise DataError("report: out-of-fold predictions were not kept (keep_oof=False)")
        out = {}
        fold = np.asarray(self.oof["fold"].values)
        roles = np.where(fold >= 0, ROLE_VAL, ROLE_NONE).astype(np.int8)
        side = self.settings.get("leakage_gap_cells")
        side = max(8, int(side)) if side else int(self.settings["block_size_cells"][0])
        groups = BlockSplitter(side).block_ids(self.oof)
        for el in self.oof[schema.ELEMENT].values:
            sel = {schema.ELEMENT: el}
            r = np.asarray(self.oof["residual_pred"].sel(sel).values)
            t = np.asarray(self.oof["residual_true"].sel(sel).values)
            row = element_calibration(r, np.zeros_like(r), t, roles, groups,
                                      STD_FLOOR_FRACTION, min_gain)
            out[str(el)] = float(row["shrinkage"])
        return out

    def attach(self, model: GeoSRModel) -> GeoSRModel:
        """A copy of ``model`` whose ``validation["cross_validation"]`` holds this report."""
        validation = copy.deepcopy(model.validation) if model.validation else {}
        validation["cross_validation"] = self.to_dict()
        return dataclasses.replace(model, validation=validation)

    def __str__(self) -> str:
        s = self.settings
        cols = [c for c in ("rmse_lr", "rmse_pred", "gain", "gain_raw", "gain_std",
                            "folds_improved", "shrinkage", "coverage_1std", "coverage_2std",
                            "psnr_lr", "psnr_pred", "ssim_lr", "ssim_pred")
                if c in self.per_element.columns]
        head = (f"Spatial {s.get('folds')}-fold block cross-validation of {s.get('model')} "
                f"({s.get('inputs')}): blocks {s.get('block_size')} cells, "
                f"{s.get('epochs')} epochs max, seed {s.get('seed')}\n"
                f"{describe_gap({**s, 'gap_cells': s.get('gap', 0)})}\n"
                "gain = 1 - RMSE(prediction) / RMSE(sparse map), log10, against the dense "
                "map on held-out folds; prediction = after do-no-harm shrinkage; gain_raw = "
                "network alone")
        with pd.option_context("display.width", 200, "display.max_columns", 30,
                               "display.float_format", "{:.3f}".format):
            return head + "\n" + self.per_element[cols].to_string()

    def _repr_html_(self) -> str:  # pragma: no cover - notebooks
        return self.per_element._repr_html_()


def _pooled(df: pd.DataFrame, col: str) -> float:
    """RMSE pooled over folds, weighted by their cells."""
    w = df["cells"].to_numpy(float)
    v = df[col].to_numpy(float)
    ok = np.isfinite(v) & (w > 0)
    return float(np.sqrt(np.sum(w[ok] * v[ok] ** 2) / np.sum(w[ok]))) if ok.any() else math.nan


def _weighted(df: pd.DataFrame, col: str) -> float:
    """Mean over folds, weighted by their cells."""
    w = df["cells"].to_numpy(float)
    v = df[col].to_numpy(float)
    ok = np.isfinite(v) & (w > 0)
    return float(np.sum(w[ok] * v[ok]) / np.sum(w[ok])) if ok.any() else math.nan


def aggregate_folds(per_fold: pd.DataFrame, elements: Sequence[str]) -> pd.DataFrame:
    """One row per element pooled over the folds (RMSE pooled by cells, gains, coverage,
    mean PSNR/SSIM/IoU), and a final ``"mean"`` row."""
    rows = []
    for el in elements:
        d = per_fold[per_fold["element"] == el]
        rmse_lr, rmse_pred, rmse_raw = (_pooled(d, c) for c in ("rmse_lr", "rmse_pred",
                                                                  "rmse_raw"))
        row = {
            "cells": int(d["cells"].sum()),
            "rmse_lr": rmse_lr, "rmse_pred": rmse_pred,
            "ratio": rmse_pred / rmse_lr if rmse_lr > 0 else math.nan,
            "gain": 1 - rmse_pred / rmse_lr if rmse_lr > 0 else math.nan,
            "gain_raw": 1 - rmse_raw / rmse_lr if rmse_lr > 0 else math.nan,
            "gain_mean": float(d["gain"].mean()), "gain_std": float(d["gain"].std(ddof=0)),
            "folds_improved": int((d["gain"] > 0).sum()),
            "shrinkage": float(d["shrinkage"].mean()),
            "coverage_1std": _weighted(d, "coverage_1std"),
            "coverage_2std": _weighted(d, "coverage_2std"),
        }
        for col in ("psnr_lr", "psnr_pred", "ssim_lr", "ssim_pred", "iou85_lr", "iou85_pred",
                    "iou95_lr", "iou95_pred"):
            row[col] = float(d[col].mean())
        rows.append(row)
    df = pd.DataFrame(rows, index=pd.Index(list(elements), name=schema.ELEMENT))
    if len(df):
        df = df.astype({c: float for c in df.select_dtypes("number").columns})
        df.loc["mean"] = df.mean(numeric_only=True)
    return df
