"""Training: settings (:class:`TrainConfig`), losses, the run, ensembles, and :func:`train`.

>>> model = train(ds, "multilevel_unet", epochs=100, ensemble=3)  # doctest: +SKIP

The modules that need torch are imported on first use of their names, so that
``import geochem_sr.training`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from geochem_sr.training.config import TrainConfig

__all__ = [
    "TrainConfig",
    "train",
    "fit_network",
    "predict_patches",
    "CHECKPOINT_FORMAT",
    "LOSSES",
    "DEFAULT_LOSS",
    "get_loss",
]

_LAZY: dict[str, str] = {
    "train": "geochem_sr.training.api",
    "fit_network": "geochem_sr.training.api",
    "predict_patches": "geochem_sr.training.runtime",
    "CHECKPOINT_FORMAT": "geochem_sr.training.checkpoint",
    "LOSSES": "geochem_sr.training.losses",
    "DEFAULT_LOSS": "geochem_sr.training.losses",
    "get_loss": "geochem_sr.training.losses",
}


def __getattr__(name: str) -> Any:
    """Import the names of :data:`_LAZY` on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'geochem_sr.training' has no attribute {name!r}")
