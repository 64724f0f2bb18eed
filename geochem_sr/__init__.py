"""geochem_sr: geology- and topography-constrained super-resolution of geochemical maps.

The method follows Pei et al. (2025), *Geology-Topography Constrained Super-Resolution of
Geochemical Maps via Enhanced U-Net*, Minerals 15(10):1088. Heavy dependencies (torch,
xarray-spatial, gensim) are imported lazily, so ``import geochem_sr`` is cheap and Dask
workers do not pay for what they do not use.
"""

from __future__ import annotations

import os as _os

from geochem_sr import accessor  # noqa: F401  (registers the ``.geosr`` accessor)
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
from geochem_sr.exports import lazy_exports
from geochem_sr.schema import validate
from geochem_sr.version import __version__

#: PyTorch's CPU allocator backs tensors of 2 MB and more with transparent huge pages when
#: this is "1" (read once, at the process's first large tensor). The networks' full-size
#: activations are fresh allocations of tens of MB; with 4 kB pages each one costs about
#: 20,000 page faults. On the benchmark machine a base-16 multi-level U-Net forward of a
#: 2048-cell window took 10.6 s with huge pages against 13.4-14.6 s without
#: (docs/notes/inference.md). Set the variable to "0" before importing to keep 4 kB pages.
_THP_ENV = "THP_MEM_ALLOC_ENABLE"
_os.environ.setdefault(_THP_ENV, "1")

#: Public names by the stage (module) that defines them, imported on first use; and the
#: stages (subpackages) and top-level modules, imported on first use of ``geochem_sr.<name>``
#: (those imported above, ``accessor``, ``errors``, ``exports``, ``schema`` and ``version``,
#: are attributes already).
_LAZY, __getattr__, __dir__ = lazy_exports(__name__, {
    "data": "synthetic_region SyntheticRegion load_meuse meuse_inputs thin_samples "
            "RealSurveyInputs",
    "survey": "build_survey",
    "io": "write_survey open_survey read_samples read_dem read_geology read_faults",
    "covariates": "fault_distance contact_distance embedding_table GeologyVocabulary "
                  "vocabulary_of rasterize_geology plot_units",
    "features": "lr_view add_lr_view",
    "features.covariates": "add_terrain embed_geology",
    "gridding": "grid_samples retune_interpolation",
    "trust": "calibrate cross_validate select",
    "inference": "applicability predict_to_zarr super_resolve",
    "plotting": "plot_map compare_maps",
    "models": "GeoSRModel",
    "training": "train",
    "metrics": "evaluate",
    "sampling": "BlockSplitter",
}, submodules=("io", "gridding", "covariates", "features", "sampling", "models", "training",
               "inference", "trust", "plotting", "experiment", "data", "metrics", "survey",
               "cli", "demo", "jsonable"))

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

