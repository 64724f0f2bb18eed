"""Networks of the paper's experiment (the multi-level U-Net and the SRCNN, VDSR, U-Net
baselines) and the model file that stores a trained one (:class:`GeoSRModel`).

>>> import geochem_sr as gs
>>> net = gs.models.get_model("multilevel_unet", in_channels=18, out_channels=10)

All networks are fully convolutional, map ``(N, in_channels, H, W)`` to the predicted
residual ``log10(hr) - log10(lr)`` of shape ``(N, out_channels, H, W)``, and carry
``config`` (constructor arguments), ``receptive_field`` and ``size_multiple``.
"""

from __future__ import annotations

import importlib
from typing import Any

from geochem_sr.models.records import (
    CONTEXTS,
    DEFAULT_CONTEXT,
    PredictionSettings,
    TrainingRecord,
)
from geochem_sr.models.registry import available_models, get_model, model_class

__all__ = [
    "get_model",
    "available_models",
    "model_class",
    "MultiLevelUNet",
    "SRCNN",
    "VDSR",
    "UNet",
    "SmoothReLU",
    "ACTIVATIONS",
    "count_parameters",
    "count_flops",
    "GeoSRModel",
    "PredictionSettings",
    "TrainingRecord",
    "CONTEXTS",
    "DEFAULT_CONTEXT",
    "check_model",
    "read_payload",
]

_LAZY = {
    "MultiLevelUNet": "geochem_sr.models.multilevel_unet",
    "SRCNN": "geochem_sr.models.srcnn",
    "VDSR": "geochem_sr.models.vdsr",
    "UNet": "geochem_sr.models.unet",
    "SmoothReLU": "geochem_sr.models.layers",
    "ACTIVATIONS": "geochem_sr.models.layers",
    "count_parameters": "geochem_sr.models.layers",
    "count_flops": "geochem_sr.models.layers",
    "GeoSRModel": "geochem_sr.models.model_file",
    "check_model": "geochem_sr.models.checks",
    "read_payload": "geochem_sr.models.payload",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'geochem_sr.models' has no attribute {name!r}")
