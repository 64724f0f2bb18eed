"""Benchmark of geochem_sr.gridding and geochem_sr.covariates.terrain.

* Gridding 100,000 samples onto a 4096 x 4096 grid: IDW and local ordinary kriging
  (numpy path, and dask path on 2 threads): wall time, CPU time, peak memory (RSS).
* PyKrige's ordinary kriging (C backend, same variogram, same k nearest neighbours) side by
  side with ours on growing sizes at the same sample density, until PyKrige does not finish
  within the time limit: times, speed-up, and the largest difference of the two maps.
* Terrain (slope, aspect via xarray-spatial) on an 8192 x 8192 DEM, numpy vs dask.

Each case runs in its own process (peak RSS per case; a case past its time limit is
killed). Writes ``benchmarks/results/gridding.md`` and ``benchmarks/results/gridding.json``.

Usage::

    .venv/bin/python benchmarks/bench_gridding.py            # full size
    .venv/bin/python benchmarks/bench_gridding.py --quick    # small, about a minute
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CELL = 50.0
X0, Y0 = 500000.0, 4000000.0
CRS = "EPSG:32650"
VARIOGRAM = {"model": "spherical", "range": 8000.0, "sill": 0.12, "nugget": 0.01}
K = 16


# --- data -----------------------------------------------------------------------------
def log_field(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth multi-scale log10 concentration field (about 0.3 to 3)."""
    u, v = (x - X0) / 1000.0, (y - Y0) / 1000.0
    return (1.6 + 0.4 * np.sin(u / 9.0) * np.cos(v / 11.0) + 0.25 * np.sin((u + v) / 3.1)
            + 0.12 * np.cos(u / 1.3) * np.sin(v / 1.7))


