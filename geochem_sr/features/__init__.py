"""Features: the model's input channels built from a survey dataset, and the target.

Channel names (:mod:`.names`), stacking (:mod:`.stacking`), normalisation statistics
(:mod:`.statistics`), the 8 rotations/flips (:mod:`.augmentation`), and the covariates as
the sparse survey sees them (:mod:`.sparse_view`). Imports no torch.
"""

from __future__ import annotations

from geochem_sr.features.augmentation import N_AUGMENTATIONS, augment, inverse_augmentation
from geochem_sr.features.names import (
    ASPECT_COS,
    ASPECT_SIN,
    CHANNEL,
    DIRECTIONAL_CHANNELS,
    EMBEDDING_PREFIX,
    LR_PREFIX,
    UNSEEN_PREFIX,
    VECTOR_PAIRS,
    channel_names,
    covariate_channels,
    resolve_inputs,
    variables_of,
)
from geochem_sr.features.sparse_view import (
    add_lr_view,
    lr_view,
    refresh_lr_view,
    site_counts,
)
from geochem_sr.features.stacking import (
    DISTANCE_SCALE,
    normalise,
    raw_channel,
    stack_inputs,
    target_residual,
)
from geochem_sr.features.statistics import STD_FLOOR, fit_normalisation

__all__ = [
    "CHANNEL",
    "ASPECT_SIN",
    "ASPECT_COS",
    "UNSEEN_PREFIX",
    "LR_PREFIX",
    "EMBEDDING_PREFIX",
    "VECTOR_PAIRS",
    "DIRECTIONAL_CHANNELS",
    "DISTANCE_SCALE",
    "STD_FLOOR",
    "N_AUGMENTATIONS",
    "channel_names",
    "variables_of",
    "covariate_channels",
    "resolve_inputs",
    "raw_channel",
    "stack_inputs",
    "normalise",
    "target_residual",
    "fit_normalisation",
    "augment",
    "inverse_augmentation",
    "site_counts",
    "lr_view",
    "add_lr_view",
    "refresh_lr_view",
]
