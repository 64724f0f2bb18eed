"""Features: the model's input channels built from a survey dataset, and the target.

Channel names (:mod:`.names`), stacking (:mod:`.stacking`), normalisation statistics
(:mod:`.statistics`), the 8 rotations/flips (:mod:`.augmentation`), the covariates as the
sparse survey sees them (:mod:`.sparse_view`), and terrain or geology added with that view
refreshed (:mod:`.covariates`). Imports no torch.
"""

from __future__ import annotations

from geochem_sr.features import (
    augmentation,
    covariates,
    names,
    sparse_view,
    stacking,
    statistics,
)
from geochem_sr.features.augmentation import *
from geochem_sr.features.covariates import *
from geochem_sr.features.names import *
from geochem_sr.features.sparse_view import *
from geochem_sr.features.stacking import *
from geochem_sr.features.statistics import *

#: Every stage module's ``__all__``: the names are declared once, in their module.
__all__ = [*names.__all__, *stacking.__all__, *statistics.__all__, *augmentation.__all__,
           *sparse_view.__all__, *covariates.__all__]
