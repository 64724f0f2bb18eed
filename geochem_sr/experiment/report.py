"""The results files: the markdown report of a result, rendered again from its JSON.

:func:`write_markdown` writes ``experiment-<profile>.md`` (tables, settings, timings,
findings), keeping the hand-written notes between :data:`NOTES_START` and
:data:`NOTES_END`; :func:`render_results` rewrites it from ``experiment-<profile>.json``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from geochem_sr import schema
from geochem_sr.errors import SchemaError
from geochem_sr.experiment.findings import check_expectations
from geochem_sr.experiment.methods import METHOD_LABELS
from geochem_sr.experiment.methods_report import methods_checks, methods_lines
from geochem_sr.experiment.profiles import (
    BASELINE_LABELS,
    INPUT_SETS,
    NETWORK_LABELS,
    TABLE_COLUMNS,
)
from geochem_sr.jsonable import to_jsonable

__all__ = [
    "RESULT_FORMAT",
    "NOTES_START",
    "NOTES_END",
    "format_value",
    "write_markdown",
    "render_results",
    "table_frame",
]

#: ``format`` of an experiment results JSON.
RESULT_FORMAT = "geochem_sr.experiment/1"
#: Markers of the hand-written analysis that survives reruns.
NOTES_START = "<!-- findings-notes:start -->"
NOTES_END = "<!-- findings-notes:end -->"
_COLUMN_HEADERS = {"psnr_max": "PSNR max", "psnr_avg": "PSNR avg", "ssim_max": "SSIM max",
                   "ssim_avg": "SSIM avg", "rmse_log10": "RMSE (log10)", "iou95": "IoU95"}
_FORMATS = {"psnr_max": "{:.2f}", "psnr_avg": "{:.2f}", "ssim_max": "{:.3f}",
            "ssim_avg": "{:.3f}", "rmse_log10": "{:.4f}", "iou95": "{:.3f}", "iou85": "{:.3f}"}


def format_value(v: Any, col: str = "") -> str:
    """A score as the report writes it: the column's decimals, "—" when missing."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return _FORMATS.get(col, "{:.3f}").format(float(v))


def _exponent(x: float) -> str:
    """A positive number in short scientific notation: ``1e-3``, ``2.5e-4``."""
    mantissa, exponent = f"{float(x):e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _flags(inputs: str) -> tuple[str, str, str]:
    """The Geochem / Topo / Geology cells of an input set (Yes / No)."""
    groups = schema.parse_input_set(inputs)
    return ("Yes", "Yes" if "terrain" in groups else "No",
            "Yes" if "geology" in groups else "No")


