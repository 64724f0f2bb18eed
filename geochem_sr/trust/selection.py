"""Per element, the best of several methods, chosen on held-out blocks: ``train("auto")``.

:func:`select` trains each candidate (a network, the per-cell trees or ridge regression,
or a model already trained) on the same block split, calibrates each on the validation
blocks, and keeps for every element the candidate whose calibrated correction gains most
there — or the sparse map itself when none gains (so do-no-harm still holds). The
candidates that won an element are stored together as one
:class:`~geochem_sr.models.selection.Selection` model, calibrated once more as a whole;
its test-block scores are those of the map it returns, measured on blocks no candidate
was trained, calibrated or chosen on.

Examples
--------
>>> model = select(ds, ["multilevel_unet", "trees"], epochs=100, ensemble=3)  # doctest: +SKIP
>>> print(model.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr.errors import ModelMismatchError, ParameterError
from geochem_sr.models import CELL_MODELS, GeoSRModel, available_methods
from geochem_sr.trust.calibrate import calibrate

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
        if not same or (m.training.split or {}) != (first.training.split or {}):
            raise ModelMismatchError(
                f"candidates: {name!r} was not trained on the same channels, elements, "
                f"normalisation and block split as {out[0][0]!r}; train every candidate "
                "on the same survey with the same seed, patch size and splitter")
    return out


def _quiet_calibrate(ds: xr.Dataset, model: GeoSRModel, progress: bool, roles: Any
                     ) -> GeoSRModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return calibrate(ds, model, progress=progress, roles=roles)


def _compare(calibrated: list[tuple[str, GeoSRModel]], elements: Sequence[str]
             ) -> dict[str, dict[str, Any]]:
    """Per element: every candidate's validation gain (and its jackknife error), its test
    gain, and the winner (largest calibrated validation gain above 0, else the sparse map)."""
    table: dict[str, dict[str, Any]] = {}
    for el in elements:
        rows: dict[str, dict[str, float]] = {}
        for name, m in calibrated:
            r = m.validation["per_element"].get(el, {})
            rows[name] = {k: float(r.get(k2, math.nan)) for k, k2 in (
                ("gain_val", "gain_val"), ("gain_val_se", "gain_val_se"),
                ("gain_val_lcb", "gain_val_lcb"), ("shrinkage", "shrinkage"),
                ("gain_test", "gain"), ("gain_test_se", "gain_se"))}
        kept = {n: r["gain_val"] for n, r in rows.items() if r["shrinkage"] > 0}
        best = max(kept, key=lambda n: kept[n]) if kept else SPARSE_MAP
        table[el] = {"method": best, "candidates": rows}
    return table


def _composite(calibrated: list[tuple[str, GeoSRModel]], table: dict[str, dict[str, Any]]
               ) -> GeoSRModel:
    """One uncalibrated Selection model of the winners."""
    first = calibrated[0][1]
    models = dict(calibrated)
    chosen = [n for n, _ in calibrated if any(t["method"] == n for t in table.values())]
    contexts = {models[n].prediction.context or "patch" for n in chosen}
    if len(contexts) > 1:
        raise ModelMismatchError(
            "candidates: the winners predict in different contexts (patch and tile); train "
            "the networks with a margin (the default) so that all predict whole tiles")
    cands = []
    for n in chosen:
        cfg = {k: v for k, v in models[n].network_config.items()
               if k not in ("in_channels", "out_channels")}
        cands.append({"name": models[n].network_name, "config": cfg})
    choice = [chosen.index(table[el]["method"]) if table[el]["method"] in chosen else -1
              for el in first.elements]
    config = {"in_channels": len(first.channels), "out_channels": len(first.elements),
              "candidates": cands, "choice": choice}
    state = {f"members.{i}.{k}": v for i, n in enumerate(chosen)
             for k, v in models[n].state_dict.items()}
    borders = [models[n].prediction.border for n in chosen]
    spread = "members" if chosen and all(models[n].prediction.spread == "members"
                                         for n in chosen) else None
    prediction = dataclasses.replace(
        first.prediction, context=contexts.pop() if contexts else "tile", std_floor=None,
        border=max((b for b in borders if b is not None), default=None), spread=spread)
    training = dataclasses.replace(first.training, ensemble=None, margin=None)
    return GeoSRModel(
        network_name="selection", network_config=config, state_dict=state,
        inputs=first.inputs, channels=list(first.channels), elements=list(first.elements),
        units=dict(first.units), norm_stats=dict(first.norm_stats),
        geology_vocabulary=first.geology_vocabulary, patch_size=first.patch_size,
        training=training, prediction=prediction,
        notes={"selection": copy.deepcopy(table)})


def select(ds: xr.Dataset, candidates: Sequence[str | GeoSRModel] = DEFAULT_CANDIDATES,
           inputs: str = "auto", *, roles: Any = None, progress: bool = False,
           **overrides: Any) -> GeoSRModel:
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
    **overrides
        Settings of :class:`~geochem_sr.training.TrainConfig` for every candidate trained
        here (``seed``, ``ensemble``, ``epochs``...); ``network_kwargs`` and
        ``activation`` go to the networks only.

    Returns
    -------
    GeoSRModel
        A calibrated ``"selection"`` model (:class:`~geochem_sr.models.selection.Selection`)
        of the candidates that won an element. ``model.notes["selection"][el]`` holds
        ``method`` (the winner, or ``"sparse map"``) and, per candidate, ``gain_val``
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
    calibrated = [(n, _quiet_calibrate(ds, m, progress, roles)) for n, m in fitted]
    table = _compare(calibrated, calibrated[0][1].elements)
    model = _quiet_calibrate(ds, _composite(calibrated, table), progress, roles)
    for el, row in table.items():  # the composite's own verdict where it differs
        cal = model.validation["per_element"].get(el, {})
        if row["method"] != SPARSE_MAP and not cal.get("shrinkage", 0) > 0:
            row["method"] = SPARSE_MAP
            row["note"] = "kept by its candidate, refused when calibrated as part of the whole"
        model.validation["per_element"].setdefault(el, {})["method"] = row["method"]
    model.notes["selection"] = table
    sparse = [el for el, row in table.items() if row["method"] == SPARSE_MAP]
    if sparse:
        warnings.warn(f"select: {', '.join(sparse)} returned as the sparse map: no candidate "
                      "improved on it on the validation blocks", UserWarning, stacklevel=2)
    return model
