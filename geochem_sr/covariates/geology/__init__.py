"""Geological map -> unit codes on the grid -> word vectors of the units -> input channels.

The paper (Pei et al. 2025, §3.2.2 and Table 4) turns the geological map into five input
channels by training word vectors of the geological units, in four plain steps:
:func:`rasterize_geology` (polygons -> ``lithology`` codes), :func:`unit_sentences` (sentences
of units read off the map), :func:`train_unit_vectors` (Word2Vec -> :class:`GeologyVocabulary`)
and :func:`embed_geology` (``geology_embedding`` on the dataset).

Examples
--------
>>> import geopandas as gpd, shapely
>>> from geochem_sr.schema import make_grid
>>> grid = make_grid((0, 0, 1000, 500), 50.0, "EPSG:32650")
>>> geo = gpd.GeoDataFrame(
...     {"unit": ["Sandstone", "Granite"]},
...     geometry=[shapely.box(0, 0, 500, 500), shapely.box(500, 0, 1000, 500)],
...     crs="EPSG:32650")
>>> ds = embed_geology(grid, geo, seed=0)
>>> ds["geology_embedding"].shape
(5, 10, 20)
>>> vocabulary_of(ds).units
('Granite', 'Sandstone')
"""

from geochem_sr.covariates.geology.embed import embed_codes, embed_geology
from geochem_sr.covariates.geology.plot import plot_units
from geochem_sr.covariates.geology.polygons import OVERLAP_RULES
from geochem_sr.covariates.geology.rasterize import rasterize_geology
from geochem_sr.covariates.geology.sentences import (
    ATTRIBUTE_TOKEN_PREFIX,
    DEFAULT_SENTENCE_METHOD,
    SENTENCE_METHODS,
    unit_adjacency,
    unit_sentences,
)
from geochem_sr.covariates.geology.units import (
    NO_UNIT,
    GeologyWarning,
    lithology_units,
    unit_names,
)
from geochem_sr.covariates.geology.vectors import (
    GeologyVocabulary,
    embedding_table,
    train_unit_vectors,
    vocabulary_of,
)

__all__ = [
    "ATTRIBUTE_TOKEN_PREFIX",
    "DEFAULT_SENTENCE_METHOD",
    "NO_UNIT",
    "OVERLAP_RULES",
    "SENTENCE_METHODS",
    "GeologyVocabulary",
    "GeologyWarning",
    "embed_codes",
    "embed_geology",
    "embedding_table",
    "lithology_units",
    "plot_units",
    "rasterize_geology",
    "train_unit_vectors",
    "unit_adjacency",
    "unit_names",
    "unit_sentences",
    "vocabulary_of",
]
