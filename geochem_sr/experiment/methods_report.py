"""The methods section of the experiment's results: calibrated test-block gains per element
with their jackknife errors, cost, the selection's choices, and the checks of issue 16."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["methods_lines", "methods_checks", "GOAL_MEAN_GAIN", "CLASSICAL_ROWS"]

#: The mean test-block gain over the sparse map the toolkit default is to reach.
GOAL_MEAN_GAIN = 0.08
#: Classical rows shown beside the methods (test-block gain over the sparse map with its
#: jackknife error, on the cells and blocks the methods are scored on).
CLASSICAL_ROWS = ("idw", "retuned", "regression_kriging", "regression_kriging_all")


def _gains(row: Mapping[str, Any], sparse: Mapping[str, Any] | None,
           elements: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Per element ``(gain, jackknife error)``: calibrated for a method, on the same test
    cells for a classical row; from the RMSE on the test windows against the sparse map's
    for a classical row of a results file written before those existed (no error)."""
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
                 if r["key"] in CLASSICAL_ROWS})
    auto = _gains(methods["auto"], sparse, elements)
    best = max(alts, key=lambda k: _mean(alts[k]))
    behind = [el for el in elements
              if not auto[el][0] >= alts[best].get(el, (math.nan,))[0] - 1e-12]
    wins = len(elements) - len(behind)
    candidate = best if best in methods else None  # a method row's key names its candidate
    return {"auto_mean_gain": _mean(auto), "best_alternative": best,
            "best_alternative_mean_gain": _mean(alts[best]),
            "auto_at_least_best_on_mean": _mean(auto) >= _mean(alts[best]),
            "elements_auto_at_least_best": wins, "elements": len(elements),
            "auto_at_least_best_on_8_of_10": wins >= math.ceil(0.8 * len(elements)),
            "goal_mean_gain": GOAL_MEAN_GAIN,
            "auto_meets_goal": _mean(auto) >= GOAL_MEAN_GAIN,
            "auto_below_zero": [el for el in elements if auto[el][0] < 0],
            "behind_best": [_behind(el, auto[el], alts[best][el], candidate,
                                    methods["auto"].get("selection", {}).get(el, {}))
                            for el in behind]}


def _behind(el: str, auto: tuple[float, float], best: tuple[float, float],
            candidate: str | None, choice: Mapping[str, Any]) -> dict[str, Any]:
    """Where the selection is below the best alternative: both test gains with their
    errors, and what the selection saw of both on its evidence (out of fold or validation
    blocks; NaN for a classical alternative, which is not a candidate)."""
    cands = choice.get("candidates", {})
    chosen = cands.get(choice.get("method"), {})
    alt = next((v for k, v in cands.items() if candidate and k.split(" ")[0] == candidate),
               {})
    return {"element": el, "method": choice.get("method"),
            "gain_test": auto[0], "gain_test_se": auto[1],
            "best_gain_test": best[0], "best_gain_test_se": best[1],
            "gain_evidence": chosen.get("gain_val", math.nan),
            "gain_evidence_se": chosen.get("gain_val_se", math.nan),
            "best_gain_evidence": alt.get("gain_val", math.nan),
            "best_gain_evidence_se": alt.get("gain_val_se", math.nan)}


def _behind_lines(c: Mapping[str, Any], best: str) -> list[str]:
    """Why the selection is below the best alternative where it is: per element, how far,
    against the errors, on the test blocks and on the evidence it chose on."""
    rows = c.get("behind_best") or []
    if not rows:
        return []
    out = ["", f"Where the selection is below {best} (test-block gain ± jackknife error; "
           "on the evidence it chose on, the same for its choice and for that method):", ""]
    for b in rows:
        gap = b["best_gain_test"] - b["gain_test"]
        ev = ""
        if math.isfinite(b["best_gain_evidence"]):
            ev = (f"; on the evidence {100 * b['gain_evidence']:+.2f} ± "
                  f"{100 * b['gain_evidence_se']:.2f} % against "
                  f"{100 * b['best_gain_evidence']:+.2f} ± "
                  f"{100 * b['best_gain_evidence_se']:.2f} %")
        out.append(f"- {b['element']} ({b['method']}): {100 * gap:.2f} points behind, "
                   f"{100 * b['gain_test']:+.2f} ± {100 * b['gain_test_se']:.2f} % against "
                   f"{100 * b['best_gain_test']:+.2f} ± {100 * b['best_gain_test_se']:.2f} %"
                   + ev)
    largest = max(b["best_gain_test"] - b["gain_test"] for b in rows)
    errors = [e for b in rows for e in (b["gain_test_se"], b["best_gain_test_se"])
              if math.isfinite(e)]
    if errors and largest < min(errors):
        out += ["", "On the test blocks each is behind by less than the smallest of these errors "
                f"({100 * min(errors):.1f} points): they cannot tell the options apart."]
    seen = [b for b in rows if math.isfinite(b["best_gain_evidence"])]
    if seen:
        leads = ", ".join(
            f"{b['element']} {100 * (b['gain_evidence'] - b['best_gain_evidence']):+.2f}"
            for b in seen)
        clear = [b["element"] for b in seen if b["gain_evidence"] - b["best_gain_evidence"]
                 > max(b["gain_evidence_se"], b["best_gain_evidence_se"])]
        out += ["", f"On the evidence the selection chose on, its choice led by {leads} points"
                + (f"; by more than either error for {', '.join(clear)}: there the evidence "
                   "and the test blocks disagree" if clear else ", within the errors")
                + ". Two rules that favour averaging were compared on other data "
                "(`benchmarks/results/selection_rules.md`); neither gains on both."]
    return out


def methods_lines(rows: Sequence[Mapping[str, Any]], elements: Sequence[str],
                  labels: Mapping[str, str], folds: int = 5, cells: int | None = None
                  ) -> list[str]:
    """The section's markdown lines (empty when the run had no method rows; ``folds``:
    those of the out-of-fold calibration of the per-cell methods; ``cells``: of the
    region, to give a classical row's seconds for a 1024 x 1024-cell region)."""
    methods = [r for r in rows if r["kind"] == "method"]
    if not methods:
        return []
    sparse = next((r for r in rows if r["key"] == "sparse"), None)
    shown = methods + [r for r in rows if r["key"] in CLASSICAL_ROWS]
    lines = [
        "## Methods a geochemist could pick",
        "",
        "Gain over the sparse map on the test blocks, %, after each method's do-no-harm "
        "calibration (± delete-one-block jackknife error): the network's on the validation "
        "blocks, the per-cell regressors' on out-of-fold predictions of the training and "
        f"validation blocks ({folds}-fold spatial cross-fitting); "
        "classical rows without calibration, on the same test cells and blocks. Cost: CPU "
        "seconds to train and calibrate (all candidates for the selection) and to predict a "
        "1024 × 1024-cell region (measured on this region, scaled by cells); for a classical "
        "row, the wall seconds of its whole map (fitting included: the re-tuned interpolation "
        "grids the samples with each of its settings), scaled the same way.",
        "",
        "| Method | " + " | ".join(elements)
        + " | mean | train + calibrate CPU s | predict CPU s (1024²) |",
        "|---|" + "---|" * (len(elements) + 3),
    ]
    for r in shown:
        g = _gains(r, sparse, elements)
        cost = "— | —"
        if "train_cpu_s" in r:
            cost = f"{r['train_cpu_s']:.0f} | {r['predict_cpu_s_1024']:.0f}"
        elif cells and "seconds" in r:
            cost = f"— | {r['seconds'] * 1024**2 / cells:.0f}"
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
        lines += _behind_lines(c, best)
    return lines + [""]
