"""Typed records a model file carries besides the network: prediction settings, training record.

:class:`PredictionSettings` change predictions (part of a model's digest); :class:`TrainingRecord`
is the run record of :func:`geochem_sr.training.train`. Files of format 2 kept both in one
untyped ``extra`` dict: :func:`split_extra` and :func:`merge_extra` translate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CONTEXTS",
    "DEFAULT_CONTEXT",
    "DEFAULT_SPREAD",
    "SPREADS",
    "PredictionSettings",
    "TrainingRecord",
    "split_extra",
    "merge_extra",
]

#: How inference applies a network: ``"patch"`` predicts every window as patch-size
#: sub-windows on a fixed lattice, as in training; ``"tile"`` predicts whole windows.
CONTEXTS: tuple[str, ...] = ("patch", "tile")
#: The context of a model whose :attr:`PredictionSettings.context` is None.
DEFAULT_CONTEXT = "patch"
#: Where the spread behind ``hr_pred_std`` comes from: ``"members"``, the standard
#: deviation of an ensemble's members (free: their mean is the prediction);
#: ``"orientations"``, that of the network over the 8 rotations/mirrors of the map (8
#: forwards per cell).
SPREADS: tuple[str, ...] = ("members", "orientations")
#: The spread of a model whose :attr:`PredictionSettings.spread` is None (files written
#: before the setting existed were calibrated on it).
DEFAULT_SPREAD = "orientations"


@dataclasses.dataclass(frozen=True)
class PredictionSettings:
    """Settings stored with a model that change its predictions (part of its digest).

    Attributes
    ----------
    context : {"patch", "tile"} or None
        How inference applies the network (:data:`CONTEXTS`); None: :data:`DEFAULT_CONTEXT`.
    std_floor : dict of str -> float, optional
        Per element, the least predictive standard deviation (log10), written by
        calibration (:func:`geochem_sr.trust.calibrate`); None when not calibrated.
    border : int, optional
        Cells of reflection around a region before it is predicted (tile context only);
        None: the halo. :func:`geochem_sr.training.train` writes its ``margin``.
    spread : {"members", "orientations"} or None
        Where the spread behind ``hr_pred_std`` comes from (:data:`SPREADS`); None:
        :data:`DEFAULT_SPREAD`. ``"members"`` needs an ensemble. Calibration scales the
        spread it finds here, so change it before calibrating, not after.
    """

    context: str | None = None
    std_floor: dict[str, float] | None = None
    spread: str | None = None
    border: int | None = None


@dataclasses.dataclass(frozen=True)
class TrainingRecord:
    """How a model was trained: the run record of :func:`geochem_sr.training.train`.

    Not part of the model's digest. Every field is None when unknown (a model not made by
    ``train``).

    Attributes
    ----------
    seed : int, optional
        Seed of the initial weights, the patch order and the augmentation.
    epochs_run : int, optional
        Epochs trained.
    stopped_early : bool, optional
        Whether training stopped for lack of patience.
    split : dict, optional
        The spatial split: cells and patches per role, block size, gap, seed, fractions.
    stride : int, optional
        Step between training patches, in cells.
    margin : int, optional
        Cells of input context around every training patch (0: none).
    loss : str, optional
        Training loss name.
    batch_size : int, optional
        Patches per optimisation step.
    device : str, optional
        Where the network was trained.
    target_scale_folded : dict of str -> float, optional
        Per element, the target scale folded into the output layer (1.0: none).
    ensemble : list of dict, optional
        For an ensemble, one record per member (seed, epochs run, best epoch, gains).
    """

    seed: int | None = None
    epochs_run: int | None = None
    stopped_early: bool | None = None
    split: dict[str, Any] | None = None
    stride: int | None = None
    margin: int | None = None
    loss: str | None = None
    batch_size: int | None = None
    device: str | None = None
    target_scale_folded: dict[str, float] | None = None
    ensemble: list[dict[str, Any]] | None = None


def _names(record: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(record))


def split_extra(extra: Mapping[str, Any] | None
                ) -> tuple[PredictionSettings, TrainingRecord, dict[str, Any]]:
    """Sort an ``extra`` dict of format 2 into the records and the remaining notes.

    Parameters
    ----------
    extra : mapping or None
        Keys ``context``, ``std_floor``, ``spread`` and ``border`` go to
        :class:`PredictionSettings`,
        the fields of :class:`TrainingRecord` to it; any other key is a note. A key absent
        from ``extra`` leaves its field None.

    Returns
    -------
    tuple
        ``(prediction, training, notes)``.
    """
    rest = dict(extra or {})
    prediction = PredictionSettings(**{k: rest.pop(k) for k in _names(PredictionSettings)
                                       if k in rest})
    training = TrainingRecord(**{k: rest.pop(k) for k in _names(TrainingRecord) if k in rest})
    return prediction, training, rest


def merge_extra(prediction: PredictionSettings, training: TrainingRecord,
                notes: Mapping[str, Any]) -> dict[str, Any]:
    """The ``extra`` dict of format 2: the notes and every field that is not None.

    The inverse of :func:`split_extra`.
    """
    out = dict(notes)
    for record in (training, prediction):
        out.update({k: v for k, v in dataclasses.asdict(record).items() if v is not None})
    return out
