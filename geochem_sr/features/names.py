"""Channel names: the model's input channels, their groups, and the survey variables behind them.

Names, in model order: ``lr:<El>``, ``elevation``, ``slope``, ``aspect_sin``, ``aspect_cos``,
``embedding:<i>``, ``fault_distance``, ``contact_distance``, ``unseen:<covariate>``; and
:func:`resolve_inputs`, which turns an input set (or ``"auto"``) into its canonical string.
"""

from __future__ import annotations

from collections.abc import Sequence

import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import ParameterError

__all__ = [
    "CHANNEL",
    "ASPECT_SIN",
    "ASPECT_COS",
    "UNSEEN_PREFIX",
    "LR_PREFIX",
    "EMBEDDING_PREFIX",
    "VECTOR_PAIRS",
    "DIRECTIONAL_CHANNELS",
    "channel_names",
    "variables_of",
    "covariate_channels",
    "resolve_inputs",
]

#: Name of the channel dimension of a stacked input.
CHANNEL = "channel"
ASPECT_SIN = f"{schema.ASPECT}_sin"
ASPECT_COS = f"{schema.ASPECT}_cos"
#: Prefix of the ``unseen`` channels (covariate minus what the sparse sites see of it).
UNSEEN_PREFIX = "unseen:"
#: Prefix of the sparse-survey channels ``lr:<El>``.
LR_PREFIX = f"{schema.LR}:"
#: Prefix of the geology word-vector channels ``embedding:<i>``.
EMBEDDING_PREFIX = f"{schema.EMBEDDING}:"
#: (east, north) channel pairs that turn with the map under rotations and mirrors.
VECTOR_PAIRS: tuple[tuple[str, str], ...] = (
    (ASPECT_SIN, ASPECT_COS),
    (f"{UNSEEN_PREFIX}{ASPECT_SIN}", f"{UNSEEN_PREFIX}{ASPECT_COS}"),
)
#: Channels that change under a rotation or a mirror of the map (the aspect vectors).
DIRECTIONAL_CHANNELS: tuple[str, ...] = tuple(c for pair in VECTOR_PAIRS for c in pair)


def channel_names(
    inputs: str | Sequence[str], elements: Sequence[str], n_embedding: int = 5
) -> list[str]:
    """Names of the input channels of an input set, in model order.

    Parameters
    ----------
    inputs : str or sequence of str
        ``"geochem"``, ``"geochem+terrain"`` or ``"geochem+terrain+geology"`` (see
        :func:`geochem_sr.schema.parse_input_set`).
    elements : sequence of str
        Element symbols, in order.
    n_embedding : int, default 5
        Size of the geology word vectors.

    Returns
    -------
    list of str
        ``lr:<El>`` per element, then ``elevation, slope, aspect_sin, aspect_cos`` with
        terrain, ``embedding:0 ... embedding:<n-1>`` with geology, ``fault_distance`` with
        faults, ``contact_distance`` with contacts, and ``unseen:<c>`` for each of those
        covariates with unseen.

    Examples
    --------
    >>> channel_names("geochem+terrain", ["As", "Cu"])
    ['lr:As', 'lr:Cu', 'elevation', 'slope', 'aspect_sin', 'aspect_cos']
    >>> len(channel_names("geochem+terrain+geology", schema.DEFAULT_ELEMENTS))
    19
    """
    groups = schema.parse_input_set(inputs)
    elements = [str(e) for e in elements]
    if not elements:
        raise ParameterError("elements: expected at least one element, found none")
    names = [f"{LR_PREFIX}{el}" for el in elements]
    if "terrain" in groups:
        names += [schema.ELEVATION, schema.SLOPE, ASPECT_SIN, ASPECT_COS]
    if "geology" in groups:
        if int(n_embedding) < 1:
            raise ParameterError(f"n_embedding: expected a positive size, found {n_embedding}")
        names += [f"{EMBEDDING_PREFIX}{i}" for i in range(int(n_embedding))]
    if "faults" in groups:
        names.append(schema.FAULT_DISTANCE)
    if "contacts" in groups:
        names.append(schema.CONTACT_DISTANCE)
    if "unseen" in groups:
        names += [f"{UNSEEN_PREFIX}{c}" for c in names if not c.startswith(LR_PREFIX)]
    return names


