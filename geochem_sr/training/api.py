""":func:`train`: a super-resolution network trained on a survey dataset, the way the paper does.

The settings are a :class:`~geochem_sr.training.config.TrainConfig`; :func:`fit_network`
trains one network and assembles the :class:`~geochem_sr.models.GeoSRModel`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geochem_sr.errors import ParameterError
from geochem_sr.jsonable import to_jsonable
from geochem_sr.models import CELL_MODELS, GeoSRModel, PredictionSettings, TrainingRecord
from geochem_sr.training.checkpoint import read_checkpoint, restore_run, setup_fingerprint
from geochem_sr.training.config import DEFAULT_MARGIN, TrainConfig
from geochem_sr.training.data import TrainingParts, augmentation, survey_metadata
from geochem_sr.training.ensembles import combine, member_config
from geochem_sr.training.loop import Run
from geochem_sr.training.runtime import deterministic, forked_rng, pick_device

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from geochem_sr.sampling import TrainingData

__all__ = ["train", "fit_network", "default_margin", "DEFAULT_NETWORK"]

#: The network :func:`train` trains by default (the paper's).
DEFAULT_NETWORK = "multilevel_unet"

def train(ds: xr.Dataset, network: str = DEFAULT_NETWORK, inputs: str = "auto", *,
          config: TrainConfig | None = None, data: TrainingData | None = None,
          callback: Callable[[dict[str, Any]], bool | None] | None = None,
          **overrides: Any) -> GeoSRModel:
    """Train a network to predict ``log10(hr) - log10(lr)`` and return the best model.

    Adam with a step-decayed learning rate on patches of the blocks where both surveys
    exist, validated every epoch on held-out blocks; the weights returned are those of the
    best validation epoch (``docs/notes/training.md`` says how and why).

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset with ``lr``, ``hr`` and the variables of ``inputs``.
    network : str, default "multilevel_unet"
        Network name (:func:`geochem_sr.models.get_model`): ``"multilevel_unet"``,
        ``"srcnn"``, ``"vdsr"`` or ``"unet"``. ``model=`` is accepted too, deprecated.
    inputs : str, default "auto"
        Input set: the paper's three (``"geochem"``, ``"geochem+terrain"``,
        ``"geochem+terrain+geology"``), any ``+``-joined groups of
        :data:`geochem_sr.schema.INPUT_GROUPS`, or ``"auto"``: every group the dataset
        provides (:func:`geochem_sr.features.resolve_inputs`).
    config : TrainConfig, optional
        The settings (epochs, learning rate, batch size, patience, loss, patch size,
        stride, augmentation, seed, device, checkpoint, ensemble, ...; see
        :class:`~geochem_sr.training.config.TrainConfig` for each and its default).
    data : TrainingData, optional
        Patches already prepared by :func:`geochem_sr.sampling.prepare_training_data`;
        then ``inputs``, ``elements``, ``splitter`` and ``patch_size`` are taken from it.
    callback : callable, optional
        Called after every epoch (after the checkpoint is written) with that epoch's
        history record; returning True stops training (the model is still returned, and a
        later call with the same checkpoint continues).
    **overrides
        Settings of :class:`TrainConfig` by name, replacing those of ``config``:
        ``train(ds, epochs=100, learning_rate=1e-3)``.

    Returns
    -------
    GeoSRModel
        The weights of the epoch with the lowest validation loss, with everything applying
        them needs (channels, elements, units, normalisation, geology vocabulary), the
        training record (``model.training``) and a validation report on the held-out
        blocks: ``validation["per_element"][el]`` holds ``rmse_lr`` (the sparse map against
        the dense one, log10), ``rmse_pred`` (the super-resolved map against the dense one)
        and ``gain = 1 - rmse_pred / rmse_lr``, each validation cell counted once
        (overlapping window predictions averaged); ``validation["val_loss_zero"]`` is the
        loss of predicting no change. ``history`` has one record per epoch: ``epoch`` (from
        1), ``train_loss``, ``val_loss`` (mean over the validation patches), ``val_rmse``
        (RMSE of the residual over the known cells of the validation patches, log10),
        ``lr`` (the learning rate of that epoch) and ``seconds``. With ``ensemble=n`` the
        mean of ``n`` networks (:class:`geochem_sr.models.ensemble.Ensemble`), each with its
        own early stopping and checkpoint ``<checkpoint>.member<i>``;
        ``model.training.ensemble`` lists the members.

    Raises
    ------
    ParameterError
        Unknown network, activation, loss or device; bad numeric settings.
    SchemaError
        Unknown input set.
    DataError
        No training or no validation patches.
    ModelMismatchError
        ``checkpoint`` was written by a different training set-up.
    ModelFileError
        ``checkpoint`` cannot be read.

    Warns
    -----
    UserWarning
        When the best validation loss is not below that of predicting no change (a zero
        residual): the model does not improve on the sparse map there.
    DeprecationWarning
        For the earlier keywords ``model=``, ``lr=`` and ``model_kwargs=``.

    Examples
    --------
    >>> model = train(ds, "multilevel_unet", "geochem+terrain+geology", epochs=50)  # doctest: +SKIP
    >>> print(model.summary())  # doctest: +SKIP
    """
    if "model" in overrides:
        warnings.warn("train(model=...) is deprecated; use network=...", DeprecationWarning,
                      stacklevel=2)
        network = overrides.pop("model")
    config = TrainConfig.resolve(config, **overrides)
    _check_network(network)
    cells = network in CELL_MODELS  # fitted per cell: patches without context
    given = None if data is None else getattr(data.train, "margin", 0)
    if not cells and given is not None and config.margin is not None \
            and config.margin != given:
        raise ParameterError(
            f"margin: {config.margin} asked, but the given patches were prepared with a "
            f"margin of {given}; prepare them with "
            f"prepare_training_data(..., margin={config.margin}) or leave margin out")
    if config.margin is None and data is None and not cells:  # given patches carry theirs
        config = dataclasses.replace(config, margin=default_margin(
            network, config.network_kwargs, config.patch_size))
    if data is None:
        from geochem_sr.sampling import prepare_training_data

        data = prepare_training_data(ds, inputs, elements=config.elements,
                                     splitter=config.splitter, patch_size=config.patch_size,
                                     stride=config.stride, seed=config.seed,
                                     margin=0 if cells else config.margin)
    if cells:
        from geochem_sr.training.cells import fit_cells

        return fit_cells(ds, network, config, data)
    parts = TrainingParts(data, config.stride)
    if config.ensemble == 1:
        return fit_network(ds, network, config, parts, callback)
    members = [fit_network(ds, network, member_config(config, i), parts, callback)
               for i in range(config.ensemble)]
    return combine(members, parts, config.device)


def fit_network(ds: xr.Dataset, network: str, config: TrainConfig, parts: TrainingParts,
                callback: Callable[[dict[str, Any]], bool | None] | None = None
                ) -> GeoSRModel:
    """Train one network on prepared patches (resuming its checkpoint) and assemble the model.

    The datasets' augmentation and the caller's random states and deterministic-algorithm
    settings are left as they were.
    """
    dev = pick_device(config.device)
    net_kwargs = dict(config.network_kwargs or {})
    if config.activation is not None:
        net_kwargs["activation"] = config.activation
    setup = setup_fingerprint(network, parts, net_kwargs, config)
    ckpt = Path(config.checkpoint) if config.checkpoint is not None else None
    with augmentation(parts.train, config.augment), augmentation(parts.val, False), \
            deterministic(dev), forked_rng(dev):
        run = Run.start(parts, network, net_kwargs, config, dev)
        if ckpt is not None and config.resume and ckpt.exists():
            restore_run(run, read_checkpoint(ckpt), setup, ckpt)
        run.fit(config.epochs, config.patience, ckpt, setup, config.progress, callback)
        report = run.validation_report()
    return _assemble(ds, network, parts, run, report, config)


def default_margin(network: str, network_kwargs: Any, patch_size: int) -> int:
    """The margin of input context a network is trained with by default.

    :data:`~geochem_sr.training.config.DEFAULT_MARGIN` cells, or the network's reach (half
    its receptive field) when shorter, then rounded up so that ``patch_size + 2 * margin``
    is a multiple of its size multiple.
    """
    import torch

    from geochem_sr.models import network_geometry

    kwargs = {"in_channels": 1, "out_channels": 1, **dict(network_kwargs or {})}
    with torch.random.fork_rng(devices=[]):  # building a network draws initial weights
        multiple, field = network_geometry(network, kwargs)
    margin = min(DEFAULT_MARGIN, max(0, (field - 1) // 2))
    side = -(-(int(patch_size) + 2 * margin) // multiple) * multiple  # rounded up
    return (side - int(patch_size) + 1) // 2


def _check_network(network: Any) -> None:
    from geochem_sr.models import model_class

    if network == "auto":
        raise ParameterError(
            "network: 'auto' compares several methods and is gs.select(ds) or "
            "ds.geosr.train('auto'); train() fits one")
    try:
        model_class(network)
    except ParameterError as err:
        raise ParameterError(f"network: {err}") from None


def _assemble(ds: xr.Dataset, network: str, parts: TrainingParts, run: Run,
              report: dict[str, Any], config: TrainConfig) -> GeoSRModel:
    """The model file of a finished run; warns when it does not beat predicting no change."""
    vocab, units = survey_metadata(ds, parts.inputs, parts.elements)
    if report["val_loss"] >= report["val_loss_zero"]:
        warnings.warn(
            f"validation: the best validation loss ({report['val_loss']:.4g}) is not below that "
            f"of predicting no change ({report['val_loss_zero']:.4g}); on the held-out blocks "
            "this model does not improve on the sparse map",
            UserWarning, stacklevel=4,
        )
    record = TrainingRecord(
        seed=int(config.seed), epochs_run=run.epoch, stopped_early=run.stopped_early,
        split=parts.split_summary(), stride=parts.stride, margin=parts.margin,
        loss=config.loss,
        batch_size=int(config.batch_size), device=str(run.dev),
        target_scale_folded=dict(zip(parts.elements, run.scale_values, strict=True)))
    return GeoSRModel(
        network_name=network,
        network_config=json.loads(json.dumps(run.net.config, default=to_jsonable)),
        state_dict=run.folded_weights(),
        inputs=parts.inputs,
        channels=list(parts.channels),
        elements=list(parts.elements),
        units=units,
        norm_stats=dict(parts.stats),
        geology_vocabulary=vocab,
        patch_size=parts.patch_size,
        validation=report,
        history=copy.deepcopy(run.history),
        training=record,
        prediction=PredictionSettings(context="tile", border=parts.margin) if parts.margin
        else PredictionSettings(),
    )
