"""Seamless, tiled, lazy super-resolution of whole regions, on Dask, resumable to Zarr.

Three entry points:

* :func:`predict_array` -- an in-memory ``(C, H, W)`` stack of normalised inputs to the
  predicted residual (and its test-time-augmentation spread);
* :func:`super_resolve` -- a survey :class:`xarray.Dataset` to a *lazy* prediction Dataset
  (``hr_pred``, ``residual_pred``, ``hr_pred_std``), one Dask task per tile;
* :func:`predict_to_zarr` -- a survey Zarr store to a prediction Zarr store, tile by tile,
  locally or on a ``dask.distributed`` cluster, resumable after a crash.

How a region is cut into tiles so that the tiles leave no trace
---------------------------------------------------------------
Let ``m`` be the network's ``size_multiple`` (its total down-sampling stride: 16 for the
multi-level U-Net, ``2**depth`` for the U-Net, 1 for SRCNN/VDSR) and ``reach`` half its
receptive field (``(receptive_field - 1) // 2``: how far, in cells, an output cell can see).

1. **The whole-region prediction is defined first.** The inputs (NaN -> 0, as in training)
   are padded by ``halo`` cells on every side by *reflection* (``numpy.pad(mode="reflect")``),
   then with zeros at the bottom and right up to a multiple of ``m``, the network is run on
   the result and the region is cut out again. Reflection gives the cells at the region's
   outer border a context that looks like the interior (instead of the zeros the network's
   own padding would put right next to them), and treats all four sides alike, so the
   8 rotations/mirrors of test-time augmentation see the same border.
2. **Tiles are cut from that padded array.** Tile cores are ``tile`` cells wide and start at
   multiples of ``tile`` (the last core takes the remainder; a remainder smaller than
   ``halo`` is merged into the previous core). Each core is predicted from a window of
   ``core + 2 * halo`` cells of the padded array. ``tile`` and ``halo`` are multiples of
   ``m``, so every window starts at the same phase of the network's stride as the
   whole-region run (and its size is a multiple of ``m``, so the mirrored and rotated
   windows keep that phase too). With ``halo >= reach`` (the default is ``reach`` rounded
   up to a multiple of ``m``) no output cell of a core can see the window's edge, and the
   tiled prediction equals the whole-region prediction to float tolerance -- at the outer
   border too, because the border is padded the same way in both.
3. **Blending.** :func:`predict_array` cross-fades adjacent windows over ``2 * blend``
   cells centred on each seam, with a separable raised-cosine weight (``cos**2`` falling,
   ``sin**2`` rising: they sum to 1, and the sum is normalised anyway). The cross-fade
   zone must be ``reach`` cells from the window edge to be exact, so the default ``blend``
   is the slack ``halo - reach``; it only matters when a caller chooses a ``halo`` below
   ``reach`` (faster, approximate): then ``blend`` defaults to ``halo // 2`` and the seams
   are smoothed instead of cut (a warning says so). The lazy Dask path and the Zarr writer
   predict each Dask chunk from one window and keep its core (they cannot see the
   neighbouring windows without computing them twice): identical to the blended result
   when ``halo >= reach``, and cut at chunk seams when it is not.
4. **Patch context.** A network trained on ``patch_size`` patches (32 cells) never saw more
   context than a patch, and one whose receptive field is wider (both U-Nets) predicts
   differently on a whole tile than on patches: on the synthetic region the multi-level
   U-Net's gain on held-out blocks was +2.1 % from patches and +0.6 % from whole tiles
   (+7.1 % and +5.8 % on the validation blocks). So by default (``model.extra["context"]
   == "patch"``) each window is itself predicted as ``patch_size`` sub-windows every
   ``patch_size // 2`` cells on a lattice fixed to the window's origin, blended with a
   separable ``sin**2`` weight that vanishes towards each sub-window's edge. ``tile`` and
   ``halo`` are multiples of the stride, so the lattice is the same in every window and
   tiled still equals untiled. It costs about 4 forwards per cell. ``"tile"`` runs the
   network on whole windows (faster; for networks trained on larger patches).
5. **Coverage.** A cell with any NaN input channel is masked: its inputs become 0 (as in
   training) and its outputs NaN. NaN never reaches the network, so it never spreads;
   what a masked cell does to its neighbours is what training taught the network that a
   zero input means.

Writing Zarr, resuming
----------------------
:func:`predict_to_zarr` lays the output store out first (Zarr format 2, chunks of one tile,
coordinates, CRS as CF ``grid_mapping`` and GDAL ``_CRS``, NaN fill, provenance, and the
``geochem_sr_incomplete`` attribute that makes :func:`geochem_sr.open_survey` refuse the
store). The template is written to a temporary sibling and renamed, so it is all there or
not at all. Each tile is then computed from its window of the input store, written into
its chunk-aligned region, and recorded by an empty marker file
``<store>/.geochem_sr_tiles/<i>_<j>`` (temporary file, then rename) *after* its data. A
rerun of the same command checks that the store was started by the same model digest,
input (path and fingerprint), tile, halo and uncertainty setting, and computes only the
tiles without a marker; a tile whose writing was interrupted has no marker and is written
again whole. When all tiles are there the incomplete attribute is removed (attributes and
consolidated metadata rewritten) and the ledger deleted: the store is then byte for byte
the one an uninterrupted run writes (apart from the creation time). Locally the next tile
is read and the previous one written in background threads while the network runs; on a
cluster every tile is a future whose worker reads, predicts and writes its own region (the
store must be on a filesystem the workers share).

The model on workers
--------------------
Networks are built once per process and kept in a small cache keyed by the model's digest
(:attr:`GeoSRModel.digest`) and device; a Dask task never rebuilds one. The lazy graph of
:func:`super_resolve` holds the :class:`GeoSRModel` once, as a single ``dask.delayed`` key
that every tile task depends on (workers fetch it once each); :func:`predict_to_zarr` on a
cluster scatters it to every worker (``broadcast=True``). ``torch`` is imported inside
functions only, so workers that import :mod:`geochem_sr` do not pay for it until they
predict. Inside a ``dask.distributed`` worker each task runs torch with 1 thread (the
worker's threads are the parallelism; set ``GEOCHEM_SR_TORCH_THREADS`` to change that);
in a plain process, forwards are serialised by a lock and each uses torch's own thread
pool, which is faster on CPU than two forwards fighting over the same cores and holds the
activations of only one tile in memory.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import sys
import threading
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import (
    GeoSRError,
    InputFileError,
    ModelMismatchError,
    SchemaError,
)
from geochem_sr.model_file import GeoSRModel

__all__ = [
    "predict_array",
    "super_resolve",
    "predict_to_zarr",
    "default_halo",
    "tile_bounds",
    "UNCERTAINTY_MEANING",
    "LEDGER_DIR",
]

#: Directory inside an output store holding one marker file per finished tile.
LEDGER_DIR = ".geochem_sr_tiles"
#: Largest number of cells run through the network in one forward (memory bound).
MAX_BATCH_CELLS = 512 * 512
#: What ``hr_pred_std`` means (also written into the output's attributes).
UNCERTAINTY_MEANING = (
    "standard deviation, over the 8 rotations and mirrors of the map (test-time "
    "augmentation, aspect rotated with the map), of the network's predicted log10 residual. "
    "For elements calibrated on held-out blocks (calibrated_elements) it is "
    "std_scale * max(spread, std_floor), scaled so that about 68 % of validation cells fall "
    "within one standard deviation: a predictive uncertainty. For the other elements it is "
    "the raw spread: how much the prediction depends on the orientation of the map, not a "
    "full predictive uncertainty."
)
_ATTR_PREFIX = "geochem_sr_"
_IDENTITY_KEYS = ("model_digest", "input", "input_fingerprint", "tile", "halo", "uncertainty")


# =========================================================================== geometry
@dataclasses.dataclass(frozen=True)
class _Geometry:
    """What tiling needs to know about a network."""

    size_multiple: int
    receptive_field: int

    @property
    def reach(self) -> int:
        """How far (cells) an output cell can see on one side."""
        return max(0, (int(self.receptive_field) - 1) // 2)


_GEOMETRY: dict[str, _Geometry] = {}


def _round_up(n: int, m: int) -> int:
    return -(-int(n) // int(m)) * int(m)


def _geometry(model: GeoSRModel) -> _Geometry:
    """Size multiple and receptive field of the model's network (built once, no weights)."""
    key = json.dumps([model.network_name, model.network_config], sort_keys=True, default=str)
    geom = _GEOMETRY.get(key)
    if geom is None:
        from geochem_sr.models import get_model, model_class

        src: Any = model_class(model.network_name)  # class attributes when they are plain
        sm, rf = getattr(src, "size_multiple", 1), getattr(src, "receptive_field", 64)
        if not (isinstance(sm, int) and isinstance(rf, int)):  # properties of the config
            src = get_model(model.network_name, **model.network_config)
            sm, rf = getattr(src, "size_multiple", 1), getattr(src, "receptive_field", 64)
        geom = _Geometry(int(sm or 1), int(rf))
        _GEOMETRY[key] = geom
    return geom


