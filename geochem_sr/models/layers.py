"""Building blocks shared by the networks: activations, convolutions, checks, counters.

Activation
----------
Pei et al. (2025, section 3.4.2) cite Pan et al. (2024), *Smoothing piecewise linear
activation functions based on mollified square root functions* (ref. 45 of the paper). That
method writes a piecewise-linear function through ``|x|`` and replaces ``|x|`` by the
mollified square root ``sqrt(x**2 + delta**2)`` (the idea of SquarePlus). For ReLU and leaky
ReLU, ``max(x, a*x) = ((1 + a) * x + (1 - a) * |x|) / 2``, which gives::

    SmoothReLU(x) = ((1 + a) * x + (1 - a) * sqrt(x**2 + delta**2)) / 2

with ``a = 0`` (smooth ReLU) and ``delta = 0.1`` by default. It is C-infinity, tends to ReLU
as ``delta -> 0`` (largest gap ``delta / 2`` at ``x = 0``), is monotone, and costs one
``sqrt`` per element. This is the default activation of every network
(``activation="smooth_relu"``); ``"relu"``, ``"leaky_relu"`` and ``"gelu"`` are switchable
alternatives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from geochem_sr.checks import check_positive_int
from geochem_sr.errors import DataError, ParameterError

__all__ = [
    "ACTIVATIONS",
    "SmoothReLU",
    "make_activation",
    "conv2d",
    "ConvAct",
    "check_positive_int",
    "check_spatial",
    "SRNetwork",
    "zero_init",
    "he_init",
    "count_parameters",
    "count_flops",
]

#: Names accepted by every network's ``activation`` argument.
ACTIVATIONS: tuple[str, ...] = ("smooth_relu", "relu", "leaky_relu", "gelu")


class _SmoothReLUFn(torch.autograd.Function):
    """Fused forward/backward of the smooth ReLU: saves only ``x`` (the root is recomputed)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, delta: float, a: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.delta, ctx.a = delta, a
        y = x.square().add_(delta * delta).sqrt_().mul_(0.5 * (1.0 - a))
        return y.add_(x, alpha=0.5 * (1.0 + a))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        a = ctx.a
        d = x.square().add_(ctx.delta * ctx.delta).rsqrt_().mul_(x)  # x / sqrt(x^2 + delta^2)
        return d.mul_(0.5 * (1.0 - a)).add_(0.5 * (1.0 + a)).mul_(grad), None, None