def make_case(n_cells: int, n_samples: int, seed: int = 0) -> tuple[Any, Any]:
    import geopandas as gpd

    from geochem_sr import schema

    size = n_cells * CELL
    grid = schema.make_grid((X0, Y0, X0 + size, Y0 + size), CELL, CRS)
    rng = np.random.default_rng(seed)
    x, y = X0 + rng.uniform(0, size, n_samples), Y0 + rng.uniform(0, size, n_samples)
    values = 10 ** (log_field(x, y) + rng.normal(0, 0.08, n_samples))
    samples = gpd.GeoDataFrame({"As": values}, geometry=gpd.points_from_xy(x, y), crs=CRS)
    return samples, grid


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn: Any) -> tuple[Any, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def emit(record: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(record), flush=True)


# --- cases (run in a child process) ---------------------------------------------------------
def case_grid(method: str, n_cells: int, n_samples: int, path: str) -> None:
    import dask

    from geochem_sr.gridding import grid_samples

    samples, grid = make_case(n_cells, n_samples)
    warm, warm_grid = make_case(64, 300)
    grid_samples(warm, warm_grid, ["As"], method=method)  # compile / load the numba kernels
    base = rss_mb()
    chunks = 512 if path == "dask" else None

    def run() -> Any:
        out = grid_samples(samples, grid, ["As"], method=method, k=K, chunks=chunks)
        if path == "dask":
            with dask.config.set(scheduler="threads", num_workers=2):
                out = out.compute()
        return out

    out, wall, cpu = timed(run)
    conc = out["concentration"].values
    emit({
        "case": f"{method}-{path}", "cells": n_cells * n_cells, "grid": f"{n_cells}x{n_cells}",
        "samples": n_samples, "wall_s": wall, "cpu_s": cpu,
        "mcells_per_s_wall": n_cells**2 / wall / 1e6, "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": base, "covered": float(out["coverage"].values.mean()),
        "finite": float(np.isfinite(conc).mean()),
        "variogram": json.loads(out.attrs["variograms"]).get("As"),
        "max_distance": out.attrs["max_distance"],
    })


def case_pykrige(n_cells: int, n_samples: int) -> None:
    from pykrige.ok import OrdinaryKriging

    from geochem_sr.gridding import grid_samples

    samples, grid = make_case(n_cells, n_samples)
    warm, wgrid = make_case(64, 300)
    grid_samples(warm, wgrid, ["As"], variogram=VARIOGRAM)
    out, wall, cpu = timed(lambda: grid_samples(samples, grid, ["As"], k=K,
                                                variogram=VARIOGRAM, max_distance=1e12))
    ours = np.log10(out["concentration"].values[0].astype(np.float64))
    record = {"case": "vs-pykrige", "grid": f"{n_cells}x{n_cells}", "cells": n_cells**2,
              "samples": n_samples, "ours_wall_s": wall, "ours_cpu_s": cpu}
    emit({**record, "pykrige": "started"})
    x, y = samples.geometry.x.to_numpy(), samples.geometry.y.to_numpy()
    z = np.log10(samples["As"].to_numpy())

    def run() -> Any:
        ok = OrdinaryKriging(x, y, z, variogram_model=VARIOGRAM["model"],
                             variogram_parameters={key: VARIOGRAM[key]
                                                   for key in ("sill", "range", "nugget")})
        return ok.execute("grid", grid.x.values, grid.y.values, backend="C",
                          n_closest_points=K)

    (ref, _), pk_wall, pk_cpu = timed(run)
    emit({**record, "pykrige": "done", "pykrige_wall_s": pk_wall, "pykrige_cpu_s": pk_cpu,
          "speedup_wall": pk_wall / wall, "speedup_cpu": pk_cpu / cpu,
          "max_abs_diff_log10": float(np.max(np.abs(ours - np.asarray(ref)))),
          "peak_rss_mb": peak_rss_mb()})


def case_terrain(n_cells: int, path: str) -> None:
    import dask

    from geochem_sr import schema
    from geochem_sr.covariates import add_terrain

    size = n_cells * 10.0
    grid = schema.make_grid((X0, Y0, X0 + size, Y0 + size), 10.0, CRS)
    e = (grid.x.values - X0)[None, :] / 1000.0
    n = (grid.y.values - Y0)[:, None] / 1000.0
    elev = (800 + 300 * np.sin(e / 7.0) * np.cos(n / 5.0) + 40 * np.sin(e * 1.7 + n * 2.3)
            + 2.0 * e).astype(np.float32)
    ds = grid.assign(elevation=(("y", "x"), elev))
    del elev
    add_terrain(ds.isel(x=slice(0, 64), y=slice(0, 64)))  # import xrspatial, compile
    if path == "dask":
        ds = ds.chunk({"y": 1024, "x": 1024})
    base = rss_mb()

    def run() -> Any:
        out = add_terrain(ds)
        if path == "dask":
            with dask.config.set(scheduler="threads", num_workers=2):
                out = out.compute()
        return out

    out, wall, cpu = timed(run)
    digest = hashlib.sha256()
    for var in ("slope", "aspect"):
        digest.update(np.ascontiguousarray(out[var].values).tobytes())
    emit({"case": f"terrain-{path}", "grid": f"{n_cells}x{n_cells}", "cells": n_cells**2,
          "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": base,
          "slope_nan": int(np.isnan(out["slope"].values).sum()),
          "sha256": digest.hexdigest()})


# --- driver -----------------------------------------------------------------------------------
def run_child(args: list[str], timeout: float) -> tuple[list[dict[str, Any]], str | None]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    print("  $", " ".join(cmd[2:]), flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=HERE.parent)
        stdout, err = proc.stdout, (None if proc.returncode == 0 else proc.stderr[-2000:])
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = f"timeout after {timeout:.0f} s"
    records = [json.loads(line[7:]) for line in stdout.splitlines() if line.startswith("RESULT ")]
    for rec in records:
        print("   ", json.dumps(rec), flush=True)
    if err:
        print("    !", err.strip().splitlines()[-1] if err.strip() else err, flush=True)
    return records, err


def machine() -> dict[str, Any]:
    import numba
    import pykrige
    import scipy
    import xrspatial

    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "load_avg_start": os.getloadavg(), "numpy": np.__version__,
            "scipy": scipy.__version__, "numba": numba.__version__,
            "pykrige": pykrige.__version__, "xrspatial": xrspatial.__version__,
            "platform": platform.platform()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--pykrige-max", type=int, default=1024,
                        help="largest grid side tried with PyKrige (its (N+1)^2 matrix of all "
                             "samples: 2048 means 25,000 samples and ~5 GB)")
    parser.add_argument("--pykrige-timeout", type=float, default=600.0,
                        help="seconds a PyKrige size may take")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "grid":
            case_grid(rest[0], int(rest[1]), int(rest[2]), rest[3])
        elif kind == "pykrige":
            case_pykrige(int(rest[0]), int(rest[1]))
        else:
            case_terrain(int(rest[0]), rest[1])
        return

    n_cells, n_samples, terrain_cells = (1024, 6250, 2048) if args.quick else (4096, 100_000, 8192)
    density = n_cells * n_cells / n_samples  # cells per sample, kept for the PyKrige sizes
    sides = [s for s in (256, 512, 1024, 2048) if s <= min(args.pykrige_max, n_cells)]
    if args.quick:
        sides = sides[:2]
    info = {"machine": machine(), "command": " ".join(sys.argv), "quick": args.quick,
            "k": K, "cell_m": CELL, "cases": [], "pykrige": [], "terrain": []}
    print(f"gridding {n_samples} samples onto {n_cells}x{n_cells}", flush=True)
    for method, path in (("idw", "numpy"), ("kriging", "numpy"), ("kriging", "dask")):
        recs, err = run_child(["grid", method, str(n_cells), str(n_samples), path], 1800)
        info["cases"].extend(recs or [{"case": f"{method}-{path}", "error": err}])
    print("PyKrige side by side (same variogram, same k, C backend)", flush=True)
    for side in sides:
        n = int(round(side * side / density))
        recs, err = run_child(["pykrige", str(side), str(n)], args.pykrige_timeout)
        last = recs[-1] if recs else {"grid": f"{side}x{side}", "samples": n}
        if err:
            last = {**last, "pykrige": f"did not finish: {err.splitlines()[-1][:200]}"}
        info["pykrige"].append(last)
        if err:
            break
    print(f"terrain on {terrain_cells}x{terrain_cells}", flush=True)
    digests = []
    for path in ("numpy", "dask"):
        recs, err = run_child(["terrain", str(terrain_cells), path], 1800)
        info["terrain"].extend(recs or [{"case": f"terrain-{path}", "error": err}])
        digests += [r["sha256"] for r in recs]
    if len(digests) == 2:
        info["terrain_numpy_equals_dask"] = digests[0] == digests[1]
    info["machine"]["load_avg_end"] = os.getloadavg()
    write(info)


