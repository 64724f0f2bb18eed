"""Per element, the best of several methods, chosen on held-out evidence: ``train("auto")``.

:func:`select` trains each candidate (a network, the per-cell trees or ridge regression,
or a model already trained) on the same block split and predicts its held-out cells
once. The options are every candidate alone and the equal-weight mean of every two or
more of them; each is calibrated with the do-no-harm rule of
:func:`~geochem_sr.trust.calibrate` on held-out evidence
(:mod:`geochem_sr.trust.evidence`): out-of-fold predictions of every training and
validation cell for an option made of per-cell regressors, the validation blocks for an
option that includes a network. Every element keeps the option whose calibrated
correction gains most there, or the sparse map itself when none gains, so do-no-harm
still holds. The rule's lower bound is not tightened for the number of options (a
Bonferroni level of 0.05 / 7 was measured: it removed 2.7 points of mean test gain on
the synthetic region and 14 on one Meuse seed, and the two harmful Meuse verdicts were
the same at both levels; ``docs/notes/trust.md``). The candidates that take part are
stored together as one :class:`~geochem_sr.models.selection.Selection` model, calibrated
per element on the evidence its winners share; its test-block scores are those of the
map it returns, measured on blocks no candidate was trained, calibrated or chosen on.

Examples
--------
>>> model = select(ds, ["multilevel_unet", "trees"], epochs=100, ensemble=3)  # doctest: +SKIP
>>> print(model.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import ModelMismatchError, ParameterError
from geochem_sr.features import target_residual
from geochem_sr.models import CELL_MODELS, GeoSRModel, available_methods
from geochem_sr.sampling import ROLE_TEST, ROLE_VAL
from geochem_sr.trust.aoa import AOA_SAMPLE
from geochem_sr.trust.calibrate import finish_calibration, fit_calibration, held_out_setup
from geochem_sr.trust.evidence import evidence_held, fitted_on, frame_held, uses_cross_fit
from geochem_sr.trust.predictions import Held
from geochem_sr.trust.shrinkage import (
    LCB_ALPHA,
    MIN_GAIN,
    STD_FLOOR_FRACTION,
    element_calibration,
)

__all__ = ["select", "DEFAULT_CANDIDATES", "SPARSE_MAP", "method_label"]

#: What ``select`` compares by default: the paper's network, the trees and the ridge.
DEFAULT_CANDIDATES: tuple[str, ...] = ("multilevel_unet", "trees", "ridge")
#: The name of the candidate that is always there: the sparse map, unchanged.
SPARSE_MAP = "sparse map"
#: Settings that only the networks use (the per-cell regressors are given none of them).
_NETWORK_ONLY = ("network_kwargs", "activation")


def method_label(model: GeoSRModel) -> str:
    """What a model is, in a few words: ``"trees"``, ``"multilevel_unet x3"``."""
    if model.network_name == "ensemble":
        cfg = model.network_config
        return f"{cfg.get('member')} x{cfg.get('n')}"
    return model.network_name


def _train_candidates(ds: xr.Dataset, candidates: Sequence[Any], inputs: str,
                      overrides: dict[str, Any]) -> list[tuple[str, GeoSRModel]]:
    from geochem_sr.training import train

    out: list[tuple[str, GeoSRModel]] = []
    for c in candidates:
        if isinstance(c, GeoSRModel):
            model = c
        elif isinstance(c, str) and c in available_methods():
            kw = dict(overrides)
            if c in CELL_MODELS:
                for k in _NETWORK_ONLY:
                    kw.pop(k, None)
            model = train(ds, c, inputs, **kw)
        else:
            raise ParameterError(
                f"candidates: expected names among {', '.join(available_methods())} or "
                f"trained models, found {c!r}")
        label = method_label(model)
        taken = {name for name, _ in out}
        name, i = label, 2
        while name in taken:
            name, i = f"{label} ({i})", i + 1
        out.append((name, model))
    if not out:
        raise ParameterError("candidates: expected at least one method to compare")
    first = out[0][1]
    for name, m in out[1:]:
        same = (m.channels == first.channels and m.elements == first.elements and all(
            np.allclose(m.norm_stats[c], first.norm_stats[c]) for c in first.channels))
        if not same or _split_of(m) != _split_of(first):
            raise ModelMismatchError(
                f"candidates: {name!r} was not trained on the same channels, elements, "
                f"normalisation and block split as {out[0][0]!r}; train every candidate "
                "on the same survey with the same seed, patch size and splitter")
    return out


def _split_of(model: GeoSRModel) -> dict[str, Any]:
    """The model's block split as recorded, less what is derived from it (the blocks per
    role, not recorded by models trained before it was): what candidates must share."""
    return {k: v for k, v in (model.training.split or {}).items() if k != "blocks"}


def _held_outs(ds: xr.Dataset, fitted: list[tuple[str, GeoSRModel]], roles: Any,
               progress: bool, folds: int | None) -> tuple[list[Held], xr.Dataset, Any]:
    """Each candidate's evidence and test predictions on one common box of the grid
    (:func:`~geochem_sr.trust.evidence.evidence_held`: out of fold for the per-cell
    regressors, the validation blocks for the networks); the prepared dataset and roles."""
    ds, roles_da, note, codes, groups, unit_m = held_out_setup(ds, fitted[0][1], None, roles,
                                                               "choose")
    raw = [evidence_held(ds, m, roles_da, codes, groups, unit_m,
                         folds=uses_cross_fit(m, folds), tile=256, device=None,
                         progress=progress) for _, m in fitted]
    box = (min(h.box[0] for h in raw), max(h.box[1] for h in raw),
           min(h.box[2] for h in raw), max(h.box[3] for h in raw))
    framed = [frame_held(h, box, groups) for h in raw]
    sub = ds.isel({schema.Y: slice(box[0], box[1]), schema.X: slice(box[2], box[3])})
    target = np.asarray(target_residual(sub, fitted[0][1].elements).values, np.float32)
    common = _common_roles(framed)
    out = [dataclasses.replace(h, roles=common, target=target) for h in framed]
    return out, ds, (roles_da, note, max(h.cross_fitted for h in raw))


def _common_roles(held: list[Held]) -> np.ndarray:
    """Role 3 where every candidate has test cells, else role 2 where any has evidence."""
    test = np.all([h.roles == ROLE_TEST for h in held], axis=0)
    evidence = np.any([h.roles == ROLE_VAL for h in held], axis=0)
    return np.where(test, ROLE_TEST, np.where(evidence, ROLE_VAL, 0)).astype(np.int8)


def _mixture(held: list[Held], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per element ``(E, K)`` weights: the weighted mean of the candidates' residuals and
    the mixture's spread (NaN where a candidate with weight has no prediction)."""
    shape = held[0].residual.shape
    mean, second = np.zeros(shape), np.zeros(shape)
    for k, h in enumerate(held):
        w = weights[:, k][:, None, None]
        used = w > 0
        r = h.residual.astype(np.float64)
        sd = h.spread.astype(np.float64)
        mean += np.where(used, w * r, 0.0)
        second += np.where(used, w * (sd * sd + r * r), 0.0)
    spread = np.sqrt(np.maximum(second - mean * mean, 0.0))
    return mean, spread


