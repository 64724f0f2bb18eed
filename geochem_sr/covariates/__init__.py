"""Covariates on the survey grid: what the maps of terrain and geology say about each cell.

* :mod:`~geochem_sr.covariates.terrain`: elevation, slope and aspect from a DEM.
* :mod:`~geochem_sr.covariates.structure`: distances to mapped faults and to contacts.
* :mod:`~geochem_sr.covariates.geology`: unit polygons -> lithology codes -> word vectors.

Covariates know nothing of the stages above them: a caller holding an ``lr_view`` refreshes
it after changing them.
"""

from geochem_sr.covariates.geology import (
    GeologyVocabulary,
    GeologyWarning,
    embed_codes,
    embed_geology,
    embedding_table,
    lithology_units,
    plot_units,
    rasterize_geology,
    train_unit_vectors,
    unit_adjacency,
    unit_names,
    unit_sentences,
    vocabulary_of,
)
from geochem_sr.covariates.structure import DISTANCE_CAP, contact_distance, fault_distance
from geochem_sr.covariates.terrain import ASPECT_CONVENTION, add_terrain, terrain_from_dem

__all__ = [
    "ASPECT_CONVENTION",
    "DISTANCE_CAP",
    "GeologyVocabulary",
    "GeologyWarning",
    "add_terrain",
    "contact_distance",
    "embed_codes",
    "embed_geology",
    "embedding_table",
    "fault_distance",
    "lithology_units",
    "plot_units",
    "rasterize_geology",
    "terrain_from_dem",
    "train_unit_vectors",
    "unit_adjacency",
    "unit_names",
    "unit_sentences",
    "vocabulary_of",
]
