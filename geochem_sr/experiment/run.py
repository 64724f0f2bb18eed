"""Run the experiment: one survey, one block split, every row scored on the same windows.

:func:`run_experiment` builds the synthetic survey, trains and scores the network rows,
the toolkit row and the baselines, and writes ``experiment-<profile>.md``, ``.json`` and
``.png``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError
from geochem_sr.experiment.baselines import classical_baselines
from geochem_sr.experiment.cache import RowCache, source_digest
from geochem_sr.experiment.figure import crop, figure_box, figure_elements, write_figure
from geochem_sr.experiment.findings import check_expectations
from geochem_sr.experiment.methods import classical_gains, method_rows
from geochem_sr.experiment.methods_report import CLASSICAL_ROWS, methods_checks
from geochem_sr.experiment.networks import (
    cross_validate_network,
    predict_map,
    train_network,
    training_info,
    trust_figures,
)
from geochem_sr.experiment.profiles import (
    BASELINE_INPUTS,
    BASELINE_LABELS,
    BASELINES,
    INPUT_SETS,
    NETWORK_LABELS,
    NETWORKS,
    TABLE_COLUMNS,
    TOOLKIT_INPUTS,
    TOOLKIT_LABEL,
    Log,
    Profile,
    get_profile,
    row_key,
    toolkit_margin,
)
from geochem_sr.experiment.report import RESULT_FORMAT, write_markdown
from geochem_sr.experiment.scoring import as_prediction, score_map, truth_on_grid, truth_rmse
from geochem_sr.jsonable import to_jsonable

if TYPE_CHECKING:  # pragma: no cover
    from geochem_sr.sampling import TrainingData

__all__ = ["run_experiment", "build_region", "training_data"]


def _stderr(msg: str) -> None:
    """Default progress log: a time-stamped line on standard error."""
    print(f"[experiment {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)



def _machine() -> dict[str, Any]:
    """Platform, CPU, Python, torch and GPU of this machine, for the results file."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover - not Linux
        pass
    return info


def _load() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        return None


def build_region(profile: Profile, seed: int) -> tuple[Any, xr.Dataset]:
    """The synthetic region and its survey dataset (kriged maps, terrain, geology)."""
    from geochem_sr.data import synthetic_region
    from geochem_sr.survey import build_survey

    region = synthetic_region(seed=seed, size_km=tuple(profile.size_km))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds = build_survey(region.samples_sparse, region.samples_dense, dem=region.dem,
                          geology=region.geology, faults=region.faults,
                          cell_size=region.cell_size, method="kriging", k=profile.k, seed=seed)
    return region, ds


def training_data(ds: xr.Dataset, profile: Profile, seed: int) -> dict[str, TrainingData]:
    """Patches of every input set on ONE block split; their test windows must agree."""
    from geochem_sr.sampling import (
        BlockSplitter,
        default_block_size,
        leakage_gap,
        prepare_training_data,
    )

    gap = (leakage_gap(ds) or 0) if profile.gap is None else int(profile.gap)
    block = default_block_size(profile.training.patch_size, gap) \
        if profile.block_cells is None else int(profile.block_cells)
    splitter = BlockSplitter(block_size=block, fractions=profile.fractions, gap=gap, seed=seed)
    out: dict[str, TrainingData] = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*narrower than the patch size.*")
        for inputs in (*INPUT_SETS, TOOLKIT_INPUTS) if profile.toolkit_row else INPUT_SETS:
            margin = toolkit_margin(profile) if inputs == TOOLKIT_INPUTS else 0
            out[inputs] = prepare_training_data(ds, inputs, splitter=splitter,
                                                patch_size=profile.training.patch_size,
                                                stride=profile.training.stride, seed=seed,
                                                margin=margin)
    ref = out[INPUT_SETS[0]]
    for inputs, data in out.items():
        same = (data.test_windows == ref.test_windows and data.train_windows ==
                ref.train_windows and np.array_equal(data.roles.values, ref.roles.values))
        if not same:  # pragma: no cover - a bug in patches if it happens
            raise DataError(f"split: input set {inputs!r} got other blocks or windows than "
                            f"{INPUT_SETS[0]!r}; every row must share one split")
    return out


def _split_summary(data: TrainingData) -> dict[str, Any]:
    """The shared split's record, and what its gap guarantees in words."""
    from geochem_sr.sampling import describe_gap

    return {**data.split_summary(), "held_out": describe_gap(data.roles.attrs)}


