"""A survey dataset made ready for a model: checked against it, its geology embedded with
the model's vocabulary when needed, and the sparse map of the model's elements."""

from __future__ import annotations

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import SchemaError
from geochem_sr.models import GeoSRModel

__all__ = ["needs_embedding", "prepare_inputs", "sparse_map"]


def needs_embedding(ds: xr.Dataset, model: GeoSRModel, reembed: bool = False) -> bool:
    """Whether the geology embedding is (re)computed from lithology with the model's
    vocabulary: the model reads geology channels and carries a vocabulary, the dataset has
    ``lithology``, and no embedding (or ``reembed``)."""
    needs_geology = any(c.startswith(f"{schema.EMBEDDING}:") for c in model.channels)
    return bool(needs_geology and model.geology_vocabulary and schema.LITHOLOGY in ds.data_vars
                and (reembed or schema.GEOLOGY_EMBEDDING not in ds.data_vars))


def prepare_inputs(ds: xr.Dataset, model: GeoSRModel, reembed: bool = False) -> xr.Dataset:
    """Check the model against the dataset, embedding geology first when needed.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset (numpy or dask backed).
    model : GeoSRModel
        The model that will predict on it.
    reembed : bool, default False
        Re-embed ``lithology`` with the model's geology vocabulary even when the dataset
        has a ``geology_embedding`` (without it, only a dataset lacking one is embedded).

    Returns
    -------
    xarray.Dataset
        ``ds``, or a copy with ``geology_embedding`` (and ``lr_view``) recomputed with the
        model's vocabulary (:func:`geochem_sr.features.geology.embed_with_vocabulary`).

    Raises
    ------
    ModelMismatchError
        The model needs channels, elements, units or a vocabulary the dataset lacks.
    SchemaError
        The dataset has no ``y``/``x`` dimensions.
    """
    if needs_embedding(ds, model, reembed):
        from geochem_sr.features.geology import embed_with_vocabulary

        ds = embed_with_vocabulary(ds, model.geology_vocabulary)
    model.check_compatible(ds)
    if schema.X not in ds.dims or schema.Y not in ds.dims:
        raise SchemaError(
            f"dataset: expected dims '{schema.Y}', '{schema.X}', found {dict(ds.sizes)}"
        )
    return ds


def sparse_map(ds: xr.Dataset, model: GeoSRModel) -> xr.DataArray:
    """``lr`` of the model's elements, ``(element, y, x)`` float32."""
    lr = ds[schema.LR].sel({schema.ELEMENT: list(model.elements)})
    return lr.transpose(schema.ELEMENT, schema.Y, schema.X).astype(np.float32)
