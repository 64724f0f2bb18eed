"""VDSR baseline (Kim, Lee & Lee 2016, ref. of Pei et al. 2025, Table 6).

``depth`` 3x3 convolutions with ``features`` filters (20 and 64 in the original), an
activation after each but the last, 'same' padding. VDSR learns the residual between the
interpolated low-resolution image and the high-resolution one (its "global residual"
connection adds the input back). Here the target already is a residual
(``log10(hr) - log10(lr)``), and the input has other channels than the output, so the
network returns the residual itself and the caller adds it to ``log10(lr)``. He
initialisation as in the original; the last layer starts at zero.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from geochem_sr.errors import ParameterError
from geochem_sr.models.layers import ConvAct, SRNetwork, conv2d

__all__ = ["VDSR"]


class VDSR(SRNetwork):
    """VDSR: ``depth`` 3x3 convolutions of ``features`` filters, residual output.

    Parameters and attributes are those of every network
    (:class:`~geochem_sr.models.layers.SRNetwork`), and:

    Parameters
    ----------
    depth : int, default 20
        Number of convolution layers, first and last included (at least 2).
    features : int, default 64
    batch_norm : bool, default False
        BatchNorm after every hidden convolution (not in the original).

    Attributes
    ----------
    receptive_field : int
        ``2 * depth + 1`` cells (41 for 20 layers).
    """

    model_name: ClassVar[str] = "vdsr"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth: int = 20,
        features: int = 64,
        activation: str = "smooth_relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        cfg = self._set_config(
            in_channels, out_channels, positive=("depth", "features"),
            depth=depth, features=features, activation=activation, batch_norm=bool(batch_norm),
        )
        cin, cout = cfg["in_channels"], cfg["out_channels"]
        d, f = cfg["depth"], cfg["features"]
        if d < 2:
            raise ParameterError(f"depth: expected at least 2 layers, found {depth}")
        layers = [ConvAct(cin, f, 3, activation, batch_norm)]
        layers += [ConvAct(f, f, 3, activation, batch_norm) for _ in range(d - 2)]
        self.body = nn.Sequential(*layers)
        self.output = conv2d(f, cout, 3)
        self._init_weights()

    @property
    def receptive_field(self) -> int:
        """Width in cells of the window one output cell depends on."""
        return 2 * self.config["depth"] + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict the residual ``(N, out_channels, H, W)`` from ``(N, in_channels, H, W)``."""
        self._check_input(x)
        return self.output(self.body(x))
