"""Masked training losses: MSE (the default), L1, 1 - SSIM, and their mix.

Every loss takes ``pred`` and ``target`` of shape ``(N, C, H, W)`` and an optional ``mask``
of valid cells (bool, or float weights in [0, 1]; shape ``(N, C, H, W)``, ``(N, 1, H, W)``
or ``(N, H, W)``). Cells where the target is NaN (or infinite) are always masked out, and
never propagate NaN into the loss or its gradient. A batch without a single valid cell
gives a loss of 0 (still attached to the graph).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from geochem_sr.errors import ParameterError

__all__ = [
    "LOSSES",
    "DEFAULT_LOSS",
    "masked_mse",
    "masked_l1",
    "masked_ssim",
    "masked_ssim_loss",
    "gaussian_window",
    "MaskedMSELoss",
    "MaskedL1Loss",
    "SSIMLoss",
    "MixedLoss",
    "get_loss",
]

#: Names accepted by :func:`get_loss`.
LOSSES: tuple[str, ...] = ("mse", "mse+ssim", "l1", "ssim")
DEFAULT_LOSS = "mse"  # the pixel error; docs/notes/training.md says why not "mse+ssim"


def _weights(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (weights, target with invalid cells set to 0), both shaped like ``pred``."""
    if pred.shape != target.shape:
        raise ParameterError(
            f"loss target: expected the prediction's shape {tuple(pred.shape)}, "
            f"found {tuple(target.shape)}"
        )
    finite = torch.isfinite(target)
    w = finite.to(pred.dtype)
    if mask is not None:
        m = mask
        if m.ndim == pred.ndim - 1:
            m = m.unsqueeze(1)
        try:
            m = torch.broadcast_to(m, pred.shape)
        except RuntimeError as err:
            raise ParameterError(
                f"loss mask: expected a shape broadcastable to {tuple(pred.shape)}, "
                f"found {tuple(mask.shape)}"
            ) from err
        m = m.to(device=pred.device, dtype=pred.dtype)
        w = w * torch.nan_to_num(m, nan=0.0).clamp(0.0, 1.0)
    return w, torch.where(finite, target, torch.zeros_like(target))


def _empty(pred: torch.Tensor) -> torch.Tensor:
    """A zero loss that stays attached to the graph."""
    return (pred * 0).sum()


