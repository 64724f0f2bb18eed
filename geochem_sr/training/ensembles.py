"""Ensembles: ``n`` networks trained with seeds ``seed, seed + 1, ...``, stored as their mean.

:func:`member_config` gives each member's settings; :func:`combine` makes one
:class:`~geochem_sr.models.ensemble.Ensemble` model of the trained members and reports on
the validation cells as for a single network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from geochem_sr.training.data import augmentation, centre, report_on_windows
from geochem_sr.training.runtime import PREDICT_BATCH, predict_batched, prepared_network

if TYPE_CHECKING:  # pragma: no cover
    from geochem_sr.models import GeoSRModel
    from geochem_sr.training.config import TrainConfig
    from geochem_sr.training.data import TrainingParts

__all__ = ["member_config", "combine", "ensemble_payload"]


def member_config(config: TrainConfig, i: int) -> TrainConfig:
    """The settings of member ``i``: seed ``seed + i``, checkpoint ``<checkpoint>.member<i>``."""
    ckpt = None if config.checkpoint is None else f"{config.checkpoint}.member{i}"
    return dataclasses.replace(config, seed=config.seed + i, checkpoint=ckpt, ensemble=1)


def ensemble_payload(member: str, member_config: Mapping[str, Any],
                     states: list[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``network_config`` and weights of an :class:`~geochem_sr.models.ensemble.Ensemble`
    of ``len(states)`` members named ``member``, each built from ``member_config`` (with
    its ``in_channels`` and ``out_channels``) and holding its own weights."""
    cfg = dict(member_config)
    config = {"in_channels": cfg.pop("in_channels"), "out_channels": cfg.pop("out_channels"),
              "member": member, "n": len(states), "member_config": cfg}
    state = {f"members.{i}.{k}": v for i, st in enumerate(states) for k, v in st.items()}
    return config, state


def combine(members: list[GeoSRModel], parts: TrainingParts,
            device: str | None) -> GeoSRModel:
    """One :class:`~geochem_sr.models.ensemble.Ensemble` model from trained members.

    The first member's metadata is kept; ``training.ensemble`` lists the members (seed,
    epochs run, best epoch, validation gains) and the validation report is measured anew
    on the validation cells.
    """
    first = members[0]
    config, state = ensemble_payload(first.network_name, first.network_config,
                                     [m.state_dict for m in members])
    record = dataclasses.replace(first.training, ensemble=[
        {"seed": m.training.seed, "epochs_run": m.training.epochs_run,
         "best_epoch": m.validation.get("best_epoch"),
         "val_gain": {el: v["gain"] for el, v in m.validation["per_element"].items()}}
        for m in members])
    ens = dataclasses.replace(first, network_name="ensemble", network_config=config,
                              state_dict=state, training=record,
                              prediction=dataclasses.replace(first.prediction,
                                                             spread="members"))
    ens.validation = _windows_report(ens, parts, device, first.validation)
    return ens


def _windows_report(model: GeoSRModel, parts: TrainingParts, device: str | None,
                    like: dict[str, Any]) -> dict[str, Any]:
    """:meth:`~geochem_sr.training.loop.Run.validation_report` for a finished model."""
    import torch

    val, n = parts.val, len(parts.data.val_windows)
    net, dev, fmt = prepared_network(model, device)

    def predictions() -> Iterator[np.ndarray]:
        for start in range(0, n, PREDICT_BATCH):
            x = torch.stack([val[i][0] for i in range(start, min(start + PREDICT_BATCH, n))])
            out = predict_batched(net, torch.nan_to_num(x.float()), dev, fmt)
            yield from centre(out, parts.margin).double().numpy()

    with augmentation(val, False):
        per_element, (mse, mse_zero) = report_on_windows(parts, predictions())
    return {"val_loss": mse, "best_epoch": like.get("best_epoch"), "val_loss_zero": mse_zero,
            "per_element": per_element,
            "val_loss_note": "ensemble: mean squared error over the validation cells"}