def run_experiment(
    profile: str | Profile = "cpu",
    out_dir: str | os.PathLike = Path("benchmarks/results"),
    seed: int = 0,
    *,
    resume: bool = False,
    log: Log | None = _stderr,
) -> Path:
    """Run the paper's experiment with classical baselines and write the results.

    Parameters
    ----------
    profile : {"cpu", "gpu", "smoke"} or Profile, default "cpu"
        Settings (:data:`PROFILES`): ``cpu`` about an hour on 2 CPU cores, ``gpu`` the
        paper's 1000 epochs, ``smoke`` seconds (tests).
    out_dir : path, default ``benchmarks/results``
        Folder of ``experiment-<profile>.md``, ``.json`` and ``.png``.
    seed : int, default 0
        Seed of the region, the embedding, the block split, the training and the trust
        calibration: the same seed gives the same table (on the same machine).
    resume : bool, default False
        Keep every finished network row in ``out_dir/.experiment-<profile>-cache`` and
        reuse the rows of an earlier, interrupted run with the same settings and seed (for
        the long ``gpu`` profile on machines with a time limit per command).
    log : callable or None
        Progress messages (default: to standard error); None is silent.

    Returns
    -------
    pathlib.Path
        The markdown results file.

    Examples
    --------
    >>> path = run_experiment("smoke", out_dir="/tmp/exp")  # doctest: +SKIP
    """
    prof = get_profile(profile)
    log = log or (lambda _msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"experiment-{prof.name}"
    md_path, json_path, png_path = (out_dir / f"{stem}.md", out_dir / f"{stem}.json",
                                    out_dir / f"{stem}.png")
    from geochem_sr.version import __version__

    fingerprint = json.dumps({"profile": prof.to_dict(), "seed": seed, "version": __version__,
                              "source": source_digest()}, sort_keys=True)
    cache = RowCache(out_dir / f".{stem}-cache", fingerprint, resume)
    t_start, timings = time.perf_counter(), {"load_start": _load()}

    log(f"profile {prof.name}: building the synthetic region and survey")
    t0 = time.perf_counter()
    region, ds = build_region(prof, seed)
    elements = [str(e) for e in ds[schema.ELEMENT].values]
    truth = truth_on_grid(region, ds)
    timings["survey_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    datas = training_data(ds, prof, seed)
    ref_data = datas[INPUT_SETS[0]]
    windows = ref_data.test_windows
    timings["patches_s"] = time.perf_counter() - t0
    split = _split_summary(ref_data)
    log(f"survey {dict(ds.sizes)}; split {split['patches']}")

    box = figure_box(ref_data)
    fig_el = figure_elements(elements)
    crops: dict[str, np.ndarray] = {}

    t0 = time.perf_counter()
    from geochem_sr.sampling import ROLE_TRAIN, ROLE_VAL

    codes = np.asarray(ref_data.roles.values)
    base_maps, base_info = classical_baselines(region, ds, prof, seed, log,
                                               (codes == ROLE_TRAIN) | (codes == ROLE_VAL))
    rows: list[dict[str, Any]] = []
    for key in BASELINES:
        row = {"key": key, "kind": "baseline", "network": None,
               "inputs": BASELINE_INPUTS[key], "label": BASELINE_LABELS[key],
               **score_map(ds, truth, base_maps[key], windows),
               "seconds": base_info[key]["seconds"]}
        rows.append(row)
        crops[key] = crop(base_maps[key], box, fig_el)
    timings["baselines_s"] = time.perf_counter() - t0
    hr_crop = crop(as_prediction(ds[schema.HR], ds, elements), box, fig_el)

    t_nets, trust, t_trust = time.perf_counter(), {}, 0.0
    for network in NETWORKS:
        for inputs in INPUT_SETS:
            key = row_key(network, inputs)
            hit = cache.get(key)
            if hit is not None:
                row, row_crops = hit
                log(f"{key}: from the cache")
            else:
                w0, c0 = time.perf_counter(), time.process_time()
                model, notes = train_network(ds, datas[inputs], network, prof, seed)
                pred = predict_map(ds, model)
                row = {"key": key, "kind": "network", "network": network, "inputs": inputs,
                       "label": f"{NETWORK_LABELS[network]} · {inputs}",
                       **score_map(ds, truth, pred, windows),
                       "training": training_info(model, notes),
                       "seconds": time.perf_counter() - w0,
                       "cpu_seconds": time.process_time() - c0, "load": _load()}
                row_crops = {"pred": crop(pred, box, fig_el)}
                if network == "multilevel_unet":
                    w1 = time.perf_counter()
                    row["trust"] = trust_figures(ds, model, datas[inputs], seed)
                    if prof.cv_folds:
                        row["trust"]["cross_validation"] = cross_validate_network(ds, inputs, prof,
                                                                           seed)
                    row["trust_seconds"] = time.perf_counter() - w1
                cache.put(key, row, row_crops)
                s = row["scores"]
                log(f"{key}: PSNR avg {s['psnr_avg']:.2f}, SSIM avg {s['ssim_avg']:.3f}, "
                    f"RMSE {s['rmse_log10']:.4f}, epochs {row['training']['epochs_run']} "
                    f"(best {row['training']['best_epoch']}), {row['seconds']:.0f} s")
            if "trust" in row:
                trust[inputs] = row["trust"]
                t_trust += float(row.get("trust_seconds", 0.0))
            rows.append(row)
            if inputs == INPUT_SETS[0]:
                crops[key] = row_crops["pred"]
    timings["networks_s"] = time.perf_counter() - t_nets - t_trust
    timings["trust_s"] = t_trust
    if prof.toolkit_row:
        t0 = time.perf_counter()
        hit, methods = cache.get("toolkit"), cache.get("methods")
        if hit is None or methods is None:
            w0, c0 = time.perf_counter(), time.process_time()
            model, notes = train_network(ds, datas[TOOLKIT_INPUTS], "multilevel_unet", prof, seed,
                                         toolkit=True)
            train_cpu = time.process_time() - c0
            pred = predict_map(ds, model)
            row = {"key": "toolkit", "kind": "toolkit", "network": "multilevel_unet",
                   "inputs": datas[TOOLKIT_INPUTS].inputs_set, "label": TOOLKIT_LABEL,
                   **score_map(ds, truth, pred, windows),
                   "training": training_info(model, notes),
                   "trust": trust_figures(ds, model, datas[TOOLKIT_INPUTS], seed),
                   "seconds": time.perf_counter() - w0}
            cache.put("toolkit", row, {})
            log(f"toolkit: RMSE {row['scores']['rmse_log10']:.4f}, {row['seconds']:.0f} s")
            methods = ({"rows": method_rows(ds, datas[TOOLKIT_INPUTS], model, train_cpu, prof,
                                            seed, truth, windows, log),
                        "classical": classical_gains(
                            ds, {k: base_maps[k] for k in CLASSICAL_ROWS if k in base_maps},
                            datas[TOOLKIT_INPUTS], model)}, {})
            cache.put("methods", *methods)
        else:
            row, _ = hit
        rows.append(row)
        rows.extend(methods[0]["rows"])
        for r in rows:
            if r["key"] in methods[0].get("classical", {}):
                r["gains"] = methods[0]["classical"][r["key"]]
        timings["methods_s"] = time.perf_counter() - t0

    # rows in table order: networks (paper's order) then baselines
    rows = [r for kind in ("network", "toolkit", "method", "baseline") for r in rows
            if r["kind"] == kind]
    findings, checks = check_expectations(rows)
    checks["methods"] = methods_checks(rows, elements)
    lr_row = next(r for r in rows if r["key"] == "sparse")
    hr_rmse, hr_per_element = truth_rmse(truth, as_prediction(ds[schema.HR], ds, elements),
                                         windows)
    reference = {
        "lr_vs_hr_rmse": lr_row["scores"]["rmse_log10"],
        "lr_vs_truth_rmse": lr_row["scores"]["truth_rmse_log10"],
        "hr_vs_truth_rmse": hr_rmse,
        "hr_vs_truth_per_element": hr_per_element,
    }

    write_figure(ds, crops, hr_crop, fig_el, box, bool(base_info["kriging"].get("equals_lr")),
                 prof.name, png_path)

    timings["total_s"] = time.perf_counter() - t_start
    timings["load_end"] = _load()
    result = {
        "format": RESULT_FORMAT,
        "profile": prof.to_dict(),
        "seed": int(seed),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "data": {
            "grid": [int(ds.sizes[schema.Y]), int(ds.sizes[schema.X])],
            "cell_size": float(ds.attrs.get("cell_size", region.cell_size)),
            "elements": elements, "n_sparse": int(len(region.samples_sparse)),
            "n_dense": int(len(region.samples_dense)), "split": split,
            "test_windows": [[w[0].start, w[0].stop, w[1].start, w[1].stop] for w in windows],
            "figure_box": [box[0].start, box[0].stop, box[1].start, box[1].stop],
            "figure_elements": fig_el,
        },
        "columns": list(TABLE_COLUMNS),
        "rows": rows,
        "baseline_info": base_info,
        "trust": trust,
        "reference": reference,
        "findings": findings,
        "checks": checks,
        "timings": timings,
        "figure": png_path.name,
    }
    result = to_jsonable(result)
    write_markdown(result, md_path)
    json_path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    log(f"wrote {md_path}, {json_path.name}, {png_path.name} in {timings['total_s'] / 60:.1f} min")
    return md_path
