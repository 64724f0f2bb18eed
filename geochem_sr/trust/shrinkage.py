"""Do-no-harm shrinkage and the standard-deviation scale of one element, fitted on its
validation cells and scored on its test cells (the rules: ``docs/notes/trust.md``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from geochem_sr.sampling import ROLE_TEST, ROLE_VAL

__all__ = [
    "COVERAGE_1STD",
    "MIN_GAIN",
    "MIN_GAIN_LCB",
    "MIN_GROUPS",
    "MIN_UNITS",
    "MIN_Z",
    "verdict",
    "STD_FLOOR_FRACTION",
    "element_calibration",
    "held_out_gain",
]

#: Share of a Gaussian within one standard deviation of its mean, erf(1/sqrt(2)).
COVERAGE_1STD = 0.6826894921370859
#: The floor of the test-time-augmentation spread, as a share of the validation RMSE.
STD_FLOOR_FRACTION = 0.1
#: Smallest relative RMSE gain on the validation blocks for a non-zero shrinkage factor.
MIN_GAIN = 0.01
#: The least-squares shrinkage must be this many jackknife standard errors above 0.
MIN_Z = 2.0
#: Fewer validation blocks than this are subdivided into jackknife groups (datasets that do
#: not record the dense map's reach; otherwise the groups are blocks as wide as the reach).
MIN_GROUPS = 4
#: Fewest independent validation blocks on which a correction can be kept: below this the
#: element is returned as the sparse map ("not enough evidence").
MIN_UNITS = 4
#: A block counts as independent evidence when it holds at least this share of the cells of
#: the fullest validation block (slivers at the edge of a block do not).
MIN_UNIT_SHARE = 0.25
#: One-sided level of the block-bootstrap lower bound on the validation gain.
LCB_ALPHA = 0.05
#: The block-bootstrap lower bound on the validation gain must reach this: a correction is
#: kept when it gains at least 1 % with 95 % confidence (``docs/notes/trust.md``).
MIN_GAIN_LCB = 0.01
#: Bootstrap resamples of the validation blocks, and their seed (same data, same verdict).
BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED = 2000, 0


def _jackknife_se(num: np.ndarray, den: np.ndarray) -> float:
    """Delete-one-group jackknife standard error of ``sum(num) / sum(den)``."""
    g = num.size
    if g < 2:
        return math.inf
    n_all, d_all = float(num.sum()), float(den.sum())
    d_rest = d_all - den
    if (d_rest <= 0).any():
        return math.inf
    loo = (n_all - num) / d_rest
    return float(np.sqrt((g - 1) / g * np.sum((loo - loo.mean()) ** 2)))


def _jackknife_gain_se(num: np.ndarray, den: np.ndarray, tt: np.ndarray, s: float) -> float:
    """Delete-one-group jackknife standard error of the gain ``1 - sqrt(sum(err^2) /
    sum(t^2))`` of ``s * r`` (``err^2 = t^2 - 2 s r t + s^2 r^2`` summed per group)."""
    g = num.size
    if g < 2:
        return math.nan
    ee = tt - 2 * s * num + s * s * den
    tt_rest = tt.sum() - tt
    if (tt_rest <= 0).any():
        return math.nan
    loo = 1.0 - np.sqrt(np.maximum(ee.sum() - ee, 0.0) / tt_rest)
    return float(np.sqrt((g - 1) / g * np.sum((loo - loo.mean()) ** 2)))


def _bootstrap_gain(num: np.ndarray, den: np.ndarray, tt: np.ndarray, s: float,
                    alpha: float = LCB_ALPHA) -> float:
    """Block-bootstrap lower bound (level ``alpha``) on the gain of the factor ``s``.

    ``num``, ``den``, ``tt``: per block sums of ``r * t``, ``r * r`` and ``t * t``; blocks are
    resampled with replacement :data:`BOOTSTRAP_SAMPLES` times (seed :data:`BOOTSTRAP_SEED`).
    """
    err = tt - 2 * s * num + s * s * den  # per block: sum((t - s r)^2)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    idx = rng.integers(0, num.size, (BOOTSTRAP_SAMPLES, num.size))
    t_b = tt[idx].sum(axis=1)
    gains = 1.0 - np.sqrt(np.clip(err[idx].sum(axis=1), 0, None) / np.where(t_b > 0, t_b, np.nan))
    return float(np.nanquantile(gains, alpha))


def _shrinkage(rv: np.ndarray, tv: np.ndarray, gv: np.ndarray, min_gain: float,
               alpha: float = LCB_ALPHA, where: str = "validation"
               ) -> tuple[dict[str, Any], str | None]:
    """Do-no-harm factor from the validation cells (values, targets, block ids).

    Kept only when the validation cells span at least :data:`MIN_UNITS` independent blocks,
    the least-squares factor is :data:`MIN_Z` jackknife errors above 0, the shrunk
    correction gains at least ``min_gain`` and the block-bootstrap lower bound on that gain
    reaches :data:`MIN_GAIN_LCB` (``docs/notes/trust.md``).
    """
    den = float(np.sum(rv * rv))
    s_ls = float(np.sum(rv * tv) / den) if den > 0 else 0.0
    groups, inv, counts = np.unique(gv, return_inverse=True, return_counts=True)
    n_units = int((counts >= MIN_UNIT_SHARE * counts.max()).sum())
    num_g = np.bincount(inv, weights=rv * tv, minlength=groups.size)
    den_g = np.bincount(inv, weights=rv * rv, minlength=groups.size)
    tt_g = np.bincount(inv, weights=tv * tv, minlength=groups.size)
    se = _jackknife_se(num_g, den_g) if den > 0 else math.inf
    z = s_ls / se if se > 0 else math.inf
    factor = max(0.0, 1.0 - 1.0 / z**2) if z >= MIN_Z else 0.0
    s = float(np.clip(s_ls * factor, 0.0, 1.0))
    rmse_lr = float(np.sqrt(np.mean(tv**2)))
    gain = 1.0 - float(np.sqrt(np.mean((tv - s * rv) ** 2))) / rmse_lr if rmse_lr > 0 else 0.0
    lcb = _bootstrap_gain(num_g, den_g, tt_g, s, alpha) if s > 0 and groups.size > 1 \
        else math.nan
    reason = None
    if n_units < MIN_UNITS:
        blocks = "block" if n_units == 1 else "blocks"
        reason = (f"not enough evidence: the {where} cells span {n_units} independent "
                  f"{blocks}, at least {MIN_UNITS} are needed to tell a correction from noise")
    elif not s_ls > 0:
        reason = ("the predicted residual does not correlate positively with the dense map's "
                  f"residual on the {where} blocks (least-squares factor {s_ls:.3g})")
    elif s == 0.0:
        reason = (f"the least-squares factor {s_ls:.3g} is less than {MIN_Z:g} standard "
                  f"errors above 0 across the {groups.size} {where} blocks (jackknife "
                  f"standard error {se:.3g})")
    elif gain < min_gain:
        reason = (f"on the {where} blocks the shrunk prediction improves on the sparse map "
                  f"by {gain:.2%} only (< {min_gain:.0%})")
    elif not lcb >= MIN_GAIN_LCB:
        reason = (f"the gain on the {where} blocks ({gain:.1%}) is not clearly above "
                  f"{MIN_GAIN_LCB:.0%}: "
                  f"its {100 * (1 - alpha):.3g}% lower bound over {groups.size} blocks resampled "
                  f"(block bootstrap) is {lcb:.1%}")
    info = {"shrinkage_ls": s_ls, "shrinkage_se": se if math.isfinite(se) else math.nan,
            "val_blocks": int(groups.size), "evidence_blocks": n_units,
            "gain_val_lcb": lcb, "lcb_level": 1.0 - alpha, "gain_val": 0.0 if reason else gain,
            "gain_val_se": 0.0 if reason else _jackknife_gain_se(num_g, den_g, tt_g, s),
            "shrinkage": 0.0 if reason else s}
    return info, reason


def verdict(row: dict[str, Any], unit_m: float | None = None) -> str:
    """One sentence on an element's calibration, in words a geochemist reads.

    ``row`` is the element's entry of ``model.validation["per_element"]``; ``unit_m`` the
    side of an independent block in metres.

    Examples
    --------
    >>> verdict({"shrinkage": 0.0, "reason": "not enough evidence: ..."})
    'returned as the sparse map: not enough evidence: ...'
    """
    if row.get("reason"):
        return f"returned as the sparse map: {row['reason']}"
    size = f" of about {unit_m / 1000:.2g} km" if unit_m else ""
    text = (f"correction kept at {float(row['shrinkage']):.2f} of its size: on "
            f"{row.get('evidence_blocks', row.get('val_blocks', '?'))} independent "
            f"{row.get('evidence', 'validation')} blocks{size} it improves on the sparse map "
            f"by {float(row['gain_val']):.1%} "
            f"({100 * float(row.get('lcb_level', 1 - LCB_ALPHA)):.3g}% lower bound "
            f"{float(row['gain_val_lcb']):.1%})")
    gain = row.get("gain")
    if gain is not None and math.isfinite(float(gain)):
        text += f"; on the test blocks, {float(gain):+.1%}"
    return text


def element_calibration(r: np.ndarray, sd: np.ndarray, t: np.ndarray, roles: np.ndarray,
                        groups: np.ndarray, std_floor: float, min_gain: float,
                        unit_m: float | None = None, alpha: float = LCB_ALPHA,
                        where: str = "validation") -> dict[str, Any]:
    """Shrinkage, std scale and floor from the validation cells (role 2); scores on the
    test cells; the ``verdict`` in words (``unit_m``: side of the independent blocks in
    metres; ``alpha``: level of the lower bound on the validation gain; ``where``: what the
    role-2 blocks are, in words: ``"validation"`` or ``"out-of-fold"``)."""
    ok = np.isfinite(r) & np.isfinite(sd) & np.isfinite(t)
    val, test = ok & (roles == ROLE_VAL), ok & (roles == ROLE_TEST)
    rv, sv, tv = (a[val].astype(np.float64) for a in (r, sd, t))
    out: dict[str, Any] = {"cells_val": int(val.sum()), "cells": int(test.sum()),
                           "evidence": where}
    if rv.size == 0:
        info, reason = {"shrinkage_ls": math.nan, "shrinkage": 0.0}, \
            f"no {where} cell with a known dense value"
    else:
        info, reason = _shrinkage(rv, tv, groups[val], min_gain, alpha, where)
    out.update(info)
    if reason is not None:
        out["reason"] = reason
    s = float(out["shrinkage"])
    if rv.size:
        err_v = np.abs(tv - s * rv)
        rmse_v = float(np.sqrt(np.mean(err_v**2)))
        floor = max(std_floor * rmse_v, 1e-6)
        z = err_v / np.maximum(s * sv, floor)
        scale = max(float(np.quantile(z, COVERAGE_1STD)), 1e-6)
        out["coverage_1std_val"] = float(np.mean(err_v <= scale * np.maximum(s * sv, floor)))
    else:
        floor, scale = 1e-6, math.nan
    out["std_floor"], out["std_scale"] = float(floor), float(scale)
    out.update(_scores(r[test], sd[test], t[test], s, scale, floor))
    out["gain_se"] = _test_gain_se(r[test], t[test], groups[test], s)
    if unit_m:
        out["evidence_block_m"] = float(unit_m)
    out["verdict"] = verdict(out, unit_m)
    return out


def _test_gain_se(r: np.ndarray, t: np.ndarray, g: np.ndarray, s: float) -> float:
    """Delete-one-block jackknife standard error of the test gain (NaN with < 2 blocks)."""
    if t.size == 0:
        return math.nan
    r, t = np.asarray(r, np.float64), np.asarray(t, np.float64)
    _, inv = np.unique(g, return_inverse=True)
    n = int(inv.max()) + 1
    num = np.bincount(inv, weights=r * t, minlength=n)
    den = np.bincount(inv, weights=r * r, minlength=n)
    tt = np.bincount(inv, weights=t * t, minlength=n)
    return _jackknife_gain_se(num, den, tt, s)


def held_out_gain(r: np.ndarray, t: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """Gain of an uncalibrated correction on held-out cells, and its jackknife error.

    ``r``: the correction (log10 map minus log10 sparse map), ``t``: the dense map's
    (the same difference), ``groups``: the block of each cell. The gain is ``1 -
    RMSE(t - r) / RMSE(t)``, as the calibrated methods' test gain with a shrinkage of 1;
    the error is the delete-one-block jackknife's (NaN with fewer than 2 blocks).

    Examples
    --------
    >>> t = np.array([1.0, -1.0, 1.0, -1.0])
    >>> gain, se = held_out_gain(0.5 * t, t, np.array([0, 0, 1, 1]))
    >>> round(gain, 3), se
    (0.5, 0.0)
    """
    r, t = np.asarray(r, np.float64), np.asarray(t, np.float64)
    ok = np.isfinite(r) & np.isfinite(t)
    r, t, g = r[ok], t[ok], np.asarray(groups)[ok]
    tt = float(np.sum(t * t))
    if tt <= 0:
        return math.nan, math.nan
    gain = 1.0 - math.sqrt(float(np.sum((t - r) ** 2)) / tt)
    return gain, _test_gain_se(r, t, g, 1.0)


def _scores(r: np.ndarray, sd: np.ndarray, t: np.ndarray, s: float, scale: float,
            floor: float) -> dict[str, float]:
    """RMSE of the sparse map, of the prediction, gain and coverage on held-out cells."""
    nan = math.nan
    if t.size == 0:
        return {"rmse_lr": nan, "rmse_pred": nan, "gain": nan, "rmse_raw": nan,
                "gain_raw": nan, "coverage_1std": nan, "coverage_2std": nan}
    r, sd, t = (np.asarray(a, np.float64) for a in (r, sd, t))
    rmse_lr = float(np.sqrt(np.mean(t**2)))
    err = np.abs(t - s * r)
    rmse_pred = float(np.sqrt(np.mean(err**2)))
    rmse_raw = float(np.sqrt(np.mean((t - r) ** 2)))
    std = scale * np.maximum(s * sd, floor)
    return {
        "rmse_lr": rmse_lr,
        "rmse_pred": rmse_pred,
        "gain": 1.0 - rmse_pred / rmse_lr if rmse_lr > 0 else nan,
        "rmse_raw": rmse_raw,
        "gain_raw": 1.0 - rmse_raw / rmse_lr if rmse_lr > 0 else nan,
        "coverage_1std": float(np.mean(err <= std)),
        "coverage_2std": float(np.mean(err <= 2 * std)),
    }
