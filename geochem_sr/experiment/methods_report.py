"""The methods section of the experiment's results: calibrated test-block gains per element
with their jackknife errors, cost, the selection's choices, and the checks of issue 16."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["methods_lines", "methods_checks", "GOAL_MEAN_GAIN"]

#: The mean test-block gain over the sparse map the toolkit default is to reach.
GOAL_MEAN_GAIN = 0.08
#: Classical rows shown beside the methods (gain from their per-element RMSE).
_CLASSICAL = ("idw", "regression_kriging", "regression_kriging_all")


def _gains(row: Mapping[str, Any], sparse: Mapping[str, Any] | None,
           elements: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Per element ``(gain, jackknife error)``: calibrated for a method, from the RMSE
    against the sparse map's for a classical row (no error)."""
    if "gains" in row:
        return {el: (row["gains"][el]["gain"], row["gains"][el].get("gain_se", math.nan))
                for el in elements if el in row["gains"]}
    out = {}
    for el in elements:
        a = row["per_element"][el]["rmse_log10"]
        b = sparse["per_element"][el]["rmse_log10"] if sparse else math.nan
        out[el] = (1 - a / b if b else math.nan, math.nan)
    return out


def _mean(g: Mapping[str, tuple[float, float]]) -> float:
    v = [x for x, _ in g.values() if math.isfinite(x)]
    return sum(v) / len(v) if v else math.nan


def _cell(g: tuple[float, float]) -> str:
    x, se = g
    if not math.isfinite(x):
        return "—"
    return f"{100 * x:+.1f} ± {100 * se:.1f}" if math.isfinite(se) else f"{100 * x:+.1f}"


def methods_checks(rows: Sequence[Mapping[str, Any]], elements: Sequence[str]
                   ) -> dict[str, Any]:
    """Issue 16's numbers: the selection (the toolkit default) against the best single
    alternative (the method or classical row with the best mean gain), and the goal."""
    methods = {r["key"]: r for r in rows if r["kind"] == "method"}
    if "auto" not in methods:
        return {}
    sparse = next((r for r in rows if r["key"] == "sparse"), None)
    alts = {k: _gains(r, sparse, elements) for k, r in methods.items() if k != "auto"}
    alts.update({r["key"]: _gains(r, sparse, elements) for r in rows
                 if r["key"] in _CLASSICAL})
    auto = _gains(methods["auto"], sparse, elements)
    best = max(alts, key=lambda k: _mean(alts[k]))
    wins = sum(1 for el in elements
               if auto[el][0] >= alts[best].get(el, (math.nan,))[0] - 1e-12)
    return {"auto_mean_gain": _mean(auto), "best_alternative": best,
            "best_alternative_mean_gain": _mean(alts[best]),
            "auto_at_least_best_on_mean": _mean(auto) >= _mean(alts[best]),
            "elements_auto_at_least_best": wins, "elements": len(elements),
            "auto_at_least_best_on_8_of_10": wins >= math.ceil(0.8 * len(elements)),
            "goal_mean_gain": GOAL_MEAN_GAIN,
            "auto_meets_goal": _mean(auto) >= GOAL_MEAN_GAIN,
            "auto_below_zero": [el for el in elements if auto[el][0] < 0]}


def methods_lines(rows: Sequence[Mapping[str, Any]], elements: Sequence[str],
                  labels: Mapping[str, str], folds: int = 5) -> list[str]:
    """The section's markdown lines (empty when the run had no method rows; ``folds``:
    those of the out-of-fold calibration of the per-cell methods)."""
    methods = [r for r in rows if r["kind"] == "method"]
    if not methods:
        return []
    sparse = next((r for r in rows if r["key"] == "sparse"), None)
    shown = methods + [r for r in rows if r["key"] in _CLASSICAL]
    lines = [
        "## Methods a geochemist could pick",
        "",
        "Gain over the sparse map on the test blocks, %, after each method's do-no-harm "
        "calibration (± delete-one-block jackknife error): the network's on the validation "
        "blocks, the per-cell regressors' on out-of-fold predictions of the training and "
        f"validation blocks ({folds}-fold spatial cross-fitting); "
        "classical rows from their RMSE (no calibration). Cost: CPU seconds to train and "
        "calibrate (all candidates for the selection) and to predict a 1024 × 1024-cell region "
        "(measured on this region, scaled by cells).",
        "",
        "| Method | " + " | ".join(elements)
        + " | mean | train + calibrate CPU s | predict CPU s (1024²) |",
        "|---|" + "---|" * (len(elements) + 3),
    ]
    for r in shown:
        g = _gains(r, sparse, elements)
        cost = (f"{r['train_cpu_s']:.0f} | {r['predict_cpu_s_1024']:.0f}"
                if "train_cpu_s" in r else "— | —")
        label = labels.get(r["key"], r.get("label", r["key"]))
        lines.append(f"| {label} | " + " | ".join(_cell(g.get(el, (math.nan, math.nan)))
                                                  for el in elements)
                     + f" | {100 * _mean(g):+.2f} | {cost} |")
    auto = next((r for r in methods if r["key"] == "auto"), None)
    if auto and auto.get("selection"):
        lines += ["", "The selection's choice per element (on the evidence above, never the test "
                  "blocks): "
                  + ", ".join(f"{el} {row['method']}" for el, row in auto["selection"].items())
                  + "."]
    c = methods_checks(rows, elements)
    if c:
        best = labels.get(c["best_alternative"], c["best_alternative"])
        lines += ["", f"Checks (issue 16): the selection's mean gain "
                  f"{100 * c['auto_mean_gain']:+.2f} % against the best single alternative "
                  f"({best}, {100 * c['best_alternative_mean_gain']:+.2f} %): "
                  f"**{'at least as good' if c['auto_at_least_best_on_mean'] else 'worse'}** "
                  f"on the mean, at least as good on **{c['elements_auto_at_least_best']} of "
                  f"{c['elements']}** elements; goal mean gain ≥ {100 * GOAL_MEAN_GAIN:.0f} %: "
                  f"**{'met' if c['auto_meets_goal'] else 'not met'}**."]
    return lines + [""]
