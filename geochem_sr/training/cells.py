"""Per-cell regressors fitted on the training blocks: LightGBM trees and ridge regression.

:func:`fit_cells` is what :func:`geochem_sr.training.train` runs for ``network="trees"``
or ``"ridge"``. It uses the same block split, normalisation, leakage gap and validation
blocks as the networks: the features (:class:`~geochem_sr.models.cell_features.MultiScale`)
are computed once on the blocks' bounding box widened by their reach (reflected beyond
the grid, as prediction reflects a region), the training cells fit the model, the
validation cells stop the boosting; the ridge penalty is chosen by a spatial
cross-validation within the training blocks (on a small real survey, choosing it on the
validation blocks that calibration then scores let an overfit ridge through). When the
calibration can be cross-fitted (:mod:`geochem_sr.training.cross_fit`), both are then
fitted on the training and validation cells: the ridge at once, the trees again for the
rounds early stopping chose.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from geochem_sr import schema
from geochem_sr.errors import DataError
from geochem_sr.jsonable import to_jsonable
from geochem_sr.models import GeoSRModel, PredictionSettings, TrainingRecord, get_model
from geochem_sr.sampling import ROLE_TRAIN, ROLE_VAL
from geochem_sr.training.data import survey_metadata
from geochem_sr.training.ensembles import ensemble_payload

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from geochem_sr.sampling import TrainingData
    from geochem_sr.training.config import TrainConfig

__all__ = ["fit_cells", "fit_members", "cell_rows", "squares_of", "CellTable",
           "TREE_PARAMS", "RIDGE_PENALTIES", "MAX_TREE_ROUNDS"]

#: LightGBM settings of every booster: shallow trees, large leaves (neighbouring cells are
#: strongly correlated, so a leaf of a few cells is a leaf of one place), row and feature
#: subsampling (which also makes an ensemble's members differ).
TREE_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.7,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    "max_bin": 63,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
#: Most boosting rounds; the validation cells stop it after 100 rounds without progress.
MAX_TREE_ROUNDS = 2000
#: Ridge penalties tried (per training cell, on standardised features), chosen per element
#: by spatial cross-validation over the training blocks (:data:`RIDGE_FOLDS` folds).
RIDGE_PENALTIES: tuple[float, ...] = tuple(float(v) for v in np.logspace(-4, 2, 13))
#: Folds of whole squares of the training blocks that choose the ridge penalty.
RIDGE_FOLDS = 5
#: Side (cells) of the squares resampled to make an ensemble's ridge members differ.
BOOTSTRAP_SQUARE = 32


@dataclasses.dataclass
class CellTable:
    """Features and targets of the training and validation cells.

    Attributes
    ----------
    train, val : numpy.ndarray
        ``(n, F)`` float64 features of the cells of each role with every input known.
    target_train, target_val : numpy.ndarray
        ``(n, E)`` float64 residual targets (NaN where the dense map is unknown).
    square_train : numpy.ndarray
        ``(n,)`` id of the :data:`BOOTSTRAP_SQUARE`-cell square of each training cell.
    reach : int
        Cells of input context a feature reads.
    """

    train: np.ndarray
    val: np.ndarray
    target_train: np.ndarray
    target_val: np.ndarray
    square_train: np.ndarray
    reach: int


def cell_rows(ds: xr.Dataset, channels: list[str], stats: dict[str, Any],
              elements: list[str], kind: str, scales: Any, masks: list[np.ndarray],
              frame: np.ndarray | None = None
              ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], tuple[int, int],
                         int]:
    """Features and residual targets of the cells of each ``(y, x)`` mask.

    The features are computed once on the bounding box of ``frame`` (default: of the
    masks) widened by the features' reach (reflected beyond the grid, as prediction
    reflects a region). A mask keeps the cells with every input known and a dense value
    for at least one element.

    Returns
    -------
    features, targets, kept : lists of numpy.ndarray
        Per mask: ``(n, F)`` float64 features, ``(n, E)`` float64 targets (NaN where the
        dense map is unknown), and the ``(y, x)`` mask of the ``n`` cells, in row-major
        order, on the crop.
    origin : tuple of int
        Grid row and column of the crop's first cell.
    reach : int
        Cells of input context a feature reads.
    """
    from geochem_sr.features import normalise, stack_inputs, target_residual

    net = get_model(kind, len(channels), len(elements), **_scales_kw(scales))
    reach = net.features.reach
    anym = np.logical_or.reduce(masks) if frame is None else frame
    rows, cols = np.flatnonzero(anym.any(1)), np.flatnonzero(anym.any(0))
    ny, nx = anym.shape
    r0, r1 = max(0, rows[0] - reach), min(ny, rows[-1] + 1 + reach)
    c0, c1 = max(0, cols[0] - reach), min(nx, cols[-1] + 1 + reach)
    src = ds.isel({schema.Y: slice(r0, r1), schema.X: slice(c0, c1)})
    x = np.asarray(normalise(stack_inputs(src, channels), stats).values, np.float64)
    t = np.asarray(target_residual(src, elements).values, np.float64)
    known = np.isfinite(x).all(0) & np.isfinite(t).any(0)
    xp = np.pad(x, ((0, 0), (reach, reach), (reach, reach)), mode="reflect") \
        if min(x.shape[1:]) > reach else np.pad(x, ((0, 0), (reach, reach), (reach, reach)))
    kept = [m[r0:r1, c0:c1] & known for m in masks]
    parts: list[list[np.ndarray]] = [[] for _ in masks]
    for _, a, b, f in net.features.strips(xp[None]):  # rows of the reflected crop
        lo, hi = max(a, reach), min(b, reach + x.shape[1])
        if lo >= hi:
            continue
        block = f[lo - a:hi - a, reach:reach + x.shape[2]]
        for part, m in zip(parts, kept, strict=True):
            part.append(block[m[lo - reach:hi - reach]])
    feats = [np.concatenate(p) if p else np.zeros((0, net.features.n_features))
             for p in parts]
    return feats, [t[:, m].T.copy() for m in kept], kept, (r0, c0), reach


def cell_table(ds: xr.Dataset, data: TrainingData, kind: str, scales: Any,
               fit_val: bool = False) -> CellTable:
    """Features of the training and validation cells of prepared data (module docstring);
    ``fit_val``: the validation cells are fitted on too (``train`` holds both)."""
    role = np.asarray(data.roles.values)
    fit = (role == ROLE_TRAIN) | (role == ROLE_VAL) if fit_val else role == ROLE_TRAIN
    feats, targets, kept, _, reach = cell_rows(
        ds, list(data.channels), data.stats, list(data.elements), kind, scales,
        [fit, role == ROLE_VAL], frame=role > 0)
    for f, name in ((feats[0], "training"), (feats[1], "validation")):
        if f.shape[0] == 0:
            raise DataError(f"{name} cells: expected cells with every input and a dense value "
                            f"in the {name} blocks, found none")
    return CellTable(feats[0], feats[1], targets[0], targets[1], squares_of(kept[0]), reach)


def squares_of(mask: np.ndarray) -> np.ndarray:
    """Id of the :data:`BOOTSTRAP_SQUARE`-cell square of each cell of ``mask`` (row-major)."""
    yy, xx = np.nonzero(mask)
    return (yy // BOOTSTRAP_SQUARE) * (mask.shape[1] // BOOTSTRAP_SQUARE + 1) \
        + xx // BOOTSTRAP_SQUARE


def _scales_kw(scales: Any) -> dict[str, Any]:
    return {} if scales is None else {"scales": list(scales)}


def _fit_trees(table: CellTable, seed: int, threads: int,
               rounds: list[int] | None = None) -> tuple[list[str | None], dict]:
    """One booster per element, stopped early on the validation cells, or run for the
    given ``rounds`` per element (then no validation cell is read)."""
    import lightgbm

    texts: list[str | None] = []
    info: dict[str, Any] = {}
    params = {**TREE_PARAMS, "seed": int(seed), "num_threads": int(threads)}
    for e in range(table.target_train.shape[1]):
        tr = np.isfinite(table.target_train[:, e])
        va = np.isfinite(table.target_val[:, e]) if rounds is None else None
        fixed = None if rounds is None else int(rounds[e])
        if tr.sum() < 2 * TREE_PARAMS["min_data_in_leaf"] or fixed == 0 \
                or (va is not None and not va.any()):
            texts.append(None)
            info[e] = {"rounds": 0}
            continue
        dtrain = lightgbm.Dataset(table.train[tr], table.target_train[tr, e],
                                  params={"max_bin": TREE_PARAMS["max_bin"],
                                          "verbosity": -1}, free_raw_data=True)
        if fixed is not None:
            booster = lightgbm.train(params, dtrain, num_boost_round=fixed)
            texts.append(booster.model_to_string())
            info[e] = {"rounds": fixed}
            continue
        dval = lightgbm.Dataset(table.val[va], table.target_val[va, e], reference=dtrain)
        booster = lightgbm.train(params, dtrain, num_boost_round=MAX_TREE_ROUNDS,
                                 valid_sets=[dval],
                                 callbacks=[lightgbm.early_stopping(100, verbose=False)])
        best = int(booster.best_iteration or booster.current_iteration())
        texts.append(booster.model_to_string(num_iteration=best))
        info[e] = {"rounds": best}
    return texts, info


def _ridge_penalties(z: np.ndarray, y: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Per column of ``y``, the penalty of :data:`RIDGE_PENALTIES` with the least error in
    a spatial cross-validation over the cells fitted on: :data:`RIDGE_FOLDS` folds of whole
    :data:`BOOTSTRAP_SQUARE`-cell squares. Every penalty is solved from one
    eigendecomposition of each fold's Gram matrix."""
    ids = np.unique(squares)
    order = np.random.default_rng(0).permutation(ids.size)
    fold = (order % RIDGE_FOLDS)[np.searchsorted(ids, squares)]
    f_n = z.shape[1]
    err = np.zeros((len(RIDGE_PENALTIES), y.shape[1]))
    for k in range(min(RIDGE_FOLDS, ids.size)):
        fit, out = fold != k, fold == k
        if fit.sum() < f_n or not out.any():
            continue
        y0 = y[fit].mean(0)
        d, v = np.linalg.eigh(z[fit].T @ z[fit])
        q = v.T @ (z[fit].T @ (y[fit] - y0))
        p = z[out] @ v
        for j, lam in enumerate(RIDGE_PENALTIES):
            pred = p @ (q / (np.maximum(d, 0.0) + lam * fit.sum())[:, None]) + y0
            err[j] += np.sum((pred - y[out]) ** 2, axis=0)
    return np.asarray(RIDGE_PENALTIES)[np.argmin(err, axis=0)]


