"""Networks of the paper's experiment (the multi-level U-Net and the SRCNN, VDSR, U-Net
baselines), the per-cell regressors (``"trees"``: LightGBM, ``"ridge"``) on multi-scale
features, ensembles and per-element selections of them, and the model file that stores a
trained one (:class:`GeoSRModel`).

>>> import geochem_sr as gs
>>> net = gs.models.get_model("multilevel_unet", in_channels=18, out_channels=10)

All of them are fully convolutional (a per-cell regressor reads a fixed neighbourhood),
map ``(N, in_channels, H, W)`` to the predicted residual ``log10(hr) - log10(lr)`` of
shape ``(N, out_channels, H, W)``, and carry
``config`` (constructor arguments), ``receptive_field`` and ``size_multiple``.
"""

from __future__ import annotations

from geochem_sr.exports import lazy_exports
from geochem_sr.models.geometry import network_geometry, network_tile_reach
from geochem_sr.models.records import (
    CONTEXTS,
    DEFAULT_CONTEXT,
    DEFAULT_SPREAD,
    SPREADS,
    PredictionSettings,
    TrainingRecord,
)
from geochem_sr.models.registry import (
    CELL_MODELS,
    NETWORK_CLASSES,
    available_methods,
    available_models,
    get_model,
    model_class,
)

# the names of the modules that import torch, loaded on first use
_LAZY, __getattr__, __dir__ = lazy_exports(__name__, {
    **{name: NETWORK_CLASSES[name] for name in available_methods()},
    "ensemble": "Ensemble",
    "selection": "Selection",
    "layers": "SmoothReLU ACTIVATIONS count_parameters count_flops",
    "model_file": "GeoSRModel",
    "checks": "check_model",
    "payload": "read_payload",
})

__all__ = [
    "get_model",
    "available_models",
    "available_methods",
    "CELL_MODELS",
    "model_class",
    "network_geometry",
    "network_tile_reach",
    "PredictionSettings",
    "TrainingRecord",
    "CONTEXTS",
    "DEFAULT_CONTEXT",
    "DEFAULT_SPREAD",
    "SPREADS",
    *_LAZY,
]
