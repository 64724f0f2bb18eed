"""Automatic checks of the three expectations against the measured table.

1. The multi-level U-Net with all inputs has the best average PSNR and SSIM.
2. Adding geology improves each network.
3. Every network beats the sparse map and IDW.
"""

from __future__ import annotations

import math
from typing import Any

from geochem_sr.experiment.profiles import BASELINES, INPUT_SETS, NETWORK_LABELS, NETWORKS

__all__ = ["check_expectations"]


def check_expectations(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """What the measured table says about the issue's three expectations.

    Returns the three numbered markdown lines and the checks behind them (best rows,
    geology effect per network, which rows beat which baseline).
    """
    nets = [r for r in rows if r["kind"] == "network"]
    base = {r["key"]: r for r in rows if r["kind"] == "baseline"}
    by = {(r["network"], r["inputs"]): r for r in nets}
    checks: dict[str, Any] = {}
    out: list[str] = []

    def score(r: dict[str, Any], c: str) -> float:
        v = r["scores"].get(c)
        return float(v) if v is not None and math.isfinite(v) else -math.inf

    target = ("multilevel_unet", INPUT_SETS[0])
    ok1 = True
    for c in ("psnr_avg", "ssim_avg"):
        best = max(rows, key=lambda r, c=c: score(r, c))
        checks[f"best_{c}"] = best["label"]
        ok1 = ok1 and (best["network"], best["inputs"]) == target
    checks["expect_multilevel_all_best"] = ok1
    out.append(f"1. *The multi-level U-Net with all inputs has the best average PSNR and "
               f"SSIM*: **{'holds' if ok1 else 'does not hold'}**. Best average PSNR: "
               f"{checks['best_psnr_avg']}; best average SSIM: {checks['best_ssim_avg']}.")

    geo = {}
    for n in NETWORKS:
        a, b = by.get((n, INPUT_SETS[0])), by.get((n, INPUT_SETS[1]))
        if a is None or b is None:
            continue
        d = {c: score(a, c) - score(b, c) for c in ("psnr_avg", "ssim_avg", "rmse_log10")}
        d["improves"] = d["psnr_avg"] > 0 and d["ssim_avg"] > 0
        geo[n] = d
    checks["geology_effect"] = geo
    ok2 = bool(geo) and all(d["improves"] for d in geo.values())
    checks["expect_geology_improves_each"] = ok2
    parts = [f"{NETWORK_LABELS[n]} {d['psnr_avg']:+.2f} dB / {d['ssim_avg']:+.3f} / "
             f"{d['rmse_log10']:+.4f}" for n, d in geo.items()]
    out.append(f"2. *Adding geology improves each network* (all inputs minus geochem+terrain: "
               f"PSNR avg / SSIM avg / RMSE): **{'holds' if ok2 else 'does not hold'}**: "
               + "; ".join(parts) + ".")

    beats: dict[str, dict[str, bool]] = {}
    by_metric: dict[str, dict[str, int]] = {}
    for b in (k for k in BASELINES if k in base):
        rb = base[b]
        wins = {"psnr_avg": [score(r, "psnr_avg") > score(rb, "psnr_avg") for r in nets],
                "ssim_avg": [score(r, "ssim_avg") > score(rb, "ssim_avg") for r in nets],
                "rmse_log10": [score(r, "rmse_log10") < score(rb, "rmse_log10") for r in nets]}
        by_metric[b] = {c: int(sum(v)) for c, v in wins.items()}
        for i, r in enumerate(nets):
            beats.setdefault(r["label"], {})[b] = all(v[i] for v in wins.values())
    checks["beats"] = beats
    checks["beats_by_metric"] = by_metric
    n_sparse_idw = sum(v.get("sparse", False) and v.get("idw", False) for v in beats.values())
    ok3 = n_sparse_idw == len(nets) and bool(nets)
    checks["expect_every_network_beats_sparse_and_idw"] = ok3
    short = {"sparse": "sparse map = ordinary kriging", "idw": "IDW",
             "retuned": "re-tuned interpolation",
             "regression_kriging": "regression kriging",
             "regression_kriging_all": "regression kriging on every covariate group",
             "kriging": "ordinary kriging"}
    counts = "; ".join(
        f"{short[b]}: {sum(v.get(b, False) for v in beats.values())} on all three (on PSNR avg "
        f"{m['psnr_avg']}, SSIM avg {m['ssim_avg']}, RMSE {m['rmse_log10']})"
        for b, m in by_metric.items() if b != "kriging")
    out.append(f"3. *Every network beats the sparse map and IDW* (higher average PSNR and SSIM "
               f"and lower RMSE): **{'holds' if ok3 else 'does not hold'}**: {n_sparse_idw} "
               f"of {len(nets)} rows beat both. Rows better than each baseline: {counts}.")
    return out, checks