def _weighted_mean(err: torch.Tensor, w: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    total = w.sum()
    if float(total) <= 0:
        return _empty(pred)
    return (err * w).sum() / total


def masked_mse(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error over valid cells.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(N, C, H, W)``; NaN targets are masked out.
    mask : torch.Tensor, optional
        Valid cells (bool) or weights (float in [0, 1]).

    Returns
    -------
    torch.Tensor
        A scalar; 0 when no cell is valid.
    """
    w, t = _weights(pred, target, mask)
    return _weighted_mean((pred - t) ** 2, w, pred)


def masked_l1(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean absolute error over valid cells (see :func:`masked_mse` for the arguments)."""
    w, t = _weights(pred, target, mask)
    return _weighted_mean((pred - t).abs(), w, pred)


def gaussian_window(
    sigma: float = 1.5,
    truncate: float = 3.5,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ``int(truncate * sigma + 0.5)`` (as scipy/skimage)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def _filter_valid(stack: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of every (n, c) map, 'valid' region only."""
    n, c, h, w = stack.shape
    k = g.numel()
    x = stack.reshape(n * c, 1, h, w)
    x = F.conv2d(x, g.view(1, 1, k, 1))
    x = F.conv2d(x, g.view(1, 1, 1, k))
    return x.reshape(n, c, h - k + 1, w - k + 1)


def masked_ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    data_range: float = 1.0,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    min_weight: float = 0.5,
    reduction: str = "mean",
) -> torch.Tensor:
    """Gaussian-window SSIM over valid cells, per map or averaged.

    Without a mask and with finite targets this equals
    ``skimage.metrics.structural_similarity(t, p, data_range=data_range,
    gaussian_weights=True, sigma=sigma, use_sample_covariance=False)`` for each ``(n, c)``
    map. With a mask, local means and (co)variances are normalised convolutions over valid
    cells only; the SSIM map is averaged over valid cells whose window is at least
    ``min_weight`` valid and lies inside the patch.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(N, C, H, W)`` with H, W at least the window size (11 for ``sigma=1.5``).
    mask : torch.Tensor, optional
        Valid cells (bool) or weights (float in [0, 1]).
    data_range : float, default 1.0
        Range of the data, sets ``C1 = (k1 * data_range)**2``, ``C2 = (k2 * data_range)**2``.
    sigma : float, default 1.5
        Standard deviation of the Gaussian window (truncated at 3.5 sigma).
    k1, k2 : float
        SSIM constants.
    min_weight : float, default 0.5
        Least valid fraction of a window for its centre to count.
    reduction : {"mean", "none"}
        ``"mean"``: mean over the maps that have valid cells (0-dim tensor, ``nan`` if
        none); ``"none"``: ``(N, C)`` tensor with ``nan`` for maps without valid cells.

    Returns
    -------
    torch.Tensor
    """
    w, t = _weights(pred, target, mask)
    g = gaussian_window(sigma, dtype=pred.dtype, device=pred.device)
    k = g.numel()
    h, wd = pred.shape[-2:]
    if h < k or wd < k:
        raise ParameterError(
            f"SSIM input: expected height and width of at least the {k}-cell window, "
            f"found {h}x{wd}"
        )
    if not (data_range > 0 and math.isfinite(data_range)):
        raise ParameterError(f"SSIM data_range: expected a positive number, found {data_range}")
    x = pred * w  # zero where invalid: no NaN or garbage enters the filters
    y = t * w
    # one filtering pass over the six stacked moments
    moments = torch.cat([w, x, y, x * pred, y * t, x * t], dim=1)
    f = _filter_valid(moments, g)
    nc = pred.shape[1]
    fw, fx, fy, fxx, fyy, fxy = (f[:, i * nc : (i + 1) * nc] for i in range(6))
    r = (k - 1) // 2
    centre_w = w[..., r : h - r, r : wd - r]
    ok = (centre_w > 0) & (fw >= min_weight)
    den = torch.where(ok, fw, torch.ones_like(fw))
    mux, muy = fx / den, fy / den
    vx = fxx / den - mux * mux
    vy = fyy / den - muy * muy
    vxy = fxy / den - mux * muy
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    s = ((2 * mux * muy + c1) * (2 * vxy + c2)) / ((mux**2 + muy**2 + c1) * (vx + vy + c2))
    okf = ok.to(pred.dtype)
    count = okf.sum(dim=(-2, -1))
    per_map = (torch.where(ok, s, torch.zeros_like(s))).sum(dim=(-2, -1)) / count.clamp(min=1)
    per_map = torch.where(count > 0, per_map, torch.full_like(per_map, float("nan")))
    if reduction == "none":
        return per_map
    if reduction != "mean":
        raise ParameterError(f"reduction: expected 'mean' or 'none', found {reduction!r}")
    has = count > 0
    if not bool(has.any()):
        return torch.full((), float("nan"), dtype=pred.dtype, device=pred.device)
    return per_map[has].mean()


def masked_ssim_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """``1 - SSIM`` over valid cells (see :func:`masked_ssim`); 0 when no cell is valid."""
    ssim = masked_ssim(pred, target, mask, **kwargs)
    if bool(torch.isnan(ssim)):
        return _empty(pred)
    return 1.0 - ssim


class _MaskedLoss(nn.Module):
    """Base: ``forward(pred, target, mask=None)`` applies :attr:`function` with ``config``
    (JSON-serialisable) as keywords; a loss with settings sets ``config`` in ``__init__``."""

    loss_name: ClassVar[str] = ""
    #: The masked loss, called as ``function(pred, target, mask, **config)``.
    function: ClassVar[Callable[..., torch.Tensor]]

    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, Any] = {}

    def forward(  # noqa: D102
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return type(self).function(pred, target, mask, **self.config)

    def extra_repr(self) -> str:  # noqa: D102
        return ", ".join(f"{k}={v}" for k, v in self.config.items())


class MaskedMSELoss(_MaskedLoss):
    """Module form of :func:`masked_mse`."""

    loss_name = "mse"
    function = staticmethod(masked_mse)


class MaskedL1Loss(_MaskedLoss):
    """Module form of :func:`masked_l1`."""

    loss_name = "l1"
    function = staticmethod(masked_l1)


class SSIMLoss(_MaskedLoss):
    """``1 - SSIM`` (module form of :func:`masked_ssim_loss`).

    Parameters
    ----------
    data_range : float, default 1.0
    sigma : float, default 1.5
    """

    loss_name = "ssim"
    function = staticmethod(masked_ssim_loss)

    def __init__(self, data_range: float = 1.0, sigma: float = 1.5) -> None:
        super().__init__()
        self.config = {"data_range": float(data_range), "sigma": float(sigma)}


class MixedLoss(_MaskedLoss):
    """``MSE + alpha * (1 - SSIM)`` over valid cells: the paper's mix of pixel error and structure.

    Parameters
    ----------
    alpha : float, default 0.5
        Weight of the structure term.
    data_range : float, default 1.0
        SSIM data range (sets its stabilising constants).
    sigma : float, default 1.5
        SSIM Gaussian window.
    """

    loss_name = "mse+ssim"

    def __init__(self, alpha: float = 0.5, data_range: float = 1.0, sigma: float = 1.5) -> None:
        if not (alpha >= 0 and math.isfinite(alpha)):
            raise ParameterError(f"MixedLoss alpha: expected a number >= 0, found {alpha}")
        super().__init__()
        self.config = {"alpha": float(alpha), "data_range": float(data_range),
                       "sigma": float(sigma)}

    def forward(  # noqa: D102
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        mse = masked_mse(pred, target, mask)
        if self.config["alpha"] == 0:
            return mse
        ssim = masked_ssim_loss(
            pred, target, mask, data_range=self.config["data_range"], sigma=self.config["sigma"]
        )
        return mse + self.config["alpha"] * ssim


_LOSS_CLASSES: dict[str, type[_MaskedLoss]] = {
    "mse": MaskedMSELoss,
    "mse+ssim": MixedLoss,
    "l1": MaskedL1Loss,
    "ssim": SSIMLoss,
}


def get_loss(name: str = DEFAULT_LOSS, **kwargs: Any) -> nn.Module:
    """Build a masked loss by name.

    Parameters
    ----------
    name : str, default "mse"
        One of :data:`LOSSES`.
    **kwargs
        Passed to the loss (``alpha``, ``data_range``, ``sigma`` for ``"mse+ssim"``).

    Returns
    -------
    torch.nn.Module
        Called as ``loss(pred, target, mask=None)``; has ``loss_name`` and ``config``.

    Raises
    ------
    ParameterError
        On an unknown name or argument.
    """
    if name not in _LOSS_CLASSES:
        raise ParameterError(f"loss: expected one of {', '.join(LOSSES)}, found {name!r}")
    try:
        return _LOSS_CLASSES[name](**kwargs)
    except TypeError as err:
        raise ParameterError(f"loss {name!r}: invalid arguments {sorted(kwargs)}: {err}") from err
