"""Sampling: spatial blocks, patch windows and the patch datasets training reads.

:mod:`.blocks` (:class:`BlockSplitter`, the role codes), :mod:`.leakage` (the gap that keeps
held-out dense samples out of training) and :mod:`.windows` need only numpy
and scipy and are imported here; :mod:`.dataset` and :mod:`.prepare` need torch and are
imported on first use of their names, so that ``from geochem_sr.sampling import ROLE_TRAIN``
(as Dask workers computing ``applicability`` do) does not import torch.
"""

from __future__ import annotations

from geochem_sr.exports import lazy_exports
from geochem_sr.sampling import blocks, leakage, windows
from geochem_sr.sampling.blocks import *
from geochem_sr.sampling.leakage import *
from geochem_sr.sampling.windows import *

# the names of the modules that import torch, loaded on first use
_LAZY, __getattr__, __dir__ = lazy_exports(__name__, {
    "dataset": "DEFAULT_MAX_BYTES load_arrays PatchDataset EpochSampler make_loader set_epoch",
    "prepare": "TrainingData prepare_training_data",
})

__all__ = [*blocks.__all__, *leakage.__all__, *windows.__all__, *_LAZY]
