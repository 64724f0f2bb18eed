"""Whether a survey dataset provides what a model needs: elements, units, channels, vocabulary."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from geochem_sr import schema
from geochem_sr.errors import ModelMismatchError
from geochem_sr.features import EMBEDDING_PREFIX

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from geochem_sr.models.model_file import GeoSRModel

__all__ = ["check_compatible"]


def check_compatible(model: GeoSRModel, ds: xr.Dataset) -> None:
    """Raise :class:`ModelMismatchError` unless ``ds`` provides what ``model`` needs.

    Checks elements, units, the variables behind each channel (the sparse survey's view of
    a covariate for ``unseen:`` channels), and the geology embedding and vocabulary, before
    any computation starts.

    Parameters
    ----------
    model : GeoSRModel
        The trained model.
    ds : xarray.Dataset
        The survey dataset it is to be applied to.

    Raises
    ------
    ModelMismatchError
        Naming what the model needs and what the dataset has.
    """
    if schema.LR not in ds.data_vars:
        raise ModelMismatchError("dataset: the model needs variable 'lr', which is missing")
    have = [str(e) for e in ds[schema.ELEMENT].values]
    missing = [e for e in model.elements if e not in have]
    if missing:
        raise ModelMismatchError(
            f"elements: the model was trained on {model.elements}; the dataset lacks "
            f"{missing} (it has {have})"
        )
    ds_units = schema.units_of(ds)
    bad_units = {e: (model.units.get(e), ds_units.get(e)) for e in model.elements
                 if model.units.get(e) and ds_units.get(e) and model.units[e] != ds_units[e]}
    if bad_units:
        raise ModelMismatchError(
            "units: expected (model, dataset) to agree, found "
            + ", ".join(f"{e}: {m} vs {d}" for e, (m, d) in bad_units.items())
        )
    _check_channels(model, ds)
    _check_geology(model, ds)


def _check_channels(model: GeoSRModel, ds: xr.Dataset) -> None:
    """The variables behind the model's channels, and the sparse view of ``unseen:`` ones."""
    from geochem_sr.features import UNSEEN_PREFIX, variables_of

    needs = set(variables_of(model.channels))
    unseen = [c[len(UNSEEN_PREFIX):] for c in model.channels if c.startswith(UNSEEN_PREFIX)]
    absent = sorted(v for v in needs if v not in ds.data_vars and v != schema.GEOLOGY_EMBEDDING)
    if schema.GEOLOGY_EMBEDDING in needs and schema.GEOLOGY_EMBEDDING not in ds.data_vars \
            and schema.LITHOLOGY not in ds.data_vars:
        absent.append(schema.GEOLOGY_EMBEDDING)
    if absent:
        raise ModelMismatchError(
            f"channels: the model ({model.inputs}) needs variables {absent}, which the "
            f"dataset lacks (it has {sorted(ds.data_vars)})"
        )
    if unseen:
        seen = [str(c) for c in ds[schema.LR_VIEW][schema.COVARIATE].values]
        lacking = [c for c in unseen if c not in seen]
        if lacking:
            raise ModelMismatchError(
                f"{schema.LR_VIEW}: the model needs covariates {lacking} as the sparse "
                f"survey sees them, the dataset has {seen}; recompute with "
                "geochem_sr.features.add_lr_view(ds)"
            )


def _check_geology(model: GeoSRModel, ds: xr.Dataset) -> None:
    """The embedding's width and word vectors, when the model uses the geology embedding."""
    from geochem_sr.features import variables_of

    if schema.GEOLOGY_EMBEDDING not in set(variables_of(model.channels)) \
            or schema.GEOLOGY_EMBEDDING not in ds.data_vars:
        return
    n_emb = sum(ch.startswith(EMBEDDING_PREFIX) for ch in model.channels)
    if ds.sizes.get(schema.EMBEDDING) != n_emb:
        raise ModelMismatchError(
            f"geology_embedding: the model expects {n_emb} dimensions, the dataset has "
            f"{ds.sizes.get(schema.EMBEDDING)}"
        )
    ds_vocab = ds.attrs.get(schema.ATTR_GEOLOGY_VOCAB)
    if model.geology_vocabulary and ds_vocab and _vocab_vectors(ds_vocab) != _vocab_vectors(
        model.geology_vocabulary
    ):
        raise ModelMismatchError(
            "geology_vocabulary: the dataset's geology embedding differs from the one "
            "the model was trained with; re-embed with "
            "ds.geosr.embed_geology(vocabulary=model vocabulary) or "
            "gs.super_resolve(..., reembed=True)"
        )


def _vocab_vectors(vocab: str | Mapping[str, Any]) -> Any:
    v = json.loads(vocab) if isinstance(vocab, str) else dict(vocab)
    units = v.get("units", [])
    vecs = np.round(np.asarray(v.get("vectors", []), dtype=float), 5).tolist()
    return dict(zip(units, map(tuple, vecs), strict=False))
