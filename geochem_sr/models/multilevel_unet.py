"""The multi-level U-Net of Pei et al. (2025), Table 1, layer by layer.

Input ``(N, in_channels, H, W)`` (the paper: 32x32x18), output ``(N, out_channels, H, W)``
(32x32x10): the predicted residual ``log10(hr) - log10(lr)`` per element. ``H`` and ``W``
must be multiples of 16 (four stride-2 steps); training uses 32x32 patches, inference any
larger tile. With ``base_channels=64`` the widths are the table's (64, 128, 256, 512, 1024;
branch 64 and 32).

How the table is read (sizes for a 32x32 input; ``c`` = ``base_channels``)
--------------------------------------------------------------------------
* **Input**: BatchNorm over the input channels (``input_norm``).
* **Levels 1-4 (down)**: ``Conv 1`` (level 1: 3x3 stride 1; levels 2-4: 1x1 stride 2) ->
  activation -> ``Conv 2`` (3x3) is the main path; ``Conv 3`` (1x1, same stride) is a
  projection shortcut from the level's input; output = act(main + shortcut). Only this
  reading halves the size once per level, as the table's output column says.
* **Level 5 (bottleneck)**: ``Conv 1`` 1x1/16c stride 2 (2x2x1024) -> act -> ``Conv 2``
  3x3/16c -> act -> ``De-Conv 1`` 2x2/8c stride 2 (back to 4x4x512); ``Conv 3`` 1x1/8c
  stride 1 is the shortcut from level 4's output (the same role as ``Conv 3`` above);
  output = act(sum), 4x4x512.
* **Levels 6-8 (up)**: the input is the concatenation of the previous level's output and
  the encoder level of the same size (levels 4, 3, 2: skip connections). ``Conv 1`` and
  ``Conv 2`` (3x3, each followed by act) -> ``De-Conv 1`` (2x2 stride 2, halves the
  channels) is the main path; ``De-Conv 2`` (1x1 stride 2) is a projection shortcut from
  the level's input (the concatenation); output = act(sum).
* **Level 9**: concatenation with level 1, ``Conv 1``, ``Conv 2`` (3x3/c, each + act).
* **Levels 10-11 (branch)**: level 10 takes the deepest decoder features at 16x16 -- the
  output of level 8's ``Conv 2`` (16x16x2c, after the skip from level 2) -- and brings
  them to 32x32: ``De-Conv 1`` 2x2/c stride 2 -> act -> ``Conv 1`` 1x1/c, plus the shortcut
  ``De-Conv 2`` (1x1 stride 2) from the branch input; act(sum). Level 11: ``De-Conv 1``
  2x2/(c/2) stride 1 -> crop -> act -> ``Conv 1`` 3x3/(c/2), plus ``De-Conv 2`` (1x1 stride
  1, i.e. a 1x1 convolution) from level 10; act(sum), 32x32x32.
* **Output**: ``Conv 1`` 3x3 to ``out_channels`` on the fusion of levels 9 and 11; no
  activation (residuals are signed). Its weights start at zero, so an untrained network
  predicts "no change from the sparse map".

Decisions on what the table leaves open
---------------------------------------
1. **1x1 stride-2 transposed convolutions** (``De-Conv 2`` of levels 6-8 and 10). Taken
   literally (``output_padding=1``) such a layer writes its input only to every other row
   and column: three cells in four of the shortcut carry the bias alone, a checkerboard
   that the main path has to undo. We use, by default, a 1x1 convolution followed by
   nearest-neighbour upsampling x2 (``shortcut_upsampling="nearest"``): the same
   parameters (``in x out + out``) and the same multiply-adds as the literal layer (the
   1x1 convolution runs at the coarse size; nearest upsampling commutes with it), but every
   output cell receives the projected input. ``shortcut_upsampling="transposed"`` builds
   the literal layer for comparison.
2. **Level 11's 2x2 stride-1 de-convolution** gives (H+1)x(W+1) (33x33 from 32x32). We
   crop the last row and column, so output cell (i, j) mixes input cells (i-1..i, j-1..j):
   a 2x2 convolution zero-padded at the top and left. Padding instead would add a row that
   has no input behind it.
3. **Fusion of the branch with level 9**: concatenation (64 + 32 = 96 channels into the
   output convolution). A sum is impossible with the printed widths (64 vs 32 channels)
   without a layer the table does not list.

Unprinted details chosen here: activations after every convolution except the last one of
each main path and shortcut (they are summed first, then activated, as in residual
blocks); no BatchNorm inside the network (only the input BatchNorm is printed;
``batch_norm=True`` adds one after every convolution); He initialisation of all
convolutions except the output one.

Size (``base_channels=64``): 26,324,558 parameters with ``in_channels=18``,
``out_channels=10`` (the README's reading: 26.3 M); 1.52 GFLOP per 32x32 patch (a
multiply-add counted as 2; :func:`geochem_sr.models.count_flops`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from geochem_sr.errors import ParameterError
from geochem_sr.models.layers import ConvAct, SRNetwork, make_activation

__all__ = ["MultiLevelUNet", "LEVEL_NAMES"]

#: Keys of :meth:`MultiLevelUNet.forward_levels` that correspond to the rows of Table 1.
LEVEL_NAMES: tuple[str, ...] = (
    "input",
    *(f"level{i}" for i in range(1, 12)),
    "output",
)

SHORTCUT_UPSAMPLING: tuple[str, ...] = ("nearest", "transposed")


def _deconv(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, batch_norm: bool
) -> nn.Module:
    """Transposed convolution (no padding), optional BatchNorm."""
    layer = nn.ConvTranspose2d(
        in_channels, out_channels, kernel_size, stride=stride, bias=not batch_norm
    )
    if not batch_norm:
        return layer
    return nn.Sequential(layer, nn.BatchNorm2d(out_channels))


def _up_shortcut(in_channels: int, out_channels: int, mode: str, batch_norm: bool) -> nn.Module:
    """The table's 1x1 stride-2 de-convolution shortcut (see decision 1 of the module doc)."""
    if mode == "transposed":
        layer: nn.Module = nn.ConvTranspose2d(
            in_channels, out_channels, 1, stride=2, output_padding=1, bias=not batch_norm
        )
        parts: list[nn.Module] = [layer]
    else:
        parts = [nn.Conv2d(in_channels, out_channels, 1, bias=not batch_norm)]
    if batch_norm:
        parts.append(nn.BatchNorm2d(out_channels))
    if mode == "nearest":
        parts.append(nn.Upsample(scale_factor=2, mode="nearest"))
    return nn.Sequential(*parts)


