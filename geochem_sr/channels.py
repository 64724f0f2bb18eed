"""The input/target contract shared by training and inference.

A model sees a stack of named *channels* built from a survey dataset and predicts, per
element, the residual ``log10(hr) - log10(lr)``. Channel names (in this order):

``lr:<El>``
    the sparse-survey map of each element, in log10 (the paper's 10 geochemical inputs);
``elevation``, ``slope``
    metres and degrees, as stored;
``aspect_sin``, ``aspect_cos``
    the aspect encoded as a unit vector: ``sin(aspect)`` is the *eastness* and
    ``cos(aspect)`` the *northness* of the downslope direction. Aspect is circular (359° and
    1° face the same way), so the raw angle would put a jump of 358 where nothing changes;
    the vector is continuous. Flat cells (NaN aspect where the elevation exists) face no
    direction and are encoded ``(0, 0)``. This gives **19 channels** for the full input set
    where the paper counts 18 (one aspect channel becomes two);
``embedding:<i>``
    the geology word vector of the unit at each cell (5 by default);
``fault_distance``, ``contact_distance``
    ``log10(1 + d / 100 m)`` of the distance ``d`` to the nearest mapped fault and to the
    nearest lithological contact (:mod:`geochem_sr.structure`; groups ``faults`` and
    ``contacts``);
``unseen:<covariate>``
    with the group ``unseen``: each covariate channel above minus its interpolation from
    the sparse survey's sites (the survey variable ``lr_view``,
    :mod:`geochem_sr.sparse_view`): what the sparse survey did not see of it. The residual
    the network predicts is largest exactly there.

Normalisation is ``(x - mean) / std`` per channel with statistics from the training blocks
only (:func:`fit_normalisation`). The two aspect channels are *not* shifted or scaled
(their statistics are ``(0, 1)``): they form one vector that augmentation rotates
(:func:`augment`), which only stays a rotation if both components share zero and scale.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError, SchemaError

__all__ = [
    "CHANNEL",
    "ASPECT_SIN",
    "ASPECT_COS",
    "DIRECTIONAL_CHANNELS",
    "VECTOR_PAIRS",
    "UNSEEN_PREFIX",
    "covariate_channels",
    "variables_of",
    "channel_names",
    "stack_inputs",
    "normalise",
    "target_residual",
    "fit_normalisation",
    "augment",
    "inverse_augmentation",
    "N_AUGMENTATIONS",
]

#: Name of the channel dimension of a stacked input.
CHANNEL = "channel"
ASPECT_SIN = f"{schema.ASPECT}_sin"
ASPECT_COS = f"{schema.ASPECT}_cos"
#: Prefix of the ``unseen`` channels (covariate minus what the sparse sites see of it).
UNSEEN_PREFIX = "unseen:"
#: (east, north) channel pairs that turn with the map under rotations and mirrors.
VECTOR_PAIRS: tuple[tuple[str, str], ...] = (
    (ASPECT_SIN, ASPECT_COS),
    (f"{UNSEEN_PREFIX}{ASPECT_SIN}", f"{UNSEEN_PREFIX}{ASPECT_COS}"),
)
#: Channels that change under a rotation or a mirror of the map (the aspect vectors).
DIRECTIONAL_CHANNELS: tuple[str, ...] = tuple(c for pair in VECTOR_PAIRS for c in pair)
#: Length scale of the distance channels' transform ``log10(1 + d / scale)``, metres.
DISTANCE_SCALE = 100.0
#: Number of distinct rotations/flips of a square patch (the dihedral group D4).
N_AUGMENTATIONS = 8
#: Below this a channel's standard deviation is treated as zero (then scaled by 1).
STD_FLOOR = 1e-6

_LR_PREFIX = f"{schema.LR}:"
_EMB_PREFIX = f"{schema.EMBEDDING}:"


# --------------------------------------------------------------------------- names
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
        raise SchemaError("elements: expected at least one element, found none")
    names = [f"{_LR_PREFIX}{el}" for el in elements]
    if "terrain" in groups:
        names += [schema.ELEVATION, schema.SLOPE, ASPECT_SIN, ASPECT_COS]
    if "geology" in groups:
        if int(n_embedding) < 1:
            raise SchemaError(f"n_embedding: expected a positive size, found {n_embedding}")
        names += [f"{_EMB_PREFIX}{i}" for i in range(int(n_embedding))]
    if "faults" in groups:
        names.append(schema.FAULT_DISTANCE)
    if "contacts" in groups:
        names.append(schema.CONTACT_DISTANCE)
    if "unseen" in groups:
        names += [f"{UNSEEN_PREFIX}{c}" for c in names if not c.startswith(_LR_PREFIX)]
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
        if name.startswith(_LR_PREFIX):
            out.add(schema.LR)
        elif name.startswith(_EMB_PREFIX):
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
        names += [f"{_EMB_PREFIX}{i}" for i in range(n)]
    for var in (schema.FAULT_DISTANCE, schema.CONTACT_DISTANCE):
        if var in ds.data_vars:
            names.append(var)
    return names


# --------------------------------------------------------------------------- stacking
def _require_var(ds: xr.Dataset, var: str, channel: str) -> xr.DataArray:
    if var not in ds.data_vars:
        raise SchemaError(
            f"channel '{channel}': needs variable '{var}', which is missing "
            f"(found {sorted(map(str, ds.data_vars))})"
        )
    return ds[var]


def _element(da: xr.DataArray, var: str, el: str) -> xr.DataArray:
    have = [str(e) for e in da[schema.ELEMENT].values]
    if el not in have:
        raise SchemaError(f"variable '{var}': expected element '{el}', found {have}")
    return da.isel({schema.ELEMENT: have.index(el)}, drop=True)


def _log10(da: xr.DataArray) -> xr.DataArray:
    """log10 of positive values, NaN elsewhere (lazy on dask)."""
    da = da.astype(np.float32)
    return np.log10(da.where(da > 0))


def _aspect_component(ds: xr.Dataset, name: str) -> xr.DataArray:
    aspect = _require_var(ds, schema.ASPECT, name).astype(np.float32)
    rad = np.deg2rad(aspect)
    comp = np.sin(rad) if name == ASPECT_SIN else np.cos(rad)
    flat = aspect.isnull()
    if schema.ELEVATION in ds.data_vars:  # no elevation -> missing, not flat
        flat = flat & ds[schema.ELEVATION].notnull()
    return comp.where(~flat, np.float32(0.0))


def _raw_channel(ds: xr.Dataset, name: str) -> xr.DataArray:
    if name.startswith(UNSEEN_PREFIX):  # first: unseen aspect names are directional too
        base = name[len(UNSEEN_PREFIX):]
        view = _require_var(ds, schema.LR_VIEW, name)
        have = [str(c) for c in view[schema.COVARIATE].values]
        if base not in have:
            raise SchemaError(
                f"channel '{name}': variable '{schema.LR_VIEW}' lacks covariate '{base}' "
                f"(found {have}); compute it with geochem_sr.sparse_view.add_lr_view(ds)"
            )
        seen = view.isel({schema.COVARIATE: have.index(base)}, drop=True)
        return _raw_channel(ds, base) - seen
    if name.startswith(_LR_PREFIX):
        lr = _require_var(ds, schema.LR, name)
        return _log10(_element(lr, schema.LR, name[len(_LR_PREFIX):]))
    if name in (schema.ELEVATION, schema.SLOPE):
        return _require_var(ds, name, name)
    if name in (ASPECT_SIN, ASPECT_COS):
        return _aspect_component(ds, name)
    if name.startswith(_EMB_PREFIX):
        emb = _require_var(ds, schema.GEOLOGY_EMBEDDING, name)
        i = int(name[len(_EMB_PREFIX):])
        n = emb.sizes[schema.EMBEDDING]
        if not 0 <= i < n:
            raise SchemaError(
                f"channel '{name}': variable '{schema.GEOLOGY_EMBEDDING}' has {n} dimensions, "
                f"expected at least {i + 1}"
            )
        return emb.isel({schema.EMBEDDING: i}, drop=True)
    if name in (schema.FAULT_DISTANCE, schema.CONTACT_DISTANCE):
        d = _require_var(ds, name, name).astype(np.float32)
        return np.log10(1 + d.clip(min=0) / np.float32(DISTANCE_SCALE))
    raise SchemaError(
        f"channel '{name}': expected 'lr:<El>', 'elevation', 'slope', 'aspect_sin', "
        "'aspect_cos', 'embedding:<i>', 'fault_distance', 'contact_distance' or "
        "'unseen:<covariate>'"
    )


def stack_inputs(
    ds: xr.Dataset,
    channels: Sequence[str],
    stats: Mapping[str, tuple[float, float]] | None = None,
) -> xr.DataArray:
    """Stack the named input channels of a survey dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset (numpy- or dask-backed).
    channels : sequence of str
        Channel names (:func:`channel_names`).
    stats : mapping, optional
        Channel -> ``(mean, std)``; when given every channel is normalised
        ``(x - mean) / std``.

    Returns
    -------
    xarray.DataArray
        Dims ``("channel", "y", "x")``, float32, coordinate ``channel`` holding the names,
        the grid's x/y and CRS. ``lr`` is in log10. NaN wherever an input is missing (e.g.
        outside the ``lr`` coverage, or non-positive concentrations), so callers can mask.
        Lazy on dask input (nothing is computed), equal to the numpy path.

    Raises
    ------
    SchemaError
        A channel needs a variable or an element the dataset lacks, or ``stats`` lacks a
        channel.
    """
    channels = [str(c) for c in channels]
    if not channels:
        raise SchemaError("channels: expected at least one channel name, found none")
    if len(set(channels)) != len(channels):
        raise SchemaError(f"channels: expected unique names, found {channels}")
    pieces = []
    for name in channels:
        da = _raw_channel(ds, name).astype(np.float32)
        extra = [c for c in da.coords if c not in (schema.X, schema.Y, schema.SPATIAL_REF)]
        pieces.append(da.drop_vars(extra).transpose(schema.Y, schema.X))
    out = xr.concat(pieces, dim=CHANNEL, coords="minimal", compat="override", join="exact")
    out = out.assign_coords({CHANNEL: channels}).astype(np.float32)
    out.name = "inputs"
    out.attrs = {"long_name": "model input channels", "lr_transform": "log10"}
    return out if stats is None else normalise(out, stats)


def normalise(
    stacked: xr.DataArray, stats: Mapping[str, tuple[float, float]]
) -> xr.DataArray:
    """Normalise stacked inputs ``(x - mean) / std`` per channel, in float32.

    The one place where normalisation happens, so that training and inference give
    bit-identical inputs. Lazy on dask input.

    Parameters
    ----------
    stacked : xarray.DataArray
        Un-normalised inputs ``(channel, y, x)`` from :func:`stack_inputs`.
    stats : mapping
        Channel -> ``(mean, std)``, e.g. from :func:`fit_normalisation`.

    Returns
    -------
    xarray.DataArray
        Same dims and coords, float32, attr ``normalised = 1``.
    """
    names = [str(c) for c in stacked[CHANNEL].values]
    missing = [c for c in names if c not in stats]
    if missing:
        raise SchemaError(
            f"stats: expected normalisation statistics for channels {missing}, "
            f"found them for {sorted(stats)}"
        )
    mean = xr.DataArray(np.array([stats[c][0] for c in names], np.float32), dims=CHANNEL)
    std = xr.DataArray(np.array([stats[c][1] for c in names], np.float32), dims=CHANNEL)
    out = ((stacked - mean) / std).astype(np.float32)
    out.name = stacked.name
    out.attrs = {**stacked.attrs, "normalised": 1}
    return out


def target_residual(ds: xr.Dataset, elements: Sequence[str] | None = None) -> xr.DataArray:
    """The training target ``log10(hr) - log10(lr)`` per element.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset with ``lr`` and ``hr``.
    elements : sequence of str, optional
        Elements, in order (default: all of ``ds.element``).

    Returns
    -------
    xarray.DataArray
        Dims ``("element", "y", "x")``, float32; NaN where either map is NaN or not positive.
        Lazy on dask input.
    """
    lr = _require_var(ds, schema.LR, "target")
    hr = _require_var(ds, schema.HR, "target")
    if elements is None:
        elements = [str(e) for e in ds[schema.ELEMENT].values]
    elements = [str(e) for e in elements]
    for var, da in ((schema.LR, lr), (schema.HR, hr)):
        have = [str(e) for e in da[schema.ELEMENT].values]
        missing = [e for e in elements if e not in have]
        if missing:
            raise SchemaError(f"variable '{var}': expected elements {missing}, found {have}")
    sel = {schema.ELEMENT: elements}
    res = _log10(hr.sel(sel)) - _log10(lr.sel(sel))
    res = res.transpose(schema.ELEMENT, schema.Y, schema.X).astype(np.float32)
    res.name = "residual"
    res.attrs = {"long_name": "log10(hr) - log10(lr)", "units": "log10"}
    return res


# --------------------------------------------------------------------------- statistics
def fit_normalisation(
    stacked: xr.DataArray,
    mask: np.ndarray | xr.DataArray | None = None,
) -> dict[str, tuple[float, float]]:
    """Per-channel mean and standard deviation over the cells of ``mask``.

    Parameters
    ----------
    stacked : xarray.DataArray
        Un-normalised inputs ``(channel, y, x)`` from :func:`stack_inputs`.
    mask : array-like of bool ``(y, x)``, optional
        Cells to use (the training blocks only); default all cells.

    Returns
    -------
    dict
        Channel -> ``(mean, std)`` as Python floats, NaN cells ignored. A standard
        deviation below ``STD_FLOOR`` (a constant channel) becomes 1, so the channel is
        only centred. The aspect channels get ``(0.0, 1.0)`` (see the module notes).

    Raises
    ------
    DataError
        A channel has no finite value inside the mask.
    """
    if CHANNEL not in stacked.dims:
        raise SchemaError(f"stacked: expected a '{CHANNEL}' dimension, found {stacked.dims}")
    data = stacked
    if mask is not None:
        m = mask.values if isinstance(mask, xr.DataArray) else np.asarray(mask)
        shape = (stacked.sizes[schema.Y], stacked.sizes[schema.X])
        if m.shape != shape:
            raise SchemaError(f"mask: expected shape {shape} (y, x), found {m.shape}")
        data = stacked.where(xr.DataArray(m.astype(bool), dims=(schema.Y, schema.X)))
    data = data.astype(np.float64)
    dims = (schema.Y, schema.X)
    summary = xr.Dataset(
        {"mean": data.mean(dims), "std": data.std(dims), "count": data.notnull().sum(dims)}
    ).compute()
    stats: dict[str, tuple[float, float]] = {}
    for i, name in enumerate(str(c) for c in stacked[CHANNEL].values):
        if name in DIRECTIONAL_CHANNELS:
            stats[name] = (0.0, 1.0)
            continue
        if int(summary["count"].values[i]) == 0:
            raise DataError(
                f"channel '{name}': expected finite values in the training cells, found none"
            )
        mean = float(summary["mean"].values[i])
        std = float(summary["std"].values[i])
        if not np.isfinite(std) or std < STD_FLOOR:
            warnings.warn(
                f"channel '{name}' is constant over the training cells; it is only centred",
                stacklevel=2,
            )
            std = 1.0
        stats[name] = (mean, std)
    return stats


# --------------------------------------------------------------------------- augmentation
def _check_k(k: int) -> int:
    if not 0 <= int(k) < N_AUGMENTATIONS:
        raise ValueError(f"k: expected an augmentation index in 0..7, found {k}")
    return int(k)


def inverse_augmentation(k: int) -> int:
    """The index ``j`` such that ``augment(augment(x, k), j) == x``.

    Transform ``k`` is a mirror (for ``k >= 4``) followed by ``k % 4`` quarter turns;
    mirrors are their own inverse, a rotation by ``r`` is undone by ``4 - r``.
    """
    k = _check_k(k)
    return k if k >= 4 else (4 - k) % 4


def _spatial(a: Any, k: int) -> Any:
    """Mirror left-right if ``k >= 4``, then ``k % 4`` counter-clockwise quarter turns."""
    import torch

    if isinstance(a, torch.Tensor):
        if k >= 4:
            a = torch.flip(a, dims=(-1,))
        return torch.rot90(a, k % 4, dims=(-2, -1)).contiguous()
    a = np.asarray(a)
    if k >= 4:
        a = a[..., ::-1]
    return np.ascontiguousarray(np.rot90(a, k % 4, axes=(-2, -1)))


def _rotate_vector(east: Any, north: Any, k: int) -> tuple[Any, Any]:
    """Transform an (east, north) vector field's components like the map.

    With row 0 north and column 0 west, the left-right mirror turns east into west
    (``e -> -e``), and a counter-clockwise quarter turn of the array turns the map
    counter-clockwise, taking east to north: ``(e, n) -> (-n, e)``.
    """
    if k >= 4:
        east = -east
    for _ in range(k % 4):
        east, north = -north, east
    return east, north


def augment(
    x: Any,
    y: Any = None,
    k: int = 0,
    channels: Sequence[str] | None = None,
) -> tuple[Any, Any]:
    """Apply one of the 8 rotations/flips to an input and its target.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor
        Inputs ``(..., C, H, W)`` (row 0 north, column 0 west).
    y : numpy.ndarray or torch.Tensor, optional
        Target ``(..., E, H, W)``, transformed with the same spatial map.
    k : int
        0..7: ``k >= 4`` mirrors left-right first, then ``k % 4`` counter-clockwise quarter
        turns (``k = 0`` is the identity). The 8 are distinct for square patches.
    channels : sequence of str, optional
        Names of the ``C`` input channels. When they include ``aspect_sin`` and
        ``aspect_cos`` (eastness, northness of the downslope direction), the vector is
        turned and mirrored with the map, so the result is what the terrain code would
        compute on the rotated DEM. The other channels are scalar fields.

    Returns
    -------
    (x, y)
        New arrays of the same kind (numpy arrays are contiguous copies); ``y`` is None
        when not given.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(8, dtype="float32").reshape(2, 2, 2)
    >>> x2, _ = augment(x, None, 1, ["lr:As", "slope"])
    >>> bool((augment(x2, None, inverse_augmentation(1), ["lr:As", "slope"])[0] == x).all())
    True
    """
    k = _check_k(k)
    xs = _spatial(x, k)
    ys = None if y is None else _spatial(y, k)
    if channels is None:
        return xs, ys
    channels = [str(c) for c in channels]
    if len(channels) != xs.shape[-3]:
        raise SchemaError(
            f"channels: expected {xs.shape[-3]} names (the channel axis of x), "
            f"found {len(channels)}"
        )
    out = xs
    for pair in VECTOR_PAIRS:
        has = [c in channels for c in pair]
        if any(has) and not all(has):
            raise SchemaError(
                f"channels: an aspect vector needs both {pair} to be rotated, found {channels}"
            )
        if all(has) and k != 0:
            i_e, i_n = channels.index(pair[0]), channels.index(pair[1])
            east, north = _rotate_vector(xs[..., i_e, :, :], xs[..., i_n, :, :], k)
            if out is xs:  # read from xs, write into one copy
                out = xs.clone() if hasattr(xs, "clone") else xs.copy()
            out[..., i_e, :, :], out[..., i_n, :, :] = east, north
    return out, ys
