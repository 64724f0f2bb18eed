"""What training reads from prepared patches, and scoring predictions of the validation windows.

:class:`TrainingParts` unpacks a :class:`~geochem_sr.sampling.TrainingData`;
:func:`report_on_windows` scores predictions of its validation windows on the validation
cells, for single networks and ensembles alike.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from geochem_sr import schema
from geochem_sr.errors import DataError
from geochem_sr.sampling import windows_bbox

__all__ = ["TrainingParts", "report_on_windows", "target_rms", "augmentation", "centre"]


class TrainingParts:
    """What training needs from a :class:`~geochem_sr.sampling.TrainingData`.

    Parameters
    ----------
    data : TrainingData
        Prepared patches (:func:`geochem_sr.sampling.prepare_training_data`).
    stride : int
        Step between patches, in cells (recorded with the model).

    Raises
    ------
    DataError
        No training or no validation patches.
    """

    def __init__(self, data: Any, stride: int) -> None:
        self.data = data
        self.inputs: str = str(data.inputs_set)
        self.channels: list[str] = [str(c) for c in data.channels]
        self.elements: list[str] = [str(e) for e in data.elements]
        self.stats: dict[str, tuple[float, float]] = {
            str(k): (float(v[0]), float(v[1])) for k, v in data.stats.items()
        }
        self.train = data.train
        self.val = data.val
        self.patch_size = int(data.patch_size)
        self.stride = int(stride)
        self.margin = int(getattr(data.train, "margin", 0))
        if len(self.train) == 0:
            raise DataError(
                "training patches: expected at least one patch in the training blocks, found "
                "none (is 'hr' present over enough of the area?)"
            )
        if len(self.val) == 0:
            raise DataError(
                "validation patches: expected at least one patch in the validation blocks, "
                "found none; use smaller blocks (splitter) or a larger area"
            )

    def split_summary(self) -> dict[str, Any]:
        """The split's record (:meth:`geochem_sr.sampling.TrainingData.split_summary`)."""
        return self.data.split_summary()


def centre(out: Any, margin: int) -> Any:
    """The centre of a network output ``(N, E, H, W)``: ``margin`` cells cut on every side."""
    if not margin:
        return out
    return out[..., margin:out.shape[-2] - margin, margin:out.shape[-1] - margin]


@contextlib.contextmanager
def augmentation(dataset: Any, on: bool) -> Iterator[None]:
    """Switch a patch dataset's augmentation on or off, and back to what it was after.

    A dataset without an ``augment`` attribute is left alone.
    """
    was = getattr(dataset, "augment", None)
    if was is not None:
        dataset.augment = bool(on)
    try:
        yield
    finally:
        if was is not None:
            dataset.augment = was


def target_rms(parts: TrainingParts) -> list[float]:
    """Root mean square of each element's residual over the training patches' known cells.

    Cells count as often as patches contain them, as in the training loss; 1.0 for an
    element without a known cell (or a residual that is zero everywhere).
    """
    n = len(parts.elements)
    sq, cells = np.zeros(n), np.zeros(n)
    with augmentation(parts.train, False):
        for i in range(len(parts.train)):
            _, y, mask = parts.train[i]
            y64 = np.where(mask.numpy(), y.numpy().astype(np.float64), 0.0)
            sq += (y64**2).sum(axis=(1, 2))
            cells += mask.numpy().sum(axis=(1, 2))
    rms = np.sqrt(sq / np.maximum(cells, 1))
    return [float(r) if c > 0 and r > 1e-6 else 1.0 for r, c in zip(rms, cells, strict=True)]


def report_on_windows(parts: TrainingParts, predictions: Iterable[np.ndarray]
                      ) -> tuple[dict[str, dict[str, float]], tuple[float, float]]:
    """Score predictions of the validation windows (in window order) on the validation cells.

    Overlapping predictions are averaged, as tiled inference blends them, and each cell with
    a known target counts once.

    Returns
    -------
    tuple
        The per-element report (``rmse_lr``, ``rmse_pred``, ``gain``, ``cells``) and the
        mean squared errors over all those cells of the prediction and of predicting no
        change.
    """
    data = parts.data
    windows = list(data.val_windows)
    r0, r1, c0, c1 = windows_bbox(windows)
    acc = np.zeros((len(parts.elements), r1 - r0, c1 - c0))
    hits = np.zeros((r1 - r0, c1 - c0), np.int32)
    for (rows, cols), p in zip(windows, predictions, strict=True):
        rs, cs = slice(rows.start - r0, rows.stop - r0), slice(cols.start - c0, cols.stop - c0)
        acc[:, rs, cs] += p
        hits[rs, cs] += 1
    oy, ox = data.offset
    box = {schema.Y: slice(r0 - oy, r1 - oy), schema.X: slice(c0 - ox, c1 - ox)}
    target = np.asarray(data.target.isel(box).values, dtype=np.float64)
    per_element: dict[str, dict[str, float]] = {}
    sq = sq0 = 0.0
    count = 0
    for k, el in enumerate(parts.elements):
        cells = (hits > 0) & np.isfinite(target[k])
        n = int(cells.sum())
        t, p = target[k][cells], acc[k][cells] / hits[cells]
        sq, sq0, count = sq + float(((p - t) ** 2).sum()), sq0 + float((t**2).sum()), count + n
        rmse_lr = float(np.sqrt(np.mean(t**2))) if n else math.nan
        rmse_pred = float(np.sqrt(np.mean((p - t) ** 2))) if n else math.nan
        per_element[el] = {"rmse_lr": rmse_lr, "rmse_pred": rmse_pred,
                           "gain": 1.0 - rmse_pred / rmse_lr if n and rmse_lr > 0 else math.nan,
                           "cells": n}
    return per_element, (sq / max(count, 1), sq0 / max(count, 1))


def survey_metadata(ds: Any, inputs: str, elements: list[str]
                    ) -> tuple[str | None, dict[str, str]]:
    """What a model file keeps of the survey it was trained on: the geology vocabulary (as
    JSON, when the input set uses geology) and each element's unit."""
    import json

    from geochem_sr.jsonable import to_jsonable

    vocab = ds.attrs.get(schema.ATTR_GEOLOGY_VOCAB) \
        if "geology" in schema.parse_input_set(inputs) else None
    if vocab is not None and not isinstance(vocab, str):
        vocab = json.dumps(vocab, default=to_jsonable)
    units = schema.units_of(ds)
    return vocab, {el: str(units.get(el, "")) for el in elements}

