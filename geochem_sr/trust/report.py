"""A calibrated model's trust report: per element, gain, shrinkage and coverage measured on
held-out blocks, and the share of a dataset inside its area of applicability."""

from __future__ import annotations

import math

import pandas as pd
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import ModelMismatchError
from geochem_sr.inference import applicability
from geochem_sr.models import GeoSRModel
from geochem_sr.sampling import describe_gap

__all__ = ["trust_report"]

_REPORT_COLUMNS = ("gain", "gain_raw", "shrinkage", "coverage_1std", "coverage_2std",
                   "rmse_lr", "rmse_pred", "std_scale", "cells")


def trust_report(ds: xr.Dataset | None, model: GeoSRModel) -> pd.DataFrame:
    """Per element: gain, shrinkage and coverage measured on held-out blocks.

    Parameters
    ----------
    ds : xarray.Dataset or None
        A dataset to predict (optional): when given and the model has an AOA reference,
        ``df.attrs["aoa_fraction"]`` is the share of its cells with inputs that lie inside
        the area of applicability.
    model : GeoSRModel
        A calibrated model (:func:`geochem_sr.trust.calibrate`).

    Returns
    -------
    pandas.DataFrame
        Index ``element``; columns ``gain`` (1 - RMSE of the prediction / RMSE of the
        sparse map, log10, on test blocks), ``gain_raw`` (without shrinkage),
        ``shrinkage``, ``coverage_1std``, ``coverage_2std``, ``rmse_lr``, ``rmse_pred``,
        ``std_scale``, ``cells``, and ``returned_as_sparse`` (bool). ``df.attrs``:
        ``measured_on`` and ``held_out`` (how far the held-out blocks lie from training,
        and whether that keeps every held-out dense sample out of the training targets:
        :func:`geochem_sr.sampling.describe_gap`).

    Raises
    ------
    ModelMismatchError
        The model was not calibrated.
    """
    per_el = (model.validation or {}).get("per_element", {})
    if "calibration" not in (model.validation or {}):
        raise ModelMismatchError(
            "model: expected a calibrated model (geochem_sr.trust.calibrate), found none")
    rows = []
    for el in model.elements:
        r = per_el.get(el, {})
        row = {c: r.get(c, math.nan) for c in _REPORT_COLUMNS}
        row["shrinkage"] = model.shrinkage_of(el)
        row["returned_as_sparse"] = model.shrinkage_of(el) == 0.0
        rows.append(row)
    df = pd.DataFrame(rows, index=pd.Index(list(model.elements), name=schema.ELEMENT))
    calibration = model.validation["calibration"]
    df.attrs = {"measured_on": calibration.get("measured_on", ""),
                "held_out": calibration.get("held_out", describe_gap(model.training.split or {}))}
    if ds is not None and model.aoa:
        app = applicability(ds, model)
        present = app[schema.DISSIMILARITY].notnull()
        n = int(present.sum())
        df.attrs["aoa_fraction"] = float(app[schema.AOA].sum()) / n if n else math.nan
    return df
