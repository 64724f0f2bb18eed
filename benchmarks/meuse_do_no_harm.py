"""Do no harm on a small real survey: the Meuse notebook's settings, seeds 0-9 (issue 19).

For each seed (the thinning of the sparse survey and the block split), the real-data
notebook's recipe — Meuse, sparse survey one site per 300 m cell, ``unet`` of base width 16
and depth 2, 16-cell patches, 24-cell blocks, 40 epochs, ``train`` + ``gs.calibrate`` — is
run once, and each element's verdict is scored on the test blocks against the dense map:

* **rule before issue 19** (recomputed from the same network's held-out predictions): keep
  the least-squares factor when it is two jackknife errors above 0 over the validation
  blocks (halved until there are four groups) and gains >= 1 % there;
* **toolkit** (``gs.calibrate`` as it is now): evidence blocks as wide as the dense map's
  reach, at least four of them, the same z and gain tests, and a 95 % block-bootstrap lower
  bound on the gain above 0.

A verdict is harmful when the test-block RMSE is more than 1 % above the sparse map's.
Writes ``benchmarks/results/meuse_do_no_harm.md`` and ``.json``; about 2-3 min on one
thread. The synthetic cross-validated gains of the same code are
``benchmarks/results/cv_synthetic.md`` (``python benchmarks/cv_synthetic.py``).

Usage::

    python benchmarks/meuse_do_no_harm.py [--seeds 0 1 2 ...]
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
HARM = -0.01  # a verdict is harmful below this test-block gain


def legacy_factor(r: np.ndarray, t: np.ndarray, groups: np.ndarray) -> float:
    """The do-no-harm factor of the rule before issue 19 (validation cells only)."""
    den = float(np.sum(r * r))
    if den <= 0:
        return 0.0
    s_ls = float(np.sum(r * t) / den)
    _, inv = np.unique(groups, return_inverse=True)
    num_g, den_g = np.bincount(inv, r * t), np.bincount(inv, r * r)
    g = num_g.size
    d_rest = den_g.sum() - den_g
    if g < 2 or (d_rest <= 0).any():
        return 0.0
    loo = (num_g.sum() - num_g) / d_rest
    se = float(np.sqrt((g - 1) / g * np.sum((loo - loo.mean()) ** 2)))
    z = s_ls / se if se > 0 else math.inf
    if not (s_ls > 0 and z >= 2.0):
        return 0.0
    s = float(np.clip(s_ls * max(0.0, 1 - 1 / z**2), 0, 1))
    gain = 1 - np.sqrt(np.mean((t - s * r) ** 2)) / np.sqrt(np.mean(t**2))
    return s if gain >= 0.01 else 0.0


def test_gain(r: np.ndarray, t: np.ndarray, s: float) -> float:
    """1 - RMSE(sparse + s * residual) / RMSE(sparse), against the dense map."""
    return float(1 - np.sqrt(np.mean((t - s * r) ** 2)) / np.sqrt(np.mean(t**2)))


def run_seed(seed: int) -> list[dict]:
    """Train, calibrate and score one seed; one row per element."""
    import geochem_sr as gs
    from geochem_sr.data import meuse_inputs
    from geochem_sr.inference import prepare_inputs
    from geochem_sr.sampling import ROLE_TEST, ROLE_VAL, BlockSplitter
    from geochem_sr.trust import trust_report
    from geochem_sr.trust.predictions import predict_held
    from geochem_sr.trust.roles import block_ids, training_roles
    from geochem_sr.trust.shrinkage import MIN_GROUPS

    inp = meuse_inputs(sparse_spacing=300.0, cell_size=40.0, seed=seed)
    ds = gs.build_survey(inp.samples_sparse, inp.samples_dense, dem=inp.dem,
                         geology=inp.geology, bounds=inp.bounds, cell_size=40.0, seed=seed)
    model = ds.geosr.train(inputs="geochem+terrain+geology", network="unet",
                           network_kwargs={"base_channels": 16, "depth": 2}, epochs=40,
                           patience=10, patch_size=16, stride=8, margin=0,
                           splitter=BlockSplitter(block_size=24, seed=seed), seed=seed,
                           progress=False)
    cal = gs.calibrate(ds, model)
    report = trust_report(None, cal)
    roles = training_roles(ds, model)
    codes = np.asarray(roles.values)
    prepared = prepare_inputs(ds, model)
    held = predict_held(prepared, model, codes, block_ids(prepared, model, roles, MIN_GROUPS),
                        tile=256, device=None)
    rows = []
    for k, el in enumerate(held.elements):
        r, t = held.residual[k].astype(np.float64), held.target[k].astype(np.float64)
        ok = np.isfinite(r) & np.isfinite(t)
        val, test = ok & (held.roles == ROLE_VAL), ok & (held.roles == ROLE_TEST)
        s_old = legacy_factor(r[val], t[val], held.groups[val])
        per = cal.validation["per_element"][el]
        rows.append({
            "seed": seed, "element": el,
            "legacy_shrinkage": s_old, "legacy_gain": test_gain(r[test], t[test], s_old),
            "shrinkage": float(report.loc[el, "shrinkage"]),
            "gain": float(report.loc[el, "gain"]),
            "evidence_blocks": int(per.get("evidence_blocks", 0)),
            "gain_val_lcb": per.get("gain_val_lcb"),
            "verdict": per.get("verdict", ""),
            "test_cells": int(test.sum()), "val_cells": int(val.sum()),
            "held_out": report.attrs.get("held_out", ""),
        })
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    args = p.parse_args()
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for seed in args.seeds:
            rows.extend(run_seed(seed))
            print(f"seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    wall = time.perf_counter() - t0
    df = pd.DataFrame(rows)
    n = len(df)
    harm_old = int((df["legacy_gain"] < HARM).sum())
    harm_new = int((df["gain"] < HARM).sum())
    kept_old, kept_new = int((df["legacy_shrinkage"] > 0).sum()), int((df["shrinkage"] > 0).sum())

    def table(col: str) -> str:
        wide = df.pivot(index="seed", columns="element", values=col)
        out = ["| seed | " + " | ".join(wide.columns) + " |",
               "|---" * (len(wide.columns) + 1) + "|"]
        for seed, row in wide.iterrows():
            cells = ["0" if v == 0 else f"{v:+.1%}" for v in row]
            out.append(f"| {seed} | " + " | ".join(cells) + " |")
        return "\n".join(out)

    cv = RESULTS / "cv_synthetic.json"
    cv_line = ""
    if cv.exists():
        rec = json.loads(cv.read_text())
        gains = {el: v["gain"] for el, v in rec["per_element"].items()}
        cv_line = ("Synthetic region, same code (`python benchmarks/cv_synthetic.py`, seed "
                   f"{rec['seed']}, {rec.get('held_out', '')}): cross-validated gains "
                   + ", ".join(f"{el} {g:+.1%}" for el, g in gains.items()) + ".")
    lines = [
        "# Do no harm on a small real survey: Meuse, seeds 0-9",
        "",
        f"`python benchmarks/meuse_do_no_harm.py` ({wall / 60:.1f} min on one CPU thread). "
        "The real-data notebook's settings; test-block gain = 1 - RMSE(prediction) / "
        "RMSE(sparse map), log10, against the dense map; 0 = returned as the sparse map. "
        f"Split: {df['held_out'].iloc[0]}.",
        "",
        f"- Rule before issue 19: kept {kept_old} of {n}, **harmful (< -1 %) {harm_old}**.",
        f"- Toolkit now: kept {kept_new} of {n}, **harmful (< -1 %) {harm_new}**.",
        "",
        "## Rule before issue 19 (same networks)",
        "",
        table("legacy_gain"),
        "",
        "## Toolkit now",
        "",
        table("gain"),
        "",
        "## Verdicts in words (toolkit now)",
        "",
        *[f"- seed {r.seed} {r.element}: {r.verdict}" for r in df.itertuples()],
        "",
        cv_line,
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "meuse_do_no_harm.md").write_text("\n".join(lines), encoding="utf-8")
    (RESULTS / "meuse_do_no_harm.json").write_text(json.dumps(
        {"wall_s": round(wall, 1), "harmful_legacy": harm_old, "harmful": harm_new,
         "kept_legacy": kept_old, "kept": kept_new, "rows": rows}, indent=1, default=float))
    print("\n".join(lines))
    return 0 if harm_new == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
