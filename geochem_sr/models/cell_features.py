"""Per-cell features of the input channels at several scales, for the per-cell regressors.

:class:`MultiScale` turns a stack of input channels ``(N, C, H, W)`` into ``C * (1 + 2 *
len(scales))`` features per cell: each channel, its Gaussian-weighted mean around the cell
at every scale, and the channel minus that mean (how the cell differs from its
surroundings). These are the features of ``benchmarks/learnability.py``, where a ridge
regression on them came within a point of the networks at a tiny fraction of their cost.

The means are depthwise convolutions with zero padding, in float64 (so that tiles and the
whole region give the same features to the last bit that matters to a tree's threshold).
A cell's features depend on the inputs up to :attr:`MultiScale.reach` cells away.

Examples
--------
>>> import torch
>>> f = MultiScale(2, scales=(1.0, 3.0))
>>> f.n_features, f.reach
(10, 9)
>>> f(torch.zeros(1, 2, 16, 16)).shape
torch.Size([1, 10, 16, 16])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from geochem_sr.errors import ParameterError

__all__ = ["DEFAULT_SCALES", "TRUNCATE", "MultiScale", "check_scales"]

#: Standard deviations (cells) of the Gaussian neighbourhood means: 100 m, 250 m and 600 m
#: at 50-m cells, from a few cells to about the spacing of the sparse survey.
DEFAULT_SCALES: tuple[float, ...] = (2.0, 5.0, 12.0)
#: The Gaussian kernels are cut at this many standard deviations.
TRUNCATE = 3.0


def check_scales(scales: Sequence[float]) -> list[float]:
    """The scales as a list of positive floats.

    Raises
    ------
    ParameterError
        Empty, or a scale that is not a positive finite number.
    """
    try:
        out = [float(s) for s in scales]
    except (TypeError, ValueError):
        out = []
    if not out or not all(math.isfinite(s) and s > 0 for s in out):
        raise ParameterError(f"scales: expected positive numbers of cells, found {scales!r}")
    return out


def _kernel(sigma: float) -> torch.Tensor:
    r = int(math.ceil(TRUNCATE * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


class MultiScale(nn.Module):
    """Each channel, its Gaussian means at ``scales`` and the differences to them.

    Parameters
    ----------
    channels : int
        Input channels.
    scales : sequence of float, default :data:`DEFAULT_SCALES`
        Standard deviations of the Gaussian means, in cells.

    Attributes
    ----------
    n_features : int
        ``channels * (1 + 2 * len(scales))``; the order is the channels, then per scale
        the channels' means and then their differences.
    reach : int
        Cells one feature reads on each side: ``ceil(3 * max(scales))``.
    """

    def __init__(self, channels: int, scales: Sequence[float] = DEFAULT_SCALES) -> None:
        super().__init__()
        self.channels = int(channels)
        self.scales = check_scales(scales)
        self.n_features = self.channels * (1 + 2 * len(self.scales))
        self.reach = max(int(math.ceil(TRUNCATE * s)) for s in self.scales)
        for i, s in enumerate(self.scales):
            self.register_buffer(f"kernel{i}", _kernel(s), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, n_features, H, W)`` float64; NaN inputs count as 0."""
        x = torch.nan_to_num(x.to(torch.float64))
        out = [x]
        c = self.channels
        for i in range(len(self.scales)):
            k = getattr(self, f"kernel{i}")
            r = (k.numel() - 1) // 2
            g = nn.functional.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1),
                                     padding=(r, 0), groups=c)
            g = nn.functional.conv2d(g, k.view(1, 1, 1, -1).expand(c, 1, 1, -1),
                                     padding=(0, r), groups=c)
            out += [g, x - g]
        return torch.cat(out, dim=1)

    def names(self, channels: Sequence[str]) -> list[str]:
        """Feature names for the given channel names (``"As"``, ``"As@2"``, ``"As-@2"``)."""
        names = [str(c) for c in channels]
        out = list(names)
        for s in self.scales:
            out += [f"{n}@{s:g}" for n in names] + [f"{n}-@{s:g}" for n in names]
        return out
