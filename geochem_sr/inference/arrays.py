"""A region held in memory predicted tile by tile, without seams: :func:`predict_array`."""

from __future__ import annotations

import numpy as np

from geochem_sr.errors import ParameterError
from geochem_sr.inference.calibration import calibrate_spread
from geochem_sr.inference.geometry import (
    bounds,
    chunk_sizes,
    region_border,
    resolve_tiling,
    tile_edges,
    window_context,
)
from geochem_sr.inference.network import NetworkRun, device_of
from geochem_sr.inference.windows import Mosaic, axis_weights, end_pad, predict_windows
from geochem_sr.models import GeoSRModel

__all__ = ["predict_array"]


def predict_array(
    model: GeoSRModel,
    inputs: np.ndarray,
    *,
    tile: int | None = None,
    halo: int | None = None,
    blend: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    tta: bool = False,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predict the residual of a region held in memory, tile by tile, without seams.

    Parameters
    ----------
    model : GeoSRModel
        The trained model.
    inputs : numpy.ndarray
        ``(C, H, W)`` normalised input channels in ``model.channels`` order
        (:func:`geochem_sr.features.stack_inputs` with ``model.norm_stats``), NaN where an
        input is missing. Any size: regions smaller than one tile, or not a multiple of
        anything, are predicted whole.
    tile : int, optional
        Core size of the windows the network is run on (rounded up to a multiple of the
        network's ``size_multiple``, and to at least ``halo``); default
        :func:`~geochem_sr.inference.geometry.default_tile`.
    halo : int, optional
        Context cells around each core; default :func:`~geochem_sr.inference.default_halo` (exact).
    blend : int, optional
        Half-width of the cross-fade zone at each seam (``docs/notes/inference.md``); default
        ``halo - reach`` (exact), or ``halo // 2`` when ``halo`` is below the reach.
    batch_size : int, optional
        Windows per forward; default as many as fit in ``MAX_BATCH_CELLS`` cells.
    device : str, optional
        Torch device; default CUDA when available, else CPU.
    tta : bool, default False
        Also return the spread behind ``hr_pred_std``, from where the model says
        (``model.prediction.spread``): the standard deviation (ddof 0) of an ensemble's
        members (at no extra cost), or of the network over the 8 rotations/mirrors of every
        window (the aspect vector turned with the map; their mean is then the residual).
    progress : bool, default False
        Show a progress bar over the windows.

    Returns
    -------
    residual : numpy.ndarray
        ``(E, H, W)`` float32, ``log10(hr) - log10(lr)`` as the network predicts it (no
        shrinkage applied), NaN where any input channel is NaN.
    std : numpy.ndarray or None
        With ``tta``: ``(E, H, W)`` float32, the spread of the members' or of the
        orientations' predictions. For elements with a ``model.std_scale`` (calibrated on
        held-out blocks by :mod:`geochem_sr.trust`) it is ``std_scale * max(spread,
        std_floor)``, a predictive standard deviation; for the others the raw spread, not a
        full predictive uncertainty. ``None`` without ``tta``.

    Raises
    ------
    ParameterError
        ``inputs`` is not ``(C, H, W)`` with the model's channel count, or a tiling
        argument is invalid.

    Notes
    -----
    With the default ``halo`` the result equals one whole-region prediction (``tile`` at
    least the region size) to float tolerance everywhere, including the outer border
    (both pad the region by reflection, :func:`~geochem_sr.inference.geometry.region_border`
    cells, ``docs/notes/inference.md``).
    """
    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] != len(model.channels):
        raise ParameterError(
            f"inputs: expected an array (channel, y, x) with {len(model.channels)} channels "
            f"({model.channels}), found shape {x.shape}"
        )
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise ParameterError(f"inputs: expected a non-empty region, found shape {x.shape}")
    geom, tile, halo, blend = resolve_tiling(model, tile, halo, blend)
    b = region_border(model, halo)
    run = NetworkRun(model, model.digest, device_of(device), tta, batch_size)
    _, ny, nx = x.shape
    mask = np.isnan(x).any(axis=0)
    xp = np.pad(x, ((0, 0), (b, b), (b, b)), mode="reflect")
    xp = np.where(np.isnan(xp), np.float32(0), xp).astype(np.float32)
    yb = bounds(chunk_sizes(ny, tile, halo))
    xb = bounds(chunk_sizes(nx, tile, halo))
    wy, wx = axis_weights(yb, blend), axis_weights(xb, blend)
    windows, where = [], []
    for i, ((ys, ye), (y0, y1, ay)) in enumerate(zip(yb, wy, strict=True)):
        for j, ((xs, xe), (x0, x1, ax)) in enumerate(zip(xb, wx, strict=True)):
            top, bottom, left, right = window_context(
                tile_edges(i, j, len(yb), len(xb)), halo, b)
            # window = cells [s - context, e + context) of the region; xp starts at -b
            windows.append(end_pad(xp[:, ys - top + b:ye + bottom + b,
                                      xs - left + b:xe + right + b], geom.size_multiple))
            where.append((ys - top, xs - left, y0, y1, x0, x1, np.outer(ay, ax)))
    mosaic = Mosaic(len(model.elements), (ny, nx), tta)
    from tqdm.auto import tqdm

    for i, res, spread in tqdm(predict_windows(run, windows), total=len(windows),
                               disable=not progress, desc="predicting", unit="tile"):
        wy0, wx0, y0, y1, x0, x1, w = where[i]
        # region cell r lies at r - wy0 in window i (wy0: its first cell)
        loc = (slice(None), slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0))
        mosaic.add(slice(y0, y1), slice(x0, x1), w, res[loc],
                   None if spread is None else spread[loc])
    residual, std = mosaic.result()
    residual[:, mask] = np.nan
    if std is not None:
        std = calibrate_spread(std, model)
        std[:, mask] = np.nan
    return residual, std
