"""Spatial block k-fold cross-validation of a network on a survey dataset: each fold held
out in turn, a network trained on the others, calibrated on an inner validation part and
scored on the held-out fold (:func:`cross_validate`)."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError, ParameterError
from geochem_sr.features import channel_names, resolve_inputs
from geochem_sr.inference import apply_residual, prepare_inputs, shrink_factors, sparse_map
from geochem_sr.jsonable import to_jsonable
from geochem_sr.models import GeoSRModel, network_geometry
from geochem_sr.sampling import (
    ROLE_NONE,
    ROLE_TEST,
    ROLE_TRAIN,
    ROLE_VAL,
    BlockSplitter,
    default_block_size,
    fallback_gaps,
    leakage_attrs,
    leakage_gap,
    patch_index,
)
from geochem_sr.training import TrainConfig
from geochem_sr.trust.calibrate import fit_calibration
from geochem_sr.trust.cv_report import CrossValidationReport, aggregate_folds
from geochem_sr.trust.predictions import Held, predict_held
from geochem_sr.trust.roles import RolesSplitter, default_blocks, evidence_blocks
from geochem_sr.trust.shrinkage import MIN_GAIN, MIN_GROUPS, STD_FLOOR_FRACTION

__all__ = ["cross_validate"]


def _spec(model: str | GeoSRModel, inputs: str, train_kwargs: dict[str, Any]
          ) -> tuple[str, str, dict[str, Any]]:
    """Network name, inputs and train() keywords from a name or a trained model."""
    if isinstance(model, GeoSRModel):
        cfg = {k: v for k, v in model.network_config.items()
               if k not in ("in_channels", "out_channels")}
        kw = {"network_kwargs": cfg, "elements": list(model.elements),
              "patch_size": int(model.patch_size)}
        for key in ("stride", "loss", "batch_size"):
            if getattr(model.training, key) is not None:
                kw[key] = getattr(model.training, key)
        kw["margin"] = int(model.training.margin or 0)  # files before margins: none
        return model.network_name, model.inputs, {**kw, **train_kwargs}
    if not isinstance(model, str):
        raise ParameterError(
            f"model: expected a network name or a GeoSRModel, found {type(model).__name__}")
    return model, inputs, dict(train_kwargs)


def _receptive_field(name: str, ds: xr.Dataset, inputs: str, cfg: TrainConfig) -> int:
    """Receptive field (cells) of the network ``name`` built for these inputs."""
    elements = list(cfg.elements or [str(e) for e in ds[schema.ELEMENT].values])
    n_emb = int(ds.sizes.get(schema.EMBEDDING, schema.EMBEDDING_SIZE))
    inputs = resolve_inputs(inputs, ds)
    config = {**dict(cfg.network_kwargs or {}), "out_channels": len(elements),
              "in_channels": len(channel_names(inputs, elements, n_emb))}
    return network_geometry(name, config)[1]


def _fold_roles(ds: xr.Dataset, train_mask: np.ndarray, test_mask: np.ndarray,
                block: int | float, gap: int, val_fraction: float, seed: int
                ) -> tuple[xr.DataArray, xr.DataArray]:
    """(roles for training: inner train/val, roles for calibration: + held-out fold)."""
    tm = xr.DataArray(train_mask, dims=(schema.Y, schema.X))
    inner_ds = ds.assign({schema.HR: ds[schema.HR].where(tm)})
    inner = BlockSplitter(block, fractions=(1 - val_fraction, val_fraction, 0.0), gap=gap,
                          seed=seed).split(inner_ds)
    codes = np.where(train_mask, np.asarray(inner.values), ROLE_NONE).astype(np.int8)
    train_roles = inner.copy(data=codes)
    full = inner.copy(data=np.where(test_mask, ROLE_TEST, codes).astype(np.int8))
    return train_roles, full


def _plan_folds(ds: xr.Dataset, splitter: BlockSplitter, folds: int, val_fraction: float,
                seed: int, patch_size: int, stride: int
                ) -> list[tuple[np.ndarray, np.ndarray, xr.DataArray, xr.DataArray]]:
    """Each fold's (train mask, held-out mask, training roles, calibration roles).

    Raises
    ------
    DataError
        Too few blocks, or a fold whose inner training or validation blocks hold no patch.
    """
    valid = np.asarray(ds[schema.HR].notnull().any(schema.ELEMENT)
                       .transpose(schema.Y, schema.X).values)
    out = []
    for f, (train_m, test_m) in enumerate(splitter.folds(ds, folds)):
        train_mask, test_mask = np.asarray(train_m.values), np.asarray(test_m.values)
        train_roles, full_roles = _fold_roles(ds, train_mask, test_mask, splitter.block_size,
                                              splitter.gap, val_fraction, seed + 1 + f)
        codes = np.asarray(train_roles.values)
        for code, role in ((ROLE_TRAIN, "training"), (ROLE_VAL, "validation")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                if not patch_index(codes == code, patch_size, stride, 0.5, valid):
                    raise DataError(
                        f"cross-validation fold {f}: expected {role} patches of {patch_size} "
                        f"cells, found none (blocks {splitter.block_cells(ds)} cells, gap "
                        f"{splitter.gap}); use smaller blocks, a smaller gap or fewer folds")
        out.append((train_mask, test_mask, train_roles, full_roles))
    return out


def _fold_scores(ds: xr.Dataset, cal: GeoSRModel, held: Held, test_mask: np.ndarray,
                 patch_size: int) -> dict[str, dict[str, float]]:
    """PSNR/SSIM/IoU of the sparse map and of the shrunk prediction on one held-out fold."""
    from geochem_sr.metrics import evaluate

    r0, r1, c0, c1 = held.box
    ny, nx = test_mask.shape
    valid = np.asarray(ds[schema.HR].notnull().any(schema.ELEMENT).values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        windows = patch_index(test_mask, patch_size, max(1, patch_size // 2), 0.5, valid)
    if not windows:
        rows, cols = np.flatnonzero(test_mask.any(1)), np.flatnonzero(test_mask.any(0))
        windows = [(slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))]
    lr = sparse_map(ds, cal)  # held.elements are cal.elements, in that order
    lr_np = np.asarray(lr.values, np.float32)
    pred = np.full(lr_np.shape, np.nan, np.float32)
    box = (slice(None), slice(r0, r1), slice(c0, c1))
    pred[box] = apply_residual(lr_np[box], held.residual, shrink_factors(cal))[0]
    inside = np.broadcast_to(test_mask, pred.shape)
    pred = np.where(inside, pred, np.nan)
    sparse = np.where(inside, lr_np, np.nan)
    scores = {}
    for tag, arr in (("lr", sparse), ("pred", pred)):
        da = lr.copy(data=arr)
        scores[tag] = evaluate(ds, da, elements=held.elements, windows=windows)
    out: dict[str, dict[str, float]] = {}
    for el in held.elements:
        row: dict[str, float] = {}
        for tag in ("lr", "pred"):
            df = scores[tag]
            row[f"psnr_{tag}"] = float(df.loc[el, "psnr_avg"])
            row[f"ssim_{tag}"] = float(df.loc[el, "ssim_avg"])
            row[f"iou85_{tag}"] = float(df.loc[el, "iou85"])
            row[f"iou95_{tag}"] = float(df.loc[el, "iou95"])
        out[el] = row
    return out


def cross_validate(
    ds: xr.Dataset,
    model: str | GeoSRModel = "multilevel_unet",
    inputs: str = "auto",
    *,
    folds: int = 5,
    block_size: int | float | None = None,
    gap: int | None = None,
    epochs: int = 50,
    seed: int = 0,
    val_fraction: float = 0.2,
    tile: int = 256,
    keep_oof: bool = True,
    device: str | None = None,
    progress: bool = False,
    **train_kwargs: Any,
) -> CrossValidationReport:
    """Spatial block k-fold cross-validation of a network on a survey dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset with ``lr``, ``hr`` and the variables of ``inputs``.
    model : str or GeoSRModel, default "multilevel_unet"
        A network name (:func:`geochem_sr.models.get_model`), or a trained model whose
        network, configuration, inputs, elements and patch size are reused.
    inputs : str, default "auto"
        Input set (ignored when ``model`` is a GeoSRModel).
    folds : int, default 5
        Number of folds (:meth:`geochem_sr.sampling.BlockSplitter.folds`).
    block_size : int or float, optional
        Block size: ``int`` cells, ``float`` metres. Default
        :func:`~geochem_sr.trust.default_blocks` for the gap.
    gap : int, optional
        Cells between a held-out fold and the cells trained on (and between inner
        training and validation blocks). Default :func:`~geochem_sr.trust.default_blocks`:
        at least the reach of the dense map (:func:`geochem_sr.sampling.leakage_gap`), so
        that no training target uses a held-out dense sample; a region too small for it gets
        the widest narrower gap whose folds all hold patches. A gap narrower than the reach
        (given, or the fallback) warns that the scores are optimistic.
    epochs : int, default 50
        Maximum epochs per fold (early stopping on the inner validation blocks).
    seed : int, default 0
        Seeds the folds, the inner splits, training and the AOA subsample.
    val_fraction : float, default 0.2
        Share of each fold's training cells used as inner validation blocks.
    tile : int, default 256
        Tile size of the held-out predictions.
    keep_oof : bool, default True
        Keep the out-of-fold predictions in ``report.oof``.
    device : str, optional
        Torch device.
    progress : bool, default False
        Show training progress bars.
    **train_kwargs
        Passed to :func:`geochem_sr.training.train` (``patch_size``, ``stride``,
        ``network_kwargs``, ``elements``, ``loss``, ``patience``, ``batch_size``...).

    Returns
    -------
    CrossValidationReport
        ``per_fold`` has per (fold, element): ``cells``, ``rmse_lr``, ``rmse_pred``,
        ``ratio`` (``rmse_pred / rmse_lr``), ``gain`` (``1 - ratio``; prediction after the
        fold's do-no-harm shrinkage, fitted on its inner validation blocks), ``rmse_raw``
        and ``gain_raw`` (network alone), ``shrinkage``, ``coverage_1std``,
        ``coverage_2std`` (the fold's calibrated std), ``psnr_lr``/``psnr_pred``,
        ``ssim_lr``/``ssim_pred`` (averages over held-out patches), ``iou85_*``,
        ``iou95_*``, ``best_epoch``. ``per_element`` pools them.

    Raises
    ------
    DataError
        Too few blocks for the folds, or a fold without training or validation patches
        (use smaller blocks or fewer folds).
    """
    from geochem_sr.training import train

    name, inputs, kw = _spec(model, inputs, train_kwargs)
    if not 0 < float(val_fraction) < 1:
        raise ParameterError(f"val_fraction: expected a share in (0, 1), found {val_fraction!r}")
    for key in ("splitter", "data", "checkpoint"):
        if key in kw:
            raise ParameterError(f"{key}: not accepted by cross_validate (it makes its own folds)")
    passed = {k: kw[k] for k in ("callback",) if k in kw}  # train()'s own, not settings
    cfg = TrainConfig.resolve(kw.get("config"),
                              **{k: v for k, v in kw.items() if k not in ("config", "callback")})
    patch_size = int(cfg.patch_size)
    rf = _receptive_field(name, ds, inputs, cfg)
    need = leakage_gap(ds)
    plans = [(block_size, int(gap))] if gap is not None else \
        [(block_size, g) for g in fallback_gaps(max(need or 0, default_blocks(rf, patch_size)[1]))]
    plan: list[tuple[np.ndarray, np.ndarray, xr.DataArray, xr.DataArray]] = []
    for i, (b, g) in enumerate(plans):
        block = default_block_size(patch_size, g) if b is None else b
        splitter = BlockSplitter(block, n_folds=int(folds), gap=g, seed=int(seed))
        try:
            plan = _plan_folds(ds, splitter, int(folds), float(val_fraction), int(seed),
                               patch_size, int(cfg.stride))
            break
        except DataError:
            if i == len(plans) - 1:
                raise
    gap = splitter.gap
    if need is not None and gap < need:
        warnings.warn(
            f"cross-validation: the held-out folds are {gap} cells from training, less than "
            f"the reach of the dense map ({need} cells): the scores are optimistic"
            + ("" if len(plans) == 1 else " (the region is too small for the full gap)"),
            UserWarning, stacklevel=2)
    ny, nx = ds.sizes[schema.Y], ds.sizes[schema.X]
    fold_rows: list[dict[str, Any]] = []
    oof: dict[str, np.ndarray] = {}
    fold_map = np.full((ny, nx), -1, np.int8)
    elements: list[str] = []
    for f, (_, test_mask, train_roles, full_roles) in enumerate(plan):
        net = train(ds, network=name, inputs=inputs, config=cfg, epochs=int(epochs),
                    seed=int(seed), splitter=RolesSplitter(train_roles), device=device,
                    progress=progress, **passed)
        elements = list(net.elements)
        prepared = prepare_inputs(ds, net)
        codes = np.asarray(full_roles.values)
        groups, unit_m = evidence_blocks(ds, net, full_roles, MIN_GROUPS)
        held = predict_held(prepared, net, codes, groups, tile=tile, device=device,
                            unit_m=unit_m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cal = fit_calibration(net, held, STD_FLOOR_FRACTION, MIN_GAIN,
                                  f"cross-validation fold {f}")
        extra = _fold_scores(prepared, cal, held, test_mask, patch_size)
        for el in elements:
            r = cal.validation["per_element"][el]
            rmse_lr, rmse_pred = r["rmse_lr"], r["rmse_pred"]
            fold_rows.append({
                "fold": f, "element": el, "cells": r["cells"],
                "rmse_lr": rmse_lr, "rmse_pred": rmse_pred,
                "ratio": rmse_pred / rmse_lr if rmse_lr > 0 else math.nan,
                "gain": r["gain"], "rmse_raw": r["rmse_raw"], "gain_raw": r["gain_raw"],
                "shrinkage": r["shrinkage"], "coverage_1std": r["coverage_1std"],
                "coverage_2std": r["coverage_2std"], **extra[el],
                "best_epoch": int(net.validation.get("best_epoch", 0)),
            })
        if keep_oof:
            _store_oof(oof, held, test_mask, (ny, nx))
        fold_map[test_mask] = f
    per_fold = pd.DataFrame(fold_rows)
    settings = {
        "model": name, "inputs": inputs, "folds": int(folds), "block_size": block,
        "block_size_cells": list(splitter.block_cells(ds)), "gap": gap,
        **{k: v for k, v in leakage_attrs(ds).items()},
        "receptive_field": rf, "patch_size": patch_size, "epochs": int(epochs),
        "seed": int(seed), "val_fraction": float(val_fraction),
        "std_floor_fraction": STD_FLOOR_FRACTION, "min_gain": MIN_GAIN,
        "train_kwargs": json.loads(json.dumps(kw, default=to_jsonable)),
    }
    oof_ds = _oof_dataset(ds, oof, fold_map, elements) if keep_oof else None
    return CrossValidationReport(per_fold, aggregate_folds(per_fold, elements), settings, oof_ds)


def _store_oof(oof: dict[str, np.ndarray], held: Held, test_mask: np.ndarray,
               shape: tuple[int, int]) -> None:
    r0, r1, c0, c1 = held.box
    ne = len(held.elements)
    for key, arr in (("residual_pred", held.residual), ("residual_spread", held.spread),
                     ("residual_true", held.target)):
        if key not in oof:
            oof[key] = np.full((ne, *shape), np.nan, np.float32)
        m = test_mask[r0:r1, c0:c1]
        dst = oof[key][:, r0:r1, c0:c1]
        dst[:, m] = arr[:, m]


def _oof_dataset(ds: xr.Dataset, oof: Mapping[str, np.ndarray], fold_map: np.ndarray,
                 elements: Sequence[str]) -> xr.Dataset:
    coords: dict[str, Any] = {schema.Y: ds[schema.Y], schema.X: ds[schema.X],
                              schema.ELEMENT: list(elements)}
    if schema.SPATIAL_REF in ds.coords:
        coords[schema.SPATIAL_REF] = ds[schema.SPATIAL_REF]
    dims = (schema.ELEMENT, schema.Y, schema.X)
    out = xr.Dataset({k: (dims, v, {"units": "log10"}) for k, v in oof.items()}, coords=coords)
    out["fold"] = ((schema.Y, schema.X), fold_map, {"long_name": "held-out fold", "none": -1})
    return out
