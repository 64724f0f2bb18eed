"""The settings of a training run (:class:`TrainConfig`), checked when made.

:meth:`TrainConfig.resolve` builds one from the keywords of :func:`geochem_sr.training.train`,
accepting the earlier names ``lr`` and ``model_kwargs`` with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

from geochem_sr.checks import check_positive_int, is_integer, is_number
from geochem_sr.errors import ParameterError

__all__ = ["TrainConfig", "TARGET_SCALES", "DEPRECATED_NAMES", "DEFAULT_MARGIN"]

#: Cells of input context around each training patch by default (:attr:`TrainConfig.margin`).
DEFAULT_MARGIN = 16
#: Accepted values of :attr:`TrainConfig.target_scale`.
TARGET_SCALES: tuple[str | None, ...] = ("rms", None)
#: Earlier keyword -> its name now; still accepted, with a DeprecationWarning.
DEPRECATED_NAMES: dict[str, str] = {"lr": "learning_rate", "model_kwargs": "network_kwargs"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Settings of :func:`geochem_sr.training.train` besides the dataset, network and inputs.

    Checked when made: a wrong value raises :class:`~geochem_sr.errors.ParameterError`
    naming it. Change one with ``dataclasses.replace(config, epochs=100)``, or pass it with
    overrides: ``train(ds, config=config, epochs=100)``.

    Attributes
    ----------
    elements : tuple of str, optional
        Elements to predict (default: all of ``ds.element``).
    epochs : int, default 50
        Maximum number of epochs (the paper: 1000; early stopping usually ends sooner).
    batch_size : int, default 32
        Patches per optimisation step (the paper's Table 5).
    learning_rate : float, default 3e-4
        Adam learning rate (the paper's is 1e-3; ``docs/notes/training.md`` says why not here).
    lr_step, lr_gamma : int, float, default 40, 0.5
        The learning rate is multiplied by ``lr_gamma`` every ``lr_step`` epochs.
    weight_decay : float, default 0
        Decoupled weight decay (AdamW) when positive; 0 is plain Adam (the paper's).
    patience : int or None, default 20
        Stop after this many epochs without a lower validation loss; None trains all
        ``epochs``.
    loss : str, default "mse"
        Masked loss (:func:`geochem_sr.training.losses.get_loss`): ``"mse"``,
        ``"mse+ssim"``, ``"l1"``, ``"ssim"``. With ``target_scale`` the training loss is
        computed on the standardised target; the validation loss, which selects the best
        epoch, always on the log10 residual that the returned model predicts.
    target_scale : {"rms", None}, default None
        ``"rms"``: the network is trained on ``residual / s_el`` per element, ``s_el`` the
        root mean square of the element's residual over the training patches; ``s_el`` is
        folded into the network's output convolution afterwards, so the model predicts the
        log10 residual itself (``model.training.target_scale_folded`` records the values).
    activation : str, optional
        Activation of the network (default: the network's own, a smooth ReLU).
    network_kwargs : mapping, optional
        Further network arguments, e.g. ``{"base_channels": 16}``.
    splitter : BlockSplitter, optional
        Spatial partition into train / validation / test blocks (default: the one of
        :func:`geochem_sr.sampling.prepare_training_data`).
    patch_size, stride : int, default 32, 16
        Patch size and step between patches, in cells.
    margin : int, optional
        Cells of input context around every patch: the network sees the patch widened by
        ``margin`` on every side and the loss is computed on the patch (the centre of its
        output). A model trained with a margin predicts whole tiles
        (``model.prediction.context = "tile"``), as its training taught it, at one forward
        per cell; with ``margin=0`` it predicts each tile as overlapping patch-size
        sub-windows (about 4 forwards per cell, ``docs/notes/training.md``). Default
        (None): :data:`DEFAULT_MARGIN` cells, or the network's reach when that is shorter
        (SRCNN: 6), rounded so that ``patch_size + 2 * margin`` is a multiple of the
        network's size multiple (16 for the U-Nets).
    augment : bool, default True
        Random rotations/flips of training patches (aspect turned consistently).
    seed : int, default 0
        Seeds the initial weights, the patch order and the augmentation.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available, else CPU.
    checkpoint : path, optional
        File written after every epoch with the whole training state.
    resume : bool, default True
        Continue from ``checkpoint`` when it exists (it must come from the same training
        set-up; ``epochs`` and ``patience`` may differ). False starts afresh.
    progress : bool, default True
        Show a tqdm bar over epochs with the training loss and validation metrics.
    ensemble : int, default 1
        Train this many networks with seeds ``seed, seed + 1, ...`` and return their mean.
    """

    elements: tuple[str, ...] | None = None
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 3e-4
    lr_step: int = 40
    lr_gamma: float = 0.5
    weight_decay: float = 0.0
    patience: int | None = 20
    loss: str = "mse"
    target_scale: str | None = None
    activation: str | None = None
    network_kwargs: Mapping[str, Any] | None = None
    splitter: Any = None
    patch_size: int = 32
    stride: int = 16
    margin: int | None = None
    augment: bool = True
    seed: int = 0
    device: str | None = None
    checkpoint: str | os.PathLike | None = None
    resume: bool = True
    progress: bool = True
    ensemble: int = 1

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "lr_step", "patch_size", "stride", "ensemble"):
            check_positive_int(name, getattr(self, name))
        if self.margin is not None and not (is_integer(self.margin) and self.margin >= 0):
            raise ParameterError(f"margin: expected a number of cells >= 0 or None, found "
                                 f"{self.margin!r}")
        if self.patience is not None:
            check_positive_int("patience", self.patience, " or None")
        lr = self.learning_rate
        if not (is_number(lr) and math.isfinite(lr) and lr > 0):
            raise ParameterError(f"learning_rate: expected a positive number, found {lr!r}")
        if not (is_number(self.lr_gamma) and 0 < self.lr_gamma <= 1):
            raise ParameterError(
                f"lr_gamma: expected a number in (0, 1], found {self.lr_gamma!r}")
        if not (is_number(self.weight_decay) and 0 <= self.weight_decay < 1):
            raise ParameterError(
                f"weight_decay: expected a number in [0, 1), found {self.weight_decay!r}")
        if self.target_scale not in TARGET_SCALES:
            raise ParameterError(f"target_scale: expected one of {TARGET_SCALES}, found "
                                 f"{self.target_scale!r}")
        if not is_integer(self.seed):
            raise ParameterError(f"seed: expected an integer, found {self.seed!r}")
        if self.network_kwargs is not None and not isinstance(self.network_kwargs, Mapping):
            raise ParameterError(f"network_kwargs: expected a mapping, found "
                                 f"{self.network_kwargs!r}")

    @classmethod
    def resolve(cls, config: TrainConfig | None = None, **overrides: Any) -> TrainConfig:
        """``config`` (default: the defaults) with ``overrides`` replacing its settings.

        Parameters
        ----------
        config : TrainConfig, optional
            The settings to start from.
        **overrides
            Settings by name; the earlier names ``lr`` and ``model_kwargs``
            (:data:`DEPRECATED_NAMES`) are accepted with a :class:`DeprecationWarning`.

        Returns
        -------
        TrainConfig

        Raises
        ------
        TypeError
            An unknown setting, or a setting given under both its names.
        ParameterError
            A wrong value.
        """
        if config is not None and not isinstance(config, cls):
            raise ParameterError(f"config: expected a TrainConfig, found {config!r}")
        for old, new in DEPRECATED_NAMES.items():
            if old in overrides:
                warnings.warn(f"train({old}=...) is deprecated; use {new}=...",
                              DeprecationWarning, stacklevel=3)
                if new in overrides:
                    raise TypeError(f"train() got both {old}= and {new}=; pass {new}= only")
                overrides[new] = overrides.pop(old)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"train() got unexpected keyword arguments {unknown}; the "
                            f"settings are {sorted(names)}")
        if overrides.get("elements") is not None:
            overrides["elements"] = tuple(overrides["elements"])
        return cls(**overrides) if config is None else dataclasses.replace(config, **overrides)

