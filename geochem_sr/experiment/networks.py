"""The network rows: train one network on the shared split, predict the grid, its trust figures.

Each function wraps one toolkit call (``train``, ``super_resolve``, ``trust.calibrate``,
``trust.cross_validate``) with the experiment's settings and collects what the results
file reports.
"""

from __future__ import annotations

import dataclasses
import math
import traceback
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.experiment.profiles import Profile
from geochem_sr.experiment.scoring import as_prediction
from geochem_sr.jsonable import to_jsonable

if TYPE_CHECKING:  # pragma: no cover
    from geochem_sr.models import GeoSRModel
    from geochem_sr.sampling import TrainingData

__all__ = ["predict_map", "train_network", "training_info", "trust_figures",
           "cross_validate_network"]

#: TrainConfig settings not passed to ``trust.cross_validate``: it makes its own folds
#: (``splitter``), keeps no checkpoint (``checkpoint``, ``resume``) and trains one network
#: per fold (``ensemble``).
_NOT_CROSS_VALIDATED = frozenset({"splitter", "checkpoint", "resume", "ensemble"})


def predict_map(ds: xr.Dataset, model: GeoSRModel) -> xr.DataArray:
    """The model's map of the whole grid through the toolkit's tiled inference."""
    from geochem_sr.inference import super_resolve

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pred = super_resolve(ds, model, uncertainty=False)
        hr_pred = pred[schema.HR_PRED].compute()
    return as_prediction(hr_pred, ds, model.elements)


def train_network(ds: xr.Dataset, data: TrainingData, network: str, profile: Profile,
                  seed: int, *, toolkit: bool = False) -> tuple[GeoSRModel, list[str]]:
    """Train one row's network on the shared split (:meth:`Profile.train_config`).

    ``toolkit=True``: the toolkit row (its learning rate, an ensemble). Returns the model
    and the distinct warnings its training gave.
    """
    from geochem_sr.training import train

    config = profile.train_config(network, seed, toolkit=toolkit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        model = train(ds, network, data.inputs_set, config=config, data=data)
    notes = sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)})
    return model, notes


def training_info(model: GeoSRModel, notes: list[str]) -> dict[str, Any]:
    """What the training of one row did: size, epochs, validation losses and gains, time."""
    from geochem_sr.models.layers import count_parameters

    rec = model.training
    val = model.validation or {}
    gains = [v.get("gain") for v in (val.get("per_element") or {}).values()]
    gains = [g for g in gains if g is not None and math.isfinite(g)]
    hist = model.history or []
    return {
        "parameters": int(count_parameters(model.build_network(device="cpu"))),
        "network_config": model.network_config,
        "channels": len(model.channels),
        "epochs_run": rec.epochs_run,
        "best_epoch": val.get("best_epoch"),
        "stopped_early": rec.stopped_early,
        "val_loss": val.get("val_loss"),
        "val_loss_zero": val.get("val_loss_zero"),
        "val_gain_mean": float(np.mean(gains)) if gains else None,
        "val_per_element": val.get("per_element"),
        "train_loss_first_last": ([hist[0]["train_loss"], hist[-1]["train_loss"]]
                                  if hist else None),
        "seconds_per_epoch": (float(np.mean([h["seconds"] for h in hist])) if hist else None),
        "device": rec.device,
        "loss": rec.loss,
        "target_scale": rec.target_scale_folded,
        "ensemble": rec.ensemble,
        "warnings": notes,
    }


def trust_figures(ds: xr.Dataset, model: GeoSRModel, data: TrainingData, seed: int
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
        per = {str(el): {c: to_jsonable(df.loc[el, c]) for c in df.columns} for el in df.index}
        return {"per_element": per, "measured_on": df.attrs.get("measured_on", ""),
                "warnings": sorted({str(w.message) for w in caught})}
    except Exception as exc:  # noqa: BLE001 - reported in the results, the table goes on
        return {"error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=4)}


def cross_validate_network(ds: xr.Dataset, inputs: str, profile: Profile, seed: int
                           ) -> dict[str, Any]:
    """Spatial k-fold cross-validation of the multi-level U-Net (``cv_folds`` > 0).

    Trained with the row's settings (:meth:`Profile.train_config`) less those that
    ``cross_validate`` makes itself or does not take (:data:`_NOT_CROSS_VALIDATED`).
    """
    try:
        from geochem_sr.trust import cross_validate

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            config = profile.train_config("multilevel_unet", seed)
            settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                        if f.name not in _NOT_CROSS_VALIDATED}
            rep = cross_validate(ds, "multilevel_unet", inputs, folds=profile.cv_folds,
                                 keep_oof=False, **settings)
        return to_jsonable(rep.to_dict())
    except Exception as exc:  # noqa: BLE001 - reported in the results, the table goes on
        return {"error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=4)}