class _DownLevel(nn.Module):
    """Levels 1-4: main path Conv 1 -> Conv 2, projection shortcut Conv 3, summed."""

    def __init__(
        self, cin: int, cout: int, stride: int, first_kernel: int, activation: str, bn: bool
    ) -> None:
        super().__init__()
        self.conv1 = ConvAct(cin, cout, first_kernel, activation, bn, stride=stride)
        self.conv2 = ConvAct(cout, cout, 3, None, bn)
        self.conv3 = ConvAct(cin, cout, 1, None, bn, stride=stride)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.act(self.conv2(self.conv1(x)) + self.conv3(x))


class _Bottleneck(nn.Module):
    """Level 5: Conv 1 (stride 2) -> Conv 2 -> De-Conv 1 (x2), shortcut Conv 3 (stride 1)."""

    def __init__(self, cin: int, cmid: int, cout: int, activation: str, bn: bool) -> None:
        super().__init__()
        self.conv1 = ConvAct(cin, cmid, 1, activation, bn, stride=2)
        self.conv2 = ConvAct(cmid, cmid, 3, activation, bn)
        self.deconv1 = _deconv(cmid, cout, 2, 2, bn)
        self.conv3 = ConvAct(cin, cout, 1, None, bn)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.act(self.deconv1(self.conv2(self.conv1(x))) + self.conv3(x))


