"""Ridge regression per cell on the multi-scale features of the inputs.

The residual ``log10(hr) - log10(lr)`` of a cell is a linear function of the
:class:`~geochem_sr.models.cell_features.MultiScale` features around it: a fixed
convolution followed by a 1x1 one, so a model of this kind is a network like the others
(same tiles, halo, model file and calibration). :func:`geochem_sr.training.train` fits it
in closed form with ``network="ridge"``, the penalty chosen per element by a spatial
cross-validation within its training cells. Untrained, it predicts no change.

Examples
--------
>>> import torch
>>> net = CellRidge(3, 2, scales=(1.0,))
>>> net.weight.shape, net.receptive_field
(torch.Size([2, 9]), 7)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch

from geochem_sr.models.cell_features import DEFAULT_SCALES, CellRegressor

__all__ = ["CellRidge"]


class CellRidge(CellRegressor):
    """A linear map of multi-scale per-cell features to one residual per element.

    Parameters and attributes are those of every per-cell regressor
    (:class:`~geochem_sr.models.cell_features.CellRegressor`), and:

    Attributes
    ----------
    weight : torch.Tensor
        ``(out_channels, n_features)`` float64 buffer, in the units of the features.
    bias : torch.Tensor
        ``(out_channels,)`` float64 buffer.
    feature_low, feature_high : torch.Tensor
        ``(n_features,)`` float64 buffers: features are clipped to their range on the
        training cells before the linear map, which so never extrapolates (on a real
        survey, Meuse seed 9, unclipped features made the test blocks of three elements
        1.8-3.9 times worse than the sparse map). Untrained: unbounded.
    low, high : torch.Tensor
        ``(out_channels,)`` float64 buffers: predictions are clipped to the range of the
        training residuals. Untrained: unbounded.
    """

    model_name: ClassVar[str] = "ridge"

    def __init__(self, in_channels: int, out_channels: int,
                 scales: Sequence[float] = DEFAULT_SCALES) -> None:
        super().__init__(in_channels, out_channels, scales)
        e = self.config["out_channels"]
        self.register_buffer("weight", torch.zeros(e, self.features.n_features,
                                                   dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(e, dtype=torch.float64))
        f = self.features.n_features
        self.register_buffer("feature_low", torch.full((f,), -torch.inf, dtype=torch.float64))
        self.register_buffer("feature_high", torch.full((f,), torch.inf, dtype=torch.float64))
        self.register_buffer("low", torch.full((e,), -torch.inf, dtype=torch.float64))
        self.register_buffer("high", torch.full((e,), torch.inf, dtype=torch.float64))

    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        """Features ``(n, F)`` float64 -> residuals ``(n, E)`` float32."""
        w, b = self.weight.detach().cpu().numpy(), self.bias.detach().cpu().numpy()
        x = np.clip(np.asarray(rows, np.float64), self.feature_low.cpu().numpy(),
                    self.feature_high.cpu().numpy())
        out = x @ w.T + b
        np.clip(out, self.low.cpu().numpy(), self.high.cpu().numpy(), out=out)
        return out.astype(np.float32)
