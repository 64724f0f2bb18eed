"""Calibration of a trained model on its held-out blocks: do-no-harm shrinkage and the
standard-deviation scale fitted on held-out evidence (the validation blocks for a network,
out-of-fold predictions of the training and validation blocks for a per-cell regressor:
:mod:`geochem_sr.trust.evidence`), the area-of-applicability reference on the training
blocks, gains and coverage measured on the test blocks."""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr.errors import DataError, ModelMismatchError, ParameterError
from geochem_sr.inference import prepare_inputs
from geochem_sr.jsonable import to_jsonable
from geochem_sr.models import GeoSRModel
from geochem_sr.sampling import ROLE_VAL, SPLIT_ATTRS, describe_gap
from geochem_sr.trust.aoa import AOA_SAMPLE, aoa_reference
from geochem_sr.trust.evidence import evidence_held, fitted_on, uses_cross_fit
from geochem_sr.trust.predictions import Held
from geochem_sr.trust.roles import evidence_blocks, roles_array
from geochem_sr.trust.shrinkage import (
    COVERAGE_1STD,
    MIN_GAIN,
    MIN_GROUPS,
    STD_FLOOR_FRACTION,
    element_calibration,
)

__all__ = ["calibrate", "finish_calibration", "fit_calibration", "held_out_setup"]


def fit_calibration(model: GeoSRModel, held: Held, std_floor: float, min_gain: float,
                    roles_note: str, fitted: str | None = None,
                    where: dict[str, str] | None = None) -> GeoSRModel:
    """A copy of ``model`` with shrinkage, std scale and the held-out report filled
    (``fitted``: the evidence, role 2 of ``held``, in words, default
    :func:`~geochem_sr.trust.evidence.fitted_on`; ``where``: per element,
    ``"out-of-fold"`` or ``"validation"``, default from ``held``)."""
    per_element: dict[str, dict[str, Any]] = {}
    default = "out-of-fold" if held.cross_fitted else "validation"
    for k, el in enumerate(held.elements):
        per_element[el] = element_calibration(held.residual[k], held.spread[k],
                                              held.target[k], held.roles, held.groups,
                                              std_floor, min_gain, held.unit_m,
                                              where=(where or {}).get(el, default))
    zero = {el: row["reason"] for el, row in per_element.items() if "reason" in row}
    for el, why in zero.items():
        warnings.warn(f"calibrate: {el} is returned as the sparse map (shrinkage 0): {why}",
                      UserWarning, stacklevel=3)
    n_test = sum(row["cells"] for row in per_element.values())
    if n_test == 0:
        warnings.warn(
            "calibrate: no test cells (role 3) with a known dense value; gains and coverage "
            "on held-out data are unknown (NaN)", UserWarning, stacklevel=3)
    old = copy.deepcopy(model.validation) if model.validation else {}
    validation = {k: v for k, v in old.items() if k != "per_element"}
    if "per_element" in old:
        validation["training_per_element"] = old["per_element"]
    validation["per_element"] = per_element
    validation["shrunk_to_zero"] = zero
    validation["calibration"] = {
        "fitted_on": fitted_on(held) if fitted is None else fitted,
        "measured_on": "test blocks (role 3), untouched by training and calibration",
        "roles": roles_note,
        "std": "std_scale * max(shrinkage * spread, std_floor), log10 units (spread of the "
               "ensemble's members or of the 8 orientations: model.prediction.spread)",
        "std_floor_fraction": float(std_floor),
        "min_gain": float(min_gain),
        "target_coverage_1std": COVERAGE_1STD,
    }
    return dataclasses.replace(
        model,
        state_dict=dict(model.state_dict),
        shrinkage={el: float(row["shrinkage"]) for el, row in per_element.items()},
        std_scale={el: float(row["std_scale"]) for el, row in per_element.items()
                   if np.isfinite(row["std_scale"])},
        validation=json.loads(json.dumps(validation)),
        prediction=dataclasses.replace(model.prediction, std_floor={
            el: float(row["std_floor"]) for el, row in per_element.items()}),
        training=copy.deepcopy(model.training),
        notes=copy.deepcopy(model.notes),
        aoa=copy.deepcopy(model.aoa),
    )


def held_out_setup(ds: xr.Dataset, model: GeoSRModel, seed: int | None, roles: Any,
                   purpose: str) -> tuple[xr.Dataset, xr.DataArray, str, np.ndarray,
                                          np.ndarray, float | None]:
    """What scoring a model's held-out blocks needs: the dataset with its inputs prepared,
    the roles (and how they were obtained), their codes, the evidence block of every cell
    and that block's side in metres.

    Raises
    ------
    DataError
        No validation cells to ``purpose`` on.
    """
    ds = prepare_inputs(ds, model)
    roles_da, note = roles_array(ds, model, seed, roles)
    codes = np.asarray(roles_da.values).astype(np.int8)
    if not (codes == ROLE_VAL).any():
        raise DataError(f"roles: expected validation cells (code 2) to {purpose} on, "
                        "found none")
    groups, unit_m = evidence_blocks(ds, model, roles_da, MIN_GROUPS)
    return ds, roles_da, note, codes, groups, unit_m


