"""U-Net baseline (Ronneberger, Fischer & Brox 2015, ref. of Pei et al. 2025, Table 6).

``depth`` levels down (two 3x3 convolutions, then 2x2 max-pooling), a bottleneck, and
``depth`` levels up (2x2 stride-2 transposed convolution halving the channels,
concatenation with the encoder level of the same size, two 3x3 convolutions), then a 1x1
convolution to ``out_channels``. Unlike the original, padding is 'same', so the output has
the input's size (H and W multiples of ``2**depth``). ``batch_norm=True`` (the default)
adds BatchNorm after each 3x3 convolution, as most re-implementations do; the original had
none. The output is the residual ``log10(hr) - log10(lr)``; the last layer starts at zero.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from geochem_sr.models.layers import ConvAct, SRNetwork

__all__ = ["UNet"]


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, activation: str, bn: bool) -> None:
        super().__init__(
            ConvAct(cin, cout, 3, activation, bn), ConvAct(cout, cout, 3, activation, bn)
        )


class UNet(SRNetwork):
    """U-Net with 'same' padding.

    Parameters and attributes are those of every network
    (:class:`~geochem_sr.models.layers.SRNetwork`), and:

    Parameters
    ----------
    base_channels : int, default 64
        Filters of the first level; level ``i`` has ``base_channels * 2**i``.
    depth : int, default 4
        Number of down-sampling steps (4 in the original: 64 ... 1024 filters).
    batch_norm : bool, default True
        BatchNorm after every 3x3 convolution.

    Attributes
    ----------
    receptive_field : int
        An upper bound of the width in cells of the window one output cell depends on.
    size_multiple : int
        ``2**depth``: input height and width must be multiples of it.
    """

    model_name: ClassVar[str] = "unet"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_channels: int = 64,
        depth: int = 4,
        activation: str = "smooth_relu",
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        cfg = self._set_config(
            in_channels, out_channels, positive=("base_channels", "depth"),
            base_channels=base_channels, depth=depth, activation=activation,
            batch_norm=bool(batch_norm),
        )
        cin, cout = cfg["in_channels"], cfg["out_channels"]
        c, d = cfg["base_channels"], cfg["depth"]
        widths = [c * 2**i for i in range(d + 1)]
        self.down = nn.ModuleList()
        prev = cin
        for w in widths[:-1]:
            self.down.append(_DoubleConv(prev, w, activation, batch_norm))
            prev = w
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _DoubleConv(widths[-2], widths[-1], activation, batch_norm)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for i in range(d - 1, -1, -1):
            self.up.append(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2))
            self.up_conv.append(_DoubleConv(2 * widths[i], widths[i], activation, batch_norm))
        self.output = nn.Conv2d(widths[0], cout, 1)
        self._init_weights()

    @property
    def size_multiple(self) -> int:  # type: ignore[override]
        """Input height and width must be multiples of this (``2**depth``)."""
        return 2 ** self.config["depth"]

    @property
    def receptive_field(self) -> int:
        """Upper bound of the window width: ``2 * reach + 1``.

        One-sided reach: each 3x3 convolution at scale ``s`` adds ``s`` on both sides; a
        2x2 pooling from scale ``s`` to ``2s`` adds ``s`` on one side (right/bottom), a 2x2
        stride-2 up-sampling ``s`` on the other; so ``2 * 2 * (n - 1) + 2 * n + (n - 1)``
        with ``n = 2**depth`` (107 cells for depth 4, as measured by gradients).
        """
        n = 2 ** self.config["depth"]
        reach = 4 * (n - 1) + 2 * n + (n - 1)
        return 2 * reach + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict the residual ``(N, out_channels, H, W)`` from ``(N, in_channels, H, W)``."""
        self._check_input(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips), strict=True):
            x = conv(torch.cat([up(x), skip], dim=1))
        return self.output(x)