class _UpLevel(nn.Module):
    """Levels 6-8: Conv 1 -> Conv 2 -> De-Conv 1 (x2), shortcut De-Conv 2 (1x1, x2)."""

    def __init__(
        self, cin: int, cmid: int, cout: int, activation: str, bn: bool, shortcut: str
    ) -> None:
        super().__init__()
        self.conv1 = ConvAct(cin, cmid, 3, activation, bn)
        self.conv2 = ConvAct(cmid, cmid, 3, activation, bn)
        self.deconv1 = _deconv(cmid, cout, 2, 2, bn)
        self.deconv2 = _up_shortcut(cin, cout, shortcut, bn)
        self.act = make_activation(activation)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (level output, Conv 2 features at the level's input size)."""
        feats = self.conv2(self.conv1(x))
        return self.act(self.deconv1(feats) + self.deconv2(x)), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.forward_features(x)[0]


class _BranchUp(nn.Module):
    """Level 10: De-Conv 1 (2x2, x2) -> Conv 1 (1x1), shortcut De-Conv 2 (1x1, x2)."""

    def __init__(self, cin: int, cout: int, activation: str, bn: bool, shortcut: str) -> None:
        super().__init__()
        self.deconv1 = nn.Sequential(_deconv(cin, cout, 2, 2, bn), make_activation(activation))
        self.conv1 = ConvAct(cout, cout, 1, None, bn)
        self.deconv2 = _up_shortcut(cin, cout, shortcut, bn)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.act(self.conv1(self.deconv1(x)) + self.deconv2(x))


class _BranchRefine(nn.Module):
    """Level 11: De-Conv 1 (2x2, stride 1, cropped) -> Conv 1 (3x3), shortcut De-Conv 2 (1x1)."""

    def __init__(self, cin: int, cout: int, activation: str, bn: bool) -> None:
        super().__init__()
        self.deconv1 = _deconv(cin, cout, 2, 1, bn)
        self.act1 = make_activation(activation)
        self.conv1 = ConvAct(cout, cout, 3, None, bn)
        # a 1x1 stride-1 transposed convolution is a 1x1 convolution
        self.deconv2 = ConvAct(cin, cout, 1, None, bn)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h, w = x.shape[-2:]
        up = self.deconv1(x)[..., :h, :w]  # (H+1)x(W+1) -> crop last row and column
        return self.act(self.conv1(self.act1(up)) + self.deconv2(x))


class MultiLevelUNet(SRNetwork):
    """The multi-level U-Net of Pei et al. (2025), Table 1 (see the module docstring).

    Parameters
    ----------
    in_channels : int
        Input channels (18 in the paper; 19 with aspect as sin/cos; 10/13/14 in ablations).
    out_channels : int
        Output channels, one residual map per element (10 in the paper).
    base_channels : int, default 64
        Width of level 1; levels 2-5 use 2, 4, 8, 16 times it, the branch 1 and 1/2 times.
    activation : str, default "smooth_relu"
        One of :data:`~geochem_sr.models.layers.ACTIVATIONS`.
    batch_norm : bool, default False
        BatchNorm after every convolution (the table prints only the input BatchNorm).
    input_norm : bool, default True
        BatchNorm of the input channels (the table's first row).
    shortcut_upsampling : {"nearest", "transposed"}, default "nearest"
        How the 1x1 stride-2 de-convolution shortcuts are built (decision 1).

    Attributes
    ----------
    config : dict
        The constructor arguments (JSON-serialisable); ``get_model("multilevel_unet",
        **config)`` rebuilds the network.
    receptive_field : int
        Width in cells of the window an output cell depends on (an upper bound).
    tile_reach : int
        Cells of input a tile on the 16-cell lattice needs on each side to be exact (64).
    size_multiple : int
        Height and width of the input must be multiples of this.
    """

    model_name: ClassVar[str] = "multilevel_unet"
    size_multiple: ClassVar[int] = 16
    #: one-sided reach: 3x3 convs 2+2+4+8+16 (down) + 16+8+4+2 (up) + 1 (output) = 63 cells
    #: (the stride-2 1x1 convolutions subsample without reach); each x2 up-sampling step
    #: adds up to half a coarse cell on the top/left side (8+4+2+1): 78 -> 2*78+1 = 157.
    #: Measured by gradients: -78 / +63 cells.
    receptive_field: ClassVar[int] = 157
    #: How far a cell sees depends on its place in the 16-cell lattice of the four stride-2
    #: steps: from 64 cells above to 78 (the cell 14 below a lattice line) and from 63 below
    #: to 49. So a tile that starts and ends on the lattice, in a window that does too,
    #: needs 64 cells above and left and 49 below and right of it: 64 on each side, not the
    #: 80 that half the receptive field rounded up to the lattice would give (measured by
    #: gradients, tests/test_models.py).
    tile_reach: ClassVar[int] = 64

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_channels: int = 64,
        activation: str = "smooth_relu",
        batch_norm: bool = False,
        input_norm: bool = True,
        shortcut_upsampling: str = "nearest",
    ) -> None:
        super().__init__()
        cfg = self._set_config(
            in_channels, out_channels, positive=("base_channels",),
            base_channels=base_channels, activation=activation, batch_norm=bool(batch_norm),
            input_norm=bool(input_norm), shortcut_upsampling=shortcut_upsampling,
        )
        if shortcut_upsampling not in SHORTCUT_UPSAMPLING:
            raise ParameterError(
                f"shortcut_upsampling: expected one of {', '.join(SHORTCUT_UPSAMPLING)}, "
                f"found {shortcut_upsampling!r}"
            )
        cin, cout, c = cfg["in_channels"], cfg["out_channels"], cfg["base_channels"]
        a, bn, su = activation, bool(batch_norm), shortcut_upsampling
        half = max(1, c // 2)
        self.input_bn = nn.BatchNorm2d(cin) if input_norm else nn.Identity()
        self.level1 = _DownLevel(cin, c, 1, 3, a, bn)
        self.level2 = _DownLevel(c, 2 * c, 2, 1, a, bn)
        self.level3 = _DownLevel(2 * c, 4 * c, 2, 1, a, bn)
        self.level4 = _DownLevel(4 * c, 8 * c, 2, 1, a, bn)
        self.level5 = _Bottleneck(8 * c, 16 * c, 8 * c, a, bn)
        self.level6 = _UpLevel(16 * c, 8 * c, 4 * c, a, bn, su)
        self.level7 = _UpLevel(8 * c, 4 * c, 2 * c, a, bn, su)
        self.level8 = _UpLevel(4 * c, 2 * c, c, a, bn, su)
        self.level9 = nn.Sequential(ConvAct(2 * c, c, 3, a, bn), ConvAct(c, c, 3, a, bn))
        self.level10 = _BranchUp(2 * c, c, a, bn, su)
        self.level11 = _BranchRefine(c, half, a, bn)
        self.output = nn.Conv2d(c + half, cout, 3, padding=1)
        self._init_weights()

    def forward_levels(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the network and return every level's output (keys :data:`LEVEL_NAMES`).

        Parameters
        ----------
        x : torch.Tensor
            ``(N, in_channels, H, W)``, H and W multiples of 16, finite values.

        Returns
        -------
        dict of str to torch.Tensor
            ``"input"`` (after the input BatchNorm), ``"level1"`` ... ``"level11"``,
            ``"output"``; each is the tensor in the "output size" column of Table 1.
        """
        self._check_input(x)
        out: dict[str, torch.Tensor] = {}
        out["input"] = x0 = self.input_bn(x)
        out["level1"] = l1 = self.level1(x0)
        out["level2"] = l2 = self.level2(l1)
        out["level3"] = l3 = self.level3(l2)
        out["level4"] = l4 = self.level4(l3)
        out["level5"] = l5 = self.level5(l4)
        out["level6"] = l6 = self.level6(torch.cat([l5, l4], dim=1))
        out["level7"] = l7 = self.level7(torch.cat([l6, l3], dim=1))
        l8, branch_in = self.level8.forward_features(torch.cat([l7, l2], dim=1))
        out["level8"] = l8
        out["level9"] = l9 = self.level9(torch.cat([l8, l1], dim=1))
        out["level10"] = l10 = self.level10(branch_in)
        out["level11"] = l11 = self.level11(l10)
        out["output"] = self.output(torch.cat([l9, l11], dim=1))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict the residual ``(N, out_channels, H, W)`` from ``(N, in_channels, H, W)``."""
        return self.forward_levels(x)["output"]

