"""Sampling: spatial blocks, patch windows and the patch datasets training reads.

:mod:`.blocks` (:class:`BlockSplitter`, the role codes) and :mod:`.windows` need only numpy
and scipy and are imported here; :mod:`.dataset` and :mod:`.prepare` need torch and are
imported on first use of their names, so that ``from geochem_sr.sampling import ROLE_TRAIN``
(as Dask workers computing ``applicability`` do) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from geochem_sr.sampling.blocks import (
    ROLE,
    ROLE_CODES,
    ROLE_NAMES,
    ROLE_NONE,
    ROLE_TEST,
    ROLE_TRAIN,
    ROLE_VAL,
    BlockSplitter,
)
from geochem_sr.sampling.windows import Window, patch_index, windows_mask

# public name -> module that defines it (these import torch: loaded on first use)
_LAZY: dict[str, str] = {
    "DEFAULT_MAX_BYTES": "geochem_sr.sampling.dataset",
    "load_arrays": "geochem_sr.sampling.dataset",
    "PatchDataset": "geochem_sr.sampling.dataset",
    "EpochSampler": "geochem_sr.sampling.dataset",
    "make_loader": "geochem_sr.sampling.dataset",
    "set_epoch": "geochem_sr.sampling.dataset",
    "TrainingData": "geochem_sr.sampling.prepare",
    "prepare_training_data": "geochem_sr.sampling.prepare",
}

__all__ = [
    "ROLE",
    "ROLE_NONE",
    "ROLE_TRAIN",
    "ROLE_VAL",
    "ROLE_TEST",
    "ROLE_NAMES",
    "ROLE_CODES",
    "BlockSplitter",
    "Window",
    "patch_index",
    "windows_mask",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    """Import the torch-dependent names (:data:`_LAZY`) on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'geochem_sr.sampling' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the lazy ones included."""
    return sorted(set(globals()) | set(_LAZY))
