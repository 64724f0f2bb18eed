"""The ``.geosr`` Dataset accessor: a thin, stateless face over plain functions.

Like rioxarray's ``.rio``, the accessor holds no state of its own: everything lives in the
Dataset's variables, coords and attrs, and every method calls a function of a module that
can also be used directly.

Examples
--------
>>> import geochem_sr as gs
>>> region = gs.synthetic_region(seed=0, size_km=(3.2, 3.2))
>>> ds = gs.build_survey(region.samples_sparse, region.samples_dense, dem=region.dem,
...                      geology=region.geology, method="idw")
>>> ds.geosr.validate() is ds
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import xarray as xr

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from geochem_sr.models import GeoSRModel

__all__ = ["GeoSRAccessor"]


@xr.register_dataset_accessor("geosr")
class GeoSRAccessor:
    """Super-resolution methods on a survey dataset (``ds.geosr``)."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    # ------------------------------------------------------------------ checks
    def validate(self, **kwargs: Any) -> xr.Dataset:
        """Check the survey-dataset convention (:func:`geochem_sr.schema.validate`)."""
        from geochem_sr.schema import validate

        return validate(self._ds, **kwargs)

    # ------------------------------------------------------------------ inputs
    def add_terrain(self) -> xr.Dataset:
        """Slope and aspect from ``elevation``, then ``lr_view`` seen again from the sparse
        sites (:func:`geochem_sr.features.add_terrain`)."""
        from geochem_sr.features import add_terrain

        return add_terrain(self._ds)

    def embed_geology(self, geology: Any = None, **kwargs: Any) -> xr.Dataset:
        """Rasterize and embed the geology, then ``lr_view`` seen again from the sparse sites
        (:func:`geochem_sr.features.embed_geology`)."""
        from geochem_sr.features import embed_geology

        return embed_geology(self._ds, geology, **kwargs)

    def embedding_table(self) -> pd.DataFrame:
        """The geology word vectors as a table like the paper's Table 4."""
        from geochem_sr.covariates import embedding_table

        return embedding_table(self._ds)

    def patches(self, inputs: str = "auto", **kwargs: Any) -> Any:
        """Split into blocks and index training patches
        (:func:`geochem_sr.sampling.prepare_training_data`)."""
        from geochem_sr.sampling import prepare_training_data

        return prepare_training_data(self._ds, inputs, **kwargs)

    # ------------------------------------------------------------------ model
    def train(self, network: str = "multilevel_unet", inputs: str = "auto",
              **kwargs: Any) -> GeoSRModel:
        """Train a network on the blocks where both surveys exist
        (:func:`geochem_sr.training.train`); ``network="auto"``: per element the best of
        the network, the per-cell trees and ridge, and the sparse map, chosen on held-out
        evidence and calibrated (:func:`geochem_sr.trust.select`)."""
        if network == "auto" or kwargs.get("model") == "auto":
            from geochem_sr.trust import select

            kwargs.pop("model", None)
            return select(self._ds, inputs=inputs, **kwargs)
        from geochem_sr.training import train

        return train(self._ds, network, inputs, **kwargs)

    def cross_validate(self, model: str = "multilevel_unet",
                       inputs: str = "auto", **kwargs: Any) -> Any:
        """Spatial block cross-validation (:func:`geochem_sr.trust.cross_validate`)."""
        from geochem_sr.trust import cross_validate

        return cross_validate(self._ds, model=model, inputs=inputs, **kwargs)

    def super_resolve(self, model: GeoSRModel | str, **kwargs: Any) -> xr.Dataset:
        """Lazy, tiled, seamless prediction of ``hr_pred``
        (:func:`geochem_sr.inference.super_resolve`). ``model`` may be a file path."""
        from geochem_sr.inference import super_resolve
        from geochem_sr.models import GeoSRModel

        if not isinstance(model, GeoSRModel):
            model = GeoSRModel.load(model)
        return super_resolve(self._ds, model, **kwargs)

    def with_prediction(self, pred: xr.Dataset | xr.DataArray) -> xr.Dataset:
        """The dataset with a prediction's variables added, what ``ds.merge(pred)`` means
        without xarray's warning (:func:`geochem_sr.inference.with_prediction`)."""
        from geochem_sr.inference import with_prediction

        return with_prediction(self._ds, pred)

    def evaluate(self, pred: xr.Dataset | xr.DataArray, model: GeoSRModel | str | None = None,
                 **kwargs: Any) -> pd.DataFrame:
        """PSNR/SSIM/RMSE/anomaly IoU per element against ``hr``
        (:func:`geochem_sr.metrics.evaluate`).

        With ``model`` (the model or its file): on its held-out test blocks only, the
        sparse map's scores beside the prediction's and the gain
        (:func:`geochem_sr.metrics.compare_with_sparse`); ``attrs["scored_on"]`` says
        where.
        """
        if model is None:
            from geochem_sr.metrics import evaluate

            return evaluate(self._ds, pred, **kwargs)
        from geochem_sr.metrics import compare_with_sparse
        from geochem_sr.models import GeoSRModel
        from geochem_sr.sampling import describe_gap
        from geochem_sr.trust.roles import held_out_windows

        if not isinstance(model, GeoSRModel):
            model = GeoSRModel.load(model)
        windows = kwargs.pop("windows", None) or held_out_windows(self._ds, model)
        table = compare_with_sparse(self._ds, pred, windows=windows, **kwargs)
        table.attrs["scored_on"] = (
            f"the model's held-out test blocks ({len(windows)} windows of {model.patch_size} "
            f"cells; {describe_gap(model.training.split or {})})")
        return table

    # ------------------------------------------------------------------ plots
    def plot(self, var: str, element: str | None = None, **kwargs: Any) -> Any:
        """Map of a variable with km axes, log colour scale for concentrations
        (:func:`geochem_sr.plotting.plot_map`)."""
        from geochem_sr.plotting import plot_map

        return plot_map(self._ds, var, element, **kwargs)

    def compare(self, elements: Sequence[str], **kwargs: Any) -> Any:
        """Sparse, predicted and dense maps side by side on one colour scale
        (:func:`geochem_sr.plotting.compare_maps`)."""
        from geochem_sr.plotting import compare_maps

        return compare_maps(self._ds, elements, **kwargs)
