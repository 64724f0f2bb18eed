"""The run: one network trained epoch by epoch, validated on held-out blocks every epoch.

:class:`Run` holds the network, optimiser, scheduler, loaders and history; it keeps the
best validation epoch's weights, stops early, checkpoints after every epoch, and reports on
the validation cells.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geochem_sr.errors import ParameterError
from geochem_sr.training.checkpoint import save_run
from geochem_sr.training.data import centre, report_on_windows, target_rms
from geochem_sr.training.runtime import cpu_copy, memory_format, seed_all

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from geochem_sr.training.config import TrainConfig
    from geochem_sr.training.data import TrainingParts

__all__ = ["Run"]


class Run:
    """The mutable state of one training: network, optimiser, scheduler, loaders, history.

    Made by :meth:`start`; :meth:`fit` trains, :meth:`validation_report` and
    :meth:`folded_weights` give what the model file keeps.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.best_state: dict[str, Any] | None = None
        self.best_val = math.inf
        self.best_epoch = 0
        self.epoch = 0  # epochs finished
        self.stopped_early = False

    # ---------------------------------------------------------------- construction
    @classmethod
    def start(cls, parts: TrainingParts, network: str, net_kwargs: dict[str, Any],
              config: TrainConfig, dev: torch.device) -> Run:
        """Seed everything, build the network, optimiser, scheduler and loaders.

        The datasets' augmentation must already be set (training on or off, validation
        off): the loaders are made here.
        """
        import torch

        from geochem_sr.models import get_model
        from geochem_sr.sampling import make_loader
        from geochem_sr.training.losses import get_loss

        self = cls()
        self.parts, self.dev = parts, dev
        seed_all(config.seed)
        net = get_model(network, in_channels=len(parts.channels),
                        out_channels=len(parts.elements), **net_kwargs)
        side = parts.patch_size + 2 * parts.margin
        multiple = int(getattr(net, "size_multiple", 1))
        if side % multiple:
            raise ParameterError(
                f"margin: the network sees patches of {parts.patch_size} + 2 x {parts.margin} "
                f"= {side} cells, which must be a multiple of {multiple} for {network}; "
                f"choose a margin that makes it one")
        self.fmt = memory_format(dev, net)
        self.net = net.to(dev).to(memory_format=self.fmt)
        self.loss_fn = get_loss(config.loss)
        params, lr = self.net.parameters(), config.learning_rate
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay) \
            if config.weight_decay else torch.optim.Adam(params, lr=lr)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=config.lr_step,
                                                     gamma=config.lr_gamma)
        self.train_loader = make_loader(parts.train, batch_size=config.batch_size,
                                        shuffle=True, seed=config.seed)
        self.val_loader = make_loader(parts.val, batch_size=config.batch_size, shuffle=False,
                                      seed=config.seed)
        self.scale_values = target_rms(parts) if config.target_scale == "rms" \
            else [1.0] * len(parts.elements)
        if config.target_scale is not None:
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
                    save_run(ckpt, self, setup)
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
            self.best_state = cpu_copy(self.net.state_dict())
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
        from geochem_sr.sampling import set_epoch

        # order and augmentations are functions of (seed, epoch): nothing else to restore
        set_epoch(self.train_loader, self.epoch)
        self.net.train()
        total, count = 0.0, 0
        for batch in self.train_loader:
            x, y, mask = self._batch(batch)
            self.opt.zero_grad(set_to_none=True)
            value = self.loss_fn(centre(self.net(x), self.parts.margin), y / self.scale, mask)
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
                # what the returned model predicts
                pred = centre(self.net(x), self.parts.margin) * self.scale
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
            return cpu_copy(self.net.state_dict())
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
                    out = centre(self.net(x), self.parts.margin) * self.scale
                    yield from out.double().cpu().numpy()

        current = cpu_copy(self.net.state_dict())
        self.net.load_state_dict(self.best_weights())
        self.net.eval()
        try:
            per_element, _ = report_on_windows(self.parts, predictions())
        finally:
            self.net.load_state_dict(current)
        return {"val_loss": self.best_val, "best_epoch": self.best_epoch,
                "val_loss_zero": self.val_zero, "per_element": per_element}


def _output_layer(net: Any, n_out: int) -> str:
    """Name of the network's final convolution (``output``), where a target scale is folded."""
    from torch import nn

    layer = getattr(net, "output", None)
    ok = isinstance(layer, nn.Conv2d | nn.ConvTranspose2d) and (
        layer.out_channels == n_out)
    if not ok:
        raise ParameterError(
            f"target_scale: expected a network whose last layer is a convolution 'output' "
            f"with {n_out} channels, found {type(layer).__name__}; pass target_scale=None"
        )
    return "output"


def _out_axis(net: Any, name: str) -> int:
    """Axis of the output channels in the weight of layer ``name`` (1 for transposed)."""
    from torch import nn

    return 1 if isinstance(getattr(net, name), nn.ConvTranspose2d) else 0
