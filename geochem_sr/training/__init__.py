"""Training: settings (:class:`TrainConfig`), losses, the run, ensembles, and :func:`train`.

>>> model = train(ds, "multilevel_unet", epochs=100, ensemble=3)  # doctest: +SKIP

The modules that need torch are imported on first use of their names, so that
``import geochem_sr.training`` stays cheap.
"""

from __future__ import annotations

from geochem_sr.exports import lazy_exports
from geochem_sr.training.config import TrainConfig

# the names of the modules that import torch, loaded on first use
_LAZY, __getattr__, __dir__ = lazy_exports(__name__, {
    "api": "train fit_network default_margin",
    "runtime": "predict_patches",
    "checkpoint": "CHECKPOINT_FORMAT",
    "losses": "LOSSES DEFAULT_LOSS get_loss",
})

__all__ = ["TrainConfig", *_LAZY]
