"""Inference: a trained model applied to a whole region, seamlessly, tile by tile.

* :func:`predict_array` -- an in-memory ``(C, H, W)`` stack of normalised inputs to the
  predicted residual (and its test-time-augmentation spread) (:mod:`.arrays`);
* :func:`super_resolve` -- a survey :class:`xarray.Dataset` to a *lazy* prediction Dataset,
  one Dask task per tile (:mod:`.lazy`);
* :func:`with_prediction` -- the survey and its prediction in one Dataset (:mod:`.merge`);
* :func:`predict_to_zarr` -- a survey Zarr store to a prediction Zarr store, locally or on
  a ``dask.distributed`` cluster, resumable after a crash (:mod:`.tiles`, :mod:`.stores`);
* :func:`applicability` and :func:`calibrated_std` -- a calibrated model's area of
  applicability and uncertainty applied to new cells (:mod:`.applicability`,
  :mod:`.calibration`).

Tiling (:mod:`.geometry`), the network in a process (:mod:`.network`) and the windows and
their blending (:mod:`.windows`) are explained in ``docs/notes/inference.md``.
"""

from geochem_sr.inference.applicability import applicability
from geochem_sr.inference.arrays import predict_array
from geochem_sr.inference.calibration import apply_residual, calibrated_std, shrink_factors
from geochem_sr.inference.geometry import default_halo, tile_bounds
from geochem_sr.inference.inputs import prepare_inputs, sparse_map
from geochem_sr.inference.lazy import UNCERTAINTY_MEANING, super_resolve
from geochem_sr.inference.merge import with_prediction
from geochem_sr.inference.network import MAX_BATCH_CELLS
from geochem_sr.inference.stores import LEDGER_DIR
from geochem_sr.inference.tiles import predict_to_zarr

__all__ = [
    "predict_array",
    "super_resolve",
    "with_prediction",
    "predict_to_zarr",
    "applicability",
    "calibrated_std",
    "prepare_inputs",
    "sparse_map",
    "apply_residual",
    "shrink_factors",
    "default_halo",
    "tile_bounds",
    "MAX_BATCH_CELLS",
    "UNCERTAINTY_MEANING",
    "LEDGER_DIR",
]
