"""Gradient-boosted trees per cell: LightGBM on the multi-scale features of the inputs.

One booster per element predicts the residual ``log10(hr) - log10(lr)`` of a cell from the
:class:`~geochem_sr.models.cell_features.MultiScale` features around it. The module is a
network like the others (same inputs, same tiles and halo, same model file), so a model
of this kind goes through calibration, ``super_resolve`` and the Zarr pipeline unchanged;
:func:`geochem_sr.training.train` fits it with ``network="trees"``.

The boosters are stored as LightGBM's own text format (``Booster.model_to_string``) in a
``uint8`` buffer: a model file holds plain tensors only, and reading it runs no code
(LightGBM parses the text). An element without a booster predicts no change.

Examples
--------
>>> import torch
>>> net = CellTrees(4, 2, scales=(1.0,))
>>> net.receptive_field, float(net(torch.zeros(1, 4, 8, 8)).abs().max())
(7, 0.0)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from geochem_sr.errors import ModelFileError
from geochem_sr.models.cell_features import DEFAULT_SCALES, CellRegressor

__all__ = ["CellTrees"]


class CellTrees(CellRegressor):
    """One LightGBM booster per element on multi-scale per-cell features.

    Parameters and attributes are those of every per-cell regressor
    (:class:`~geochem_sr.models.cell_features.CellRegressor`), and:

    Attributes
    ----------
    boosters : torch.Tensor
        uint8 buffer: JSON list of one LightGBM model text (or None) per element.
    """

    model_name: ClassVar[str] = "trees"
    #: Buffers whose length is that of what they hold (not set by the configuration).
    sized_by_contents: ClassVar[tuple[str, ...]] = ("boosters",)

    def __init__(self, in_channels: int, out_channels: int,
                 scales: Sequence[float] = DEFAULT_SCALES) -> None:
        super().__init__(in_channels, out_channels, scales)
        self.register_buffer("boosters", torch.zeros(0, dtype=torch.uint8))
        self._cache: list[Any] | None = None

    def set_boosters(self, texts: Sequence[str | None]) -> None:
        """Store one LightGBM model text per element (None: that element predicts 0)."""
        if len(texts) != self.config["out_channels"]:
            raise ValueError(f"expected {self.config['out_channels']} boosters, got {len(texts)}")
        payload = json.dumps([None if t is None else str(t) for t in texts]).encode()
        self.boosters = torch.tensor(list(payload), dtype=torch.uint8)
        self._cache = None

    def booster_texts(self) -> list[str | None]:
        """The stored model texts, one per element (None where there is no booster)."""
        if self.boosters.numel() == 0:
            return [None] * self.config["out_channels"]
        try:
            texts = json.loads(bytes(self.boosters.cpu().numpy().tobytes()).decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelFileError(f"trees: the stored boosters cannot be read: {err}") from None
        if not isinstance(texts, list) or len(texts) != self.config["out_channels"]:
            raise ModelFileError("trees: expected one booster per element in the model file")
        return texts

    def _boosters(self) -> list[Any]:
        if self._cache is None:
            import lightgbm

            self._cache = [None if t is None else lightgbm.Booster(model_str=t)
                           for t in self.booster_texts()]
        return self._cache

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        key = prefix + "boosters"
        if key in state_dict:  # its length is that of the stored text
            self.boosters = torch.zeros_like(state_dict[key])
            self._cache = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        """Features ``(n, F)`` -> residuals ``(n, E)`` float32, with torch's thread count."""
        out = np.zeros((rows.shape[0], self.config["out_channels"]), np.float32)
        threads = max(1, torch.get_num_threads())
        for e, booster in enumerate(self._boosters()):
            if booster is not None and rows.shape[0]:
                out[:, e] = booster.predict(rows, num_threads=threads)
        return out