def default_halo(model: GeoSRModel) -> int:
    """The smallest exact halo: the network's reach rounded up to its size multiple.

    Parameters
    ----------
    model : GeoSRModel

    Returns
    -------
    int
        Cells added on each side of a tile: with the default patch context the patch
        size rounded up to the sub-window lattice (32 for 32-cell patches); with
        ``model.extra["context"] = "tile"`` the network's reach rounded up to its size
        multiple (80 for the multi-level U-Net: receptive field 157, size multiple 16).
    """
    m, reach = _alignment(model)
    return _round_up(reach, m)


def _resolve(
    model: GeoSRModel, tile: int, halo: int | None, blend: int | None
) -> tuple[_Geometry, int, int, int]:
    """Check and align tile, halo, blend; warn when the halo is below the reach."""
    g = _geometry(model)
    m, reach = _alignment(model)
    if isinstance(tile, bool) or not isinstance(tile, int | np.integer) or tile < 1:
        raise SchemaError(f"tile: expected a positive number of cells, found {tile!r}")
    if halo is None:
        halo = default_halo(model)
    if isinstance(halo, bool) or not isinstance(halo, int | np.integer) or halo < 0:
        raise SchemaError(f"halo: expected a number of cells >= 0, found {halo!r}")
    halo = _round_up(halo, m)
    tile = max(_round_up(tile, m), halo, m)
    if halo < reach:
        warnings.warn(
            f"halo: {halo} cells is below the network's reach ({reach} cells: the patch "
            f"size in patch context, else half the receptive field {g.receptive_field}); "
            "tiles see less context than a whole-region "
            "prediction, so values near tile seams are approximations (blended in "
            "predict_array, cut at chunk seams in super_resolve/predict_to_zarr)",
            UserWarning,
            stacklevel=3,
        )
    if blend is None:
        blend = halo - reach if halo >= reach else halo // 2
    if isinstance(blend, bool) or not isinstance(blend, int | np.integer) or blend < 0:
        raise SchemaError(f"blend: expected a number of cells >= 0, found {blend!r}")
    blend = min(int(blend), halo, tile // 2)
    return g, int(tile), int(halo), int(blend)


def _chunk_sizes(n: int, tile: int, halo: int) -> tuple[int, ...]:
    """Core sizes along one axis: ``tile`` each, the remainder last (merged if < halo)."""
    sizes = [tile] * (n // tile)
    rest = n - tile * len(sizes)
    if rest:
        if sizes and rest < max(halo, 1):
            sizes[-1] += rest
        else:
            sizes.append(rest)
    return tuple(sizes) or (n,)


def _bounds(sizes: Sequence[int]) -> list[tuple[int, int]]:
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def tile_bounds(
    shape: tuple[int, int], model: GeoSRModel, tile: int = 512, halo: int | None = None
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The tile cores a region of ``shape`` (ny, nx) is cut into.

    Parameters
    ----------
    shape : (int, int)
        Cells along y and x.
    model : GeoSRModel
    tile, halo : int
        As in :func:`super_resolve` (aligned the same way).

    Returns
    -------
    (list of (start, stop), list of (start, stop))
        Core intervals along y and along x; every tile is one pair of them. They are also
        the Dask chunks of :func:`super_resolve` and the units of work of
        :func:`predict_to_zarr`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _, tile, halo, _ = _resolve(model, tile, halo, None)
    return (_bounds(_chunk_sizes(int(shape[0]), tile, halo)),
            _bounds(_chunk_sizes(int(shape[1]), tile, halo)))


# =========================================================================== network
_NETS: OrderedDict[tuple[str, str], Any] = OrderedDict()
_NETS_LOCK = threading.Lock()
_FORWARD_LOCK = threading.Lock()
_MAX_CACHED_NETS = 2
_THREADS_SET = False


def _in_dask_worker() -> bool:
    if "distributed" not in sys.modules:
        return False
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


def _device(device: Any) -> str:
    if device is not None:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _network(model: GeoSRModel, digest: str, device: str) -> Any:
    """The model's network in eval mode, built once per process, digest and device."""
    global _THREADS_SET
    key = (digest, device)
    with _NETS_LOCK:
        net = _NETS.get(key)
        if net is not None:
            _NETS.move_to_end(key)
            return net
        import torch

        if not _THREADS_SET and _in_dask_worker():
            torch.set_num_threads(max(1, int(os.environ.get("GEOCHEM_SR_TORCH_THREADS", 1))))
        _THREADS_SET = True
        net = model.build_network(device)
        if device == "cpu":
            net = net.to(memory_format=torch.channels_last)
        _NETS[key] = net
        while len(_NETS) > _MAX_CACHED_NETS:
            _NETS.popitem(last=False)
        return net


def _forward(net: Any, x: np.ndarray, device: str) -> np.ndarray:
    """Run the network on a batch ``(N, C, H, W)`` float32 -> ``(N, E, H, W)`` float32."""
    import torch

    lock = _FORWARD_LOCK if not _in_dask_worker() else _NullLock()
    with lock, torch.inference_mode():
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
        if device == "cpu":
            t = t.contiguous(memory_format=torch.channels_last)
        return net(t).float().cpu().numpy()  # (channels-last strides; callers copy)


class _NullLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# =========================================================================== windows
#: Inference contexts: each window predicted as training-size sub-windows, or whole.
CONTEXTS = ("patch", "tile")


def _patch_context(model: GeoSRModel) -> tuple[int, int] | None:
    """(patch size, stride) of patch-context prediction, or None to predict whole windows."""
    context = (model.extra or {}).get("context", "patch")
    if context not in CONTEXTS:
        raise SchemaError(f"model.extra['context']: expected one of {CONTEXTS}, found "
                          f"{context!r}")
    p = int(model.patch_size or 0)
    m = _geometry(model).size_multiple
    if context == "tile" or p < 2 or p % m != 0 or (p // 2) % m != 0:
        return None
    return p, p // 2


def _alignment(model: GeoSRModel) -> tuple[int, int]:
    """(multiple that tiles and halos are rounded to, reach of an output cell)."""
    g = _geometry(model)
    ctx = _patch_context(model)
    if ctx is None:
        return g.size_multiple, g.reach
    p, step = ctx  # a cell's value depends on the sub-windows covering it: p cells away
    return math.lcm(g.size_multiple, step), p


def _lattice_size(n: int, p: int, step: int) -> int:
    """Smallest ``p + k * step >= n``: the window is zero-padded at its end to this size,
    so every sub-window starts on the lattice (never a shifted last one)."""
    return p + _round_up(max(n - p, 0), step)


def _sub_weights(p: int) -> np.ndarray:
    """``sin**2`` weights over a ``p``-cell sub-window: small next to its edges."""
    u = (np.arange(p) + 0.5) / p
    return np.sin(np.pi * u) ** 2


def _predict_windows(
    model: GeoSRModel,
    digest: str,
    windows: Sequence[np.ndarray],
    *,
    tta: bool,
    device: str,
    batch_size: int | None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Predict zero-filled windows ``(C, h, w)`` in the model's context (module notes);
    yield ``(index, residual, spread)``."""
    ctx = _patch_context(model)
    if ctx is None:
        yield from _predict_whole(model, digest, windows, tta=tta, device=device,
                                  batch_size=batch_size)
        return
    p, step = ctx
    weight = np.outer(_sub_weights(p), _sub_weights(p))
    for i, w in enumerate(windows):
        h, wd = w.shape[-2:]
        hp, wp = _lattice_size(h, p, step), _lattice_size(wd, p, step)
        w = np.pad(w, ((0, 0), (0, hp - h), (0, wp - wd)))
        pos = [(a, b) for a in range(0, hp - p + 1, step) for b in range(0, wp - p + 1, step)]
        subs = [w[:, a:a + p, b:b + p] for a, b in pos]
        acc = np.zeros((len(model.elements), hp, wp))
        acc_sd = np.zeros_like(acc) if tta else None
        wsum = np.zeros((hp, wp))
        for j, res, spread in _predict_whole(model, digest, subs, tta=tta, device=device,
                                             batch_size=batch_size):
            a, b = pos[j]
            acc[:, a:a + p, b:b + p] += weight * res
            if acc_sd is not None and spread is not None:
                acc_sd[:, a:a + p, b:b + p] += weight * spread
            wsum[a:a + p, b:b + p] += weight
        core = (slice(None), slice(0, h), slice(0, wd))
        yield (i, (acc[core] / wsum[:h, :wd]).astype(np.float32),
               None if acc_sd is None else (acc_sd[core] / wsum[:h, :wd]).astype(np.float32))


def _predict_whole(
    model: GeoSRModel,
    digest: str,
    windows: Sequence[np.ndarray],
    *,
    tta: bool,
    device: str,
    batch_size: int | None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Predict zero-filled windows ``(C, h, w)``; yield ``(index, residual, spread)``.

    Windows of the same shape are batched. With ``tta`` each window is predicted under
    the 8 rotations/mirrors (aspect vector turned with the map), each prediction is turned
    back, and the mean and the standard deviation (ddof 0) over the 8 are returned.
    """
    from geochem_sr.channels import N_AUGMENTATIONS, augment, inverse_augmentation

    net = _network(model, digest, device)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, w in enumerate(windows):
        groups.setdefault(tuple(w.shape), []).append(i)
    for shape, idx in groups.items():
        cells = int(shape[1]) * int(shape[2])
        n = batch_size or max(1, MAX_BATCH_CELLS // max(cells, 1))
        for start in range(0, len(idx), n):
            part = idx[start:start + n]
            xb = np.stack([windows[i] for i in part])
            if not tta:
                yb = _forward(net, xb, device)
                for j, i in enumerate(part):
                    yield i, yb[j], None
                continue
            total = sq = None
            for k in range(N_AUGMENTATIONS):
                xk, _ = augment(xb, None, k, model.channels)
                yk = _forward(net, xk, device)
                yk, _ = augment(yk, None, inverse_augmentation(k))
                yk = yk.astype(np.float64)
                total = yk if total is None else total + yk
                sq = yk * yk if sq is None else sq + yk * yk
            mean = total / N_AUGMENTATIONS
            spread = np.sqrt(np.maximum(sq / N_AUGMENTATIONS - mean * mean, 0.0))
            for j, i in enumerate(part):
                yield i, mean[j].astype(np.float32), spread[j].astype(np.float32)


def _end_pad(x: np.ndarray, m: int) -> np.ndarray:
    """Zero-pad the bottom and right of ``(C, h, w)`` to multiples of ``m``."""
    h, w = x.shape[-2:]
    ph, pw = _round_up(h, m) - h, _round_up(w, m) - w
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)))
    return x


def _calibrate(model: GeoSRModel, spread: np.ndarray) -> np.ndarray:
    """``std_scale * max(shrinkage * spread, std_floor)`` per calibrated element (the rule of
    :func:`geochem_sr.trust.calibrated_std`); raw spread elsewhere.

    The rule of :mod:`geochem_sr.trust` (``std_floor`` in ``model.extra["std_floor"]``):
    where the 8 orientations agree (spread ~ 0) a calibrated uncertainty is not zero.
    """
    floors = model.extra.get("std_floor") or {}
    out = spread.astype(np.float32, copy=True)
    for k, el in enumerate(model.elements):
        if el in model.std_scale:
            floor = np.float32(floors.get(el, 0.0))
            shrink = np.float32(model.shrinkage_of(el))
            out[k] = np.float32(model.std_scale[el]) * np.maximum(shrink * out[k], floor)
    return out


def _predict_block(
    x_ext: np.ndarray,
    pads: tuple[int, int, int, int],
    model: GeoSRModel,
    digest: str,
    *,
    halo: int,
    size_multiple: int,
    tta: bool,
    device: str,
    batch_size: int | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predict the core of one tile from its extended block (the Dask and Zarr path).

    ``x_ext`` holds the core plus ``halo`` real cells on every side that is not a region
    edge; ``pads`` (top, bottom, left, right) is ``halo`` on the sides that are region
    edges (reflected here exactly as :func:`predict_array` pads the whole region) and 0
    elsewhere.
    """
    top, bottom, left, right = pads
    xp = np.asarray(x_ext, dtype=np.float32)
    if any(pads):
        xp = np.pad(xp, ((0, 0), (top, bottom), (left, right)), mode="reflect")
    nan = np.isnan(xp)
    mask = nan.any(axis=0)
    if mask.any():
        xp = np.where(nan, np.float32(0), xp)
    del nan
    xp = _end_pad(xp, size_multiple)
    ch = x_ext.shape[1] + top + bottom - 2 * halo
    cw = x_ext.shape[2] + left + right - 2 * halo
    (_, res, spread), = _predict_windows(model, digest, [xp], tta=tta, device=device,
                                         batch_size=batch_size)
    core = (slice(None), slice(halo, halo + ch), slice(halo, halo + cw))
    res = res[core].copy()
    cmask = mask[halo:halo + ch, halo:halo + cw]
    res[:, cmask] = np.nan
    if spread is not None:
        spread = _calibrate(model, spread[core])
        spread[:, cmask] = np.nan
    return res, spread


def _ramp(n: int, rising: bool) -> np.ndarray:
    """Raised-cosine weights over ``n`` cells (cell centres); rising + falling == 1."""
    u = (np.arange(n) + 0.5) / n
    return np.sin(0.5 * np.pi * u) ** 2 if rising else np.cos(0.5 * np.pi * u) ** 2


def _axis_weights(
    bounds: Sequence[tuple[int, int]], blend: int
) -> list[tuple[int, int, np.ndarray]]:
    """Per window: (first, stop, weights) of the cells it contributes to along one axis."""
    seams = []
    for k in range(len(bounds) - 1):
        left = bounds[k][1] - bounds[k][0]
        right = bounds[k + 1][1] - bounds[k + 1][0]
        seams.append(min(blend, left // 2, right // 2))
    out = []
    for k, (s, e) in enumerate(bounds):
        bl = seams[k - 1] if k > 0 else 0
        br = seams[k] if k < len(bounds) - 1 else 0
        w = np.ones(e - s + bl + br)
        if bl:
            w[:2 * bl] = _ramp(2 * bl, rising=True)
        if br:
            w[-2 * br:] = _ramp(2 * br, rising=False)
        out.append((s - bl, e + br, w))
    return out


# =========================================================================== arrays
def predict_array(
    model: GeoSRModel,
    inputs: np.ndarray,
    *,
    tile: int = 512,
    halo: int | None = None,
    blend: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    tta: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predict the residual of a region held in memory, tile by tile, without seams.

    Parameters
    ----------
    model : GeoSRModel
        The trained model.
    inputs : numpy.ndarray
        ``(C, H, W)`` normalised input channels in ``model.channels`` order
        (:func:`geochem_sr.channels.stack_inputs` with ``model.norm_stats``), NaN where an
        input is missing. Any size: regions smaller than one tile, or not a multiple of
        anything, are predicted whole.
    tile : int, default 512
        Core size of the windows the network is run on (rounded up to a multiple of the
        network's ``size_multiple``, and to at least ``halo``).
    halo : int, optional
        Context cells around each core; default :func:`default_halo` (exact).
    blend : int, optional
        Half-width of the cross-fade zone at each seam (module notes); default
        ``halo - reach`` (exact), or ``halo // 2`` when ``halo`` is below the reach.
    batch_size : int, optional
        Windows per forward; default as many as fit in ``MAX_BATCH_CELLS`` cells.
    device : str, optional
        Torch device; default CUDA when available, else CPU.
    tta : bool, default False
        Test-time augmentation: predict the 8 rotations/mirrors of every window (the
        aspect vector turned with the map) and return their mean as the residual and their
        standard deviation (ddof 0) as the spread.

    Returns
    -------
    residual : numpy.ndarray
        ``(E, H, W)`` float32, ``log10(hr) - log10(lr)`` as the network predicts it (no
        shrinkage applied), NaN where any input channel is NaN.
    std : numpy.ndarray or None
        With ``tta``: ``(E, H, W)`` float32, the spread of the network's prediction under
        the symmetries of the map. For elements with a ``model.std_scale`` (calibrated on
        held-out blocks by :mod:`geochem_sr.trust`) it is ``std_scale * max(spread,
        std_floor)``, a predictive standard deviation; for the others the raw spread, the
        sensitivity of the prediction to the orientation of the map and not a full
        predictive uncertainty. ``None`` without ``tta``.

    Raises
    ------
    SchemaError
        ``inputs`` is not ``(C, H, W)`` with the model's channel count, or a tiling
        argument is invalid.

    Notes
    -----
    With the default ``halo`` the result equals one whole-region prediction (``tile`` at
    least the region size) to float tolerance everywhere, including the outer border
    (both pad the region by reflection, see the module notes).
    """
    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] != len(model.channels):
        raise SchemaError(
            f"inputs: expected an array (channel, y, x) with {len(model.channels)} channels "
            f"({model.channels}), found shape {x.shape}"
        )
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise SchemaError(f"inputs: expected a non-empty region, found shape {x.shape}")
    geom, tile, halo, blend = _resolve(model, tile, halo, blend)
    dev = _device(device)
    digest = model.digest
    _, ny, nx = x.shape
    mask = np.isnan(x).any(axis=0)
    xp = np.pad(x, ((0, 0), (halo, halo), (halo, halo)), mode="reflect")
    xp = np.where(np.isnan(xp), np.float32(0), xp).astype(np.float32)
    yb = _bounds(_chunk_sizes(ny, tile, halo))
    xb = _bounds(_chunk_sizes(nx, tile, halo))
    wy, wx = _axis_weights(yb, blend), _axis_weights(xb, blend)
    windows, where = [], []
    for (ys, ye), (y0, y1, ay) in zip(yb, wy, strict=True):
        for (xs, xe), (x0, x1, ax) in zip(xb, wx, strict=True):
            # window = cells [s - halo, e + halo) of the region = [s, e + 2 halo) of xp
            windows.append(_end_pad(xp[:, ys:ye + 2 * halo, xs:xe + 2 * halo],
                                    geom.size_multiple))
            where.append((ys, xs, y0, y1, x0, x1, np.outer(ay, ax)))
    n_el = len(model.elements)
    acc = np.zeros((n_el, ny, nx), dtype=np.float64)
    acc_sd = np.zeros((n_el, ny, nx), dtype=np.float64) if tta else None
    wsum = np.zeros((ny, nx), dtype=np.float64)
    for i, res, spread in _predict_windows(model, digest, windows, tta=tta, device=dev,
                                           batch_size=batch_size):
        ys, xs, y0, y1, x0, x1, w = where[i]
        # local offset of region cell r in window i is r - (s - halo)
        loc = (slice(None), slice(y0 - ys + halo, y1 - ys + halo),
               slice(x0 - xs + halo, x1 - xs + halo))
        acc[:, y0:y1, x0:x1] += w * res[loc]
        if acc_sd is not None and spread is not None:
            acc_sd[:, y0:y1, x0:x1] += w * spread[loc]
        wsum[y0:y1, x0:x1] += w
    residual = (acc / wsum).astype(np.float32)
    residual[:, mask] = np.nan
    std = None
    if acc_sd is not None:
        std = _calibrate(model, (acc_sd / wsum).astype(np.float32))
        std[:, mask] = np.nan
    return residual, std


# =========================================================================== datasets
def _embeds(ds: xr.Dataset, model: GeoSRModel, reembed: bool) -> bool:
    """Whether the geology embedding is (re)computed from lithology with the model's vocabulary."""
    needs_geology = any(c.startswith(f"{schema.EMBEDDING}:") for c in model.channels)
    return bool(needs_geology and model.geology_vocabulary and schema.LITHOLOGY in ds.data_vars
                and (reembed or schema.GEOLOGY_EMBEDDING not in ds.data_vars))


def _prepare_inputs(ds: xr.Dataset, model: GeoSRModel, reembed: bool) -> xr.Dataset:
    """Check the model against the dataset; embed geology with the model's vocabulary
    when the dataset has lithology but no (or, with ``reembed``, another) embedding, and
    then see the covariates from the sparse sites again (``lr_view``)."""

    if _embeds(ds, model, reembed):
        from geochem_sr.geology import GeologyVocabulary, embed_geology

        vocab = GeologyVocabulary.from_json(model.geology_vocabulary)
        ds = embed_geology(ds, vocabulary=vocab)  # refreshes lr_view too
    model.check_compatible(ds)
    if schema.X not in ds.dims or schema.Y not in ds.dims:
        raise SchemaError(
            f"dataset: expected dims '{schema.Y}', '{schema.X}', found {dict(ds.sizes)}"
        )
    return ds


def _apply_residual(lr: Any, residual: Any, shrink: np.ndarray) -> tuple[Any, Any]:
    """(hr_pred, residual_pred) = (lr * 10**(s * r), s * r); numpy or dask, same bits.

    Where the network has no prediction (an input channel is missing, e.g. a cell with no
    mapped geological unit or outside the DEM) but the sparse map has a value, the residual
    is 0: the cell keeps the sparse map (do no harm); its std stays NaN and it lies outside
    the area of applicability.
    """
    applied = residual * shrink
    applied = np.where(np.isnan(applied) & ~np.isnan(lr), np.float32(0), applied)
    return lr * np.power(np.float32(10.0), applied), applied


def _shrink(model: GeoSRModel) -> np.ndarray:
    return np.array([model.shrinkage_of(e) for e in model.elements],
                    dtype=np.float32)[:, None, None]


def _lr(ds: xr.Dataset, model: GeoSRModel) -> xr.DataArray:
    lr = ds[schema.LR].sel({schema.ELEMENT: list(model.elements)})
    return lr.transpose(schema.ELEMENT, schema.Y, schema.X).astype(np.float32)


def _block_task(
    x_ext: np.ndarray,
    model: GeoSRModel,
    *,
    digest: str,
    halo: int,
    size_multiple: int,
    tta: bool,
    device: str | None,
    batch_size: int | None,
    block_info: dict | None = None,
) -> np.ndarray:
    """One Dask task: the extended block of one chunk -> its (residual[, std]) core."""
    info = block_info[None]
    (_, iy, ix), (_, ny, nx) = info["chunk-location"], info["num-chunks"]
    pads = (halo if iy == 0 else 0, halo if iy == ny - 1 else 0,
            halo if ix == 0 else 0, halo if ix == nx - 1 else 0)
    res, spread = _predict_block(x_ext, pads, model, digest, halo=halo,
                                 size_multiple=size_multiple, tta=tta,
                                 device=_device(device), batch_size=batch_size)
    return res if spread is None else np.concatenate([res, spread], axis=0)


def _provenance(model: GeoSRModel, digest: str, tile: int, halo: int, tta: bool) -> dict:
    from geochem_sr import __version__

    zero = [e for e in model.elements if model.shrinkage_of(e) == 0]
    calibrated = [e for e in model.elements if e in model.std_scale]
    attrs = {
        "title": "geochem_sr super-resolution prediction",
        f"{_ATTR_PREFIX}model": model.network_name,
        f"{_ATTR_PREFIX}model_digest": digest,
        f"{_ATTR_PREFIX}model_inputs": model.inputs,
        f"{_ATTR_PREFIX}model_channels": list(model.channels),
        f"{_ATTR_PREFIX}shrinkage": {e: model.shrinkage_of(e) for e in model.elements},
        f"{_ATTR_PREFIX}shrinkage_note": (
            "residual_pred = shrinkage * network residual; elements with shrinkage 0 are "
            f"returned as the sparse map: {zero}"
        ),
        f"{_ATTR_PREFIX}tile": int(tile),
        f"{_ATTR_PREFIX}halo": int(halo),
        f"{_ATTR_PREFIX}uncertainty": bool(tta),
        f"{_ATTR_PREFIX}version": __version__,
        f"{_ATTR_PREFIX}created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if tta:
        attrs[f"{_ATTR_PREFIX}uncertainty_meaning"] = UNCERTAINTY_MEANING
        attrs[f"{_ATTR_PREFIX}calibrated_elements"] = calibrated
    return attrs


def _units_attrs(units: dict[str, str], elements: Sequence[str], log10: bool) -> dict:
    if log10:
        return {"units": "log10"}
    found = sorted({units.get(e, "") for e in elements})
    return {"units": found[0]} if len(found) == 1 else {"units": "see element_units"}


def super_resolve(
    ds: xr.Dataset,
    model: GeoSRModel,
    *,
    tile: int = 512,
    halo: int | None = None,
    uncertainty: bool = True,
    device: str | None = None,
    batch_size: int | None = None,
    reembed: bool = False,
    applicability: bool | None = None,
) -> xr.Dataset:
    """Super-resolve a survey dataset, lazily: nothing is computed until asked.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset (numpy- or dask-backed) with the variables the model's channels
        need (``lr`` always).
    model : GeoSRModel
        The trained model; checked against ``ds`` (channels, elements, units, geology
        vocabulary) before anything else happens.
    tile : int, default 512
        Tile (Dask chunk) size along y and x; rounded up to a multiple of the network's
        ``size_multiple`` and to at least ``halo``.
    halo : int, optional
        Context cells on each side of a tile; default :func:`default_halo`, with which the
        tiled prediction equals a whole-region prediction to float tolerance.
    uncertainty : bool, default True
        Also return ``hr_pred_std`` from test-time augmentation (8 forwards per tile,
        :data:`UNCERTAINTY_MEANING`); ``False`` runs one forward per tile.
    device : str, optional
        Torch device; default CUDA when available, else CPU.
    batch_size : int, optional
        Passed to the window predictor (rarely needed).
    reembed : bool, default False
        Re-embed ``lithology`` with the model's geology vocabulary, replacing the
        dataset's ``geology_embedding`` (when they differ the model check refuses).
    applicability : bool, optional
        Add ``dissimilarity`` and ``aoa`` (:func:`geochem_sr.trust.applicability`);
        default: when the model carries an area-of-applicability reference.

    Returns
    -------
    xarray.Dataset
        Dask-backed, chunks ``tile`` along y/x (element whole), on the grid of ``ds`` with
        its CRS and ``element_units``:

        ``hr_pred`` (element, y, x)
            ``lr * 10**(shrinkage * residual)`` in the original units (ppm/ppb);
        ``residual_pred`` (element, y, x)
            ``shrinkage * residual`` in log10 (what was added to ``log10(lr)``);
        ``hr_pred_std`` (element, y, x), with ``uncertainty``
            spread of the residual over the 8 rotations/mirrors, calibrated where the
            model has a ``std_scale`` (:data:`UNCERTAINTY_MEANING`), log10.

        NaN wherever any input channel is NaN. Attributes record the model (name, digest,
        inputs), shrinkage per element, tile and halo, the package version and the time.

    Raises
    ------
    ModelMismatchError
        The model needs channels, elements, units or a vocabulary the dataset lacks.
    """
    import dask
    import dask.array as dsa

    if not isinstance(model, GeoSRModel):
        raise ModelMismatchError(
            f"model: expected a GeoSRModel (GeoSRModel.load(path)), found {type(model).__name__}"
        )
    ds = _prepare_inputs(ds, model, reembed)
    geom, tile, halo, _ = _resolve(model, tile, halo, None)
    digest = model.digest
    ny, nx = ds.sizes[schema.Y], ds.sizes[schema.X]
    ych, xch = _chunk_sizes(ny, tile, halo), _chunk_sizes(nx, tile, halo)
    ds = ds.chunk({d: -1 for d in ds.dims if d not in (schema.X, schema.Y)}
                  | {schema.Y: ych, schema.X: xch})
    from geochem_sr.channels import stack_inputs

    stacked = stack_inputs(ds, model.channels, model.norm_stats)
    data = stacked.data
    if not isinstance(data, dsa.Array):  # pragma: no cover - stack_inputs keeps dask
        data = dsa.from_array(data)
    data = data.rechunk((data.shape[0], ych, xch))
    # a single chunk along an axis needs no overlap (its edges are padded in the task)
    depth = {0: 0, 1: halo if len(ych) > 1 else 0, 2: halo if len(xch) > 1 else 0}
    ext = dsa.overlap.overlap(data, depth=depth, boundary={0: "none", 1: "none", 2: "none"})
    n_el = len(model.elements)
    n_out = 2 * n_el if uncertainty else n_el
    model_key = dask.delayed(model, name=f"geosr-model-{digest[:24]}", traverse=False)
    out = dsa.map_blocks(
        _block_task, ext, model_key,
        chunks=((n_out,), ych, xch), dtype=np.float32,
        meta=np.empty((0, 0, 0), dtype=np.float32),
        digest=digest, halo=halo, size_multiple=geom.size_multiple, tta=bool(uncertainty),
        device=device, batch_size=batch_size,
        name=f"geosr-predict-{dask.base.tokenize(data.name, digest, halo, uncertainty)}",
    )
    lr = _lr(ds, model).data.rechunk((n_el, ych, xch))
    hr, applied = _apply_residual(lr, out[:n_el], _shrink(model))
    dims = (schema.ELEMENT, schema.Y, schema.X)
    units = schema.units_of(ds)
    coords: dict[str, Any] = {
        schema.Y: ds[schema.Y], schema.X: ds[schema.X],
        schema.ELEMENT: list(model.elements),
        schema.ELEMENT_UNITS: (schema.ELEMENT, [units.get(e, "") for e in model.elements]),
    }
    if schema.SPATIAL_REF in ds.coords:
        coords[schema.SPATIAL_REF] = ds[schema.SPATIAL_REF]
    variables = {
        schema.HR_PRED: xr.Variable(dims, hr, {
            "long_name": "super-resolved concentration",
            **_units_attrs(units, model.elements, log10=False)}),
        schema.RESIDUAL_PRED: xr.Variable(dims, applied, {
            "long_name": "log10(hr_pred) - log10(lr): shrinkage * network residual",
            **_units_attrs(units, model.elements, log10=True)}),
    }
    if uncertainty:
        variables[schema.HR_PRED_STD] = xr.Variable(dims, out[n_el:], {
            "long_name": "spread of the predicted log10 residual under rotations/mirrors",
            "units": "log10", "description": UNCERTAINTY_MEANING})
    pred = xr.Dataset(variables, coords=coords,
                      attrs=_provenance(model, digest, tile, halo, bool(uncertainty)))
    if applicability is None:
        applicability = "reference" in (model.aoa or {})
    if applicability:
        from geochem_sr.trust import applicability as _applicability

        app = _applicability(ds, model).chunk({schema.Y: ych, schema.X: xch})
        for name in (schema.DISSIMILARITY, schema.AOA):
            pred[name] = app[name].drop_vars(
                [c for c in app[name].coords if c not in (schema.X, schema.Y)])
    for var in pred.data_vars.values():
        var.encoding.pop("grid_mapping", None)
    return pred


# =========================================================================== zarr
@dataclasses.dataclass(frozen=True)
class _Job:
    """Everything a tile task needs besides the model (picklable, small)."""

    in_path: str
    out_path: str
    digest: str
    halo: int
    size_multiple: int
    tta: bool
    device: str | None
    batch_size: int | None
    reembed: bool
    y_bounds: tuple[tuple[int, int], ...]
    x_bounds: tuple[tuple[int, int], ...]

    def tiles(self) -> list[tuple[int, int]]:
        return [(i, j) for i in range(len(self.y_bounds)) for j in range(len(self.x_bounds))]


def _ledger(out: Path) -> Path:
    return Path(out) / LEDGER_DIR


def _done_tiles(out: Path) -> set[tuple[int, int]]:
    d = _ledger(out)
    if not d.is_dir():
        return set()
    done = set()
    for f in d.iterdir():
        if f.name.startswith("."):
            continue
        try:
            i, j = (int(v) for v in f.name.split("_"))
        except ValueError:
            continue
        done.add((i, j))
    return done


def _mark_done(out: Path, i: int, j: int) -> None:
    """Record a finished tile (after its data is written): temporary file, then rename."""
    d = _ledger(out)
    d.mkdir(exist_ok=True)
    tmp = d / f".{i}_{j}.{uuid.uuid4().hex[:8]}"
    tmp.write_text("done\n")
    os.replace(tmp, d / f"{i}_{j}")


def _read_window(ds: xr.Dataset, model: GeoSRModel, job: _Job, i: int, j: int,
                 scheduler: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Load one tile's extended window (only the variables the channels use), stack it."""
    from geochem_sr.channels import stack_inputs, variables_of

    (ys, ye), (xs, xe) = job.y_bounds[i], job.x_bounds[j]
    ny, nx = len(job.y_bounds), len(job.x_bounds)
    h = job.halo
    pads = (h if i == 0 else 0, h if i == ny - 1 else 0, h if j == 0 else 0,
            h if j == nx - 1 else 0)
    y0, x0 = ys - (h - pads[0]), xs - (h - pads[2])
    needed = sorted(set(variables_of(model.channels)) | {schema.LR})
    win = ds[needed].isel({schema.Y: slice(y0, ye + (h - pads[1])),
                           schema.X: slice(x0, xe + (h - pads[3]))})
    win = win.compute(scheduler=scheduler)  # numpy from here on
    x = stack_inputs(win, model.channels, model.norm_stats).values
    lr = _lr(win, model).values[:, ys - y0:ye - y0, xs - x0:xe - x0]
    return x.astype(np.float32, copy=False), lr.astype(np.float32, copy=False), pads


_INPUTS: OrderedDict[tuple, xr.Dataset] = OrderedDict()


def _open_input(job: _Job, model: GeoSRModel) -> xr.Dataset:
    """The prepared input dataset, opened once per process and input version.

    Opened without Dask (lazily indexed arrays: a window read touches only its chunks and
    builds no graph), unless the geology embedding has to be computed from lithology, which
    stays lazy on Dask.
    """
    import geochem_sr.io as gio

    meta = Path(job.in_path) / ".zmetadata"
    stamp = meta.stat().st_mtime_ns if meta.is_file() else None
    key = (job.in_path, stamp, job.digest, job.reembed)
    with _NETS_LOCK:
        ds = _INPUTS.get(key)
    if ds is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ds = gio.decode_attrs(xr.open_zarr(job.in_path, chunks=None, decode_coords="all"))
        if _embeds(ds, model, job.reembed):
            ds = gio.open_survey(job.in_path)
        ds = _prepare_inputs(ds, model, job.reembed)
        with _NETS_LOCK:
            _INPUTS[key] = ds
            while len(_INPUTS) > 2:
                _INPUTS.popitem(last=False)
    return ds


def _load_tile(job: _Job, model: GeoSRModel, i: int, j: int, scheduler: str) -> tuple:
    """Read and stack the inputs of tile (i, j)."""
    return _read_window(_open_input(job, model), model, job, i, j, scheduler)


def _compute_tile(job: _Job, model: GeoSRModel, loaded: tuple) -> dict[str, np.ndarray]:
    """Network, mask, shrinkage, concentrations: the arrays of one tile."""
    x_ext, lr, pads = loaded
    res, spread = _predict_block(x_ext, pads, model, job.digest, halo=job.halo,
                                 size_multiple=job.size_multiple, tta=job.tta,
                                 device=_device(job.device), batch_size=job.batch_size)
    with np.errstate(over="ignore", invalid="ignore"):
        hr, applied = _apply_residual(lr, res, _shrink(model))
    data = {schema.HR_PRED: hr, schema.RESIDUAL_PRED: applied}
    if spread is not None:
        data[schema.HR_PRED_STD] = spread
    return data


def _store_tile(job: _Job, i: int, j: int, data: dict[str, np.ndarray]) -> tuple[int, int]:
    """Write one tile into its chunk-aligned region of the template, then record it.

    Written with zarr's array assignment into the arrays the template laid out (what
    ``to_zarr(region=...)`` does, without re-opening and checking the whole store per
    tile: about 1 s per tile here against 0.1 s).
    """
    import zarr

    (ys, ye), (xs, xe) = job.y_bounds[i], job.x_bounds[j]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{LEDGER_DIR}")
        group = zarr.open_group(job.out_path, mode="r+", zarr_format=2)
        for name, values in data.items():
            group[name][:, ys:ye, xs:xe] = values
    _mark_done(Path(job.out_path), i, j)
    return i, j


def _run_tile(job: _Job, model: GeoSRModel, i: int, j: int, scheduler: str = "sync") -> tuple:
    """Compute one tile from the input store, write it into its region, record it."""
    return _store_tile(job, i, j, _compute_tile(job, model,
                                                _load_tile(job, model, i, j, scheduler)))


def _fingerprint(ds: xr.Dataset, in_path: Path) -> str:
    """Identity of an input store: grid, variables, CRS and the content of every file
    (:func:`geochem_sr.io.store_fingerprint`), so that a store rewritten with other values
    at the same path is not resumed."""
    import geochem_sr.io as gio

    h = hashlib.sha256()
    desc = {
        "sizes": {str(k): int(v) for k, v in ds.sizes.items()},
        "vars": {str(k): [str(v.dtype), list(map(str, v.dims))] for k, v in ds.data_vars.items()},
        "crs": ds.rio.crs.to_wkt() if ds.rio.crs is not None else None,
    }
    h.update(json.dumps(desc, sort_keys=True).encode())
    for c in (schema.X, schema.Y):
        h.update(np.ascontiguousarray(ds[c].values, dtype=np.float64).tobytes())
    h.update(gio.store_fingerprint(in_path).encode())
    return h.hexdigest()


def _store_attrs(out: Path) -> dict | None:
    f = out / ".zattrs"
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except ValueError:
        return None


def _template(pred: xr.Dataset, tile: int, identity: dict) -> xr.Dataset:
    """A store layout with empty (lazy) data, GIS attributes, provenance and the marker."""
    import dask.array as dsa

    import geochem_sr.io as gio

    n_el = pred.sizes[schema.ELEMENT]
    chunks = (n_el, min(tile, pred.sizes[schema.Y]), min(tile, pred.sizes[schema.X]))
    tmpl = pred.copy()
    for name, var in pred.data_vars.items():
        tmpl[name] = var.copy(data=dsa.empty(var.shape, chunks=chunks, dtype=np.float32))
    tmpl.attrs.update({f"{_ATTR_PREFIX}{k}": v for k, v in identity.items()})
    tmpl.attrs[schema.ATTR_INCOMPLETE] = (
        "prediction tiles are still being written by geochem_sr.inference.predict_to_zarr"
    )
    tmpl = gio.prepare_for_zarr(tmpl)
    for name in tmpl.data_vars:
        tmpl[name].encoding["chunks"] = chunks
    return tmpl


def _identity_mismatch(attrs: dict, identity: dict) -> list[str]:
    bad = []
    for k in _IDENTITY_KEYS:
        have = attrs.get(f"{_ATTR_PREFIX}{k}")
        if have != identity[k]:
            bad.append(f"{k}: store has {have!r}, this run {identity[k]!r}")
    return bad


def _start_or_resume(out: Path, pred: xr.Dataset, tile: int, identity: dict,
                     overwrite: bool) -> bool:
    """Create the template, or check that ``out`` is ours to resume. True when complete."""
    if out.exists() and not overwrite:
        attrs = _store_attrs(out)
        if attrs is None or f"{_ATTR_PREFIX}model_digest" not in attrs:
            raise InputFileError(
                f"output store '{out}': exists and is not a geochem_sr prediction store; "
                "choose another path or pass overwrite=True (on the command line --overwrite)"
            )
        bad = _identity_mismatch(attrs, identity)
        if bad:
            err = ModelMismatchError if any(b.startswith("model") for b in bad) else GeoSRError
            raise err(
                f"output store '{out}': was started by another run ({'; '.join(bad)}); "
                "resuming it would mix two predictions. Delete it, choose another path, or "
                "pass overwrite=True (on the command line --overwrite)"
            )
        if not attrs.get(schema.ATTR_INCOMPLETE):
            shutil.rmtree(_ledger(out), ignore_errors=True)
            return True
        return False
    from geochem_sr.io import write_store_atomically

    template = _template(pred, tile, identity)
    write_store_atomically(out, lambda tmp: template.to_zarr(
        tmp, mode="w", compute=False, zarr_format=2, consolidated=True), manifest=False)
    return False


def _finish(out: Path) -> None:
    """Drop the incomplete marker (attributes and consolidated metadata), then the ledger;
    write the manifest of the finished store."""
    import zarr

    import geochem_sr.io as gio

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{LEDGER_DIR}")
        group = zarr.open_group(str(out), mode="r+", zarr_format=2)
        if schema.ATTR_INCOMPLETE in group.attrs:
            del group.attrs[schema.ATTR_INCOMPLETE]
        zarr.consolidate_metadata(str(out), zarr_format=2)
    shutil.rmtree(_ledger(out), ignore_errors=True)
    gio.write_manifest(out)


def _run_local(job: _Job, model: GeoSRModel, todo: list[tuple[int, int]], n_total: int,
               progress: bool) -> None:
    """Tiles in order; the next tile is read and the previous one written in background
    threads while the network runs on the current one (at most 2 tiles in memory each)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    if not todo:
        return
    with tqdm(total=n_total, initial=n_total - len(todo), unit="tile", disable=not progress,
              desc="super-resolve") as bar, \
            ThreadPoolExecutor(1, thread_name_prefix="geosr-read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="geosr-write") as writer:
        pending = reader.submit(_load_tile, job, model, *todo[0], "sync")
        written = None
        for k, (i, j) in enumerate(todo):
            loaded = pending.result()
            if k + 1 < len(todo):
                pending = reader.submit(_load_tile, job, model, *todo[k + 1], "sync")
            data = _compute_tile(job, model, loaded)
            del loaded
            if written is not None:
                written.result()  # errors surface here; tiles are recorded in order
                bar.update(1)
            written = writer.submit(_store_tile, job, i, j, data)
            del data
        written.result()
        bar.update(1)


def _run_distributed(job: _Job, model: GeoSRModel, todo: list[tuple[int, int]],
                     scheduler: Any, workers: int | None, progress: bool) -> None:
    from distributed import Client, LocalCluster, as_completed
    from distributed import progress as dask_progress

    cluster = None
    own_client = True
    if isinstance(scheduler, Client):
        client, own_client = scheduler, False
    elif scheduler is not None:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True)
        client = Client(cluster)
    try:
        if progress:
            print(f"geochem_sr: {len(todo)} tiles on {client}; dashboard: "
                  f"{client.dashboard_link}", flush=True)
        model_future = client.scatter(model, broadcast=True, hash=False)
        run = uuid.uuid4().hex[:8]
        futures = [
            client.submit(_run_tile, job, model_future, i, j, "sync", pure=False,
                          key=f"geosr-tile-{job.digest[:8]}-{run}-{i}-{j}")
            for i, j in todo
        ]
        if progress and futures:
            dask_progress(futures)
        for fut in as_completed(futures):
            fut.result()
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()


def predict_to_zarr(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    model: GeoSRModel | str | os.PathLike,
    *,
    tile: int = 512,
    halo: int | None = None,
    scheduler: Any = None,
    workers: int | None = None,
    uncertainty: bool = True,
    progress: bool = True,
    overwrite: bool = False,
    device: str | None = None,
    batch_size: int | None = None,
    reembed: bool = False,
) -> Path:
    """Super-resolve a survey Zarr store into a prediction Zarr store, tile by tile.

    The output is laid out first (a template: coordinates, CRS, GIS attributes, provenance
    and the :data:`geochem_sr.schema.ATTR_INCOMPLETE` marker, so that
    :func:`geochem_sr.open_survey` refuses it while it is being written). Then every tile
    is computed from its window of the input, written into its own chunk-aligned region
    (``to_zarr(region=...)``) and recorded by a marker file in ``<out>/.geochem_sr_tiles``
    written after its data. A run that is killed resumes when the same command is run
    again: only the tiles without a marker are computed, and the final store is identical
    to the one an uninterrupted run writes. When every tile is there, the marker attribute
    is removed and the ledger deleted.

    Parameters
    ----------
    in_path : path
        Input survey store (:func:`geochem_sr.write_survey`).
    out_path : path
        Output store (Zarr format 2, which GDAL reads; chunks ``tile`` along y/x).
    model : GeoSRModel or path
        The model or its file.
    tile, halo, uncertainty, device, batch_size, reembed
        As in :func:`super_resolve`.
    scheduler : str or distributed.Client, optional
        A ``dask.distributed`` scheduler address or client: tiles run as futures on its
        workers, each writing its own region (the output path must be on a filesystem the
        workers share). The model is scattered to every worker once.
    workers : int, optional
        Start a ``LocalCluster(n_workers=workers, threads_per_worker=1)`` for this run.
    progress : bool, default True
        A tqdm bar for local runs; the dashboard link and ``distributed.progress`` for
        cluster runs.
    overwrite : bool, default False
        Replace an existing store at ``out_path`` instead of resuming it.

    Returns
    -------
    pathlib.Path
        The finished store.

    Raises
    ------
    ModelMismatchError
        The model does not fit the input, or ``out_path`` was started by another model.
    GeoSRError
        ``out_path`` was started from another input or with other tiling, or is not a
        prediction store.
    """
    import geochem_sr.io as gio

    if scheduler is not None and workers is not None:
        raise SchemaError("scheduler, workers: expected at most one of them, found both")
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise SchemaError(f"workers: expected a positive number of workers, found {workers!r}")
    if not isinstance(model, GeoSRModel):
        model = GeoSRModel.load(model)
    src, out = Path(in_path).resolve(), Path(out_path)
    ds = gio.open_survey(src)
    pred = super_resolve(ds, model, tile=tile, halo=halo, uncertainty=uncertainty,
                         device=device, batch_size=batch_size, reembed=reembed,
                         applicability=False)
    tile_, halo_ = (int(pred.attrs[f"{_ATTR_PREFIX}{k}"]) for k in ("tile", "halo"))
    digest = pred.attrs[f"{_ATTR_PREFIX}model_digest"]
    identity = {
        "model_digest": digest,
        "input": str(src),
        "input_fingerprint": _fingerprint(ds, src),
        "tile": tile_,
        "halo": halo_,
        "uncertainty": bool(uncertainty),
    }
    if _start_or_resume(out, pred, tile_, identity, overwrite):
        if progress:
            print(f"geochem_sr: '{out}' is already complete", flush=True)
        return out
    ych = pred.chunks[schema.Y]
    xch = pred.chunks[schema.X]
    job = _Job(
        in_path=str(src), out_path=str(out.resolve()), digest=digest, halo=halo_,
        size_multiple=_geometry(model).size_multiple, tta=bool(uncertainty), device=device,
        batch_size=batch_size, reembed=reembed,
        y_bounds=tuple(_bounds(ych)), x_bounds=tuple(_bounds(xch)),
    )
    done = _done_tiles(out)
    todo = [t for t in job.tiles() if t not in done]
    if scheduler is None and workers is None:
        _run_local(job, model, todo, len(job.tiles()), progress)
    else:
        _run_distributed(job, model, todo, scheduler, workers, progress)
    missing = [t for t in job.tiles() if t not in _done_tiles(out)]
    if missing:  # pragma: no cover - every path above raises first
        raise GeoSRError(f"output store '{out}': tiles {missing[:5]} were not written")
    if "reference" in (model.aoa or {}):
        _write_applicability(ds, model, out, reembed)
    _finish(out)
    return out


def _write_applicability(ds: xr.Dataset, model: GeoSRModel, out: Path, reembed: bool) -> None:
    """Add ``dissimilarity`` and ``aoa`` to a finished store (one lazy pass, chunk by chunk).

    Runs before the incomplete marker is removed; a rerun after a crash here writes the
    two variables again (``mode="a"`` replaces them).
    """
    import geochem_sr.io as gio
    from geochem_sr.trust import applicability as _applicability

    app = _applicability(_prepare_inputs(ds, model, reembed), model)
    app = app.drop_vars([c for c in app.coords if c not in (schema.X, schema.Y)])
    app = gio.gis_attrs(app.rio.write_crs(ds.rio.crs)).drop_vars(
        [c for c in (schema.SPATIAL_REF,) if c in app.coords])
    for var in app.data_vars.values():
        var.encoding.pop("grid_mapping", None)
        var.attrs["grid_mapping"] = schema.SPATIAL_REF
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{LEDGER_DIR}")
        app.to_zarr(out, mode="a", zarr_format=2, consolidated=False)