class SmoothReLU(nn.Module):
    """ReLU (or leaky ReLU) smoothed by a mollified square root (Pan et al. 2024).

    ``f(x) = ((1 + a) x + (1 - a) sqrt(x^2 + delta^2)) / 2``.

    Parameters
    ----------
    delta : float, default 0.1
        Smoothing width; ``f(0) = delta / 2`` and ``f -> ReLU`` as ``delta -> 0``.
    negative_slope : float, default 0.0
        Slope ``a`` for ``x -> -inf`` (0 gives a smooth ReLU, > 0 a smooth leaky ReLU).
    """

    def __init__(self, delta: float = 0.1, negative_slope: float = 0.0) -> None:
        super().__init__()
        if not (delta > 0 and math.isfinite(delta)):
            raise DataError(f"SmoothReLU delta: expected a positive finite number, found {delta}")
        self.delta = float(delta)
        self.negative_slope = float(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _SmoothReLUFn.apply(x, self.delta, self.negative_slope)

    def extra_repr(self) -> str:  # noqa: D102
        return f"delta={self.delta}, negative_slope={self.negative_slope}"


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module by name.

    Parameters
    ----------
    name : str
        One of :data:`ACTIVATIONS`.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ParameterError
        If ``name`` is not a known activation.
    """
    if name == "smooth_relu":
        return SmoothReLU()
    if name == "relu":
        return nn.ReLU(inplace=False)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01)
    if name == "gelu":
        return nn.GELU()
    raise ParameterError(
        f"activation: expected one of {', '.join(ACTIVATIONS)}, found {name!r}"
    )


def conv2d(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True
) -> nn.Conv2d:
    """A 2-D convolution with 'same' padding (``kernel_size // 2``; kernel sizes are odd)."""
    return nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias
    )


class ConvAct(nn.Sequential):
    """Convolution, optional BatchNorm, optional activation ('same' padding)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        activation: str | None,
        batch_norm: bool = False,
        stride: int = 1,
    ) -> None:
        layers: list[nn.Module] = [
            conv2d(in_channels, out_channels, kernel_size, stride=stride, bias=not batch_norm)
        ]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        if activation is not None:
            layers.append(make_activation(activation))
        super().__init__(*layers)


def check_spatial(x: torch.Tensor, in_channels: int, multiple: int, model: str) -> None:
    """Check an input batch: 4-D, ``in_channels`` channels, H and W multiples of ``multiple``.

    Raises
    ------
    ParameterError
        On a wrong rank or channel count.
    DataError
        On a height or width that is not a multiple of ``multiple``.
    """
    if x.ndim != 4:
        raise ParameterError(
            f"{model} input: expected a 4-D tensor (N, C, H, W), found shape {tuple(x.shape)}"
        )
    if x.shape[1] != in_channels:
        raise ParameterError(
            f"{model} input: expected {in_channels} channels, found {x.shape[1]}"
        )
    h, w = x.shape[-2:]
    if h % multiple or w % multiple or h == 0 or w == 0:
        raise DataError(
            f"{model} input: expected height and width that are positive multiples of "
            f"{multiple}, found {h}x{w}"
        )


class SRNetwork(nn.Module):
    """Base of the networks: ``model_name``, ``config``, ``size_multiple``, input checks.

    A subclass sets ``model_name``, calls :meth:`_set_config` first in ``__init__`` and
    :meth:`_init_weights` last, starts ``forward`` with :meth:`_check_input`, and defines
    ``receptive_field`` (and ``size_multiple`` where it is not 1). Its docstring lists the
    parameters and attributes of its own; those of every network are these.

    Parameters
    ----------
    in_channels, out_channels : int
        Input channels and output channels (one residual per element).
    activation : str, default "smooth_relu"
        One of :data:`ACTIVATIONS` (an ensemble's members take their own).

    Attributes
    ----------
    model_name : str
        The registry name (:func:`geochem_sr.models.get_model`).
    config : dict
        Constructor arguments; ``get_model(model_name, **config)`` rebuilds the network.
    receptive_field : int
        Width in cells of the window one output cell depends on.
    size_multiple : int
        Input height and width must be multiples of this.
    tile_reach : int
        Cells of input a tile needs on each side to be exact when the tile and its window
        start on the ``size_multiple`` lattice: half the receptive field unless the network
        declares a smaller bound.
    """

    model_name: ClassVar[str] = ""
    size_multiple: int = 1
    config: dict[str, Any]

    @property
    def tile_reach(self) -> int:
        """Cells of input a lattice-aligned tile needs on each side (see the class doc)."""
        return max(0, (int(self.receptive_field) - 1) // 2)

    def _set_config(
        self, in_channels: int, out_channels: int, *, positive: Sequence[str] = (), **params: Any
    ) -> dict[str, Any]:
        """Check the constructor arguments and store them, in this order, in ``config``.

        ``in_channels``, ``out_channels`` and the ``params`` named in ``positive`` must be
        positive integers (stored as int); ``params["activation"]``, where given, must be
        one of :data:`ACTIVATIONS`.

        Raises
        ------
        ParameterError
            On a non-positive integer or an unknown activation.
        """
        config: dict[str, Any] = {
            "in_channels": check_positive_int("in_channels", in_channels),
            "out_channels": check_positive_int("out_channels", out_channels),
        }
        for name, value in params.items():
            config[name] = check_positive_int(name, value) if name in positive else value
        if "activation" in config:
            make_activation(config["activation"])  # validates the name
        self.config = config
        return config

    def _init_weights(self) -> None:
        """He initialisation everywhere, then the ``output`` layer at zero (residual 0)."""
        he_init(self)
        zero_init(self.output)

    def _check_input(self, x: torch.Tensor) -> None:
        """:func:`check_spatial` against ``config["in_channels"]`` and ``size_multiple``."""
        check_spatial(x, self.config["in_channels"], self.size_multiple, self.model_name)


def zero_init(module: nn.Module) -> None:
    """Set the weights and bias of a convolution to zero (a network that starts at residual 0)."""
    for p in module.parameters():
        nn.init.zeros_(p)


def he_init(module: nn.Module) -> None:
    """He (Kaiming) normal initialisation of every (transposed) convolution, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Floating-point operations of one forward pass (a multiply-add counts 2).

    Counts convolutions, transposed convolutions and linear layers through forward hooks
    (activations, BatchNorm, pooling and additions are not counted), which gives the same
    total as :class:`torch.utils.flop_counter.FlopCounterMode` for these networks without
    its start-up cost of several seconds.

    Parameters
    ----------
    model : torch.nn.Module
    input_shape : sequence of int
        ``(N, C, H, W)`` of the input batch.

    Returns
    -------
    int
    """
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.ConvTranspose2d):
            k = math.prod(module.kernel_size)
            per_in = module.out_channels // module.groups * k
            total += 2 * inputs[0].numel() * per_in
        elif isinstance(module, nn.Conv2d):
            k = math.prod(module.kernel_size)
            total += 2 * output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            total += 2 * output.numel() * module.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)
    ]
    p = next(model.parameters())
    x = torch.zeros(tuple(input_shape), dtype=p.dtype, device=p.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return int(total)