def _main_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines of the main table (averages over the elements) of ``rows``."""
    head = ["Network", "Geochem", "Topo", "Geology", *(_COLUMN_HEADERS[c] for c in
                                                        TABLE_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        label = r["label"] if r["kind"] != "network" else NETWORK_LABELS[r["network"]]
        cells = [label, *_flags(r["inputs"]), *(format_value(r["scores"].get(c), c)
                                                for c in TABLE_COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _per_element_table(rows: list[dict[str, Any]], elements: Sequence[str], col: str
                       ) -> list[str]:
    """Markdown lines of one score ``col`` per element and its mean, one row each."""
    head = ["Method", *elements, "mean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vals = [format_value(r["per_element"].get(el, {}).get(col), col) for el in elements]
        lines.append("| " + " | ".join([r["label"], *vals, format_value(r["scores"].get(col), col)])
                     + " |")
    return lines


def _trust_table(trust: dict[str, Any], elements: Sequence[str]) -> list[str]:
    """Markdown lines of the trust figures per input set and element."""
    cols = ("gain", "gain_raw", "shrinkage", "coverage_1std", "coverage_2std")
    heads = ("test gain (with shrinkage)", "test gain (raw network)", "shrinkage",
             "coverage 1 std", "coverage 2 std")
    lines: list[str] = []
    for inputs in INPUT_SETS:
        t = trust.get(inputs) or {}
        if "error" in t:
            lines.append(f"- {inputs}: trust calibration failed: `{t['error']}`")
            continue
        cv = (t.get("cross_validation") or {}).get("per_element") or {}
        has_cv = bool(cv)
        head = ["Input set", "Element", *heads] + (["CV gain", "CV gain (raw)"] if has_cv
                                                   else [])
        if not lines or not lines[-1].startswith("|"):
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        per = t.get("per_element") or {}
        for el in elements:
            p = per.get(el, {})
            cells = [inputs, el, *(format_value(p.get(c)) for c in cols)]
            if has_cv:
                cells += [format_value(cv.get(el, {}).get("gain")),
                          format_value(cv.get(el, {}).get("gain_raw"))]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _settings_lines(result: dict[str, Any]) -> list[str]:
    """Markdown bullets: profile, region, split, training, inputs, machine, wall time."""
    p, d, m = result["profile"], result["data"], result["machine"]
    split = d["split"]
    cv = p["cv_folds"]
    lines = [
        f"- Profile **{p['name']}**: {p['description']}.",
        f"- Region: synthetic (`synthetic_region(seed={result['seed']}, size_km="
        f"{tuple(p['size_km'])})`), grid {d['grid'][0]} x {d['grid'][1]} cells of "
        f"{d['cell_size']:g} m, {d['n_sparse']} sparse and {d['n_dense']} dense samples, "
        f"{len(d['elements'])} elements; both surveys gridded by ordinary kriging "
        f"(k = {p['k']}).",
        f"- One block split for every row: blocks of {split['block_size_cells'][0]} cells, "
        f"gap {split['gap_cells']} cells, shares train/val/test {tuple(p['fractions'])}, "
        f"seed {result['seed']}: cells {split['cells']}, patches ({p['patch_size']} x "
        f"{p['patch_size']}, stride {p['stride']}) {split['patches']}; "
        f"{split.get('held_out', 'gap not checked against the dense map')}.",
        f"- Training: at most {p['epochs']} epochs, early stopping patience "
        f"{p['patience']}, batch {p['batch_size']}, Adam {_exponent(p['lr'])} halved every "
        f"{p['lr_step']} epochs, loss `{p['loss']}` on the "
        + ("raw log10 residual" if p["target_scale"] is None else
           f"residual standardised per element ({p['target_scale']})")
        + " (the toolkit's defaults), weights of the best validation epoch (lowest validation "
        "loss), 8 rotations/mirrors as augmentation. Networks: "
        + ("the paper's sizes." if not p["model_kwargs"] else
           f"shrunk: {json.dumps(p['model_kwargs'])}."),
        "- Input channels: 10 log10 sparse maps; + elevation, slope, aspect as sine and cosine "
        "(4; the paper counts aspect as one channel, hence 19 channels here for its 18); + 5 "
        "geology word-vector dimensions.",
        "- Predictions: each trained network predicts the whole grid with the toolkit's "
        "tiled inference (`super_resolve`, no uncertainty, no do-no-harm shrinkage); every "
        "map is scored against the dense map on the same "
        f"{split['patches']['test']} test windows (PSNR/SSIM per window on log10 maps "
        "min-max normalised per element; maximum and average over windows; RMSE and IoU "
        "over the windows' cells; every score averaged over the elements).",
        "- Trust columns (multi-level U-Net): `trust.calibrate` fitted on the validation "
        "blocks, gains and coverage measured on the test blocks"
        + (f"; plus {cv}-fold spatial cross-validation." if cv else
           "; spatial cross-validation (`trust.cross_validate`) is not run in this profile "
           "(it would train 5 more networks per input set) — the gpu profile runs it."),
        f"- Date {result['date']}; machine: {m.get('cpu_model', m['processor'])}, "
        f"{m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads)"
        + (f", GPU {m['cuda']}" if m.get("cuda") else ", no GPU")
        + f"; load average {result['timings'].get('load_start')} at the start, "
        f"{result['timings'].get('load_end')} at the end (other jobs shared the CPUs when it "
        "is above the CPU count).",
        f"- Wall time: total {result['timings']['total_s'] / 60:.1f} min (survey "
        f"{result['timings']['survey_s']:.0f} s, patches {result['timings']['patches_s']:.0f} "
        f"s, baselines {result['timings']['baselines_s']:.0f} s, networks "
        f"{result['timings']['networks_s'] / 60:.1f} min, trust "
        f"{result['timings']['trust_s']:.0f} s).",
    ]
    return lines


def _toolkit_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The toolkit-default row: the paper's table format, then its calibrated gains."""
    tk = [r for r in rows if r["kind"] == "toolkit"]
    if not tk:
        return []
    r = tk[0]
    n = len((r.get("training") or {}).get("ensemble") or []) or 1
    lines = [f"The toolkit on the same windows: multi-level U-Net, inputs `{r['inputs']}` "
             f"(fault and contact distances, and each covariate minus what the sparse "
             f"sites see of it), the toolkit's learning rate, mean of {n} networks "
             "(`train(ensemble=...)`):", "", *_main_table(tk), ""]
    per = (r.get("trust") or {}).get("per_element") or {}
    if per:
        lines += ["Its test-block gains after do-no-harm calibration: " + ", ".join(
            f"{el} {format_value(v.get('gain'))}" for el, v in per.items()) + ".", ""]
    return lines


