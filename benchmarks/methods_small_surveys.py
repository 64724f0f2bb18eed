"""Do no harm with ``train("auto")``: per-element selection on small and poor surveys (issue 16).

Two cases where a method can only hurt if it is chosen carelessly:

* **Meuse, seeds 0-9** (real data, the real-data notebook's settings: one sparse site per
  300 m cell, 40 m grid, 16-cell patches, 24-cell blocks; geochemistry, terrain and soil
  classes): ``gs.select(ds, ["trees", "ridge"])`` per seed; each element's test-block gain
  over the sparse map after the selection's calibration;
* **the synthetic region with geochemistry only** (the experiment's ``cpu`` region and
  split, no DEM, no geology: ``inputs="geochem"``): the same selection, and each candidate
  alone, per element.

Beside each, the bar to clear: **re-tuned interpolation**
(:func:`geochem_sr.retune_interpolation`), the sparse samples gridded per element with
the kriging neighbourhood and nugget or IDW power that best reproduce the dense map on
the training and validation blocks, scored on the same test blocks.

A verdict is harmful when the test-block RMSE is more than 1 % above the sparse map's.
Writes ``benchmarks/results/methods_small_surveys.md`` and ``.json``.

Usage::

    python benchmarks/methods_small_surveys.py [--seeds 0 1 ...] [--skip-synthetic]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
HARM = -0.01


def retuned_gains(samples, ds, roles) -> dict[str, float]:
    """Per element: test-block gain of the re-tuned interpolation over the sparse map."""
    import numpy as np

    import geochem_sr as gs
    from geochem_sr.sampling import ROLE_TEST, ROLE_TRAIN, ROLE_VAL

    codes = np.asarray(roles.values)
    out = gs.retune_interpolation(gs.read_samples(samples), ds, ds["hr"],
                                  (codes == ROLE_TRAIN) | (codes == ROLE_VAL))
    test = codes == ROLE_TEST
    gains = {}
    for e, el in enumerate(str(v) for v in ds["element"].values):
        hr = np.log10(ds["hr"].values[e])
        d_lr = (np.log10(ds["lr"].values[e]) - hr)[test]
        d_rt = (np.log10(out["concentration"].values[e]) - hr)[test]
        ok = np.isfinite(d_lr) & np.isfinite(d_rt)
        gains[el] = float(1 - np.sqrt(np.mean(d_rt[ok] ** 2)) / np.sqrt(np.mean(d_lr[ok] ** 2)))
    return gains


def meuse_seed(seed: int) -> list[dict]:
    """Select on one Meuse seed; one row per element."""
    import geochem_sr as gs
    from geochem_sr.data import meuse_inputs
    from geochem_sr.sampling import BlockSplitter
    from geochem_sr.trust import training_roles

    inp = meuse_inputs(sparse_spacing=300.0, cell_size=40.0, seed=seed)
    ds = gs.build_survey(inp.samples_sparse, inp.samples_dense, dem=inp.dem,
                         geology=inp.geology, bounds=inp.bounds, cell_size=40.0, seed=seed)
    model = gs.select(ds, ["trees", "ridge"], inputs="geochem+terrain+geology", seed=seed,
                      patch_size=16, stride=8, splitter=BlockSplitter(block_size=24, seed=seed))
    retuned = retuned_gains(inp.samples_sparse, ds, training_roles(ds, model))
    return [{"seed": seed, "element": el, "method": row["method"],
             "gain": float(model.validation["per_element"][el]["gain"]),
             "gain_se": float(model.validation["per_element"][el].get("gain_se", float("nan"))),
             "shrinkage": float(model.shrinkage_of(el)), "retuned_gain": retuned[el]}
            for el, row in model.notes["selection"].items()]


def synthetic_geochem_only() -> dict:
    """The experiment's region and split, geochemistry only: select and each candidate."""
    import geochem_sr as gs
    from geochem_sr.experiment.methods import calibrated_gains
    from geochem_sr.experiment.profiles import get_profile
    from geochem_sr.experiment.run import build_region, training_data

    prof = get_profile("cpu")
    region, ds = build_region(prof, 0)
    data = training_data(ds, prof, 0)["geochem"]
    out = {"retuned": {el: {"gain": g} for el, g in
                       retuned_gains(region.samples_sparse, ds, data.roles).items()}}
    models = {}
    for kind in ("trees", "ridge"):
        models[kind] = gs.train(ds, kind, "geochem", data=data, seed=0, ensemble=3)
        out[kind] = calibrated_gains(gs.calibrate(ds, models[kind], roles=data.roles))
    auto = gs.select(ds, [models["trees"], models["ridge"]], roles=data.roles)
    out["auto"] = calibrated_gains(auto)
    out["auto_methods"] = {el: row["method"] for el, row in auto.notes["selection"].items()}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--skip-synthetic", action="store_true")
    args = p.parse_args()
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for seed in args.seeds:
            rows.extend(meuse_seed(seed))
            print(f"meuse seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
        synth = None if args.skip_synthetic else synthetic_geochem_only()
    wall = time.perf_counter() - t0
    df = pd.DataFrame(rows)
    harmful = df[df["gain"] < HARM]
    kept = df[df["shrinkage"] > 0]
    lines = [
        "# Do no harm with `train(\"auto\")` on small and poor surveys",
        "",
        f"`python benchmarks/methods_small_surveys.py --seeds {' '.join(map(str, args.seeds))}"
        f"` ({wall / 60:.1f} min, one torch thread). Gain = 1 - RMSE / RMSE(sparse map) on "
        "the test blocks against the dense map, after the selection's calibration; harmful "
        f"below {HARM:.0%}.",
        "",
        "## Meuse (real data), per seed: `gs.select(ds, [\"trees\", \"ridge\"])`",
        "",
        f"{len(df)} element verdicts: {len(kept)} corrections kept, **{len(harmful)} "
        f"harmful** on the test blocks"
        + (": " + ", ".join(f"seed {r.seed} {r.element} {r.gain:+.1%}"
                            for r in harmful.itertuples()) if len(harmful) else "") + ".",
        "",
        "| seed | " + " | ".join(sorted(df["element"].unique())) + " |",
        "|---" * (df["element"].nunique() + 1) + "|",
    ]
    for seed, part in df.groupby("seed"):
        cells = {r.element: (f"{r.gain:+.3f} ({r.method})" if r.shrinkage > 0 else "sparse")
                 + f"; re-tuned {r.retuned_gain:+.3f}" for r in part.itertuples()}
        lines.append(f"| {seed} | " + " | ".join(cells[e] for e in sorted(cells)) + " |")
    lines += ["", f"Mean over the {len(df)} verdicts: the selection {df['gain'].mean():+.2%}, "
              f"re-tuned interpolation {df['retuned_gain'].mean():+.2%}."]
    record = {"meuse": rows, "wall_s": round(wall, 1), "harm_threshold": HARM}
    if synth is not None:
        els = list(synth["auto"])
        lines += ["", "## Synthetic region, geochemistry only (experiment `cpu` split)", "",
                  "Calibrated test-block gains, %; no DEM, no geology: the only information "
                  "is the ten sparse element maps and their neighbourhoods.", "",
                  "| method | " + " | ".join(els) + " | mean |", "|---" * (len(els) + 2) + "|"]
        for kind in ("retuned", "trees", "ridge", "auto"):
            g = [synth[kind][el]["gain"] for el in els]
            lines.append(f"| {kind} | " + " | ".join(f"{100 * v:+.1f}" for v in g)
                         + f" | {100 * sum(g) / len(g):+.2f} |")
        lines += ["", "The selection's choice: " + ", ".join(
            f"{el} {m}" for el, m in synth["auto_methods"].items()) + "."]
        record["synthetic_geochem_only"] = synth
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "methods_small_surveys.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "methods_small_surveys.json").write_text(json.dumps(record, indent=1,
                                                                   default=float))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
