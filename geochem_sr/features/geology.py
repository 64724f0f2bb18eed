"""The geology as a trained model sees it: a lithology map embedded with the model's own
vocabulary, and the labels of its units (what an area-of-applicability reference records).

Built on :mod:`geochem_sr.covariates.geology`, for the stages that apply a model
(:mod:`geochem_sr.inference`) and must not reach into the covariates themselves.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import xarray as xr

from geochem_sr.covariates.geology import NO_UNIT, GeologyVocabulary, embed_geology, unit_names
from geochem_sr.features.sparse_view import refresh_lr_view

__all__ = ["NO_UNIT_LABEL", "embed_with_vocabulary", "legend_codes", "unit_labels"]

#: Label of the cells that no unit covers (code :data:`~geochem_sr.covariates.geology.NO_UNIT`).
NO_UNIT_LABEL = "<no unit>"


def embed_with_vocabulary(ds: xr.Dataset, vocabulary: str) -> xr.Dataset:
    """Embed the dataset's ``lithology`` with a model's vocabulary; refresh its ``lr_view``.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset with ``lithology`` (numpy or dask; stays lazy on dask).
    vocabulary : str
        The vocabulary as JSON text (``GeoSRModel.geology_vocabulary``).

    Returns
    -------
    xarray.Dataset
        A copy with ``geology_embedding`` replaced by the vectors of the vocabulary (units
        it does not know get its fallback vector, with a warning), the vocabulary in the
        attributes, and ``lr_view`` recomputed when the dataset has one.
    """
    vocab = GeologyVocabulary.from_json(vocabulary)
    return refresh_lr_view(embed_geology(ds, vocabulary=vocab))


def unit_labels(lithology: xr.DataArray, codes: Iterable[int]) -> list[str]:
    """The label of each unit code of a lithology map: its name in the map's legend,
    :data:`NO_UNIT_LABEL` for ``NO_UNIT`` (-1), ``"code N"`` for a code the legend does not name."""
    names = unit_names(lithology)
    return [NO_UNIT_LABEL if int(c) < 0 else names.get(int(c), f"code {int(c)}")
            for c in codes]


def legend_codes(lithology: xr.DataArray) -> list[int]:
    """Every code a lithology map's legend lists (``flag_values`` and named codes), and
    ``NO_UNIT`` (no unit), sorted."""
    flags = np.unique(np.asarray(lithology.attrs.get("flag_values", []), dtype=np.int64))
    return sorted(set(flags.tolist()) | set(unit_names(lithology)) | {NO_UNIT})
