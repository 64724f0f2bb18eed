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
    ParameterError,
    SchemaError,
)
from geochem_sr.schema import validate
from geochem_sr.version import __version__

# public name -> module that defines it (imported on first use)
_LAZY: dict[str, str] = {
    "synthetic_region": "geochem_sr.data",
    "SyntheticRegion": "geochem_sr.data",
    "load_meuse": "geochem_sr.data",
    "meuse_inputs": "geochem_sr.data",
    "thin_samples": "geochem_sr.data",
    "RealSurveyInputs": "geochem_sr.data",
    "build_survey": "geochem_sr.survey",
    "write_survey": "geochem_sr.io",
    "open_survey": "geochem_sr.io",
    "read_samples": "geochem_sr.io",
    "read_dem": "geochem_sr.io",
    "read_geology": "geochem_sr.io",
    "read_faults": "geochem_sr.io",
    "fault_distance": "geochem_sr.covariates",
    "contact_distance": "geochem_sr.covariates",
    "lr_view": "geochem_sr.features",
    "add_lr_view": "geochem_sr.features",
    "grid_samples": "geochem_sr.gridding",
    "add_terrain": "geochem_sr.covariates",
    "embed_geology": "geochem_sr.covariates",
    "embedding_table": "geochem_sr.covariates",
    "GeologyVocabulary": "geochem_sr.covariates",
    "vocabulary_of": "geochem_sr.covariates",
    "rasterize_geology": "geochem_sr.covariates",
    "plot_units": "geochem_sr.covariates",
    "calibrate": "geochem_sr.trust",
    "applicability": "geochem_sr.inference",
    "predict_to_zarr": "geochem_sr.inference",
    "plot_map": "geochem_sr.plotting",
    "compare_maps": "geochem_sr.plotting",
    "GeoSRModel": "geochem_sr.models",
    "train": "geochem_sr.training",
    "super_resolve": "geochem_sr.inference",
    "evaluate": "geochem_sr.metrics",
    "cross_validate": "geochem_sr.trust",
    "BlockSplitter": "geochem_sr.sampling",
}
#: The stages of the flow (subpackages) and the top-level modules, imported on first use.
_SUBMODULES = {"io", "gridding", "covariates", "features", "sampling", "models", "training",
               "inference", "trust", "plotting", "experiment", "data", "schema", "errors",
               "metrics", "survey", "accessor", "cli", "demo", "jsonable", "version"}

__all__ = [
    "CRSError",
    "DataError",
    "GeoSRError",
    "GridError",
    "IncompleteStoreError",
    "InputFileError",
    "ModelFileError",
    "ModelMismatchError",
    "ParameterError",
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
