"""Exception hierarchy of geochem_sr.

Every problem with user input raises a subclass of :class:`GeoSRError`, whose
message names the variable, what was expected and what was found.
"""

from __future__ import annotations

__all__ = [
    "GeoSRError",
    "SchemaError",
    "ParameterError",
    "CRSError",
    "GridError",
    "DataError",
    "InputFileError",
    "ModelMismatchError",
    "ModelFileError",
    "IncompleteStoreError",
]


class GeoSRError(ValueError):
    """Base class of all errors raised by geochem_sr for bad input."""


class SchemaError(GeoSRError):
    """A dataset does not follow the survey-dataset convention (names, dims, dtypes)."""


class ParameterError(GeoSRError):
    """An argument of a function is out of range or of the wrong kind (``epochs=0``, ...)."""


class CRSError(GeoSRError):
    """A coordinate reference system is missing, geographic, or cannot be aligned."""


class GridError(GeoSRError):
    """Grids are irregular, misaligned, or do not cover what they must."""


class DataError(GeoSRError):
    """Values are unusable: NaN everywhere, non-positive concentrations, all censored..."""


class InputFileError(GeoSRError):
    """A file cannot be read or lacks required columns/layers."""


class ModelMismatchError(GeoSRError):
    """A model is applied to a dataset with other channels, elements, units or vocabulary."""


class ModelFileError(GeoSRError):
    """A model file is damaged, tampered with, or of an unknown format."""


class IncompleteStoreError(GeoSRError):
    """A Zarr store was not finished being written."""