def _options(names: Sequence[str]) -> list[tuple[str, tuple[float, ...]]]:
    """Every candidate alone, and the equal-weight mean of every subset of two or more."""
    k = len(names)
    out = []
    for size in range(1, k + 1):
        for subset in itertools.combinations(range(k), size):
            w = tuple(1.0 / size if i in subset else 0.0 for i in range(k))
            label = names[subset[0]] if size == 1 else "mean of " + " + ".join(
                names[i] for i in subset)
            out.append((label, w))
    return out


def _option_rows(held: list[Held], weights: tuple[float, ...], std_floor: float,
                 min_gain: float, alpha: float) -> dict[str, dict[str, float]]:
    """Calibration figures of the weighted mean of the candidates, per element."""
    h0 = held[0]
    mean, spread = _mixture(held, np.tile(np.asarray(weights), (len(h0.elements), 1)))
    out = {}
    for k, el in enumerate(h0.elements):
        r = element_calibration(mean[k], spread[k], h0.target[k], h0.roles, h0.groups,
                                std_floor, min_gain, h0.unit_m, alpha)
        out[el] = {"gain_val": float(r["gain_val"]), "gain_val_se": float(r["gain_val_se"]),
                   "gain_val_lcb": float(r["gain_val_lcb"]),
                   "shrinkage": float(r["shrinkage"]), "gain_test": float(r["gain"]),
                   "gain_test_se": float(r["gain_se"]), "cells_val": int(r["cells_val"])}
    return out