def variables_of(channels: Sequence[str]) -> list[str]:
    """The survey variables that the named channels are computed from, sorted.

    Examples
    --------
    >>> variables_of(["lr:As", "aspect_sin", "unseen:embedding:0"])
    ['aspect', 'geology_embedding', 'lr', 'lr_view']
    """
    out: set[str] = set()
    for name in map(str, channels):
        if name.startswith(UNSEEN_PREFIX):
            out.add(schema.LR_VIEW)
            name = name[len(UNSEEN_PREFIX):]
        if name.startswith(LR_PREFIX):
            out.add(schema.LR)
        elif name.startswith(EMBEDDING_PREFIX):
            out.add(schema.GEOLOGY_EMBEDDING)
        elif name in (ASPECT_SIN, ASPECT_COS):
            out.add(schema.ASPECT)
        else:
            out.add(name)
    return sorted(out)


def covariate_channels(ds: xr.Dataset) -> list[str]:
    """The covariate channels (not ``lr:``, not ``unseen:``) that ``ds`` can provide.

    Examples
    --------
    >>> import numpy as np
    >>> ds = schema.make_grid((0, 0, 200, 200), 50.0, "EPSG:32650")
    >>> ds["slope"] = (("y", "x"), np.zeros((4, 4), "float32"))
    >>> covariate_channels(ds)
    ['slope']
    """
    names: list[str] = []
    for var in (schema.ELEVATION, schema.SLOPE):
        if var in ds.data_vars:
            names.append(var)
    if schema.ASPECT in ds.data_vars:
        names += [ASPECT_SIN, ASPECT_COS]
    if schema.GEOLOGY_EMBEDDING in ds.data_vars:
        n = ds.sizes[schema.EMBEDDING]
        names += [f"{EMBEDDING_PREFIX}{i}" for i in range(n)]
    for var in (schema.FAULT_DISTANCE, schema.CONTACT_DISTANCE):
        if var in ds.data_vars:
            names.append(var)
    return names


def resolve_inputs(inputs: str | Sequence[str], ds: xr.Dataset) -> str:
    """An input set as a canonical string; ``"auto"``: every group ``ds`` can provide.

    ``"auto"`` takes ``geochem``, then ``terrain`` (elevation, slope and aspect),
    ``geology`` (geology_embedding), ``faults`` (fault_distance), ``contacts``
    (contact_distance), and ``unseen`` when ``lr_view`` holds every covariate of those
    groups. On the synthetic region only the set with ``unseen`` beat the sparse map in
    cross-validation (``benchmarks/results/trust.md``), so ``"auto"`` is what
    :func:`geochem_sr.training.train` uses by default.

    Examples
    --------
    >>> ds = schema.make_grid((0, 0, 100, 100), 50.0, "EPSG:32650")
    >>> resolve_inputs("auto", ds)
    'geochem'
    >>> resolve_inputs("terrain+geochem", ds)
    'geochem+terrain'
    """
    if not (isinstance(inputs, str) and inputs == "auto"):
        return "+".join(schema.parse_input_set(inputs))
    have = set(map(str, ds.data_vars))
    needs = {"terrain": set(schema.TERRAIN_VARS), "geology": {schema.GEOLOGY_EMBEDDING},
             "faults": {schema.FAULT_DISTANCE}, "contacts": {schema.CONTACT_DISTANCE}}
    groups = ["geochem", *(g for g, v in needs.items() if v <= have)]
    if len(groups) > 1 and schema.LR_VIEW in have:
        names = channel_names(groups, ["H"], ds.sizes.get(schema.EMBEDDING, 5))  # any element
        covariates = [c for c in names if not c.startswith(LR_PREFIX)]
        if set(covariates) <= {str(c) for c in ds[schema.LR_VIEW][schema.COVARIATE].values}:
            groups.append("unseen")
    return "+".join(groups)
