"""The geology channels of a survey dataset: unit polygons or codes -> word vectors per cell.

:func:`embed_geology` rasterizes, trains (or applies) the unit vectors and adds
``lithology`` and ``geology_embedding``; :func:`embed_codes` applies a vocabulary to a
lithology map alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.covariates.geology.polygons import bounds_text, grid_bounds
from geochem_sr.covariates.geology.rasterize import rasterize_geology
from geochem_sr.covariates.geology.sentences import DEFAULT_SENTENCE_METHOD, unit_sentences
from geochem_sr.covariates.geology.units import lithology_units
from geochem_sr.covariates.geology.vectors import GeologyVocabulary, train_unit_vectors
from geochem_sr.errors import GridError, ParameterError, SchemaError

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd

__all__ = ["embed_codes", "embed_geology"]


def _code_table(units: Sequence[str], vocab: GeologyVocabulary, warn: bool) -> np.ndarray:
    """(n_codes + 1, k) lookup table; row 0 is NaN (code -1), row c+1 the vector of code c."""
    table = np.full((len(units) + 1, vocab.vector_size), np.nan, dtype=np.float32)
    if units:
        table[1:] = vocab.lookup(units, warn=warn)
    return table


def _embed_block(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(k, *codes.shape) float32: table rows by code; invalid codes → NaN."""
    idx = codes.astype(np.int64) + 1
    idx = np.where((idx >= 0) & (idx < table.shape[0]), idx, 0)
    return np.moveaxis(table[idx], -1, 0)


def _embedding_array(lith: xr.DataArray, table: np.ndarray) -> xr.DataArray:
    k = table.shape[1]
    data = lith.data
    if hasattr(data, "map_blocks") and not isinstance(data, np.ndarray):  # dask
        out = data.map_blocks(
            _embed_block,
            table,
            dtype=np.float32,
            new_axis=0,
            chunks=((k,), *data.chunks),
            meta=np.empty((0, 0, 0), dtype=np.float32),
        )
    else:
        out = _embed_block(np.asarray(data), table)
    coords = {
        schema.EMBEDDING: np.arange(1, k + 1),
        schema.Y: lith[schema.Y],
        schema.X: lith[schema.X],
    }
    emb = xr.DataArray(
        out,
        coords=coords,
        dims=(schema.EMBEDDING, schema.Y, schema.X),
        name=schema.GEOLOGY_EMBEDDING,
    )
    emb.attrs = {
        "long_name": "word vector of the geological unit",
        "units": "1",
        "comment": (
            f"Word2Vec vector of each cell's lithology unit (dimension 1..{k}); NaN where no "
            f"unit is mapped; vocabulary in the dataset attribute {schema.ATTR_GEOLOGY_VOCAB!r}"
        ),
    }
    return emb


def embed_codes(
    lithology: xr.DataArray, vocabulary: GeologyVocabulary, *, warn: bool = True
) -> xr.DataArray:
    """The ``geology_embedding`` of a lithology map under a vocabulary: no training.

    Parameters
    ----------
    lithology : xarray.DataArray
        Unit codes (y, x) naming their units in attrs (:func:`rasterize_geology`).
    vocabulary : GeologyVocabulary
        The unit vectors to apply (e.g. those a model was trained with).
    warn : bool, default True
        Warn (:class:`GeologyWarning`) about units the vocabulary does not know; they get
        its fallback vector.

    Returns
    -------
    xarray.DataArray
        ``geology_embedding`` (embedding, y, x) float32, each cell the vector of its unit,
        NaN where no unit is mapped; lazy (dask) when ``lithology`` is.
    """
    table = _code_table(lithology_units(lithology), vocabulary, warn=warn)
    return _embedding_array(lithology, table)