def _compare(names: Sequence[str], held: list[Held], std_floor: float, min_gain: float
             ) -> dict[str, dict[str, Any]]:
    """Per element: every option's validation gain (and its jackknife error), its test
    gain, and the winner (largest calibrated validation gain above 0, else the sparse
    map) with its weights."""
    options = _options(names)
    figures = {label: _option_rows(held, w, std_floor, min_gain, LCB_ALPHA)
               for label, w in options}
    weights = dict(options)
    table: dict[str, dict[str, Any]] = {}
    for el in held[0].elements:
        rows = {label: figures[label][el] for label, _ in options}
        kept = {n: r["gain_val"] for n, r in rows.items() if r["shrinkage"] > 0}
        best = max(kept, key=lambda n: kept[n]) if kept else SPARSE_MAP
        table[el] = {"method": best, "candidates": rows,
                     "weights": list(weights.get(best, (0.0,) * len(names)))}
    return table


def _composite(fitted: list[tuple[str, GeoSRModel]], table: dict[str, dict[str, Any]]
               ) -> GeoSRModel:
    """One uncalibrated Selection model of the candidates that take part."""
    first = fitted[0][1]
    used = [k for k in range(len(fitted)) if any(t["weights"][k] > 0 for t in table.values())]
    models = [fitted[k][1] for k in used]
    contexts = {m.prediction.context or "patch" for m in models}
    if len(contexts) > 1:
        raise ModelMismatchError(
            "candidates: the winners predict in different contexts (patch and tile); train "
            "the networks with a margin (the default) so that all predict whole tiles")
    cands = [{"name": m.network_name, "config": {k: v for k, v in m.network_config.items()
                                                 if k not in ("in_channels", "out_channels")}}
             for m in models]
    weights = [[float(table[el]["weights"][k]) for k in used] for el in first.elements]
    config = {"in_channels": len(first.channels), "out_channels": len(first.elements),
              "candidates": cands, "weights": weights}
    state = {f"members.{i}.{k}": v for i, m in enumerate(models)
             for k, v in m.state_dict.items()}
    borders = [m.prediction.border for m in models if m.prediction.border is not None]
    spread = "members" if models and all(m.prediction.spread == "members"
                                         for m in models) else None
    prediction = dataclasses.replace(
        first.prediction, context=contexts.pop() if contexts else "tile", std_floor=None,
        border=max(borders, default=None), spread=spread)
    training = dataclasses.replace(first.training, ensemble=None, margin=None)
    return GeoSRModel(
        network_name="selection", network_config=config, state_dict=state,
        inputs=first.inputs, channels=list(first.channels), elements=list(first.elements),
        units=dict(first.units), norm_stats=dict(first.norm_stats),
        geology_vocabulary=first.geology_vocabulary, patch_size=first.patch_size,
        training=training, prediction=prediction,
        notes={"selection": copy.deepcopy(table)})


