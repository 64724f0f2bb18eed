"""Per-cell features of the input channels at several scales, for the per-cell regressors.

:class:`MultiScale` turns a stack of input channels ``(N, C, H, W)`` into ``C * (1 + 2 *
len(scales))`` features per cell: each channel, its smooth mean around the cell at every
scale, and the channel minus that mean (how the cell differs from its surroundings). These
are the features of ``benchmarks/learnability.py``, where a ridge regression on them came
within a point of the networks at a tiny fraction of their cost.

A smooth mean is three passes of a moving average (box) of odd width ``w`` along each
axis: a piecewise-quadratic kernel within 3 % of a Gaussian of standard deviation
``sqrt((w**2 - 1) / 4)`` cells, computed from cumulative sums at a cost that does not
grow with its width, in float64 (so that a tile and the whole region give the same
features to far below a tree's thresholds), with zeros beyond the window as a
convolution's padding. A cell's features depend on the inputs up to
:attr:`MultiScale.reach` cells away.

Examples
--------
>>> import torch
>>> f = MultiScale(2, scales=(1.0, 3.0))
>>> f.n_features, f.reach, f.widths
(10, 9, [3, 7])
>>> f(torch.zeros(1, 2, 16, 16)).shape
torch.Size([1, 10, 16, 16])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from geochem_sr.errors import ParameterError
from geochem_sr.models.layers import SRNetwork

__all__ = ["DEFAULT_SCALES", "PASSES", "STRIP_CELLS", "CellRegressor", "MultiScale",
           "box_width", "check_scales", "smooth"]

#: Scales (cells, about the standard deviation) of the neighbourhood means: 100 m, 250 m
#: and 600 m at 50-m cells, from a few cells to about the spacing of the sparse survey.
DEFAULT_SCALES: tuple[float, ...] = (2.0, 5.0, 12.0)
#: Passes of the moving average that make one smooth mean.
PASSES = 3
#: Cells of features computed at once by :meth:`MultiScale.strips` (memory: this times the
#: number of features times 8 bytes, 235 MB for 32 channels).
STRIP_CELLS = 2**17


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


def box_width(scale: float) -> int:
    """Odd width of the moving average whose :data:`PASSES` passes have about ``scale``
    cells of standard deviation: the odd integer nearest ``sqrt(1 + 4 * scale**2)``."""
    w = math.sqrt(1.0 + 4.0 * float(scale) ** 2)
    return max(1, 2 * int(round((w - 1) / 2)) + 1)


def smooth(x: np.ndarray, w: int) -> np.ndarray:
    """:data:`PASSES` passes of a moving average of odd width ``w`` along the last two
    axes of ``x`` (float64), zeros beyond its edges; same shape as ``x``.

    Exactly the convolution with the composite kernel and zero padding: the array is
    padded with zeros by the kernel's reach first, so no pass loses what spills over.
    """
    if w == 1:
        return x
    r = PASSES * (w - 1) // 2
    pad = [(0, 0)] * (x.ndim - 2) + [(r, r), (r, r)]
    out = np.pad(np.asarray(x, np.float64), pad)
    for axis in (-2, -1):
        for _ in range(PASSES):
            out = ndimage.uniform_filter1d(out, w, axis=axis, mode="constant")
    return out[..., r:out.shape[-2] - r, r:out.shape[-1] - r]


class MultiScale(nn.Module):
    """Each channel, its Gaussian means at ``scales`` and the differences to them.

    Parameters
    ----------
    channels : int
        Input channels.
    scales : sequence of float, default :data:`DEFAULT_SCALES`
        About the standard deviations of the smooth means, in cells (:func:`box_width`).

    Attributes
    ----------
    n_features : int
        ``channels * (1 + 2 * len(scales))``; the order is the channels, then per scale
        the channels' means and then their differences.
    widths : list of int
        Width of the moving average of each scale.
    reach : int
        Cells one feature reads on each side: ``3 * (max(widths) - 1) / 2``.
    """

    def __init__(self, channels: int, scales: Sequence[float] = DEFAULT_SCALES) -> None:
        super().__init__()
        self.channels = int(channels)
        self.scales = check_scales(scales)
        self.n_features = self.channels * (1 + 2 * len(self.scales))
        self.widths = [box_width(s) for s in self.scales]
        self.reach = max(PASSES * (w - 1) // 2 for w in self.widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, n_features, H, W)`` float64; NaN inputs count as 0."""
        a = np.nan_to_num(x.detach().to(torch.float64).cpu().numpy())
        return torch.from_numpy(self._stack(a)).to(x.device)

    def strips(self, x: torch.Tensor | np.ndarray, cells: int = STRIP_CELLS
               ) -> Iterator[tuple[int, int, int, np.ndarray]]:
        """The features of ``x`` ``(N, C, H, W)``, a strip of rows at a time.

        Yields ``(n, r0, r1, features)``: rows ``r0:r1`` of item ``n`` as a float64 array
        ``(r1 - r0, W, n_features)``, cell by cell. Each strip is computed from its rows and
        :attr:`reach` more on each side, so the features are those of :meth:`forward` on
        the whole ``x`` (zeros beyond its edges), with at most about ``cells`` cells of
        features in memory at once.
        """
        a = x.detach().to(torch.float64).cpu().numpy() if isinstance(x, torch.Tensor) \
            else np.asarray(x, np.float64)
        n_items, _, h, w = a.shape
        step = max(8, int(cells) // max(w, 1))
        r = self.reach
        for n in range(n_items):
            for r0 in range(0, h, step):
                r1 = min(h, r0 + step)
                lo, hi = max(0, r0 - r), min(h, r1 + r)
                part = np.nan_to_num(a[n:n + 1, :, lo:hi])
                if lo > r0 - r or hi < r1 + r:  # the window's edge: zeros beyond, as forward
                    part = np.pad(part, ((0, 0), (0, 0), (lo - (r0 - r), (r1 + r) - hi),
                                         (0, 0)))
                f = self._stack(part)[0, :, r:r + (r1 - r0)]
                yield n, r0, r1, np.ascontiguousarray(f.transpose(1, 2, 0))

    def _stack(self, a: np.ndarray) -> np.ndarray:
        out = [a]
        for w in self.widths:
            g = smooth(a, w)
            out += [g, a - g]
        return np.concatenate(out, axis=1)

    def names(self, channels: Sequence[str]) -> list[str]:
        """Feature names for the given channel names (``"As"``, ``"As@2"``, ``"As-@2"``)."""
        names = [str(c) for c in channels]
        out = list(names)
        for s in self.scales:
            out += [f"{n}@{s:g}" for n in names] + [f"{n}-@{s:g}" for n in names]
        return out


class CellRegressor(SRNetwork):
    """Base of the per-cell regressors: multi-scale features, then a per-cell map.

    A subclass sets ``model_name``, calls ``super().__init__`` first, registers what it
    learns as buffers, and defines :meth:`predict_rows`; :meth:`forward` applies it a
    strip of rows at a time.

    Parameters
    ----------
    in_channels, out_channels : int
        Input channels and elements.
    scales : sequence of float, default (2, 5, 12)
        About the standard deviations (cells) of the neighbourhood means
        (:class:`MultiScale`).

    Attributes
    ----------
    features : MultiScale
    receptive_field : int
        ``2 * reach + 1`` cells (73 for the default scales).
    """

    def __init__(self, in_channels: int, out_channels: int,
                 scales: Sequence[float] = DEFAULT_SCALES) -> None:
        super().__init__()
        self.features = MultiScale(in_channels, scales)
        self._set_config(in_channels, out_channels, scales=list(self.features.scales))

    @property
    def receptive_field(self) -> int:
        """``2 * reach + 1`` cells."""
        return 2 * self.features.reach + 1

    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        """Features ``(n, F)`` float64 -> residuals ``(n, E)`` float32."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> residual ``(N, E, H, W)`` float32, a strip of rows at a time
        (:meth:`MultiScale.strips`)."""
        self._check_input(x)
        n, _, h, w = x.shape
        out = np.zeros((n, h, w, self.config["out_channels"]), np.float32)
        for i, r0, r1, f in self.features.strips(x):
            out[i, r0:r1] = self.predict_rows(f.reshape(-1, f.shape[-1])).reshape(
                r1 - r0, w, -1)
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(x.device)

