"""geochem_sr: geology- and topography-constrained super-resolution of geochemical maps.

The method follows Pei et al. (2025), *Geology-Topography Constrained Super-Resolution of
Geochemical Maps via Enhanced U-Net*, Minerals 15(10):1088. Heavy dependencies (torch,
xarray-spatial, gensim) are imported lazily, so ``import geochem_sr`` is cheap and Dask
workers do not pay for what they do not use.
"""

from __future__ import annotations

import importlib
from typing import Any

from geochem_sr.errors import (
    CRSError,
    DataError,
    GeoSRError,
    GridError,
    IncompleteStoreError,
    InputFileError,
    ModelFileError,
    ModelMismatchError,
    SchemaError,
)
from geochem_sr.schema import validate

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_LAZY: dict[str, str] = {
    "synthetic_region": "geochem_sr.synthetic",
    "SyntheticRegion": "geochem_sr.synthetic",
    "build_survey": "geochem_sr.survey",
    "write_survey": "geochem_sr.io",
    "open_survey": "geochem_sr.io",
    "read_samples": "geochem_sr.io",
    "read_dem": "geochem_sr.io",
    "read_geology": "geochem_sr.io",
    "read_faults": "geochem_sr.io",
    "fault_distance": "geochem_sr.structure",
    "contact_distance": "geochem_sr.structure",
    "lr_view": "geochem_sr.sparse_view",
    "add_lr_view": "geochem_sr.sparse_view",
    "grid_samples": "geochem_sr.gridding",
    "add_terrain": "geochem_sr.terrain",
    "embed_geology": "geochem_sr.geology",
    "embedding_table": "geochem_sr.geology",
    "GeologyVocabulary": "geochem_sr.geology",
    "vocabulary_of": "geochem_sr.geology",
    "rasterize_geology": "geochem_sr.geology",
    "plot_units": "geochem_sr.geology",
    "calibrate": "geochem_sr.trust",
    "applicability": "geochem_sr.trust",
    "predict_to_zarr": "geochem_sr.inference",
    "plot_map": "geochem_sr.plotting",
    "compare_maps": "geochem_sr.plotting",
    "GeoSRModel": "geochem_sr.model_file",
    "train": "geochem_sr.training",
    "super_resolve": "geochem_sr.inference",
    "evaluate": "geochem_sr.metrics",
    "cross_validate": "geochem_sr.trust",
    "BlockSplitter": "geochem_sr.patches",
}
_SUBMODULES = {"models", "schema", "io", "gridding", "terrain", "geology", "synthetic",
               "patches", "training", "metrics", "inference", "plotting", "trust", "cli",
               "channels", "experiment", "losses", "survey", "model_file", "structure",
               "sparse_view"}

__all__ = [
    "CRSError",
    "DataError",
    "GeoSRError",
    "GridError",
    "IncompleteStoreError",
    "InputFileError",
    "ModelFileError",
    "ModelMismatchError",
    "SchemaError",
    "validate",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"geochem_sr.{name}")
    raise AttributeError(f"module 'geochem_sr' has no attribute {name!r}")


# register the ``.geosr`` accessor when xarray is imported with us
try:  # pragma: no cover - accessor module arrives with the accessor issue
    from geochem_sr import accessor as _accessor  # noqa: F401
except ImportError:  # pragma: no cover
    pass
