"""How a region is cut into tiles: the network's size multiple and reach, the inference
context (patch-size sub-windows or whole windows), tile and halo sizes, tile bounds.

The rules are explained in ``docs/notes/inference.md`` ("How a region is cut into tiles").
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Sequence

import numpy as np

from geochem_sr.errors import ParameterError, SchemaError
from geochem_sr.models import (
    CONTEXTS,
    DEFAULT_CONTEXT,
    GeoSRModel,
    network_geometry,
    network_tile_reach,
)

__all__ = [
    "Geometry",
    "geometry",
    "round_up",
    "patch_context",
    "alignment",
    "default_halo",
    "default_tile",
    "region_border",
    "tile_edges",
    "window_context",
    "resolve_tiling",
    "chunk_sizes",
    "bounds",
    "tile_bounds",
]

@dataclasses.dataclass(frozen=True)
class Geometry:
    """What tiling needs to know about a network."""

    size_multiple: int
    receptive_field: int
    #: How far (cells) a tile on the size-multiple lattice sees on each side: the
    #: network's ``tile_reach`` (at most half the receptive field).
    reach: int


_GEOMETRY: dict[str, Geometry] = {}


def round_up(n: int, m: int) -> int:
    """``n`` rounded up to a multiple of ``m``."""
    return -(-int(n) // int(m)) * int(m)


def geometry(model: GeoSRModel) -> Geometry:
    """Size multiple and receptive field of the model's network (built once, no weights)."""
    key = json.dumps([model.network_name, model.network_config], sort_keys=True, default=str)
    geom = _GEOMETRY.get(key)
    if geom is None:
        geom = Geometry(*network_geometry(model.network_name, model.network_config),
                        network_tile_reach(model.network_name, model.network_config))
        _GEOMETRY[key] = geom
    return geom