def _markdown(result: dict[str, Any], notes: str) -> str:
    """The whole results file of ``result``, the hand-written ``notes`` in its place."""
    rows = result["rows"]
    elements = result["data"]["elements"]
    nets = [r for r in rows if r["kind"] == "network"]
    base = [r for r in rows if r["kind"] == "baseline"]
    ref = result["reference"]
    p = result["profile"]
    md = [
        f"# Experiment — profile `{p['name']}`",
        "",
        "The paper's Table 6 (Pei et al. 2025) on the synthetic region, with the classical "
        "maps a geochemist would use instead, all scored against the dense-survey map on the "
        "same held-out test blocks. Rerun with "
        f"`geochem-sr experiment --profile {p['name']}` (or `python benchmarks/experiment.py "
        f"--profile {p['name']}`).",
        "",
        "## Table (average over the elements; test windows)",
        "",
        *_main_table(nets),
        "",
        *_toolkit_lines(rows),
        *methods_lines(rows, elements, {**BASELINE_LABELS, **METHOD_LABELS},
                       int(p.get("cross_fit_folds", 5)),
                       cells=result["data"]["grid"][0] * result["data"]["grid"][1]),
        "Baselines on the same windows (Geochem/Topo/Geology: what the method uses):",
        "",
        *_main_table(base),
        "",
        "PSNR in dB and SSIM on log10 maps min-max normalised per element; RMSE in log10 "
        "units; IoU95 = overlap of the cells above the dense map's 95th percentile. "
        "Ordinary kriging "
        + ("equals the sparse map cell for cell (the survey's `lr` is built by the same "
           "kriging)." if result["baseline_info"]["kriging"].get("equals_lr") else
           "differs from `lr` (see the JSON)."),
        "",
        f"Reference: on the test windows the sparse map is "
        f"{format_value(ref['lr_vs_hr_rmse'], 'rmse_log10')} (log10 RMSE) from the dense map; the "
        f"dense map is {format_value(ref['hr_vs_truth_rmse'], 'rmse_log10')} and the sparse map "
        f"{format_value(ref['lr_vs_truth_rmse'], 'rmse_log10')} from the noise-free truth. "
        "RMSE of every method against the truth is in the JSON (`truth_rmse_log10`).",
        "",
        "## Settings",
        "",
        *_settings_lines(result),
        "",
        "## Per element: RMSE (log10) against the dense map",
        "",
        *_per_element_table(rows, elements, "rmse_log10"),
        "",
        "## Per element: anomaly IoU at the 95th percentile",
        "",
        *_per_element_table(rows, elements, "iou95"),
        "",
        "## Trust (multi-level U-Net, per input set)",
        "",
        "Gain = 1 − RMSE(prediction) / RMSE(sparse map), log10, against the dense map on the "
        "test blocks; shrinkage = do-no-harm factor on the predicted residual fitted on the "
        "validation blocks (0: returned as the sparse map); coverage = share of test cells "
        "with |dense − prediction| within 1 and 2 calibrated standard deviations (68 % and "
        "95 % expected).",
        "",
        *_trust_table(result["trust"], elements),
        "",
        "## Training and time per row",
        "",
        "Validation loss / no change: the best validation loss over that of predicting a "
        "zero residual (the sparse map) on the validation blocks; above 1, training never "
        "beat the sparse map there (training.py warns). Validation gain: mean over elements "
        "of 1 − RMSE / RMSE(sparse) on the validation blocks. Wall and CPU seconds cover "
        "training and prediction; load = 1-minute load average when the row finished.",
        "",
        "| Row | parameters | epochs run | best epoch | stopped early | validation loss / "
        "no change | validation gain | s per epoch | wall s | CPU s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in nets:
        t = r["training"]
        ratio = (t["val_loss"] / t["val_loss_zero"] if t.get("val_loss") is not None
                 and t.get("val_loss_zero") else None)
        md.append(f"| {r['label']} | {t['parameters']:,} | {t['epochs_run']} | "
                  f"{t['best_epoch']} | {t['stopped_early']} | {format_value(ratio)} | "
                  f"{format_value(t['val_gain_mean'])} | "
                  f"{format_value(t['seconds_per_epoch'], 'psnr_avg')} | "
                  f"{r['seconds']:.0f} | {r['cpu_seconds']:.0f} | {r.get('load')} |")
    md.append("")
    for key in ("regression_kriging", "regression_kriging_all"):
        rk = result["baseline_info"].get(key)
        if rk:
            md.append(f"{BASELINE_LABELS[key]}: R² of the regression on the covariates at the "
                      "sparse sites: " + ", ".join(f"{el} {rk[el]['r2']:.2f}"
                                                 for el in elements if el in rk) + ".")
    md += [
        "",
        "## Findings",
        "",
        "Automatic checks of the issue's expectations against the measured table:",
        "",
        *result["findings"],
        "",
        "### What the table says and why",
        "",
        NOTES_START,
        notes.strip() or "(No analysis written yet for this profile.)",
        NOTES_END,
        "",
        f"![{p['name']} comparison]({result['figure']})",
        "",
    ]
    return "\n".join(md)


def _old_notes(md_path: Path) -> str:
    """The hand-written notes between the findings markers of an existing results file."""
    if not md_path.exists():
        return ""
    text = md_path.read_text(encoding="utf-8")
    a, b = text.find(NOTES_START), text.find(NOTES_END)
    if a < 0 or b < a:
        return ""
    notes = text[a + len(NOTES_START):b].strip()
    return "" if notes.startswith("(No analysis written yet") else notes


def write_markdown(result: dict[str, Any], md_path: Path) -> None:
    """Write the markdown of ``result`` (its stored findings), keeping the notes."""
    md_path.write_text(_markdown(result, _old_notes(md_path)), encoding="utf-8")


def render_results(json_path: str | os.PathLike) -> Path:
    """Rewrite ``experiment-<profile>.md`` (and the findings in the JSON) from the JSON.

    The hand-written notes between the findings markers of the existing markdown are kept.
    Nothing is trained or predicted: use it after editing the notes or the report layout.

    Parameters
    ----------
    json_path : path
        An ``experiment-<profile>.json`` written by :func:`run_experiment`.

    Returns
    -------
    pathlib.Path
        The markdown file, next to the JSON.
    """
    json_path = Path(json_path)
    result = json.loads(json_path.read_text(encoding="utf-8"))
    if result.get("format") != RESULT_FORMAT:
        raise SchemaError(f"{json_path}: expected an experiment result ({RESULT_FORMAT!r}), "
                          f"found {result.get('format')!r}")
    md_path = json_path.with_suffix(".md")
    result["findings"], checks = check_expectations(result["rows"])
    checks["methods"] = methods_checks(result["rows"], result["data"]["elements"])
    result["checks"] = to_jsonable(checks)
    write_markdown(result, md_path)
    json_path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return md_path


def table_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """The main table of a results JSON as a DataFrame (rows by label, TABLE_COLUMNS)."""
    return pd.DataFrame([{"label": r["label"], **{c: r["scores"].get(c) for c in
                                                  TABLE_COLUMNS}} for r in result["rows"]]
                        ).set_index("label")