def _calibrated(composite: GeoSRModel, fitted: list[tuple[str, GeoSRModel]],
                held: list[Held], table: dict[str, dict[str, Any]], crossed: int
                ) -> GeoSRModel:
    """The composite calibrated on the mixture of its candidates' held-out predictions,
    each element on the evidence its winners share (what :func:`_compare` scored)."""
    weights = np.array([table[el]["weights"] for el in composite.elements], np.float64)
    mean, spread = _mixture(held, weights)
    mix = dataclasses.replace(held[0], residual=mean.astype(np.float32),
                              spread=spread.astype(np.float32), cross_fitted=crossed)
    text = fitted_on(mix)
    if crossed:
        text += ("; the validation blocks (role 2) alone for an element whose winners "
                 "include a network")
    where = {el: "out-of-fold" if all(h.cross_fitted for h, w in zip(held, weights[e],
                                                                     strict=True) if w > 0)
             and weights[e].any() else "validation"
             for e, el in enumerate(composite.elements)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fit_calibration(composite, mix, STD_FLOOR_FRACTION, MIN_GAIN, "", text, where)


def select(ds: xr.Dataset, candidates: Sequence[str | GeoSRModel] = DEFAULT_CANDIDATES,
           inputs: str = "auto", *, roles: Any = None, progress: bool = False,
           folds: int | None = None, **overrides: Any) -> GeoSRModel:
    """Train the candidates, keep per element the one that gains most on validation blocks.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset with ``lr``, ``hr`` and the variables of ``inputs``.
    candidates : sequence of str or GeoSRModel, default ("multilevel_unet", "trees", "ridge")
        Method names (:func:`geochem_sr.models.available_methods`) to train, or models
        already trained on ``ds`` with the same split. The sparse map is always a
        candidate.
    inputs : str, default "auto"
        Input set of the candidates trained here.
    roles : xarray.DataArray or numpy.ndarray, optional
        Block roles to calibrate and choose on (:func:`~geochem_sr.trust.calibrate`);
        default: those the candidates were trained with.
    progress : bool, default False
        Show progress of the held-out predictions.
    folds : int, optional
        The per-cell regressors are judged on out-of-fold predictions of every training
        and validation cell, from ``folds`` refits (default 5; :mod:`geochem_sr.trust.evidence`;
        0 is refused for regressors fitted on their validation blocks too, as ``train``
        fits them whenever it can cross-fit). An option that includes a
        network is judged on the validation blocks, where every member has predictions.
    **overrides
        Settings of :class:`~geochem_sr.training.TrainConfig` for every candidate trained
        here (``seed``, ``ensemble``, ``epochs``...); ``network_kwargs`` and
        ``activation`` go to the networks only.

    Returns
    -------
    GeoSRModel
        A calibrated ``"selection"`` model (:class:`~geochem_sr.models.selection.Selection`)
        of the candidates that take part. ``model.notes["selection"][el]`` holds
        ``method`` (the winner: a candidate, ``"mean of a + b"`` or ``"sparse map"``), its
        ``weights`` over the candidates and, per option, ``gain_val``
        (calibrated gain on the validation blocks, what the choice is made on),
        ``gain_val_se`` (its delete-one-block jackknife error), ``gain_val_lcb``,
        ``shrinkage``, ``gain_test`` and ``gain_test_se`` (on the test blocks, for the
        record: not used to choose). ``model.validation`` is the calibration of the
        selection itself.

    Raises
    ------
    ParameterError
        An unknown candidate, or none.
    ModelMismatchError
        Candidates trained on different channels, normalisation or block split.

    Warns
    -----
    UserWarning
        Naming the elements returned as the sparse map (no candidate gained on them).

    Notes
    -----
    The winner's validation gain is the best of several and so an optimistic estimate;
    the test-block scores of the returned model are not: no candidate saw those blocks.
    """
    fitted = _train_candidates(ds, candidates, inputs, overrides)
    held, prepared, (roles_da, note, crossed) = _held_outs(ds, fitted, roles, progress, folds)
    table = _compare([n for n, _ in fitted], held, STD_FLOOR_FRACTION, MIN_GAIN)
    model = _calibrated(_composite(fitted, table), fitted, held, table, crossed)
    model = finish_calibration(model, prepared, model, roles_da, None, AOA_SAMPLE)
    model.validation["calibration"]["roles"] = note
    for el, row in table.items():  # the composite's own verdict where it differs
        cal = model.validation["per_element"].get(el, {})
        if row["method"] != SPARSE_MAP and not cal.get("shrinkage", 0) > 0:
            row["method"] = SPARSE_MAP
            row["note"] = "kept on its own, refused when calibrated as part of the whole"
        model.validation["per_element"].setdefault(el, {})["method"] = row["method"]
    model.notes["selection"] = table
    sparse = [el for el, row in table.items() if row["method"] == SPARSE_MAP]
    if sparse:
        warnings.warn(f"select: {', '.join(sparse)} returned as the sparse map: no candidate "
                      "improved on it on the validation blocks", UserWarning, stacklevel=2)
    return model