def patch_context(model: GeoSRModel) -> tuple[int, int] | None:
    """(patch size, stride) of patch-context prediction, or None to predict whole windows."""
    context = model.prediction.context or DEFAULT_CONTEXT
    if context not in CONTEXTS:
        raise SchemaError(f"model.prediction.context: expected one of {CONTEXTS}, found "
                          f"{context!r}")
    p = int(model.patch_size or 0)
    m = geometry(model).size_multiple
    if context == "tile" or p < 2 or p % m != 0 or (p // 2) % m != 0:
        return None
    return p, p // 2


def alignment(model: GeoSRModel) -> tuple[int, int]:
    """(multiple that tiles and halos are rounded to, reach of a tile on that lattice:
    the sub-window in patch context, else the network's ``tile_reach``)."""
    g = geometry(model)
    ctx = patch_context(model)
    if ctx is None:
        return g.size_multiple, g.reach
    p, step = ctx  # a cell's value depends on the sub-windows covering it: p cells away
    return math.lcm(g.size_multiple, step), p


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
        ``model.prediction.context = "tile"`` the network's reach from a tile on its
        size-multiple lattice (``tile_reach``) rounded up to that multiple (64 for the
        multi-level U-Net, whose receptive field of 157 cells would give 80).
    """
    m, reach = alignment(model)
    return round_up(reach, m)


def region_border(model: GeoSRModel, halo: int) -> int:
    """Cells of reflection around the region in the whole-region prediction.

    ``model.prediction.border`` (rounded up to the network's size multiple) when the model
    sets one — a model trained with a margin of input context sets its margin: its
    training showed it that many cells of (reflected, at the grid's edge) context and then
    the network's own zero padding, which is what the region's border then gets too; else
    ``halo``. A smaller border costs less at the region's edge (a 512-cell region with the
    multi-level U-Net's 64-cell halo is run as 640 cells, with a 16-cell border as 544).
    """
    border = model.prediction.border
    if border is None or patch_context(model) is not None:
        return int(halo)
    return round_up(int(border), geometry(model).size_multiple)


def tile_edges(i: int, j: int, ny: int, nx: int) -> tuple[bool, bool, bool, bool]:
    """Which sides (top, bottom, left, right) of tile ``(i, j)`` of ``ny x nx`` tiles are
    the region's edge."""
    return i == 0, i == ny - 1, j == 0, j == nx - 1


def window_context(edges: tuple[bool, bool, bool, bool], halo: int, border: int
                   ) -> tuple[int, int, int, int]:
    """Cells a tile's window reaches past its core on each side (top, bottom, left,
    right): the reflected ``border`` at the region's edge, real ``halo`` cells inside."""
    top, bottom, left, right = (border if e else halo for e in edges)
    return top, bottom, left, right


#: Tile sides tried by :func:`default_tile`, largest first.
TILE_CHOICES: tuple[int, ...] = (2048, 1024, 512)
#: Most values of one full-resolution activation of a window (``window cells x width``):
#: 2**25 float32 values are 128 MiB, and a U-Net holds about ten such at once (an ensemble
#: of three base-16 U-Nets on 2048-cell tiles peaked at 6.3 GB; on 1024-cell tiles at
#: about 2.5 GB).
WINDOW_BUDGET = 2**25


def network_width(model: GeoSRModel) -> int:
    """Channels of the network's full-resolution layers (``base_channels``, ``features``;
    an ensemble's members'), 64 when the configuration does not say."""
    cfg = dict(model.network_config)
    cfg.update(cfg.get("member_config") or {})
    for key in ("base_channels", "features"):
        if isinstance(cfg.get(key), int):
            return int(cfg[key])
    return 64


def default_tile(model: GeoSRModel) -> int:
    """The tile side inference uses by default.

    In patch context (sub-windows batched by ``MAX_BATCH_CELLS``) 512 cells. In tile
    context each tile is one forward of about ``(tile + 2 halo)**2`` cells, and the halo is
    computed twice by neighbouring tiles: the largest of :data:`TILE_CHOICES` whose window
    times :func:`network_width` stays within :data:`WINDOW_BUDGET` (1024 for the
    multi-level U-Net of base width 16, whose 64-cell halo then adds 27 % to an interior
    tile; 512 for the paper's width 64). Memory grows with the tile: pass a larger ``tile``
    on a large machine (fewer halo cells), a smaller one on a small machine.
    """
    if patch_context(model) is not None:
        return 512
    halo, width = default_halo(model), network_width(model)
    for tile in TILE_CHOICES:
        if (tile + 2 * halo) ** 2 * width <= WINDOW_BUDGET:
            return tile
    return TILE_CHOICES[-1]


def resolve_tiling(
    model: GeoSRModel, tile: int | None, halo: int | None, blend: int | None
) -> tuple[Geometry, int, int, int]:
    """Check and align tile (None: :func:`default_tile`), halo, blend; warn when the halo
    is below the reach."""
    g = geometry(model)
    m, reach = alignment(model)
    if tile is None:
        tile = default_tile(model)
    if isinstance(tile, bool) or not isinstance(tile, int | np.integer) or tile < 1:
        raise ParameterError(f"tile: expected a positive number of cells, found {tile!r}")
    if halo is None:
        halo = default_halo(model)
    if isinstance(halo, bool) or not isinstance(halo, int | np.integer) or halo < 0:
        raise ParameterError(f"halo: expected a number of cells >= 0, found {halo!r}")
    halo = round_up(halo, m)
    tile = max(round_up(tile, m), halo, m)
    if halo < reach:
        warnings.warn(
            f"halo: {halo} cells is below the network's reach ({reach} cells: the patch "
            "size in patch context, else how far a tile on the network's lattice sees: "
            f"tile_reach, at most half the receptive field {g.receptive_field}); "
            "tiles see less context than a whole-region "
            "prediction, so values near tile seams are approximations (blended in "
            "predict_array, cut at chunk seams in super_resolve/predict_to_zarr)",
            UserWarning,
            stacklevel=3,
        )
    if blend is None:
        blend = halo - reach if halo >= reach else halo // 2
    if isinstance(blend, bool) or not isinstance(blend, int | np.integer) or blend < 0:
        raise ParameterError(f"blend: expected a number of cells >= 0, found {blend!r}")
    blend = min(int(blend), halo, tile // 2)
    return g, int(tile), int(halo), int(blend)


def chunk_sizes(n: int, tile: int, halo: int) -> tuple[int, ...]:
    """Core sizes along one axis: ``tile`` each, the remainder last (merged if < halo)."""
    sizes = [tile] * (n // tile)
    rest = n - tile * len(sizes)
    if rest:
        if sizes and rest < max(halo, 1):
            sizes[-1] += rest
        else:
            sizes.append(rest)
    return tuple(sizes) or (n,)


def bounds(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive intervals of the given sizes, from 0."""
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def tile_bounds(
    shape: tuple[int, int], model: GeoSRModel, tile: int | None = None,
    halo: int | None = None
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The tile cores a region of ``shape`` (ny, nx) is cut into.

    Parameters
    ----------
    shape : (int, int)
        Cells along y and x.
    model : GeoSRModel
    tile, halo : int
        As in :func:`~geochem_sr.inference.super_resolve` (aligned the same way).

    Returns
    -------
    (list of (start, stop), list of (start, stop))
        Core intervals along y and along x; every tile is one pair of them. They are also
        the Dask chunks of :func:`~geochem_sr.inference.super_resolve` and the units of
        work of :func:`~geochem_sr.inference.predict_to_zarr`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _, tile, halo, _ = resolve_tiling(model, tile, halo, None)
    return (bounds(chunk_sizes(int(shape[0]), tile, halo)),
            bounds(chunk_sizes(int(shape[1]), tile, halo)))
