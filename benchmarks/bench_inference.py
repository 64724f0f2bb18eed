"""Benchmark of tiled super-resolution, Zarr to Zarr (issue 6).

For each region size: a synthetic survey store (10 elements, terrain, a 5-dimensional
geology embedding: the paper's 18 channels, 19 here with aspect as sin/cos) is written with
Dask, then a *fresh process* runs :func:`geochem_sr.inference.predict_to_zarr` on it and,
in the same process, the bare network forward over the same windows (tensors already in
memory, same network object, same torch threads). Reported: cells/s of both, their ratio,
peak RSS of the prediction process, the cost of 4x the area, and a projection to 8192^2
from the measured per-tile cost and RSS.

Floors (issue 6): pipeline throughput >= 85 % of the bare forward; 4x the area <= 4.4x the
time with peak RSS within 1.25x; an 8192^2 region (projected) under 4 GB of RSS.

Usage::

    python benchmarks/bench_inference.py                      # paper network, 2048^2, 4096^2
    python benchmarks/bench_inference.py --quick              # base_channels 16, 1024^2, 2048^2
    python benchmarks/bench_inference.py --sizes 512 1024 --base-channels 64 --label full

Results are merged by ``--label`` into ``benchmarks/results/inference.json`` and the table
``benchmarks/results/inference.md`` is rewritten from all labels.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CELL = 25.0
GB = 1e9


# --------------------------------------------------------------------------- children
def make_input(path: Path, n: int, seed: int) -> None:
    """A synthetic survey store of n x n cells, generated and written chunk by chunk."""
    import dask.array as da
    import numpy as np

    import geochem_sr as gs
    from geochem_sr import schema

    g = schema.make_grid((500000.0, 4000000.0, 500000.0 + n * CELL, 4000000.0 + n * CELL),
                         CELL, "EPSG:32650")
    els = list(schema.DEFAULT_ELEMENTS)
    rs = da.random.RandomState(seed)
    c = 512
    lr = (10.0 ** rs.normal(0.0, 0.3, size=(len(els), n, n), chunks=(len(els), c, c)))
    elev = rs.normal(1500.0, 200.0, size=(n, n), chunks=(c, c))
    slope = rs.uniform(0.0, 40.0, size=(n, n), chunks=(c, c))
    aspect = rs.uniform(0.0, 360.0, size=(n, n), chunks=(c, c))
    emb = rs.normal(0.0, 1.0, size=(5, n, n), chunks=(5, c, c))
    yx = (schema.Y, schema.X)
    ds = g.assign({
        schema.LR: ((schema.ELEMENT, *yx), lr.astype(np.float32)),
        schema.ELEVATION: (yx, elev.astype(np.float32)),
        schema.SLOPE: (yx, slope.astype(np.float32)),
        schema.ASPECT: (yx, aspect.astype(np.float32)),
        schema.GEOLOGY_EMBEDDING: ((schema.EMBEDDING, *yx), emb.astype(np.float32)),
    }).assign_coords({
        schema.ELEMENT: els,
        schema.ELEMENT_UNITS: (schema.ELEMENT, [schema.DEFAULT_UNITS[e] for e in els]),
    })
    gs.write_survey(ds, path)


def make_model(path: Path, base: int, seed: int, context: str = "tile", ensemble: int = 1,
               calibrated: bool = False) -> None:
    """A freshly initialised multi-level U-Net of width ``base`` (the paper's: 64), or an
    ensemble of ``ensemble`` of them (spread from the members); ``calibrated``: with the
    shrinkage, std scale, std floor and area-of-applicability reference (2000 cells of the
    inputs' distribution) that calibration writes, so that the whole documented path runs
    (speed only: the weights are random)."""
    import numpy as np
    import torch

    from geochem_sr import schema
    from geochem_sr.features import channel_names
    from geochem_sr.models import GeoSRModel, PredictionSettings, get_model

    els = list(schema.DEFAULT_ELEMENTS)
    chans = channel_names("geochem+terrain+geology", els)
    torch.manual_seed(seed)
    if ensemble > 1:
        net = get_model("ensemble", in_channels=len(chans), out_channels=len(els),
                        member="multilevel_unet", n=ensemble,
                        member_config={"base_channels": base})
    else:
        net = get_model("multilevel_unet", in_channels=len(chans), out_channels=len(els),
                        base_channels=base)
    border = 16 if context == "tile" else None  # what train(margin=16) writes
    settings = PredictionSettings(context=context, border=border,
                                  spread="members" if ensemble > 1 else None)
    extra = {}
    if calibrated:
        rng = np.random.default_rng(seed)
        settings = PredictionSettings(context=context, std_floor={e: 0.01 for e in els},
                                      spread=settings.spread, border=border)
        extra = {"shrinkage": {e: 1.0 for e in els}, "std_scale": {e: 1.5 for e in els},
                 "aoa": {"reference": rng.normal(size=(2000, len(chans))).tolist(),
                         "mean_distance": 4.0, "threshold": 1.0, "channels": chans}}
    GeoSRModel(network_name=net.model_name, network_config=net.config,
               state_dict=net.state_dict(), inputs="geochem+terrain+geology", channels=chans,
               elements=els, units={e: schema.DEFAULT_UNITS[e] for e in els},
               norm_stats={c: (0.0, 1.0) for c in chans}, prediction=settings,
               **extra).save(path)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_predict(args: argparse.Namespace) -> dict:
    """Bare forward (first half of the windows), pipeline, bare forward (second half), in
    this fresh process, so that both see the same machine load; print one JSON line."""
    import numpy as np
    import torch

    import geochem_sr as gs
    from geochem_sr import inference
    from geochem_sr.inference.geometry import (
        geometry,
        region_border,
        round_up,
        tile_edges,
        window_context,
    )
    from geochem_sr.inference.heap import kept_heap
    from geochem_sr.inference.network import network, spread_source
    from geochem_sr.models import GeoSRModel

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    model = GeoSRModel.load(args.model)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)

    # the windows the pipeline runs the network on (core + 2 halo, rounded to the stride)
    n = args.size
    yb, xb = inference.tile_bounds((n, n), model, args.tile or None)
    tile = yb[0][1] - yb[0][0]
    halo = inference.default_halo(model)
    m = geometry(model).size_multiple
    orientations = args.uncertainty and spread_source(model) == "orientations"
    n_aug = 8 if orientations else 1
    border = region_border(model, halo)

    def window(i: int, j: int) -> tuple[int, int]:  # the window the pipeline runs tile (i, j) on
        (ys, ye), (xs, xe) = yb[i], xb[j]
        top, bottom, left, right = window_context(tile_edges(i, j, len(yb), len(xb)), halo,
                                                  border)
        return round_up(ye - ys + top + bottom, m), round_up(xe - xs + left + right, m)

    windows = [window(i, j) for i in range(len(yb)) for j in range(len(xb))
               for _ in range(n_aug)]
    # the bare forward over the same cells: the region in tile-size windows, no halo
    cores = [(round_up(ye - ys, m), round_up(xe - xs, m)) for ys, ye in yb for xs, xe in xb]
    net = network(model, model.digest, "cpu")  # the object the pipeline uses
    tensors = {hw: torch.randn(1, len(model.channels), *hw).contiguous(
        memory_format=torch.channels_last) for hw in set(windows) | set(cores)}
    sample = windows if not args.bare_sample else windows[:args.bare_sample]
    scale = len(windows) / len(sample)

    def bare(part: list) -> tuple[float, float]:
        # as the pipeline runs them: freed activations kept for the next forward
        c0, t0 = _cpu(), time.perf_counter()
        with torch.inference_mode(), kept_heap():
            for hw in part:
                net(tensors[hw])
        return time.perf_counter() - t0, _cpu() - c0

    with torch.inference_mode(), kept_heap():  # warm-up: one forward per shape, untimed
        for x in tensors.values():
            net(x)
    half = len(sample) // 2
    t_b1, c_b1 = bare(sample[:half])
    t_c1, _ = bare(cores[:len(cores) // 2])

    # warm-up of the pipeline, untimed like the bare forward's: a small store through the
    # same path, so that the one-off imports of the first call in a process (zarr, dask's
    # scheduler, numcodecs: about 0.9 s here) are not counted against the first region
    warm = out.with_name(out.name + "-warmup")
    make_input(warm / "in.zarr", 96, 1)
    inference.predict_to_zarr(warm / "in.zarr", warm / "out.zarr", model,
                              uncertainty=args.uncertainty, progress=False)
    shutil.rmtree(warm, ignore_errors=True)

    c0, t0 = _cpu(), time.perf_counter()
    with _PeakRss() as peak:  # the pipeline's own peak, not the bare forwards' before it
        inference.predict_to_zarr(args.input, out, model, tile=args.tile or None,
                                  uncertainty=args.uncertainty, progress=False)
    aoa = "aoa" in gs.open_survey(out).data_vars
    t_pipe, c_pipe = time.perf_counter() - t0, _cpu() - c0
    rss_pipe = peak.bytes

    t_b2, c_b2 = bare(sample[half:])
    t_c2, _ = bare(cores[len(cores) // 2:])
    t_bare, c_bare = (t_b1 + t_b2) * scale, (c_b1 + c_b2) * scale
    t_cells = t_c1 + t_c2
    window_cells = sum(h * w for h, w in windows) // n_aug
    tiles = len(windows) // n_aug
    ok = bool(np.isfinite(gs.open_survey(out)["hr_pred"][0, :64, :64].values).all())
    return {
        "size": n, "tile": tile, "halo": halo, "border": border, "tiles": tiles,
        "network": model.network_name, "spread": spread_source(model) if args.uncertainty
        else None, "aoa": aoa, "forwards_per_cell": n_aug,
        "bare_cells_s": t_cells, "cells_ratio": t_cells / t_pipe,
        "cells": n * n, "window_cells": window_cells,
        "halo_overhead": window_cells / (n * n),
        "pipeline_s": t_pipe, "bare_s": t_bare, "bare_projected": scale > 1,
        "pipeline_cells_per_s": n * n / t_pipe, "bare_cells_per_s": n * n / t_bare,
        "throughput_ratio": t_bare / t_pipe,
        "pipeline_cpu_s": c_pipe, "bare_cpu_s": c_bare, "cpu_ratio": c_bare / c_pipe,
        "peak_rss_gb": rss_pipe / GB,
        "torch_threads": torch.get_num_threads(),
        "uncertainty": bool(args.uncertainty),
        "load_average": [load_before, os.getloadavg()[0]],
        "output_complete_and_finite": ok,
    }


class _PeakRss:
    """The process's largest resident set while the block runs (sampled every 20 ms from
    ``/proc/self/statm``; the process-wide ``ru_maxrss`` where there is no ``/proc``)."""

    def __enter__(self) -> _PeakRss:
        import threading

        self.bytes = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        try:
            with open("/proc/self/statm") as f:
                self.bytes = max(self.bytes, int(f.read().split()[1]) * self._page)
        except OSError:
            self.bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def child(cmd: list[str]) -> dict | None:
    """Run this script as a fresh process; return the JSON it prints last."""
    proc = subprocess.run([sys.executable, __file__, *cmd], capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
        raise SystemExit(f"child {cmd[:2]} failed ({proc.returncode})")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else None


# --------------------------------------------------------------------------- report
def summarise(runs: list[dict]) -> dict:
    runs = sorted(runs, key=lambda r: r["size"])
    out: dict = {"floors": {}}
    out["floors"]["throughput_ratio_min"] = min(r["throughput_ratio"] for r in runs)
    out["floors"]["cpu_ratio_min"] = min(r["cpu_ratio"] for r in runs)
    out["floors"]["throughput_ok"] = out["floors"]["throughput_ratio_min"] >= 0.85
    if all("cells_ratio" in r for r in runs):
        out["floors"]["cells_ratio_min"] = min(r["cells_ratio"] for r in runs)
        big = [r["cells_ratio"] for r in runs if r["size"] >= 2048]
        out["floors"]["cells_ratio_min_2048_up"] = min(big) if big else None
    pairs = []
    for a in runs:
        for b in runs:
            if b["cells"] == 4 * a["cells"]:
                pairs.append({
                    "from": a["size"], "to": b["size"],
                    "time_ratio": b["pipeline_s"] / a["pipeline_s"],
                    "cpu_time_ratio": b["pipeline_cpu_s"] / a["pipeline_cpu_s"],
                    "rss_ratio": b["peak_rss_gb"] / a["peak_rss_gb"],
                })
    out["scaling"] = pairs
    if pairs:
        out["floors"]["time_4x_ok"] = all(p["time_ratio"] <= 4.4 for p in pairs)
        out["floors"]["rss_4x_ok"] = all(p["rss_ratio"] <= 1.25 for p in pairs)
    big = runs[-1]
    per_tile = big["pipeline_s"] / big["tiles"]
    tiles_8192 = math.ceil(8192 / big["tile"]) ** 2
    out["projection_8192"] = {
        "tiles": tiles_8192,
        "per_tile_s": per_tile,
        "time_s": per_tile * tiles_8192,
        "peak_rss_gb": max(r["peak_rss_gb"] for r in runs),
        "basis": f"per-tile cost of the {big['size']}^2 run; RSS flat across sizes "
                 "(one tile in flight)",
    }
    out["floors"]["rss_8192_ok"] = out["projection_8192"]["peak_rss_gb"] < 4.0
    return out


def write_results(label: str, meta: dict, runs: list[dict], summary: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "inference.json"
    allres = json.loads(path.read_text()) if path.exists() else {}
    allres[label] = {"meta": meta, "runs": runs, "summary": summary}
    path.write_text(json.dumps(allres, indent=2) + "\n")
    lines = ["# Tiled super-resolution, Zarr to Zarr (`benchmarks/bench_inference.py`)", "",
             "Pipeline = `predict_to_zarr` (read input Zarr, stack + normalise channels, "
             "network, write output Zarr region by region with the resume ledger), local, "
             "in a fresh process, after one untimed run on a 96^2 store (the process's "
             "one-off imports; runs labelled before issue 15's second round were timed "
             "without it). Bare = the same network object on the same windows "
             "(tensors already in memory), same process and torch threads, half of the "
             "windows timed just before the pipeline and half just after; both keep freed "
             "memory in the heap between forwards as the pipeline does "
             "(`inference.heap.kept_heap`; runs labelled before `heap kept` without it, "
             "in both). `peak RSS` = the process's resident set at its largest during the "
             "pipeline (sampled every 20 ms; runs labelled before `heap kept`: the "
             "process's maximum, bare forwards included). "
             "`halo overhead` = cells the network sees / cells predicted (exact halo). "
             "Ratio = bare time / pipeline time (throughput of the pipeline relative to the "
             "bare forward); the CPU-time ratio (process user+sys) is the same comparison "
             "without the waiting for a core that a shared machine adds. `load avg` = the "
             "machine's 1-minute load average at start and end (2 cores). "
             "**Bare over the cells** (issue 15) = the same network(s) on the region cut "
             "into tile-size windows with no halo: what the network itself costs for the "
             "cells predicted (an ensemble: its members' forwards); `ratio to it` = its time "
             "/ pipeline time, which counts the halo, the spread, the area of applicability "
             "and all reading and writing against the pipeline. Goals (issue 15): >= 0.50 "
             "for the documented default (calibrated model, `hr_pred_std`, AOA); >= 0.85 "
             "without uncertainty at 2048^2 and beyond.", ""]
    for lab, res in allres.items():
        m = res["meta"]
        lines += [f"## {lab}", "",
                  f"`{m['command']}` -- {m['network']}, tile {m['tile']}, "
                  f"uncertainty={m['uncertainty']}, torch threads {m['threads']}, "
                  f"{m['machine']}, {m['date']}", "",
                  "| region | tiles | halo overhead | pipeline s | pipeline cells/s | "
                  "bare over the cells s | ratio to it | "
                  "bare on the windows s | bare cells/s | ratio (wall) | ratio (CPU time) | "
                  "peak RSS GB | load avg |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["runs"]:
            star = "*" if r["bare_projected"] else ""
            lines.append(
                f"| {r['size']}^2 | {r['tiles']} | {r['halo_overhead']:.2f} | "
                f"{r['pipeline_s']:.1f} | {r['pipeline_cells_per_s']:,.0f} | "
                + (f"{r['bare_cells_s']:.1f} | **{r['cells_ratio']:.3f}** | "
                   if "cells_ratio" in r else "- | - | ")
                + f"{r['bare_s']:.1f}{star} | {r['bare_cells_per_s']:,.0f} | "
                f"{r['throughput_ratio']:.3f} | {r['cpu_ratio']:.3f} | "
                f"{r['peak_rss_gb']:.2f} | {r['load_average'][0]:.1f}-{r['load_average'][1]:.1f} |")
        s = res["summary"]
        f = s["floors"]
        ok = "PASS" if f["throughput_ok"] else "FAIL"
        if f.get("cells_ratio_min") is not None:
            if m["uncertainty"]:
                goal, got = 0.50, f["cells_ratio_min"]
                what = "with hr_pred_std" + (" and the AOA" if m.get("calibrated") else "")
            else:
                goal, got = 0.85, f.get("cells_ratio_min_2048_up")
                what = "without uncertainty, 2048^2 and beyond"
            if got is not None:
                lines += ["", f"- ratio to the bare forward over the cells ({what}): min "
                              f"{got:.3f}, goal >= {goal:.2f} -> "
                              f"{'PASS' if got >= goal else 'FAIL'}"]
        lines += ["", f"- throughput pipeline/bare (same windows) >= 0.85: min "
                      f"{f['throughput_ratio_min']:.3f} (wall) -> {ok}; by CPU time min "
                      f"{f['cpu_ratio_min']:.3f}"]
        for p in s["scaling"]:
            ok = "PASS" if p["time_ratio"] <= 4.4 and p["rss_ratio"] <= 1.25 else "FAIL"
            lines.append(f"- {p['from']}^2 -> {p['to']}^2 (4x area): time "
                         f"x{p['time_ratio']:.2f} (CPU time x{p['cpu_time_ratio']:.2f}; "
                         f"<= 4.4), peak RSS x{p['rss_ratio']:.2f} (<= 1.25) -> {ok}")
        pr = s["projection_8192"]
        lines.append(f"- 8192^2 projected: {pr['tiles']} tiles x {pr['per_tile_s']:.1f} s = "
                     f"{pr['time_s'] / 60:.0f} min, peak RSS {pr['peak_rss_gb']:.2f} GB (< 4) "
                     f"-> {'PASS' if f['rss_8192_ok'] else 'FAIL'} ({pr['basis']})")
        if any(r["bare_projected"] for r in res["runs"]):
            lines.append("- `*` bare forward timed on a sample of the (identical) windows and "
                         "scaled to all of them")
        lines.append("")
    (RESULTS / "inference.md").write_text("\n".join(lines))


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="base_channels 16 at 1024^2 and 2048^2 (a few minutes on 2 cores)")
    p.add_argument("--sizes", type=int, nargs="+", help="region sizes (cells per side)")
    p.add_argument("--base-channels", type=int, help="multi-level U-Net width (paper: 64)")
    p.add_argument("--tile", type=int, default=0,
                   help="tile side (0: the model's default, geochem_sr.inference.geometry."
                        "default_tile)")
    p.add_argument("--ensemble", type=int, default=1,
                   help="members of an ensemble (spread from the members)")
    p.add_argument("--calibrated", action="store_true",
                   help="the model carries calibration (std scale, floor) and an area-of-"
                        "applicability reference: the documented default path, AOA included")
    p.add_argument("--context", choices=["tile", "patch"], default="tile",
                   help="inference context (geochem_sr.inference notes): 'tile' whole windows "
                        "(what the bare forward runs), 'patch' 32-cell sub-windows (~4x the "
                        "forwards)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--uncertainty", action="store_true", help="with TTA (8 forwards per tile)")
    p.add_argument("--bare-sample", type=int, default=0,
                   help="time at most this many bare forwards per window shape, scale up")
    p.add_argument("--label", help="results key (default from the settings)")
    p.add_argument("--workdir", help="where the stores go (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the stores")
    p.add_argument("--render", action="store_true",
                   help="only rewrite inference.md (and summaries) from inference.json")
    # child modes (internal)
    p.add_argument("--child", choices=["input", "model", "predict"], help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child == "input":
        make_input(Path(args.out), args.size, seed=0)
        return 0
    if args.child == "model":
        make_model(Path(args.out), args.base_channels, seed=0, context=args.context,
                   ensemble=args.ensemble, calibrated=args.calibrated)
        return 0
    if args.child == "predict":
        print(json.dumps(run_predict(args)), flush=True)
        return 0

    if args.render:
        path = RESULTS / "inference.json"
        allres = json.loads(path.read_text())
        for res in allres.values():
            res["summary"] = summarise(res["runs"])
        path.write_text(json.dumps(allres, indent=2) + "\n")
        for lab, res in allres.items():
            write_results(lab, res["meta"], res["runs"], res["summary"])
        return 0
    sizes = args.sizes or ([1024, 2048] if args.quick else [2048, 4096])
    base = args.base_channels or (16 if args.quick else 64)
    label = args.label or (f"multilevel_unet base {base}, sizes {'/'.join(map(str, sizes))}"
                           + (", patch context" if args.context == "patch" else ""))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_inference_"))
    work.mkdir(parents=True, exist_ok=True)
    model_path = work / (f"model_b{base}_e{args.ensemble}_{args.context}"
                         f"{'_cal' if args.calibrated else ''}.pt")
    try:
        if not model_path.exists():
            child(["--child", "model", "--base-channels", str(base), "--out", str(model_path),
                   "--context", args.context, "--ensemble", str(args.ensemble)]
                  + (["--calibrated"] if args.calibrated else []))
        runs = []
        for n in sizes:
            src = work / f"in_{n}.zarr"
            if not src.exists():
                t0 = time.perf_counter()
                child(["--child", "input", "--size", str(n), "--out", str(src)])
                print(f"input {n}^2 written in {time.perf_counter() - t0:.0f} s", flush=True)
            cmd = ["--child", "predict", "--size", str(n), "--input", str(src), "--model",
                   str(model_path), "--out", str(work / f"out_{n}.zarr"), "--tile",
                   str(args.tile), "--threads", str(args.threads), "--bare-sample",
                   str(args.bare_sample)] + (["--uncertainty"] if args.uncertainty else [])
            r = child(cmd)
            runs.append(r)
            print(f"{n}^2: pipeline {r['pipeline_s']:.1f} s ({r['pipeline_cells_per_s']:,.0f} "
                  f"cells/s), bare over the cells {r['bare_cells_s']:.1f} s (ratio "
                  f"{r['cells_ratio']:.3f}), bare on the windows {r['bare_s']:.1f} s "
                  f"({r['bare_cells_per_s']:,.0f} cells/s), "
                  f"ratio {r['throughput_ratio']:.3f} (CPU {r['cpu_ratio']:.3f}), peak RSS "
                  f"{r['peak_rss_gb']:.2f} GB, load {r['load_average']}", flush=True)
            shutil.rmtree(work / f"out_{n}.zarr", ignore_errors=True)
        summary = summarise(runs)
        meta = {
            "command": "python benchmarks/bench_inference.py "
                       + shlex.join(argv or sys.argv[1:]),
            "network": f"multilevel_unet base_channels={base} (19 channels -> 10 elements)",
            "tile": runs[0]["tile"], "uncertainty": bool(args.uncertainty),
            "ensemble": args.ensemble, "calibrated": bool(args.calibrated),
            "context": args.context,
            "threads": runs[0]["torch_threads"],
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
            "date": time.strftime("%Y-%m-%d"),
        }
        write_results(label, meta, runs, summary)
        print(json.dumps(summary, indent=2))
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