def embed_geology(
    ds: xr.Dataset,
    geology: gpd.GeoDataFrame | None = None,
    unit_column: str = "unit",
    vector_size: int = schema.EMBEDDING_SIZE,
    seed: int = 0,
    vocabulary: GeologyVocabulary | None = None,
    *,
    units: Sequence[str] | None = None,
    w2v_kwargs: Mapping[str, Any] | None = None,
    rasterize_kwargs: Mapping[str, Any] | None = None,
    **sentence_kwargs: Any,
) -> xr.Dataset:
    """Add ``lithology`` and ``geology_embedding`` to a survey dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        The survey dataset (or an empty grid from :func:`geochem_sr.schema.make_grid`).
    geology : geopandas.GeoDataFrame, optional
        Unit polygons, rasterized with :func:`rasterize_geology` (replacing any
        ``lithology`` already there). Default: use ``ds["lithology"]``.
    unit_column : str, default ``"unit"``
        Column of unit names in ``geology``.
    vector_size : int, default :data:`geochem_sr.schema.EMBEDDING_SIZE` (5)
        Dimensions of the trained vectors (ignored when ``vocabulary`` is given).
    seed : int, default 0
        Seed of the sentences and of Word2Vec.
    vocabulary : GeologyVocabulary, optional
        Apply these vectors (e.g. those a model was trained with) instead of training; units
        it does not know get its fallback (the mean vector), with a :class:`GeologyWarning`
        naming them.
    units : sequence of str, optional
        Code order for :func:`rasterize_geology`.
    w2v_kwargs : dict, optional
        Passed to :func:`train_unit_vectors` (``window``, ``epochs``, ``vectors``, gensim
        options).
    rasterize_kwargs : dict, optional
        Passed to :func:`rasterize_geology` (``overlap``, ``repair``, ``chunks``).
    **sentence_kwargs
        Passed to :func:`unit_sentences` (``method``, ``n_walks``, ``walk_length``,
        ``attributes``, ``transect_step``).

    Returns
    -------
    xarray.Dataset
        A copy of ``ds`` with ``lithology`` (y, x) int16, ``geology_embedding``
        (embedding, y, x) float32 (NaN where no unit) and the vocabulary as JSON in
        ``attrs["geology_vocabulary"]``; other variables, attrs and the CRS are kept. Lazy
        (dask) when ``ds`` is dask-chunked or its ``lithology`` is; training the vectors
        computes the lithology map once. An ``lr_view`` in ``ds`` is not refreshed: the
        caller does that (``ds.geosr.embed_geology`` does).

    Raises
    ------
    GridError
        The geology does not overlap the grid (no cell gets a unit), before any training.
    """
    if not isinstance(ds, xr.Dataset):
        raise SchemaError(f"ds: expected an xarray.Dataset, found {type(ds).__name__}")
    if geology is not None:
        lith = rasterize_geology(geology, ds, unit_column, units, **(rasterize_kwargs or {}))
    elif schema.LITHOLOGY in ds.data_vars:
        lith = ds[schema.LITHOLOGY]
    else:
        raise SchemaError(
            "embed_geology: expected unit polygons (geology=...) or a 'lithology' variable, "
            f"found neither (variables: {sorted(ds.data_vars)})"
        )
    lithology_units(lith)  # the map must name its units: fail before any training
    if vocabulary is None:
        sentences = unit_sentences(lith, seed=seed, **sentence_kwargs)
        if not sentences:  # every unit on the map gets one: no unit on the map
            where = "" if geology is None else (
                f" (geology bounds {bounds_text(geology.to_crs(ds.rio.crs).total_bounds)}, "
                f"grid bounds {bounds_text(grid_bounds(ds, *schema.check_grid(ds)))})"
            )
            raise GridError(
                "geology: expected units on the survey grid, found no cell centre inside a "
                f"unit polygon{where}; the geology does not overlap the grid: check its CRS "
                "and extent"
            )
        vocab = train_unit_vectors(
            sentences, vector_size=vector_size, seed=seed, **(w2v_kwargs or {})
        )
        vocab = GeologyVocabulary(
            vocab.units,
            vocab.vectors,
            {
                **vocab.params,
                "sentences": sentence_kwargs.get("method", DEFAULT_SENTENCE_METHOD),
                **{
                    k: v
                    for k, v in sentence_kwargs.items()
                    if k != "method" and isinstance(v, int | float | str | bool)
                },
            },
        )
    else:
        if not isinstance(vocabulary, GeologyVocabulary):
            raise ParameterError(
                f"vocabulary: expected a GeologyVocabulary, found {type(vocabulary).__name__}"
            )
        vocab = vocabulary
    # trained vectors: units listed but absent from the map have no cells, nothing to warn
    emb = embed_codes(lith, vocab, warn=vocabulary is not None)
    out = ds.copy()
    out[schema.LITHOLOGY] = lith.drop_vars(schema.SPATIAL_REF, errors="ignore")
    out[schema.GEOLOGY_EMBEDDING] = emb
    for var in (schema.LITHOLOGY, schema.GEOLOGY_EMBEDDING):
        if schema.SPATIAL_REF in out.coords:
            out[var].encoding["grid_mapping"] = schema.SPATIAL_REF
    out.attrs[schema.ATTR_GEOLOGY_VOCAB] = vocab.to_json()
    return out