def fmt(v: Any, nd: int = 1) -> str:
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def write(info: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "gridding"
    (RESULTS / f"{name}.json").write_text(json.dumps(info, indent=2, default=str))
    m = info["machine"]
    lines = [
        "# Gridding and terrain benchmark",
        "",
        f"Command: `{info['command']}`" + (" (reduced size)" if info["quick"] else ""),
        "",
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, numpy {m['numpy']}, numba "
        f"{m['numba']}, PyKrige {m['pykrige']}, xarray-spatial {m['xrspatial']}. Load average "
        f"{tuple(round(x, 1) for x in m['load_avg_start'])} at start, "
        f"{tuple(round(x, 1) for x in m['load_avg_end'])} at end (the machine is shared: "
        "wall times include waiting for a core; CPU time is this process's own).",
        "",
        "## Samples onto the grid (one element, k = 16, variogram fitted automatically)",
        "",
        "| case | grid | samples | wall s | CPU s | M cells/s (wall) | peak RSS MB | covered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in info["cases"]:
        if "error" in c:
            lines.append(f"| {c['case']} | failed: {c['error'][:80]} |||||||")
            continue
        lines.append(
            f"| {c['case']} | {c['grid']} | {c['samples']} | {fmt(c['wall_s'])} | "
            f"{fmt(c['cpu_s'])} | {fmt(c['mcells_per_s_wall'], 2)} | {fmt(c['peak_rss_mb'], 0)} "
            f"| {fmt(c['covered'], 3)} |"
        )
    lines += [
        "",
        "numpy path: one thread, 512² blocks in a loop. dask path: 512² chunks, threaded "
        "scheduler with 2 workers. Peak RSS is the whole process (Python, libraries, samples "
        "and output included).",
        "",
        "## Side by side with PyKrige (same variogram, same 16 nearest neighbours)",
        "",
        f"Variogram {VARIOGRAM}; PyKrige `OrdinaryKriging(...).execute('grid', ..., "
        "backend='C', n_closest_points=16)` (its fastest backend; its constructor is timed too, "
        "since it builds an (N+1)² matrix of all samples); ours `grid_samples(..., "
        "variogram=..., max_distance=inf)` on one thread. Same sample density as above.",
        "",
        "| grid | samples | ours wall s | ours CPU s | PyKrige wall s | PyKrige CPU s | "
        "speed-up (wall) | speed-up (CPU) | max abs diff (log10) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in info["pykrige"]:
        if p.get("pykrige") != "done":
            lines.append(f"| {p.get('grid')} | {p.get('samples')} | "
                         f"{fmt(p.get('ours_wall_s', '-'))} | {fmt(p.get('ours_cpu_s', '-'))} | "
                         f"{p.get('pykrige')} |||||")
            continue
        lines.append(
            f"| {p['grid']} | {p['samples']} | {fmt(p['ours_wall_s'], 2)} | "
            f"{fmt(p['ours_cpu_s'], 2)} | {fmt(p['pykrige_wall_s'], 2)} | "
            f"{fmt(p['pykrige_cpu_s'], 2)} | {fmt(p['speedup_wall'])}x | "
            f"{fmt(p['speedup_cpu'])}x | {p['max_abs_diff_log10']:.1e} |"
        )
    lines += [
        "",
        "## Terrain (slope + aspect, xarray-spatial) on the DEM grid",
        "",
        "| case | grid | wall s | CPU s | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    for t in info["terrain"]:
        if "error" in t:
            lines.append(f"| {t['case']} | failed: {t['error'][:80]} ||||")
            continue
        lines.append(f"| {t['case']} | {t['grid']} | {fmt(t['wall_s'])} | {fmt(t['cpu_s'])} | "
                     f"{fmt(t['peak_rss_mb'], 0)} |")
    if "terrain_numpy_equals_dask" in info:
        lines += ["", "numpy and dask slope and aspect bit-identical (sha256): "
                      f"{info['terrain_numpy_equals_dask']}"]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
