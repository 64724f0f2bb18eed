"""Cross-validated gains of the toolkit's recipe on the default synthetic region.

Spatial 5-fold block cross-validation of an ensemble of three multi-level U-Nets (base
width 16, every input group the survey provides, 100 epochs, patience 20, lr 3e-4) on the
default 12.8 km synthetic region with both surveys everywhere — the check that used to run
inside the test suite (about 7 min on one CPU thread; the suite now runs a fast version,
``tests/test_trust_synthetic.py``).

Run::

    .venv/bin/python benchmarks/cv_synthetic.py [--seed 0] [--ensemble 3]

Prints the per-element table and writes ``benchmarks/results/cv_synthetic.md`` and
``.json``, with the verdict of the criteria it checks (:func:`criteria`).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
#: Elements with strong fault-hosted (As, Au) or contact anomalies (Bi, Cu, Zn, Pb).
IMPROVED = ("As", "Bi", "Au", "Cu", "Pb", "Zn")
#: Folds of the cross-validation and base width of the U-Nets.
FOLDS, BASE = 5, 16


def criteria(per) -> list[tuple[str, bool]]:
    """(criterion, met) for each criterion, from the per-element table of the report."""
    g, cov1 = per["gain"], per["coverage_1std"]
    return [
        ("mean gain of As, Bi, Au, Cu, Pb, Zn > +1 %", bool(g[list(IMPROVED)].mean() > 0.01)),
        ("each of As, Bi, Au, Cu, Pb, Zn > 0", bool((g[list(IMPROVED)] > 0).all())),
        ("Au, Cu, Zn each > +1 %", bool((g[["Au", "Cu", "Zn"]] > 0.01).all())),
        ("no element below -1 % (do no harm)", bool(g.min() > -0.01)),
        ("1-std coverage of every element in 0.60-0.75", bool(cov1.between(0.60, 0.75).all())),
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ensemble", type=int, default=3)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--size-km", type=float, default=12.8)
    p.add_argument("--gap", type=int, default=None,
                   help="cells between held-out folds and training (default: the dense "
                        "map's reach, cross_validate's default); results go to "
                        "cv_synthetic_gap<N>.md when given")
    p.add_argument("--block", type=int, default=None,
                   help="block side in cells (default: cross_validate's, from the gap); "
                        "results go to cv_synthetic[_gap<N>]_block<B>.md when given")
    p.add_argument("--margin", type=int, default=None,
                   help="cells of input context around each training patch (default: "
                        "train()'s)")
    p.add_argument("--stride", type=int, default=None,
                   help="step between training patches (default: train()'s)")
    p.add_argument("--tag", default="",
                   help="suffix of the results files (cv_synthetic<tag>.md), to keep runs "
                        "with other settings beside the default one")
    args = p.parse_args()
    import torch

    import geochem_sr as gs
    from geochem_sr.sampling import describe_gap
    from geochem_sr.trust import cross_validate

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    region = gs.synthetic_region(seed=0, size_km=(args.size_km, args.size_km))
    ds = gs.build_survey(region.samples_sparse, region.samples_dense, dem=region.dem,
                         geology=region.geology, faults=region.faults,
                         cell_size=region.cell_size, bounds=region.bounds, method="idw")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rep = cross_validate(ds, "multilevel_unet", "auto", folds=FOLDS, seed=args.seed,
                             epochs=args.epochs, patience=20, learning_rate=3e-4,
                             ensemble=args.ensemble, network_kwargs={"base_channels": BASE},
                             gap=args.gap, block_size=args.block,
                             **({} if args.margin is None else {"margin": args.margin}),
                             **({} if args.stride is None else {"stride": args.stride}))
    wall = time.perf_counter() - t0
    per = rep.per_element.drop("mean", errors="ignore")
    checks = criteria(per)
    table = per[["gain", "gain_raw", "shrinkage", "coverage_1std", "coverage_2std"]]
    print(table.round(4).to_string())
    print(f"wall {wall:.0f} s")
    for c, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {c}")
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / ("cv_synthetic" + ("" if args.gap is None else f"_gap{args.gap}")
                      + ("" if args.block is None else f"_block{args.block}") + args.tag)
    s = rep.settings
    held_out = describe_gap({**s, "gap_cells": s["gap"]})
    print(held_out)
    record = {"seed": args.seed, "ensemble": args.ensemble, "epochs": args.epochs,
              "margin": args.margin, "stride": args.stride,
              "size_km": args.size_km, "wall_s": round(wall, 1), "gap_cells": s["gap"],
              "block_size_cells": s["block_size_cells"],
              "leakage_gap_cells": s.get("leakage_gap_cells"), "held_out": held_out,
              "per_element": table.round(5).to_dict(orient="index"),
              "criteria": dict(checks)}
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1))
    lines = [
        "# Cross-validated gains on the default synthetic region",
        "",
        f"`python benchmarks/cv_synthetic.py --seed {args.seed} --ensemble {args.ensemble} "
        f"--epochs {args.epochs} --size-km {args.size_km:g}"
        + ("" if args.gap is None else f" --gap {args.gap}")
        + ("" if args.block is None else f" --block {args.block}")
        + ("" if args.margin is None else f" --margin {args.margin}")
        + ("" if args.stride is None else f" --stride {args.stride}")
        + f"` ({wall / 60:.1f} min on one CPU thread). Spatial {FOLDS}-fold block CV on a "
        f"{args.size_km:g} km region, blocks {s['block_size_cells'][0]} cells, multi-level "
        f"U-Net base {BASE}, inputs auto, gains after the fold's do-no-harm calibration; "
        f"{held_out}.",
        "",
        "```",
        table.round(4).to_string(),
        "```",
        "",
        *[f"- {'PASS' if ok else 'FAIL'}: {c}" for c, ok in checks],
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines))
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
