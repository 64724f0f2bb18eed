"""Training a super-resolution network on a survey dataset, the way the paper does, made safe.

:func:`train` follows Pei et al. (2025, Table 5): Adam with learning rate 1e-3, the rate
halved every 40 epochs (``StepLR``), batches of 32 patches of 32x32 cells, a loss mixing
pixel error and structure (:func:`geochem_sr.losses.get_loss`). Two defaults deviate from
a literal reading, measured in ``benchmarks/learnability.py``
(``benchmarks/results/learnability.md``):

* **The target can be standardised per element** (``target_scale="rms"``, off by default
  to keep the paper's set-up; see the benchmark for its effect): the network learns
  ``residual / s_el``, with ``s_el`` the RMS of the element's residual over the training
  patches, and ``s_el`` is folded into the weights and bias of its output convolution after
  training, so the returned model predicts ``log10(hr) - log10(lr)`` directly (the model
  file and inference are unchanged). Raw log10 residuals have RMS 0.07-0.2 and differ
  two-fold between elements: without it the loss is dominated by the noisiest elements
  (Au, Sb), and the SSIM term's fixed ``data_range=1`` (which
  :mod:`geochem_sr.losses` documents for unit-scale targets) is 5-15 times the data's
  spread.
* **The default learning rate is 3e-4**, not 1e-3. In spatial 5-fold cross-validation on
  the default synthetic region (one multi-level U-Net, base width 16, ``inputs="auto"``,
  seed 0) the mean gain over the sparse map was +1.6 % with 3e-4, +0.6 % with 1e-3 and
  +0.3 % with 1e-4 (measured before a fix of the two ``unseen:aspect`` channels; after it,
  3e-4 gave +1.3 % and +0.3 % with seeds 0 and 1, and an ensemble of three +2.5 % and
  +1.3 %: ``benchmarks/results/trust.md``). ``lr=1e-3`` gives the paper's set-up.
* **The default loss is ``"mse"``**, not ``"mse+ssim"``. On raw residuals the SSIM term of
  the mix was about 40 times the MSE term; SSIM is maximised by reproducing the local
  variance of the dense map, which on the unpredictable part of the residual means
  inventing detail: on the synthetic region the best validation loss of ``"mse+ssim"`` stayed
  at or above that of predicting no change (U-Nets) or within 1 % of it (SRCNN, VDSR), and
  SRCNN lost 19 % RMSE on the test blocks (``losses.DEFAULT_LOSS`` follows). The scores
  (RMSE gain, do-no-harm shrinkage) are pixel errors, so the default loss is the pixel
  error; ``loss="mse+ssim"`` remains available.

What the paper does not print and a researcher needs:

* **Spatial validation every epoch.** The area where both surveys exist is cut into blocks
  (:class:`geochem_sr.patches.BlockSplitter`); validation patches come from blocks that no
  training patch touches. The loss and the RMSE of the residual on them are recorded every
  epoch, and the weights returned are those of the **best validation epoch**, not the last:
  on real data the test error was lowest after a few epochs while the training loss kept
  falling (``DESIGN.md``). Training stops early after ``patience`` epochs without a better
  validation loss.
* **Checkpoint and resume.** With ``checkpoint=path`` the whole training state (weights,
  optimiser, scheduler, every random generator, history, best weights) is written after
  every epoch, atomically. Calling :func:`train` again with the same arguments continues
  from the last finished epoch, and ends with weights bit-identical to a run that was never
  interrupted (on the same machine and thread count).
* **Determinism.** Everything random is seeded from ``seed``: the initial weights, the
  order of the patches, the augmentation. The global random state of the caller is left as
  it was (:func:`torch.random.fork_rng`).
* **Speed.** CPU or CUDA is chosen automatically; convolutions run in ``channels_last``
  memory format (1.3-1.9x faster on CPU, see ``STACK.md``); torch's thread count is left
  alone. Data loading runs in the main process (``num_workers=0``), which keeps it
  deterministic; its cost is measured in ``benchmarks/bench_training.py``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geochem_sr import schema
from geochem_sr.errors import DataError, ModelMismatchError, SchemaError
from geochem_sr.model_file import GeoSRModel, read_payload

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import xarray as xr

    from geochem_sr.patches import TrainingData

__all__ = ["train", "predict_patches", "CHECKPOINT_FORMAT"]

#: Format tag of a training checkpoint file.
CHECKPOINT_FORMAT = "geochem_sr.checkpoint/1"
#: Batch size used when predicting (no gradients, so larger than the training batch).
_PREDICT_BATCH = 64
#: Accepted values of ``train(target_scale=...)``.
_TARGET_SCALES = ("rms", None)


# =========================================================================== public API
def train(
    ds: xr.Dataset,
    model: str = "multilevel_unet",
    inputs: str = "auto",
    *,
    elements: list[str] | tuple[str, ...] | None = None,
    epochs: int = 50,
    batch_size: int = 32,
    lr: float = 3e-4,
    lr_step: int = 40,
    lr_gamma: float = 0.5,
    weight_decay: float = 0.0,
    patience: int | None = 20,
    loss: str = "mse",
    target_scale: str | None = None,
    activation: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    splitter: Any = None,
    patch_size: int = 32,
    stride: int = 16,
    augment: bool = True,
    seed: int = 0,
    device: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    data: TrainingData | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
    ensemble: int = 1,
) -> GeoSRModel:
    """Train a network to predict ``log10(hr) - log10(lr)`` and return the best model.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset with ``lr``, ``hr`` and the variables of ``inputs``.
    model : str, default "multilevel_unet"
        Network name (:func:`geochem_sr.models.get_model`): ``"multilevel_unet"``,
        ``"srcnn"``, ``"vdsr"`` or ``"unet"``.
    inputs : str, default "auto"
        Input set: the paper's three (``"geochem"``, ``"geochem+terrain"``,
        ``"geochem+terrain+geology"``), any ``+``-joined groups of
        :data:`geochem_sr.schema.INPUT_GROUPS`, or ``"auto"``: every group the dataset
        provides (:func:`geochem_sr.schema.resolve_inputs`).
    elements : sequence of str, optional
        Elements to predict (default: all of ``ds.element``).
    epochs : int, default 50
        Maximum number of epochs (the paper: 1000; early stopping usually ends sooner).
    batch_size : int, default 32
        Patches per optimisation step (the paper's Table 5).
    lr : float, default 3e-4
        Adam learning rate (the paper's is 1e-3; the module notes say why not here).
    lr_step, lr_gamma : int, float, default 40, 0.5
        The learning rate is multiplied by ``lr_gamma`` every ``lr_step`` epochs.
    weight_decay : float, default 0
        Decoupled weight decay (AdamW) when positive; 0 is plain Adam (the paper's).
    patience : int or None, default 20
        Stop after this many epochs without a lower validation loss; None trains all
        ``epochs``.
    loss : str, default "mse"
        Masked loss (:func:`geochem_sr.losses.get_loss`): ``"mse"``, ``"mse+ssim"``, ``"l1"``.
        With ``target_scale`` the training loss is computed on the standardised target; the
        validation loss, which selects the best epoch, is always computed on the log10
        residual that the returned model predicts.
    target_scale : {"rms", None}, default None
        ``"rms"``: the network is trained on ``residual / s_el`` per element, ``s_el`` the
        root mean square of the element's residual over the training patches; ``s_el`` is
        folded into the network's output convolution afterwards, so the model predicts the
        log10 residual itself (``extra["target_scale_folded"]`` records the values). None:
        train on the raw log10 residual.
    activation : str, optional
        Activation of the network (default: the network's own, a smooth ReLU).
    model_kwargs : mapping, optional
        Further network arguments, e.g. ``{"base_channels": 16}``.
    splitter : BlockSplitter, optional
        Spatial partition into train / validation / test blocks (default: the one of
        :func:`geochem_sr.patches.prepare_training_data`).
    patch_size, stride : int, default 32, 16
        Patch size and step between patches, in cells.
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
    data : TrainingData, optional
        Patches already prepared by :func:`geochem_sr.patches.prepare_training_data`;
        then ``inputs``, ``elements``, ``splitter``, ``patch_size`` and ``stride`` are
        taken from it.
    ensemble : int, default 1
        Train this many networks with seeds ``seed, seed + 1, ...`` on the same patches
        (each with its own early stopping; checkpoints ``<checkpoint>.member<i>``) and
        return their mean (:class:`geochem_sr.models.ensemble.Ensemble`), whose validation
        report is measured on the validation blocks like a single network's;
        ``extra["ensemble"]`` lists the members. Costs ``ensemble`` times the training.
    callback : callable, optional
        Called after every epoch (after the checkpoint is written) with that epoch's
        history record; returning True stops training (the model is still returned, and a
        later call with the same checkpoint continues).

    Returns
    -------
    GeoSRModel
        The weights of the epoch with the lowest validation loss, with everything applying
        them needs (channels, elements, units, normalisation, geology vocabulary) and a
        validation report on the held-out blocks: ``validation["per_element"][el]`` holds
        ``rmse_lr`` (the sparse map against the dense one, log10), ``rmse_pred`` (the
        super-resolved map against the dense one) and ``gain = 1 - rmse_pred / rmse_lr``,
        each validation cell counted once (overlapping window predictions averaged);
        ``validation["val_loss_zero"]`` is the loss of predicting no change. ``history`` has
        one record per epoch: ``epoch`` (from 1), ``train_loss``, ``val_loss`` (mean over the
        validation patches), ``val_rmse`` (RMSE of the residual over the known cells of the
        validation patches, log10), ``lr`` (the rate used in that epoch) and ``seconds``.

    Raises
    ------
    SchemaError
        Unknown network, loss, input set or activation; bad numeric arguments.
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

    Examples
    --------
    >>> model = train(ds, "multilevel_unet", "geochem+terrain+geology", epochs=50)  # doctest: +SKIP
    >>> print(model.summary())  # doctest: +SKIP
    """
    _check_arguments(epochs, batch_size, lr, lr_step, lr_gamma, patience)
    n_members = _check_ensemble(ensemble)
    if not (isinstance(weight_decay, int | float) and 0 <= weight_decay < 1):
        raise SchemaError(f"weight_decay: expected a number in [0, 1), found {weight_decay!r}")
    if target_scale not in _TARGET_SCALES:
        raise SchemaError(f"target_scale: expected one of {_TARGET_SCALES}, found {target_scale!r}")
    if data is None:
        from geochem_sr.patches import prepare_training_data

        data = prepare_training_data(ds, inputs, elements=elements, splitter=splitter,
                                     patch_size=patch_size, stride=stride, seed=seed)
    parts = _unpack(data, stride)
    if n_members != 1:
        members = [
            train(ds, model, epochs=epochs, batch_size=batch_size, lr=lr, lr_step=lr_step,
                  lr_gamma=lr_gamma, weight_decay=weight_decay, patience=patience, loss=loss,
                  target_scale=target_scale, activation=activation, model_kwargs=model_kwargs,
                  stride=stride, augment=augment, seed=seed + i, device=device,
                  checkpoint=None if checkpoint is None else f"{checkpoint}.member{i}",
                  resume=resume, progress=progress, data=data, callback=callback)
            for i in range(n_members)]
        return _combine(members, parts, device)
    dev = _pick_device(device)
    net_kwargs = dict(model_kwargs or {})
    if activation is not None:
        net_kwargs["activation"] = activation
    setup = _setup_fingerprint(model, parts, net_kwargs, batch_size, lr, lr_step, lr_gamma,
                               loss, augment, seed)
    if target_scale is not None:  # absent when off: checkpoints of earlier versions resume
        setup["target_scale"] = target_scale
    if weight_decay:
        setup["weight_decay"] = float(weight_decay)
    augment_was = [getattr(d, "augment", None) for d in (parts.train, parts.val)]
    try:
        with _deterministic(dev), _forked_rng(dev):
            run = _Run.start(parts, model, net_kwargs, loss, batch_size, lr, lr_step,
                             lr_gamma, augment, seed, dev, target_scale, weight_decay)
            ckpt = Path(checkpoint) if checkpoint is not None else None
            if ckpt is not None and resume and ckpt.exists():
                run.restore(_read_checkpoint(ckpt), setup, ckpt)
            run.fit(epochs, patience, ckpt, setup, progress, callback)
            report = run.validation_report()
    finally:  # a TrainingData passed in is left as it came
        for d, was in zip((parts.train, parts.val), augment_was, strict=True):
            if was is not None:
                d.augment = was
    return _assemble(ds, parts, run, report, model, batch_size, loss, seed)


def predict_patches(model: GeoSRModel, x: torch.Tensor, device: str | None = None) -> torch.Tensor:
    """Predict the residual of a batch of normalised input patches.

    Parameters
    ----------
    model : GeoSRModel
        A trained model.
    x : torch.Tensor
        ``(N, C, H, W)`` normalised inputs in the model's channel order (as a
        :class:`geochem_sr.patches.PatchDataset` yields them); NaN is read as 0 (the mean).
    device : str, optional
        Where to run (default CUDA when available, else CPU).

    Returns
    -------
    torch.Tensor
        ``(N, E, H, W)`` float32 on the CPU: the predicted ``log10(hr) - log10(lr)``.
    """
    import torch

    if x.ndim != 4 or x.shape[1] != len(model.channels):
        raise SchemaError(
            f"x: expected a tensor (N, {len(model.channels)}, H, W) for channels "
            f"{model.channels}, found shape {tuple(x.shape)}"
        )
    dev = _pick_device(device)
    net = model.build_network(device=str(dev))
    fmt = _memory_format(dev, net)
    net = net.to(memory_format=fmt)
    return _predict(net, torch.nan_to_num(x.float()), dev, fmt)


# =========================================================================== the data
class _Parts:
    """What training needs from a :class:`~geochem_sr.patches.TrainingData`."""

    def __init__(self, data: Any, stride: int) -> None:
        self.data = data
        self.inputs: str = str(data.inputs_set)
        self.channels: list[str] = [str(c) for c in data.channels]
        self.elements: list[str] = [str(e) for e in data.elements]
        self.stats: dict[str, tuple[float, float]] = {
            str(k): (float(v[0]), float(v[1])) for k, v in data.stats.items()
        }
        self.train = data.train
        self.val = data.val
        self.patch_size = int(data.patch_size)
        self.stride = int(stride)

    def split_summary(self) -> dict[str, Any]:
        """Cells and patches per role, block size, gap and seed: JSON-serialisable."""
        from geochem_sr.patches import ROLE_NAMES

        roles = self.data.roles
        codes = np.asarray(roles.values)
        summary: dict[str, Any] = {
            "cells": {ROLE_NAMES[c]: int((codes == c).sum()) for c in range(1, len(ROLE_NAMES))},
            "patches": {"train": len(self.data.train_windows),
                        "val": len(self.data.val_windows),
                        "test": len(self.data.test_windows)},
        }
        for key in ("block_size_cells", "gap_cells", "seed"):
            if key in roles.attrs:
                summary[key] = roles.attrs[key]
        if self.data.splitter is not None:
            summary["fractions"] = list(self.data.splitter.fractions)
        return json.loads(json.dumps(summary, default=_jsonable))


def _unpack(data: Any, stride: int) -> _Parts:
    parts = _Parts(data, stride)
    if len(parts.train) == 0:
        raise DataError(
            "training patches: expected at least one patch in the training blocks, found none "
            "(is 'hr' present over enough of the area?)"
        )
    if len(parts.val) == 0:
        raise DataError(
            "validation patches: expected at least one patch in the validation blocks, found "
            "none; use smaller blocks (splitter) or a larger area"
        )
    return parts


# =========================================================================== the run
class _Run:
    """The mutable state of one training: network, optimiser, scheduler, loaders, history."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.best_state: dict[str, Any] | None = None
        self.best_val = math.inf
        self.best_epoch = 0
        self.epoch = 0  # epochs finished
        self.stopped_early = False

    # ---------------------------------------------------------------- construction
    @classmethod
    def start(cls, parts: _Parts, model: str, net_kwargs: dict[str, Any], loss: str,
              batch_size: int, lr: float, lr_step: int, lr_gamma: float, augment: bool,
              seed: int, dev: torch.device, target_scale: str | None = None,
              weight_decay: float = 0.0) -> _Run:
        import torch

        from geochem_sr.losses import get_loss
        from geochem_sr.models import get_model
        from geochem_sr.patches import make_loader

        self = cls()
        self.parts, self.dev = parts, dev
        _seed_all(seed)
        net = get_model(model, in_channels=len(parts.channels),
                        out_channels=len(parts.elements), **net_kwargs)
        self.fmt = _memory_format(dev, net)
        self.net = net.to(dev).to(memory_format=self.fmt)
        self.loss_fn = get_loss(loss)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=lr, weight_decay=weight_decay) \
            if weight_decay else torch.optim.Adam(self.net.parameters(), lr=lr)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=lr_step, gamma=lr_gamma)
        _set_augment(parts.train, augment)
        _set_augment(parts.val, False)
        self.train_loader = make_loader(parts.train, batch_size=batch_size, shuffle=True,
                                        seed=seed)
        self.val_loader = make_loader(parts.val, batch_size=batch_size, shuffle=False,
                                      seed=seed)
        self.scale_values = _target_rms(parts) if target_scale == "rms" \
            else [1.0] * len(parts.elements)
        if target_scale is not None:
            _output_layer(net, len(parts.elements))  # fails early if it cannot be folded
        self.scale = torch.tensor(self.scale_values, dtype=torch.float32,
                                  device=dev).view(1, -1, 1, 1)
        self.val_zero = self._zero_loss()
        return self

    # ---------------------------------------------------------------- epochs
    def fit(self, epochs: int, patience: int | None, ckpt: Path | None, setup: dict[str, Any],
            progress: bool, callback: Callable[[dict[str, Any]], bool | None] | None) -> None:
        """Train until ``epochs`` are done, patience runs out, or ``callback`` says stop."""
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, initial=min(self.epoch, epochs), disable=not progress,
                   desc=f"training {self.parts.inputs}", unit="epoch", leave=True)
        try:
            while self.epoch < epochs and not self._out_of_patience(patience):
                record = self._one_epoch()
                if ckpt is not None:
                    _write_checkpoint(ckpt, self.state(setup))
                bar.update(1)
                bar.set_postfix(loss=f"{record['train_loss']:.4g}",
                                val=f"{record['val_loss']:.4g}",
                                val_rmse=f"{record['val_rmse']:.4g}",
                                best=self.best_epoch, lr=f"{record['lr']:.2g}")
                if callback is not None and callback(dict(record)):
                    break
            self.stopped_early = self._out_of_patience(patience) and self.epoch < epochs
        finally:
            bar.close()

    def _out_of_patience(self, patience: int | None) -> bool:
        return patience is not None and self.epoch - self.best_epoch >= patience

    def _one_epoch(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        lr_now = float(self.opt.param_groups[0]["lr"])
        train_loss = self._train_epoch()
        val_loss, val_rmse = self._validate()
        self.sched.step()
        self.epoch += 1
        if val_loss < self.best_val:
            self.best_val, self.best_epoch = val_loss, self.epoch
            self.best_state = _cpu_copy(self.net.state_dict())
        record = {"epoch": self.epoch, "train_loss": train_loss, "val_loss": val_loss,
                  "val_rmse": val_rmse, "lr": lr_now,
                  "seconds": round(time.perf_counter() - t0, 3)}
        self.history.append(record)
        return record

    def _batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        x, y, mask = batch[0], batch[1], batch[2]
        x = torch.nan_to_num(x.to(self.dev, non_blocking=True)).contiguous(
            memory_format=self.fmt)
        mask = mask.to(self.dev, non_blocking=True).bool()
        y = torch.nan_to_num(y.to(self.dev, non_blocking=True))
        return x, y, mask

    def _train_epoch(self) -> float:
        from geochem_sr.patches import set_epoch

        # order and augmentations are functions of (seed, epoch): nothing else to restore
        set_epoch(self.train_loader, self.epoch)
        self.net.train()
        total, count = 0.0, 0
        for batch in self.train_loader:
            x, y, mask = self._batch(batch)
            self.opt.zero_grad(set_to_none=True)
            value = self.loss_fn(self.net(x), y / self.scale, mask)
            value.backward()
            self.opt.step()
            total += float(value.detach()) * x.shape[0]
            count += x.shape[0]
        return total / max(count, 1)

    def _validate(self) -> tuple[float, float]:
        """Validation loss (patch-weighted mean) and RMSE of the residual (all valid cells)."""
        import torch

        self.net.eval()
        total, count, sq, cells = 0.0, 0, 0.0, 0
        with torch.no_grad():
            for batch in self.val_loader:
                x, y, mask = self._batch(batch)
                pred = self.net(x) * self.scale  # what the returned model predicts
                total += float(self.loss_fn(pred, y, mask)) * x.shape[0]
                count += x.shape[0]
                err = torch.where(mask, pred - y, torch.zeros_like(pred))
                sq += float((err.double() ** 2).sum())
                cells += int(mask.sum())
        return total / max(count, 1), math.sqrt(sq / cells) if cells else math.nan

    def _zero_loss(self) -> float:
        """Validation loss of predicting no change (a zero residual everywhere)."""
        import torch

        total, count = 0.0, 0
        with torch.no_grad():
            for batch in self.val_loader:
                _, y, mask = self._batch(batch)
                total += float(self.loss_fn(torch.zeros_like(y), y, mask)) * y.shape[0]
                count += y.shape[0]
        return total / max(count, 1)

    # ---------------------------------------------------------------- report
    def best_weights(self) -> dict[str, Any]:
        """The best epoch's weights (the current ones when no epoch ran)."""
        if self.best_state is None:
            return _cpu_copy(self.net.state_dict())
        return self.best_state

    def folded_weights(self) -> dict[str, Any]:
        """:meth:`best_weights` with the target scale folded into the output convolution."""
        state = dict(self.best_weights())
        if all(s == 1.0 for s in self.scale_values):
            return state
        import torch

        name = _output_layer(self.net, len(self.scale_values))
        scale = torch.tensor(self.scale_values, dtype=torch.float64)
        for key, axis in ((f"{name}.weight", _out_axis(self.net, name)), (f"{name}.bias", 0)):
            if key in state:
                w = state[key]
                shape = [1] * w.ndim
                shape[axis] = -1
                state[key] = (w.double() * scale.view(shape)).to(w.dtype).contiguous()
        return state

    def validation_report(self) -> dict[str, Any]:
        """Per-element RMSE of the sparse map and of the best model on the validation cells.

        Every validation window is predicted (no augmentation); where windows overlap the
        predictions are averaged, as tiled inference blends them, and each validation cell
        with a known target counts once.
        """
        import torch

        def predictions() -> Iterator[np.ndarray]:
            with torch.no_grad():
                for batch in self.val_loader:  # shuffle off: batches follow the windows
                    x, _, _ = self._batch(batch)
                    yield from (self.net(x) * self.scale).double().cpu().numpy()

        current = _cpu_copy(self.net.state_dict())
        self.net.load_state_dict(self.best_weights())
        self.net.eval()
        try:
            per_element, _ = _report_on_windows(self.parts, predictions())
        finally:
            self.net.load_state_dict(current)
        return {"val_loss": self.best_val, "best_epoch": self.best_epoch,
                "val_loss_zero": self.val_zero, "per_element": per_element}

    # ---------------------------------------------------------------- checkpoint
    def state(self, setup: dict[str, Any]) -> dict[str, Any]:
        """Everything needed to continue this training bit for bit."""
        import torch

        return {
            "format": CHECKPOINT_FORMAT,
            "setup_json": json.dumps(setup, sort_keys=True),
            "epoch": self.epoch,
            "model": _cpu_copy(self.net.state_dict()),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "best_state": self.best_state,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "val_zero": self.val_zero,
            "history_json": json.dumps(self.history),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": (torch.cuda.get_rng_state(self.dev)
                         if self.dev.type == "cuda" else None),
                "numpy": _numpy_state(),
                "python": _python_state(),
                "loader": _loader_generator(self.train_loader).get_state(),
            },
        }

    def restore(self, state: dict[str, Any], setup: dict[str, Any], path: Path) -> None:
        """Continue from a checkpoint written by :meth:`state` for the same set-up."""
        import torch

        saved = json.loads(state["setup_json"])
        if saved != setup:
            diff = sorted(k for k in set(saved) | set(setup) if saved.get(k) != setup.get(k))
            raise ModelMismatchError(
                f"checkpoint '{path}': written by a different training set-up ("
                + ", ".join(f"{k}: {saved.get(k)!r} there, {setup.get(k)!r} now" for k in diff)
                + "); pass resume=False to start afresh or another checkpoint path"
            )
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.best_state = state["best_state"]
        self.best_val = float(state["best_val"])
        self.best_epoch = int(state["best_epoch"])
        self.history = json.loads(state["history_json"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and self.dev.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.dev)
        _set_numpy_state(rng["numpy"])
        _set_python_state(rng["python"])
        _loader_generator(self.train_loader).set_state(rng["loader"])


# =========================================================================== assembling
def _assemble(ds: xr.Dataset, parts: _Parts, run: _Run, report: dict[str, Any], model: str,
              batch_size: int, loss: str, seed: int) -> GeoSRModel:
    groups = schema.parse_input_set(parts.inputs)
    vocab = ds.attrs.get(schema.ATTR_GEOLOGY_VOCAB) if "geology" in groups else None
    if vocab is not None and not isinstance(vocab, str):
        vocab = json.dumps(vocab, default=_jsonable)
    units = schema.units_of(ds)
    if report["val_loss"] >= report["val_loss_zero"]:
        warnings.warn(
            f"validation: the best validation loss ({report['val_loss']:.4g}) is not below that "
            f"of predicting no change ({report['val_loss_zero']:.4g}); on the held-out blocks "
            "this model does not improve on the sparse map",
            UserWarning, stacklevel=3,
        )
    return GeoSRModel(
        network_name=model,
        network_config=json.loads(json.dumps(run.net.config, default=_jsonable)),
        state_dict=run.folded_weights(),
        inputs=parts.inputs,
        channels=list(parts.channels),
        elements=list(parts.elements),
        units={el: str(units.get(el, "")) for el in parts.elements},
        norm_stats=dict(parts.stats),
        geology_vocabulary=vocab,
        patch_size=parts.patch_size,
        validation=report,
        history=copy.deepcopy(run.history),
        extra={
            "seed": int(seed),
            "epochs_run": run.epoch,
            "stopped_early": run.stopped_early,
            "split": parts.split_summary(),
            "stride": parts.stride,
            "loss": loss,
            "batch_size": int(batch_size),
            "device": str(run.dev),
            "target_scale_folded": dict(zip(parts.elements, run.scale_values, strict=True)),
        },
    )


# =========================================================================== ensembles
def _check_ensemble(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise SchemaError(f"ensemble: expected a positive number of networks, found {n!r}")
    return int(n)


def _combine(members: list[GeoSRModel], parts: _Parts, device: str | None) -> GeoSRModel:
    """One :class:`~geochem_sr.models.ensemble.Ensemble` model from trained members."""
    first = members[0]
    cfg = dict(first.network_config)
    config = {"in_channels": cfg.pop("in_channels"), "out_channels": cfg.pop("out_channels"),
              "member": first.network_name, "n": len(members), "member_config": cfg}
    state = {f"members.{i}.{k}": v for i, m in enumerate(members)
             for k, v in m.state_dict.items()}
    ens = dataclasses.replace(
        first, network_name="ensemble", network_config=config, state_dict=state,
        extra={**first.extra, "ensemble": [
            {"seed": m.extra.get("seed"), "epochs_run": m.extra.get("epochs_run"),
             "best_epoch": m.validation.get("best_epoch"),
             "val_gain": {el: v["gain"] for el, v in m.validation["per_element"].items()}}
            for m in members]})
    ens.validation = _windows_report(ens, parts, device, first.validation)
    return ens


def _report_on_windows(parts: _Parts, predictions: Iterable[np.ndarray]
                       ) -> tuple[dict[str, dict[str, float]], tuple[float, float]]:
    """Score predictions of the validation windows (in window order) on the validation cells.

    Overlapping predictions are averaged, as tiled inference blends them, and each cell with
    a known target counts once. Returns the per-element report and the mean squared error
    over all those cells of the prediction and of predicting no change.
    """
    data = parts.data
    windows = list(data.val_windows)
    r0, r1 = min(w[0].start for w in windows), max(w[0].stop for w in windows)
    c0, c1 = min(w[1].start for w in windows), max(w[1].stop for w in windows)
    acc = np.zeros((len(parts.elements), r1 - r0, c1 - c0))
    hits = np.zeros((r1 - r0, c1 - c0), np.int32)
    for (rows, cols), p in zip(windows, predictions, strict=True):
        rs, cs = slice(rows.start - r0, rows.stop - r0), slice(cols.start - c0, cols.stop - c0)
        acc[:, rs, cs] += p
        hits[rs, cs] += 1
    oy, ox = data.offset
    box = {schema.Y: slice(r0 - oy, r1 - oy), schema.X: slice(c0 - ox, c1 - ox)}
    target = np.asarray(data.target.isel(box).values, dtype=np.float64)
    per_element: dict[str, dict[str, float]] = {}
    sq = sq0 = 0.0
    count = 0
    for k, el in enumerate(parts.elements):
        cells = (hits > 0) & np.isfinite(target[k])
        n = int(cells.sum())
        t, p = target[k][cells], acc[k][cells] / hits[cells]
        sq, sq0, count = sq + float(((p - t) ** 2).sum()), sq0 + float((t**2).sum()), count + n
        rmse_lr = float(np.sqrt(np.mean(t**2))) if n else math.nan
        rmse_pred = float(np.sqrt(np.mean((p - t) ** 2))) if n else math.nan
        per_element[el] = {"rmse_lr": rmse_lr, "rmse_pred": rmse_pred,
                           "gain": 1.0 - rmse_pred / rmse_lr if n and rmse_lr > 0 else math.nan,
                           "cells": n}
    return per_element, (sq / max(count, 1), sq0 / max(count, 1))


def _windows_report(model: GeoSRModel, parts: _Parts, device: str | None,
                    like: dict[str, Any]) -> dict[str, Any]:
    """:meth:`_Run.validation_report` for a finished model (an ensemble)."""
    import torch

    val, n = parts.val, len(parts.data.val_windows)

    def predictions() -> Iterator[np.ndarray]:
        for start in range(0, n, 64):
            x = torch.stack([val[i][0] for i in range(start, min(start + 64, n))])
            yield from predict_patches(model, x, device).double().numpy()

    was = getattr(val, "augment", None)
    val.augment = False
    try:
        per_element, (mse, mse_zero) = _report_on_windows(parts, predictions())
    finally:
        if was is not None:
            val.augment = was
    return {"val_loss": mse, "best_epoch": like.get("best_epoch"), "val_loss_zero": mse_zero,
            "per_element": per_element,
            "val_loss_note": "ensemble: mean squared error over the validation cells"}


# =========================================================================== helpers
def _check_arguments(epochs: int, batch_size: int, lr: float, lr_step: int, lr_gamma: float,
                     patience: int | None) -> None:
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("lr_step", lr_step)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise SchemaError(f"{name}: expected a positive integer, found {value!r}")
    if patience is not None and (not isinstance(patience, int | np.integer) or patience < 1):
        raise SchemaError(f"patience: expected a positive integer or None, found {patience!r}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise SchemaError(f"lr: expected a positive number, found {lr!r}")
    if not (isinstance(lr_gamma, int | float) and 0 < lr_gamma <= 1):
        raise SchemaError(f"lr_gamma: expected a number in (0, 1], found {lr_gamma!r}")


def _setup_fingerprint(model: str, parts: _Parts, net_kwargs: dict[str, Any], batch_size: int,
                       lr: float, lr_step: int, lr_gamma: float, loss: str, augment: bool,
                       seed: int) -> dict[str, Any]:
    """What determines the course of a training (``epochs`` and ``patience`` do not)."""
    return json.loads(json.dumps({
        "model": model, "model_kwargs": net_kwargs, "inputs": parts.inputs,
        "channels": parts.channels, "elements": parts.elements, "batch_size": batch_size,
        "lr": lr, "lr_step": lr_step, "lr_gamma": lr_gamma, "loss": loss, "augment": augment,
        "seed": seed, "patch_size": parts.patch_size, "stride": parts.stride,
        "train_patches": len(parts.train), "val_patches": len(parts.val),
    }, sort_keys=True, default=_jsonable))


def _target_rms(parts: _Parts) -> list[float]:
    """Root mean square of each element's residual over the training patches' known cells.

    Cells count as often as patches contain them, as in the training loss; 1.0 for an
    element without a known cell (or a residual that is zero everywhere).
    """
    n = len(parts.elements)
    sq, cells = np.zeros(n), np.zeros(n)
    was = getattr(parts.train, "augment", None)
    _set_augment(parts.train, False)
    try:
        for i in range(len(parts.train)):
            _, y, mask = parts.train[i]
            y64 = np.where(mask.numpy(), y.numpy().astype(np.float64), 0.0)
            sq += (y64**2).sum(axis=(1, 2))
            cells += mask.numpy().sum(axis=(1, 2))
    finally:
        if was is not None:
            _set_augment(parts.train, was)
    rms = np.sqrt(sq / np.maximum(cells, 1))
    return [float(r) if c > 0 and r > 1e-6 else 1.0 for r, c in zip(rms, cells, strict=True)]


def _output_layer(net: Any, n_out: int) -> str:
    """Name of the network's final convolution (``output``), where a target scale is folded."""
    from torch import nn

    layer = getattr(net, "output", None)
    ok = isinstance(layer, nn.Conv2d | nn.ConvTranspose2d) and (
        layer.out_channels == n_out)
    if not ok:
        raise SchemaError(
            f"target_scale: expected a network whose last layer is a convolution 'output' "
            f"with {n_out} channels, found {type(layer).__name__}; pass target_scale=None"
        )
    return "output"


def _out_axis(net: Any, name: str) -> int:
    """Axis of the output channels in the weight of layer ``name`` (1 for transposed)."""
    from torch import nn

    return 1 if isinstance(getattr(net, name), nn.ConvTranspose2d) else 0


def _pick_device(device: str | None) -> torch.device:
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise SchemaError(f"device: expected 'cpu', 'cuda' or 'cuda:<n>', found {device!r}") \
            from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SchemaError(f"device: {device!r} requested, but CUDA is not available here")
    return dev


def _memory_format(dev: torch.device, net: Any = None) -> torch.memory_format:
    """``channels_last`` for convolutions on CPU (1.3-1.9x faster here) and CUDA.

    On CPU it is avoided for networks where oneDNN's ``channels_last`` weight gradient is
    broken (:func:`_channels_last_safe`).
    """
    import torch

    if dev.type == "cuda" or (dev.type == "cpu" and (net is None or _channels_last_safe(net))):
        return torch.channels_last
    return torch.contiguous_format


#: Below this many input channels a strided 1x1 convolution is unsafe in ``channels_last``.
_ONEDNN_MIN_IC = 16


def _channels_last_safe(net: Any) -> bool:
    """False when ``net`` has a strided 1x1 convolution with fewer than 16 input channels.

    oneDNN's ``jit_1x1`` weight-gradient kernel for ``nhwc`` with a stride (its
    "reduce to unit stride" workspace) writes past its buffer when the input channels are
    fewer than its channel block (8 with AVX2, 16 with AVX-512): heap corruption, crashes
    and silently wrong gradients (uxlfoundation/oneDNN#6035, open; reproduced here with
    torch 2.13: ``Conv2d(8, 16, 1, stride=2)``, batch 5, ``channels_last`` -> abort). The
    paper-size networks (64 channels and more) are not affected; narrow test networks are.
    """
    from torch import nn

    for m in net.modules():
        if isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (1, 1) \
                and tuple(m.stride) != (1, 1) and m.in_channels < _ONEDNN_MIN_IC:
            return False
    return True


@contextlib.contextmanager
def _deterministic(dev: torch.device) -> Iterator[None]:
    """Deterministic algorithms during training; the caller's settings restored after."""
    import torch

    was, was_warn = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    bench = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*deterministic.*")
            yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn)
        torch.backends.cudnn.benchmark = bench


@contextlib.contextmanager
def _forked_rng(dev: torch.device) -> Iterator[None]:
    """Leave torch's, numpy's and Python's global random states as the caller had them."""
    import torch

    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    devices = [dev.index or 0] if dev.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)


def _seed_all(seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    random.seed(seed)


def _cpu_copy(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def _predict(net: Any, x: torch.Tensor, dev: torch.device, fmt: Any) -> torch.Tensor:
    import torch

    out = []
    net.eval()
    with torch.no_grad():
        for start in range(0, x.shape[0], _PREDICT_BATCH):
            xb = x[start:start + _PREDICT_BATCH].to(dev).contiguous(memory_format=fmt)
            out.append(net(xb).float().cpu().contiguous())
    if not out:
        return torch.zeros((0, net.config["out_channels"], *x.shape[-2:]))
    return torch.cat(out)


def _loader_generator(loader: Any) -> torch.Generator:
    gen = getattr(loader, "generator", None)
    if gen is None:
        raise SchemaError("make_loader: expected a loader with a seeded torch.Generator")
    return gen


def _set_augment(dataset: Any, on: bool) -> None:
    if hasattr(dataset, "augment"):
        dataset.augment = bool(on)


def _numpy_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {"kind": str(kind), "keys": [int(k) for k in keys], "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_numpy_state(s: Mapping[str, Any]) -> None:
    state = (s["kind"], np.asarray(s["keys"], dtype=np.uint32), s["pos"], s["has_gauss"],
             s["cached"])
    np.random.set_state(state)  # noqa: NPY002


def _python_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    return {"version": int(version), "internal": [int(i) for i in internal],
            "gauss": gauss if gauss is None else float(gauss)}


def _set_python_state(s: Mapping[str, Any]) -> None:
    random.setstate((s["version"], tuple(s["internal"]), s["gauss"]))


def _write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    return read_payload(path, CHECKPOINT_FORMAT, "checkpoint",
                        "; delete it or pass resume=False")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
