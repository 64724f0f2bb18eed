"""Windows of a region predicted by the network and blended back together: patch-context
sub-windows, the extended block of one tile (the Dask and Zarr path), and the weights of
the cross-fades at tile seams.

Why the windows are cut this way is explained in ``docs/notes/inference.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from geochem_sr.inference.calibration import calibrate_spread
from geochem_sr.inference.geometry import patch_context, round_up, window_context
from geochem_sr.inference.heap import kept_heap
from geochem_sr.inference.network import NetworkRun, predict_whole

if TYPE_CHECKING:  # pragma: no cover
    from geochem_sr.models import GeoSRModel

__all__ = [
    "Block",
    "Mosaic",
    "axis_weights",
    "end_pad",
    "finish_block",
    "predict_block",
    "predict_windows",
    "prepare_block",
]


class Mosaic:
    """Overlapping window predictions blended into one array: weighted sums, normalised by
    the summed weights (float64 accumulators).

    Parameters
    ----------
    n_elements : int
        Output channels.
    shape : (int, int)
        Cells along y and x.
    spread : bool
        Also blend a spread (test-time augmentation) alongside the residual.
    """

    def __init__(self, n_elements: int, shape: tuple[int, int], spread: bool) -> None:
        self.acc = np.zeros((n_elements, *shape), dtype=np.float64)
        self.acc_sd = np.zeros_like(self.acc) if spread else None
        self.wsum = np.zeros(shape, dtype=np.float64)

    def add(self, rows: slice, cols: slice, weight: np.ndarray, residual: np.ndarray,
            spread: np.ndarray | None) -> None:
        """Add one window's ``(E, h, w)`` prediction with its ``(h, w)`` weights."""
        self.acc[:, rows, cols] += weight * residual
        if self.acc_sd is not None and spread is not None:
            self.acc_sd[:, rows, cols] += weight * spread
        self.wsum[rows, cols] += weight

    def result(self, rows: slice = slice(None), cols: slice = slice(None)
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """The blended ``(residual, spread)`` over ``rows``, ``cols``, float32."""
        w = self.wsum[rows, cols]
        res = (self.acc[:, rows, cols] / w).astype(np.float32)
        if self.acc_sd is None:
            return res, None
        return res, (self.acc_sd[:, rows, cols] / w).astype(np.float32)


def _lattice_size(n: int, p: int, step: int) -> int:
    """Smallest ``p + k * step >= n``: the window is zero-padded at its end to this size,
    so every sub-window starts on the lattice (never a shifted last one)."""
    return p + round_up(max(n - p, 0), step)


def _sub_weights(p: int) -> np.ndarray:
    """``sin**2`` weights over a ``p``-cell sub-window: small next to its edges."""
    u = (np.arange(p) + 0.5) / p
    return np.sin(np.pi * u) ** 2


def predict_windows(
    run: NetworkRun, windows: Sequence[np.ndarray]
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Predict zero-filled windows ``(C, h, w)`` in the model's context; yield
    ``(index, residual, spread)``.

    In patch context each window is predicted as ``patch_size`` sub-windows every
    ``patch_size // 2`` cells on a lattice fixed to the window's origin, blended with a
    separable ``sin**2`` weight; in tile context it is predicted whole. Freed activations stay
    in the heap while the windows are predicted (:func:`~geochem_sr.inference.heap.kept_heap`):
    each window, and each member of an ensemble, reuses the last one's pages.
    """
    with kept_heap():
        ctx = patch_context(run.model)
        if ctx is None:
            yield from predict_whole(run, windows)
            return
        p, step = ctx
        weight = np.outer(_sub_weights(p), _sub_weights(p))
        for i, w in enumerate(windows):
            h, wd = w.shape[-2:]
            hp, wp = _lattice_size(h, p, step), _lattice_size(wd, p, step)
            w = np.pad(w, ((0, 0), (0, hp - h), (0, wp - wd)))
            pos = [(a, b) for a in range(0, hp - p + 1, step)
                   for b in range(0, wp - p + 1, step)]
            subs = [w[:, a:a + p, b:b + p] for a, b in pos]
            mosaic = Mosaic(len(run.model.elements), (hp, wp), run.tta)
            for j, res, spread in predict_whole(run, subs):
                a, b = pos[j]
                mosaic.add(slice(a, a + p), slice(b, b + p), weight, res, spread)
            yield (i, *mosaic.result(slice(0, h), slice(0, wd)))


def end_pad(x: np.ndarray, m: int) -> np.ndarray:
    """Zero-pad the bottom and right of ``(C, h, w)`` to multiples of ``m``."""
    h, w = x.shape[-2:]
    ph, pw = round_up(h, m) - h, round_up(w, m) - w
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)))
    return x


@dataclasses.dataclass
class Block:
    """One tile's extended block made ready for the network (:func:`prepare_block`).

    ``x``: the zero-filled, reflected and end-padded window ``(C, h, w)``; ``mask``: the
    cells where an input channel is missing; ``rows`` and ``cols``: where the tile's core
    lies in ``x``.
    """

    x: np.ndarray
    mask: np.ndarray
    rows: slice
    cols: slice


def prepare_block(
    x_ext: np.ndarray,
    edges: tuple[bool, bool, bool, bool],
    *,
    halo: int,
    border: int,
    size_multiple: int,
) -> Block:
    """The network's input window of one tile, from its extended block.

    ``x_ext`` holds the core plus ``halo`` real cells on every side that is not a region
    edge; ``edges`` (top, bottom, left, right) says which sides are region edges: those
    are reflected by ``border`` cells here, exactly as
    :func:`~geochem_sr.inference.predict_array` pads the whole region. Missing inputs are
    zero-filled (and masked); the window is zero-padded at its end to ``size_multiple``.
    """
    top, bottom, left, right = window_context(edges, 0, border)  # reflected here
    ctx = window_context(edges, halo, border)
    xp = np.asarray(x_ext, dtype=np.float32)
    if any((top, bottom, left, right)):
        xp = np.pad(xp, ((0, 0), (top, bottom), (left, right)), mode="reflect")
    nan = np.isnan(xp)
    mask = nan.any(axis=0)
    if mask.any():
        xp = np.where(nan, np.float32(0), xp)
    del nan
    ch = xp.shape[1] - ctx[0] - ctx[1]
    cw = xp.shape[2] - ctx[2] - ctx[3]
    rows, cols = slice(ctx[0], ctx[0] + ch), slice(ctx[2], ctx[2] + cw)
    return Block(end_pad(xp, size_multiple), mask[rows, cols], rows, cols)


def finish_block(block: Block, res: np.ndarray, spread: np.ndarray | None,
                 model: GeoSRModel) -> tuple[np.ndarray, np.ndarray | None]:
    """The core of the network's window prediction: residual (NaN where an input is
    missing) and calibrated spread."""
    res = res[:, block.rows, block.cols].copy()
    res[:, block.mask] = np.nan
    if spread is not None:
        spread = calibrate_spread(spread[:, block.rows, block.cols], model)
        spread[:, block.mask] = np.nan
    return res, spread


def predict_block(
    x_ext: np.ndarray,
    edges: tuple[bool, bool, bool, bool],
    run: NetworkRun,
    *,
    halo: int,
    border: int,
    size_multiple: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predict the core of one tile from its extended block (the Dask and Zarr path):
    :func:`prepare_block`, the network, :func:`finish_block`. The spread comes back
    calibrated."""
    block = prepare_block(x_ext, edges, halo=halo, border=border,
                          size_multiple=size_multiple)
    (_, res, spread), = predict_windows(run, [block.x])
    return finish_block(block, res, spread, run.model)


def _ramp(n: int, rising: bool) -> np.ndarray:
    """Raised-cosine weights over ``n`` cells (cell centres); rising + falling == 1."""
    u = (np.arange(n) + 0.5) / n
    return np.sin(0.5 * np.pi * u) ** 2 if rising else np.cos(0.5 * np.pi * u) ** 2


def axis_weights(
    bounds: Sequence[tuple[int, int]], blend: int
) -> list[tuple[int, int, np.ndarray]]:
    """Per window: (first, stop, weights) of the cells it contributes to along one axis.

    Adjacent windows cross-fade over ``2 * blend`` cells centred on each seam (raised
    cosine; the weights of the two sum to 1).
    """
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
