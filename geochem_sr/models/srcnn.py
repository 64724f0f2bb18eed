"""SRCNN baseline (Dong, Loy, He & Tang 2016, ref. of Pei et al. 2025, Table 6).

Three convolutions, 9-1-5 kernels with 64 and 32 filters, 'same' padding so the output has
the input's size. SRCNN was designed for an image already interpolated to the target grid,
which is our case: the sparse map is gridded at the dense resolution, and the network
predicts the residual ``log10(hr) - log10(lr)`` directly (residual output; the last layer
starts at zero, so the untrained network predicts "no change").
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from geochem_sr.checks import check_positive_int
from geochem_sr.errors import ParameterError
from geochem_sr.models.layers import ConvAct, SRNetwork, conv2d

__all__ = ["SRCNN"]


class SRCNN(SRNetwork):
    """SRCNN: conv 9x9/64 -> act -> conv 1x1/32 -> act -> conv 5x5/out.

    Parameters and attributes are those of every network
    (:class:`~geochem_sr.models.layers.SRNetwork`), and:

    Parameters
    ----------
    features : int, default 64
        Filters of the first layer (the second has ``features // 2``, 32 by default).
    kernel_sizes : sequence of 3 odd ints, default (9, 1, 5)

    Attributes
    ----------
    receptive_field : int
        ``sum(k - 1) + 1`` cells (13 for 9-1-5).
    """

    model_name: ClassVar[str] = "srcnn"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        features: int = 64,
        kernel_sizes: tuple[int, int, int] | list[int] = (9, 1, 5),
        activation: str = "smooth_relu",
    ) -> None:
        super().__init__()
        ks = [check_positive_int("kernel_sizes", k) for k in kernel_sizes]
        if len(ks) != 3 or any(k % 2 == 0 for k in ks):
            raise ParameterError(f"kernel_sizes: expected three odd integers, found {kernel_sizes}")
        cfg = self._set_config(
            in_channels, out_channels, positive=("features",),
            features=features, kernel_sizes=ks, activation=activation,
        )
        cin, cout, f = cfg["in_channels"], cfg["out_channels"], cfg["features"]
        f2 = max(1, f // 2)
        self.body = nn.Sequential(
            ConvAct(cin, f, ks[0], activation),
            ConvAct(f, f2, ks[1], activation),
        )
        self.output = conv2d(f2, cout, ks[2])
        self._init_weights()

    @property
    def receptive_field(self) -> int:
        """Width in cells of the window one output cell depends on."""
        return sum(k - 1 for k in self.config["kernel_sizes"]) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict the residual ``(N, out_channels, H, W)`` from ``(N, in_channels, H, W)``."""
        self._check_input(x)
        return self.output(self.body(x))