def _fit_ridge(table: CellTable, rng: np.random.Generator | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Weights ``(E, F)``, bias ``(E,)`` in feature units, the range ``(2, E)`` of the
    training residuals the predictions are clipped to; the penalty per element. Elements
    known on the same cells share their Gram matrices."""
    x = table.train
    idx = np.arange(x.shape[0])
    if rng is not None:  # resample whole squares: an ensemble member's own training set
        ids = np.unique(table.square_train)
        pick = rng.choice(ids, size=ids.size, replace=True)
        counts = np.bincount(np.searchsorted(ids, pick), minlength=ids.size)
        idx = np.repeat(idx, counts[np.searchsorted(ids, table.square_train)])
    mean, std = x[idx].mean(0), x[idx].std(0)
    std = np.where(std > 1e-12, std, 1.0)
    e_n, f_n = table.target_train.shape[1], x.shape[1]
    weight, bias, info = np.zeros((e_n, f_n)), np.zeros(e_n), {}
    bounds = np.zeros((2, e_n))
    known = np.isfinite(table.target_train[idx])
    groups: dict[bytes, list[int]] = {}
    for e in range(e_n):
        groups.setdefault(np.packbits(known[:, e]).tobytes(), []).append(e)
    for cols in groups.values():
        tr = idx[known[:, cols[0]]]
        if tr.size < f_n:
            info.update({e: {"penalty": None} for e in cols})
            continue
        z, y = (x[tr] - mean) / std, table.target_train[tr][:, cols]
        bounds[:, cols] = y.min(0), y.max(0)
        lams = _ridge_penalties(z, y, table.square_train[tr])
        y0 = y.mean(0)
        d, v = np.linalg.eigh(z.T @ z)
        q = v.T @ (z.T @ (y - y0))
        for c, e in enumerate(cols):
            w = v @ (q[:, c] / (np.maximum(d, 0.0) + lams[c] * tr.size))
            weight[e] = w / std
            bias[e] = y0[c] - float(weight[e] @ mean)
            info[e] = {"penalty": float(lams[c])}
    return weight, bias, bounds, info


def _fit_member(kind: str, table: CellTable, n_in: int, n_out: int, scales: Any, seed: int,
               bootstrap: bool, rounds: list[int] | None = None) -> tuple[Any, dict]:
    """One fitted per-cell regressor (a torch module) and its fit record per element.

    ``bootstrap``: the ridge fits a resample of whole squares (an ensemble's member);
    ``rounds``: the trees run that many rounds per element instead of stopping early.
    """
    import torch

    net = get_model(kind, n_in, n_out, **_scales_kw(scales))
    if kind == "trees":
        texts, info = _fit_trees(table, seed, torch.get_num_threads(), rounds)
        net.set_boosters(texts)
    else:
        rng = np.random.default_rng(seed) if bootstrap else None
        w, b, bounds, info = _fit_ridge(table, rng)
        net.weight.copy_(torch.from_numpy(w))
        net.bias.copy_(torch.from_numpy(b))
        net.low.copy_(torch.from_numpy(bounds[0]))
        net.high.copy_(torch.from_numpy(bounds[1]))
        net.feature_low.copy_(torch.from_numpy(table.train.min(0)))
        net.feature_high.copy_(torch.from_numpy(table.train.max(0)))
    return net, info


def fit_members(kind: str, table: CellTable, n_in: int, n_out: int, scales: Any, seed: int,
                n: int, rounds: list[list[int]] | None = None) -> tuple[list[Any], list[dict]]:
    """The ``n`` members of a per-cell regressor and their fit records.

    Trees: seeds ``seed + i`` (rows and features subsampled differently; ``rounds[i]`` per
    element when given). Ridge: one member is the fit on every training cell; with
    ``n`` > 1, member ``i`` is that fit plus the deviation of a fit on a resample of
    whole 32-cell squares (seed ``seed + i``) from the resamples' mean, so that their mean
    is the fit on every cell (resampled fits alone lost a point of mean test gain on the
    experiment's region) and their spread is the resamples' spread.
    """
    if kind != "ridge" or n == 1:
        out = [_fit_member(kind, table, n_in, n_out, scales, seed + i, bootstrap=n > 1,
                          rounds=None if rounds is None else rounds[i]) for i in range(n)]
        return [net for net, _ in out], [info for _, info in out]
    full, info = _fit_member(kind, table, n_in, n_out, scales, seed, bootstrap=False)
    boots = [_fit_member(kind, table, n_in, n_out, scales, seed + i, bootstrap=True)
             for i in range(n)]
    w_mean = sum(b.weight for b, _ in boots) / n
    b_mean = sum(b.bias for b, _ in boots) / n
    for b, _ in boots:
        b.weight.copy_(full.weight + b.weight - w_mean)
        b.bias.copy_(full.bias + b.bias - b_mean)
        for name in ("low", "high", "feature_low", "feature_high"):
            getattr(b, name).copy_(getattr(full, name))
    return [b for b, _ in boots], [
        {e: {**row, "penalty_all_cells": info[e].get("penalty")} for e, row in bi.items()}
        for _, bi in boots]


def _refit_on_ground(table: CellTable, raw: list[dict], n_in: int, n_out: int, scales: Any,
                     seed: int) -> tuple[CellTable, list[Any], list[dict]]:
    """The trees fitted again on the training and validation cells, each member and element
    for the rounds early stopping chose (``raw``): what their out-of-fold evidence
    (:mod:`geochem_sr.training.cross_fit`) measures, a fit on the ground of the other folds
    with those rounds. Returns the table fitted on, the members and their fit records."""
    ground = CellTable(np.concatenate([table.train, table.val]), table.val,
                       np.concatenate([table.target_train, table.target_val]),
                       table.target_val, np.zeros(table.train.shape[0] + table.val.shape[0],
                                                  np.int64), table.reach)
    rounds = [[int(info[e]["rounds"]) for e in range(n_out)] for info in raw]
    nets, refit = fit_members("trees", ground, n_in, n_out, scales, seed, len(raw), rounds)
    return ground, nets, refit


def _val_report(nets: list[Any], table: CellTable, elements: list[str]) -> dict[str, Any]:
    """Gain of the (mean) prediction over the sparse map on the validation cells (in
    sample when they were fitted on: ``validation["fitted_on"]``)."""
    pred = np.mean([net.predict_rows(table.val) for net in nets], axis=0)
    per: dict[str, Any] = {}
    for e, el in enumerate(elements):
        ok = np.isfinite(table.target_val[:, e])
        t, p = table.target_val[ok, e], pred[ok, e]
        rmse_lr = float(np.sqrt(np.mean(t**2))) if t.size else float("nan")
        rmse = float(np.sqrt(np.mean((t - p) ** 2))) if t.size else float("nan")
        per[el] = {"rmse_lr": rmse_lr, "rmse_pred": rmse,
                   "gain": 1 - rmse / rmse_lr if rmse_lr > 0 else float("nan"),
                   "cells": int(ok.sum())}
    return per


def fit_cells(ds: xr.Dataset, kind: str, config: TrainConfig, data: TrainingData
              ) -> GeoSRModel:
    """Fit a per-cell regressor (``"trees"`` or ``"ridge"``) and assemble the model.

    ``config.ensemble = n`` fits ``n`` members (:func:`fit_members`) stored as their mean,
    with their spread behind ``hr_pred_std``. ``config.network_kwargs`` may give
    ``scales``.
    """
    t0 = time.perf_counter()
    from geochem_sr.training.cross_fit import FITTED_ON_GROUND, can_cross_fit

    scales = dict(config.network_kwargs or {}).get("scales")
    # fitted on the validation blocks too when the calibration can be cross-fitted (two
    # blocks of training ground or more; docs/notes/trust.md): the ridge needs no
    # validation cell, the trees are fitted again with the rounds they stopped at
    fit_val = can_cross_fit(ds, data.roles, int(config.seed), int(data.patch_size))
    table = cell_table(ds, data, kind, scales, fit_val and kind == "ridge")
    n_in, n_out = len(data.channels), len(data.elements)
    nets, raw = fit_members(kind, table, n_in, n_out, scales, int(config.seed),
                            int(config.ensemble))
    if kind == "trees" and fit_val:
        table, nets, raw = _refit_on_ground(table, raw, n_in, n_out, scales, int(config.seed))
    infos = [{data.elements[e]: v for e, v in info.items()} for info in raw]
    per = _val_report(nets, table, list(data.elements))
    if len(nets) == 1:
        name, cfg, state = kind, dict(nets[0].config), nets[0].state_dict()
    else:
        name = "ensemble"
        cfg, state = ensemble_payload(kind, nets[0].config, [n.state_dict() for n in nets])
    vocab, units = survey_metadata(ds, data.inputs_set, list(data.elements))
    record = TrainingRecord(
        seed=int(config.seed), epochs_run=0, stopped_early=False, split=data.split_summary(),
        margin=table.reach, loss="mse", device="cpu",
        ensemble=[{"seed": int(config.seed) + i, "fit": infos[i]} for i in range(len(nets))]
        if len(nets) > 1 else None)
    return GeoSRModel(
        network_name=name,
        network_config=json.loads(json.dumps(cfg, default=to_jsonable)),
        state_dict={k: v.detach().clone() for k, v in state.items()},
        inputs=data.inputs_set,
        channels=list(data.channels),
        elements=list(data.elements),
        units=units,
        norm_stats={str(k): (float(v[0]), float(v[1])) for k, v in data.stats.items()},
        geology_vocabulary=vocab,
        patch_size=int(data.patch_size),
        validation={"per_element": per, "fit": infos[0] if len(nets) == 1 else infos,
                    "fitted_on": FITTED_ON_GROUND if fit_val else "training blocks",
                    "cells": {"train": int(table.train.shape[0]),
                              "val": int(table.val.shape[0])},
                    "seconds": round(time.perf_counter() - t0, 3)},
        training=record,
        prediction=PredictionSettings(context="tile", border=table.reach,
                                      spread="members" if len(nets) > 1 else None),
    )
