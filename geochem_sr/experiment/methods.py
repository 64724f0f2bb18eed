"""The methods a geochemist could pick, beside the paper's networks, on the same split.

:func:`method_rows` trains the per-cell trees and ridge regression on the toolkit row's
inputs and split, and selects per element among them, the toolkit's network and the
sparse map (:func:`geochem_sr.trust.select`). Every method is calibrated (the network on
the validation blocks, the per-cell regressors on out-of-fold predictions of the training
and validation blocks) and scored on the test blocks (per-element gain over the sparse map
with its delete-one-block jackknife error), with its cost: CPU seconds to train and
calibrate, and to predict a 1024 x 1024-cell region (measured on the experiment's region,
scaled by cells).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import xarray as xr

from geochem_sr.experiment.networks import predict_map
from geochem_sr.experiment.scoring import block_gains, score_map

if TYPE_CHECKING:  # pragma: no cover
    from geochem_sr.experiment.profiles import Profile
    from geochem_sr.models import GeoSRModel
    from geochem_sr.sampling import TrainingData

__all__ = ["METHODS", "METHOD_LABELS", "method_rows", "calibrated_gains", "predict_cost",
           "classical_gains"]

#: Rows of the methods table besides the toolkit's network, in table order.
METHODS: tuple[str, ...] = ("trees", "ridge", "auto")
METHOD_LABELS: dict[str, str] = {
    "toolkit": "Multi-level U-Net (toolkit recipe)",
    "trees": "Gradient-boosted trees per cell (LightGBM)",
    "ridge": "Ridge regression per cell",
    "auto": "Per element the best on held-out evidence (`train('auto')`)",
}
#: Side of the region the prediction cost is given for.
COST_SIDE = 1024


def calibrated_gains(model: GeoSRModel) -> dict[str, dict[str, float]]:
    """Per element: test-block gain after calibration, its jackknife error, shrinkage."""
    out = {}
    for el, r in model.validation.get("per_element", {}).items():
        out[str(el)] = {k: float(r.get(k, float("nan")))
                        for k in ("gain", "gain_se", "shrinkage", "coverage_1std")}
    return out


def classical_gains(ds: xr.Dataset, maps: Mapping[str, xr.DataArray], data: TrainingData,
                    model: GeoSRModel) -> dict[str, dict[str, dict[str, float]]]:
    """Per classical map and element: test-block gain over the sparse map and its
    delete-one-block jackknife error, on the cells and blocks the methods' calibration
    scores on (``model``'s evidence blocks on ``data``'s split), so the rows compare."""
    import numpy as np

    from geochem_sr.sampling import ROLE_TEST
    from geochem_sr.trust.roles import evidence_blocks
    from geochem_sr.trust.shrinkage import MIN_GROUPS

    groups, _ = evidence_blocks(ds, model, data.roles, MIN_GROUPS)
    test = np.asarray(data.roles.values) == ROLE_TEST
    return {key: block_gains(ds, pred, test, groups) for key, pred in maps.items()}


def predict_cost(ds: xr.Dataset, model: GeoSRModel) -> tuple[xr.DataArray, float]:
    """The model's map of the region and the CPU seconds it took, scaled to
    :data:`COST_SIDE` squared cells."""
    c0 = time.process_time()
    pred = predict_map(ds, model)
    cells = int(ds.sizes["y"]) * int(ds.sizes["x"])
    return pred, (time.process_time() - c0) * COST_SIDE**2 / cells


def _row(key: str, model: GeoSRModel, ds: xr.Dataset, truth: xr.DataArray,
         windows: Sequence[Any], train_cpu: float, wall: float) -> dict[str, Any]:
    pred, cost = predict_cost(ds, model)
    return {"key": key, "kind": "method", "network": model.network_name,
            "inputs": model.inputs, "label": METHOD_LABELS[key],
            **score_map(ds, truth, pred, windows), "gains": calibrated_gains(model),
            "train_cpu_s": train_cpu, "predict_cpu_s_1024": cost,
            "seconds": time.perf_counter() - wall,
            "selection": model.notes.get("selection")}


def method_rows(ds: xr.Dataset, data: TrainingData, toolkit: GeoSRModel,
                toolkit_train_cpu: float, profile: Profile, seed: int,
                truth: xr.DataArray, windows: Sequence[Any],
                log: Callable[[str], None]) -> list[dict[str, Any]]:
    """The toolkit's network, trees, ridge and the selection, calibrated and scored."""
    from geochem_sr.training import train
    from geochem_sr.trust import calibrate, select

    rows, trained, cpu = [], {}, {"toolkit": toolkit_train_cpu}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        w0, c0 = time.perf_counter(), time.process_time()
        cal = calibrate(ds, toolkit, roles=data.roles, seed=seed)
        rows.append(_row("toolkit", cal, ds, truth, windows,
                         toolkit_train_cpu + time.process_time() - c0, w0))
        for kind in ("trees", "ridge"):
            w0, c0 = time.perf_counter(), time.process_time()
            trained[kind] = train(ds, kind, data.inputs_set, data=data, seed=seed,
                                  ensemble=profile.toolkit_ensemble)
            cpu[kind] = time.process_time() - c0
            cal = calibrate(ds, trained[kind], roles=data.roles, seed=seed,
                            folds=profile.cross_fit_folds)
            rows.append(_row(kind, cal, ds, truth, windows, time.process_time() - c0, w0))
            log(f"{kind}: mean calibrated test gain {_mean_gain(rows[-1]):+.2%}, "
                f"train {cpu[kind]:.0f} CPU s")
        w0, c0 = time.perf_counter(), time.process_time()
        auto = select(ds, [toolkit, trained["trees"], trained["ridge"]], roles=data.roles,
                      folds=profile.cross_fit_folds)
        rows.append(_row("auto", auto, ds, truth, windows,
                         sum(cpu.values()) + time.process_time() - c0, w0))
    log(f"auto: mean calibrated test gain {_mean_gain(rows[-1]):+.2%}; methods "
        + ", ".join(f"{el} {row['method']}" for el, row in auto.notes["selection"].items()))
    return rows


def _mean_gain(row: dict[str, Any]) -> float:
    g = [v["gain"] for v in row["gains"].values()]
    return sum(g) / len(g) if g else float("nan")
