"""How ``train("auto")`` picks per element: the largest held-out gain, or a rule that
prefers averaging (issue 16), checked away from the experiment's test blocks.

The experiment (``geochem-sr experiment --profile cpu``, synthetic seed 0) showed that
always taking the mean of trees and ridge would have beaten the ridge on 8 of 10
elements where the selection's rule (the largest calibrated held-out gain) did on 7. A
rule chosen on those test blocks would be tuned on them, so candidate rules are compared
here on other data: the default 12.8 km synthetic region with seeds 1 and 2 (the
experiment's split and settings otherwise) and the ten Meuse splits of
``methods_small_surveys.py``. For each, ``gs.select(ds, [trees, ridge])`` is run once; its
table holds every option's held-out gain, jackknife error and test-block gain, so each
rule's choice is scored from the table without refitting.

Rules:

- ``largest``: the option with the largest calibrated held-out gain (the toolkit's);
- ``one-se``: among the options within one jackknife error of that one, the one that
  averages the most candidates (Breiman's one-standard-error rule, "simplest" read as
  "most averaged");
- ``widest``: the mean of every candidate whenever its correction is kept.

Run::

    .venv/bin/python benchmarks/selection_rules.py     # about 20 min on 2 CPU cores

Writes ``benchmarks/results/selection_rules.md`` and ``selection_rules.json`` (the tables
too, so that other rules can be scored from them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
Table = dict[str, dict[str, Any]]


def _parts(label: str) -> int:
    return label.count(" + ") + 1 if label.startswith("mean of ") else 1


def _kept(c: Table) -> Table:
    """The options whose correction the do-no-harm rule keeps."""
    return {n: r for n, r in c.items() if r["shrinkage"] > 0}


def largest(c: Table) -> str | None:
    """The kept option with the largest calibrated held-out gain."""
    kept = _kept(c)
    return max(kept, key=lambda n: kept[n]["gain_val"]) if kept else None


def _widest_of(options: Table) -> str | None:
    """The most averaged option, ties to the larger held-out gain."""
    return max(options, key=lambda n: (_parts(n), options[n]["gain_val"])) if options else None


def one_se(c: Table) -> str | None:
    """The most averaged kept option within one jackknife error of :func:`largest`."""
    best = largest(c)
    if best is None:
        return None
    floor = c[best]["gain_val"] - c[best]["gain_val_se"]
    return _widest_of({n: r for n, r in _kept(c).items() if r["gain_val"] >= floor})


def widest(c: Table) -> str | None:
    """The most averaged kept option."""
    return _widest_of(_kept(c))


RULES: dict[str, Callable[[Table], str | None]] = {
    "largest": largest, "one-se": one_se, "widest": widest}


def score(tables: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per rule: mean test gain over the verdicts, verdicts at least the ridge's, harmful
    (below -1 %) verdicts."""
    out = {}
    for name, rule in RULES.items():
        gains, at_least, n = [], 0, 0
        for table in tables.values():
            for row in table.values():
                c = row["candidates"]
                pick = rule(c)
                g = 0.0 if pick is None else c[pick]["gain_test"]
                ridge = next(v for k, v in c.items() if k.startswith("ridge"))
                rg = ridge["gain_test"] if ridge["shrinkage"] > 0 else 0.0
                gains.append(g)
                at_least += g >= rg - 1e-12
                n += 1
        out[name] = {"mean_gain": float(np.mean(gains)), "at_least_ridge": at_least,
                     "verdicts": n, "harmful": int(sum(g < -0.01 for g in gains))}
    return out


def synthetic_tables(seeds: list[int], size_km: float) -> dict[str, Any]:
    """``select([trees, ridge])`` on the experiment's split of other seeds."""
    import geochem_sr as gs
    from geochem_sr.experiment.profiles import TOOLKIT_INPUTS, get_profile
    from geochem_sr.experiment.run import build_region, training_data

    prof = dataclasses.replace(get_profile("cpu"), size_km=(size_km, size_km))
    out = {}
    for seed in seeds:
        _, ds = build_region(prof, seed)
        data = training_data(ds, prof, seed)[TOOLKIT_INPUTS]
        models = [gs.train(ds, kind, data.inputs_set, data=data, seed=seed,
                           ensemble=prof.toolkit_ensemble) for kind in ("trees", "ridge")]
        out[str(seed)] = gs.select(ds, models, roles=data.roles,
                                   folds=prof.cross_fit_folds).notes["selection"]
        print(f"synthetic seed {seed} done", flush=True)
    return out


def meuse_tables(seeds: list[int]) -> dict[str, Any]:
    """``select(["trees", "ridge"])`` on the Meuse splits of ``methods_small_surveys.py``."""
    import geochem_sr as gs
    from geochem_sr.data import meuse_inputs
    from geochem_sr.sampling import BlockSplitter

    out = {}
    for seed in seeds:
        inp = meuse_inputs(sparse_spacing=300.0, cell_size=40.0, seed=seed)
        ds = gs.build_survey(inp.samples_sparse, inp.samples_dense, dem=inp.dem,
                             geology=inp.geology, bounds=inp.bounds, cell_size=40.0, seed=seed)
        model = gs.select(ds, ["trees", "ridge"], inputs="geochem+terrain+geology", seed=seed,
                          patch_size=16, stride=8,
                          splitter=BlockSplitter(block_size=24, seed=seed))
        out[str(seed)] = model.notes["selection"]
        print(f"Meuse seed {seed} done", flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--synthetic-seeds", default="1,2")
    p.add_argument("--size-km", type=float, default=12.8)
    p.add_argument("--meuse-seeds", type=int, default=10)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tables = {"synthetic": synthetic_tables(
            [int(s) for s in args.synthetic_seeds.split(",") if s], args.size_km),
            "meuse": meuse_tables(list(range(args.meuse_seeds)))}
    scores = {k: score(v) for k, v in tables.items()}
    res = {"scores": scores, "tables": tables, "wall_s": time.perf_counter() - t0,
           "settings": vars(args) | {"out": str(args.out)}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "selection_rules.json").write_text(json.dumps(res, indent=1, default=float))
    lines = ["# Selection rules of `train(\"auto\")`, away from the experiment's test blocks",
             "", f"`python benchmarks/selection_rules.py` ({res['wall_s'] / 60:.1f} min). "
             "Each verdict is one element of one split; its gain is the test-block RMSE gain "
             "over the sparse map of the option the rule picks (0 for the sparse map); "
             "'≥ ridge' counts verdicts at least the calibrated ridge's; harmful: below −1 %.",
             "", "| data | rule | mean gain | ≥ ridge | harmful |", "|---|---|---|---|---|"]
    for data, by_rule in scores.items():
        for rule, s in by_rule.items():
            lines.append(f"| {data} | {rule} | {s['mean_gain']:+.2%} | "
                         f"{s['at_least_ridge']}/{s['verdicts']} | {s['harmful']} |")
    better = [r for r in RULES if r != "largest" and all(
        by[r]["mean_gain"] > by["largest"]["mean_gain"]
        and by[r]["harmful"] <= by["largest"]["harmful"] for by in scores.values())]
    lines += ["", "A rule would replace `largest` (the toolkit's) only if it gained more on "
              "every data set here with no more harmful verdicts: "
              + (", ".join(f"`{r}` does" for r in better) if better
                 else "none does, so `largest` stays") + "."]
    (args.out / "selection_rules.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