def calibrate(
    ds: xr.Dataset,
    model: GeoSRModel,
    *,
    seed: int | None = None,
    roles: Any = None,
    tile: int = 256,
    std_floor: float = STD_FLOOR_FRACTION,
    min_gain: float = MIN_GAIN,
    aoa_sample: int = AOA_SAMPLE,
    device: str | None = None,
    progress: bool = False,
    folds: int | None = None,
) -> GeoSRModel:
    """Fit do-no-harm shrinkage, calibrate the uncertainty, measure both on held-out blocks.

    Parameters
    ----------
    ds : xarray.Dataset
        The survey dataset the model was trained on (``lr``, ``hr`` and the inputs).
    model : GeoSRModel
        A trained model (:func:`geochem_sr.training.train`).
    seed : int, optional
        Seed of the block split (default, and the only one accepted when training recorded
        one: the seed training used; see :func:`~geochem_sr.trust.training_roles`) and of the
        area-of-applicability subsample.
    roles : xarray.DataArray, numpy.ndarray or splitter, optional
        Block roles ``(y, x)`` (0 none, 1 train, 2 validation, 3 test). Default: recomputed
        from what training recorded (:func:`~geochem_sr.trust.training_roles`). Never pass
        roles whose validation or test cells were trained on.
    tile : int, default 256
        Tile size of the prediction (:func:`geochem_sr.inference.predict_array`).
    std_floor : float, default 0.1
        Floor of the spread as a share of the validation RMSE (``docs/notes/trust.md``).
    min_gain : float, default 0.01
        Smallest validation gain for a non-zero shrinkage factor.
    aoa_sample : int, default 2000
        Size of the area-of-applicability reference sample.
    device : str, optional
        Torch device (default CUDA when available).
    progress : bool, default False
        Show a progress bar over the tiles of the held-out prediction (computed once and
        used for every fit and score).
    folds : int, optional
        Per-cell regressors (trees, ridge) only: the shrinkage and std scale are fitted on
        out-of-fold predictions of every training and validation cell, from the same
        regressor fitted again on ``folds`` - 1 of ``folds`` folds of those blocks
        (default 5; :mod:`geochem_sr.trust.evidence`). 0: on the validation blocks, as for
        the networks (always on the validation blocks); refused for a regressor fitted on
        its validation blocks too, which ``train`` does whenever the ground allows
        cross-fitting (``model.validation["fitted_on"]``).

    Returns
    -------
    GeoSRModel
        A copy with ``shrinkage``, ``std_scale``, ``prediction.std_floor``, ``aoa`` and
        ``validation`` filled. ``validation["per_element"][el]`` holds, measured on the
        test blocks: ``rmse_lr``, ``rmse_pred`` (with shrinkage), ``gain`` and ``gain_se``
        (its delete-one-block jackknife error), ``gain_raw`` (without shrinkage),
        ``coverage_1std``, ``coverage_2std``, ``cells``; and from the validation blocks
        ``shrinkage``, ``shrinkage_ls``, ``std_scale``, ``std_floor``, ``gain_val`` and
        ``gain_val_se``, ``coverage_1std_val``, ``cells_val`` (and ``reason`` when shrunk
        to 0).
        ``validation["shrunk_to_zero"]`` maps those elements to the reason. Training's
        own per-element report moves to ``validation["training_per_element"]``.

    Raises
    ------
    ModelMismatchError
        The model does not fit the dataset, or its training blocks cannot be recomputed.
    DataError
        No validation cells.

    Warns
    -----
    UserWarning
        For each element shrunk to 0, and when there are no test cells.

    Examples
    --------
    >>> model = calibrate(ds, train(ds, "multilevel_unet"))  # doctest: +SKIP
    >>> print(model.summary())  # doctest: +SKIP
    """
    if not isinstance(model, GeoSRModel):
        raise ModelMismatchError(f"model: expected a GeoSRModel, found {type(model).__name__}")
    for name, v in (("std_floor", std_floor), ("min_gain", min_gain)):
        if not (isinstance(v, int | float) and 0 <= v < 1):
            raise ParameterError(f"{name}: expected a number in [0, 1), found {v!r}")
    ds, roles_da, note, codes, groups, unit_m = held_out_setup(ds, model, seed, roles,
                                                               "calibrate")
    k = uses_cross_fit(model, folds)
    held = evidence_held(ds, model, roles_da, codes, groups, unit_m, folds=k, tile=tile,
                         device=device, progress=progress)
    out = fit_calibration(model, held, std_floor, min_gain, note)
    return finish_calibration(out, ds, model, roles_da, seed, aoa_sample)


def finish_calibration(out: GeoSRModel, ds: xr.Dataset, model: GeoSRModel,
                       roles_da: xr.DataArray, seed: int | None, aoa_sample: int
                       ) -> GeoSRModel:
    """Record the split of a calibrated model and its area-of-applicability reference."""
    split = {k: v for k, v in roles_da.attrs.items() if k in SPLIT_ATTRS}
    out.validation["calibration"]["held_out"] = describe_gap(split)
    out.validation["calibration"]["split"] = json.loads(json.dumps(split, default=to_jsonable))
    aoa_seed = int(model.training.seed or 0) if seed is None else int(seed)
    out.aoa = aoa_reference(ds, model, roles_da, aoa_seed, aoa_sample)
    return out
