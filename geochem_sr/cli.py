"""Command line: ``geochem-sr demo | build | train | predict | evaluate | export |
experiment``."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from geochem_sr.errors import GeoSRError

__all__ = ["main", "build_parser"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from geochem_sr.demo import run_demo

    result = run_demo(Path(args.out), seed=args.seed, epochs=args.epochs,
                      size_km=args.size_km, model=args.network, ensemble=args.ensemble,
                      base_channels=args.base_channels)
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    import geochem_sr as gs
    from geochem_sr.io.stores import check_writable

    check_writable(Path(args.out), args.overwrite)  # before any work

    if args.synthetic:
        region = gs.synthetic_region(seed=args.seed, size_km=(args.size_km, args.size_km))
        sparse, dense, dem, geology, faults = (region.samples_sparse, region.samples_dense,
                                               region.dem, region.geology, region.faults)
    else:
        if not args.sparse:
            raise GeoSRError("build: pass --sparse SAMPLES (or --synthetic)")
        opts = {"crs": args.crs, "x": args.x_column, "y": args.y_column, "sep": args.sep,
                "decimal": args.decimal, "thousands": args.thousands,
                "encoding": args.encoding, "censored": args.censored}
        sparse = gs.read_samples(args.sparse, **opts)
        dense = gs.read_samples(args.dense, **opts) if args.dense else None
        dem, geology, faults = args.dem, args.geology, args.faults
    ds = gs.build_survey(sparse, dense, dem=dem, geology=geology, faults=faults,
                         cell_size=args.cell_size, crs=args.grid_crs, method=args.method,
                         unit_column=args.unit_column, censored=args.censored, seed=args.seed)
    path = gs.write_survey(ds, args.out, overwrite=args.overwrite)
    print(f"wrote {path}: {dict(ds.sizes)}, variables {sorted(ds.data_vars)}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import geochem_sr as gs

    ds = gs.open_survey(args.survey)
    width = {} if args.base_channels is None else {"base_channels": args.base_channels}
    auto = {"folds": args.folds} if args.network == "auto" else {}
    model = ds.geosr.train(network=args.network, inputs=args.inputs, epochs=args.epochs,
                           seed=args.seed, checkpoint=args.checkpoint,
                           ensemble=args.ensemble, margin=args.margin, network_kwargs=width,
                           **auto)
    if args.calibrate and args.network != "auto":  # auto's selection is calibrated
        from geochem_sr.trust import calibrate

        model = calibrate(ds, model, seed=args.seed, progress=True, folds=args.folds)
    model.save(args.model_out)
    print(model.summary())
    print(f"wrote {args.model_out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from geochem_sr.inference import predict_to_zarr

    path = predict_to_zarr(args.survey, args.out, args.model, tile=args.tile,
                           scheduler=args.scheduler, workers=args.workers,
                           uncertainty=not args.no_uncertainty, overwrite=args.overwrite,
                           reembed=args.reembed)
    print(f"wrote {path}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    import geochem_sr as gs
    from geochem_sr import schema
    from geochem_sr.metrics import compare_with_sparse

    pred = gs.open_survey(args.prediction)
    ds = gs.open_survey(args.survey) if args.survey else pred
    if schema.HR_PRED not in pred or schema.HR not in ds or schema.LR not in ds:
        raise GeoSRError("evaluate: expected hr_pred in the prediction and lr, hr in the "
                         "survey (pass --survey SURVEY.zarr)")
    windows, where = None, ("the whole area where both maps exist (pass --model MODEL to "
                            "score the model's held-out test blocks only)")
    if args.model:
        from geochem_sr.models import GeoSRModel
        from geochem_sr.sampling import describe_gap
        from geochem_sr.trust.roles import held_out_windows

        model = GeoSRModel.load(args.model)
        windows = held_out_windows(ds, model)
        if not windows:
            raise GeoSRError("evaluate: the model's test blocks hold no window with the dense "
                             "map; evaluate without --model")
        where = (f"the model's held-out test blocks ({len(windows)} windows of "
                 f"{model.patch_size} cells; {describe_gap(model.training.split or {})})")
    table = compare_with_sparse(ds, pred[schema.HR_PRED], windows=windows)
    print(f"Scores against the dense map on {where}.")
    print("gain = 1 - RMSE(prediction) / RMSE(sparse map), log10; PSNR/SSIM averaged over "
          "windows on log10 maps; iou95 = overlap of the cells above the dense map's 95th "
          "percentile")
    with pd.option_context("display.width", 160, "display.float_format", "{:.4f}".format):
        print(table.to_string())
    worse = [str(e) for e, g in table[("", "gain")].items() if e != "mean" and g < -0.01]
    if worse:
        print(f"worse than the sparse map here: {', '.join(worse)}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import geochem_sr as gs
    from geochem_sr.io.geotiff import export_geotiffs

    ds = gs.open_survey(args.store)
    paths = export_geotiffs(ds, args.out, args.variables or None,
                            clip_to_aoa=args.clip_to_aoa, overwrite=args.overwrite)
    for path in paths:
        print(f"wrote {path}")
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    from geochem_sr.experiment import run_experiment

    out = run_experiment(profile=args.profile, out_dir=Path(args.out), seed=args.seed)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``geochem-sr``."""
    from geochem_sr.version import __version__

    p = argparse.ArgumentParser(
        prog="geochem-sr",
        description="Geology- and topography-constrained super-resolution of geochemical maps.",
    )
    p.add_argument("--version", action="version", version=f"geochem-sr {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    fmt = {"formatter_class": argparse.ArgumentDefaultsHelpFormatter}

    d = sub.add_parser("demo", **fmt, help="whole pipeline on the built-in synthetic region")
    d.add_argument("--out", default="demo_output", help="output folder (Zarr + PNG)")
    d.add_argument("--seed", type=int, default=0, help="seed of the region, split and training")
    d.add_argument("--epochs", type=int, default=30, help="maximum training epochs")
    d.add_argument("--size-km", type=float, default=12.8, help="side of the synthetic region")
    d.add_argument("--network", default="multilevel_unet", help="network to train")
    d.add_argument("--ensemble", type=int, default=3,
                   help="networks averaged (their spread is hr_pred_std)")
    d.add_argument("--base-channels", type=int, default=16,
                   help="width of the U-Nets (the paper's: 64; other networks keep theirs)")
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser("build", **fmt, help="samples + DEM + geology -> survey Zarr")
    b.add_argument("out", help="output .zarr")
    b.add_argument("--synthetic", action="store_true", help="use the built-in synthetic region")
    b.add_argument("--size-km", type=float, default=12.8, help="synthetic region size")
    b.add_argument("--sparse", help="sparse (1:50,000) samples: CSV, GPKG or SHP")
    b.add_argument("--dense", help="dense (1:25,000) samples, where they exist")
    b.add_argument("--dem", help="DEM raster (GeoTIFF)")
    b.add_argument("--geology", help="geology polygons (GPKG, SHP)")
    b.add_argument("--faults", help="fault lines (GPKG, SHP)")
    b.add_argument("--unit-column", default="unit",
                   help="column of the geology file that names each unit")
    b.add_argument("--crs", help="CRS of CSV coordinates, e.g. EPSG:32650")
    b.add_argument("--grid-crs", help="projected CRS of the grid, e.g. EPSG:32650 "
                   "(default: that of the sparse samples; needed for lon/lat samples)")
    b.add_argument("--x-column", help="x coordinate column of the CSVs (default: detected)")
    b.add_argument("--y-column", help="y coordinate column of the CSVs (default: detected)")
    b.add_argument("--sep", help="CSV field separator (default: detected from the header)")
    b.add_argument("--decimal", help="decimal mark of the CSVs, e.g. ',' (default: '.')")
    b.add_argument("--thousands", help="thousands separator of the CSVs, e.g. ','")
    b.add_argument("--encoding", default="utf-8-sig", help="text encoding of the CSVs")
    b.add_argument("--censored", choices=["half", "dl", "nan"], default="half",
                   help="value given to '<DL' entries: DL/2, DL, or missing")
    b.add_argument("--cell-size", type=float, default=50.0, help="grid cell size in metres")
    b.add_argument("--method", choices=["kriging", "idw"], default="kriging",
                   help="gridding of both surveys")
    b.add_argument("--seed", type=int, default=0,
                   help="seed of the synthetic region and of the geology embedding")
    b.add_argument("--overwrite", action="store_true", help="replace an existing store")
    b.set_defaults(func=_cmd_build)

    t = sub.add_parser("train", **fmt, help="train a model on a survey Zarr")
    t.add_argument("survey", help="input survey .zarr (with lr and hr)")
    t.add_argument("--model-out", default="model.pt", help="model file to write")
    t.add_argument("--network", default="multilevel_unet",
                   choices=["multilevel_unet", "unet", "vdsr", "srcnn", "trees", "ridge",
                            "auto"],
                   help="method: the paper's four networks, per-cell gradient-boosted "
                        "trees or ridge regression, or auto: per element the best of the "
                        "multi-level U-Net, the trees, the ridge, their means and the "
                        "sparse map on held-out evidence")
    t.add_argument("--inputs", default="auto",
                   help="input set, e.g. geochem+terrain+geology; auto: all the survey provides")
    t.add_argument("--epochs", type=int, default=50,
                   help="maximum epochs (early stopping on the validation blocks)")
    t.add_argument("--seed", type=int, default=0, help="seed of the block split and training")
    t.add_argument("--checkpoint", help="checkpoint file: resume from it if present")
    t.add_argument("--ensemble", type=int, default=1,
                   help="train N networks (seeds seed..seed+N-1) and average them; their "
                        "spread is hr_pred_std at no extra cost")
    t.add_argument("--base-channels", type=int, default=None,
                   help="width of a U-Net (default: the paper's 64; 16 trains and predicts "
                        "about 10x faster on a CPU)")
    t.add_argument("--margin", type=int, default=None,
                   help="cells of input context around each training patch (default: 16, "
                        "or the network's reach; 0: predict as patch-size sub-windows)")
    t.add_argument("--folds", type=int, default=None,
                   help="trees and ridge: calibrated (and, with auto, chosen) on out-of-fold "
                        "predictions of the training and validation blocks from N refits "
                        "(default 5; a trees or ridge model fitted on its validation "
                        "blocks too, as train does whenever it can cross-fit, refuses 0)")
    t.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   default=argparse.SUPPRESS,
                   help="skip do-no-harm shrinkage and uncertainty calibration (calibrated "
                        "unless given)")
    t.set_defaults(func=_cmd_train, calibrate=True)

    r = sub.add_parser("predict", **fmt, help="super-resolve a survey Zarr into a prediction Zarr")
    r.add_argument("survey", help="input survey .zarr")
    r.add_argument("out", help="output .zarr (resumed if a previous run was interrupted)")
    r.add_argument("--model", required=True, help="model file")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--scheduler", help="dask.distributed scheduler address (tcp://...)")
    g.add_argument("--workers", type=int, help="start a local cluster with N workers")
    r.add_argument("--tile", type=int, default=None,
                   help="tile side in cells (one task each; default: from the network, 1024 "
                        "for a narrow one predicting whole tiles, 512 in patch context)")
    r.add_argument("--no-uncertainty", action="store_true",
                   help="skip hr_pred_std and the area of applicability (a single network's "
                        "spread takes 8 forwards per cell, an ensemble's none; the area of "
                        "applicability about a forward's worth)")
    r.add_argument("--overwrite", action="store_true",
                   help="start a new store instead of resuming an interrupted one")
    r.add_argument("--reembed", action="store_true",
                   help="embed the survey's geology with the model's vocabulary (a survey "
                        "built apart from the one the model was trained on)")
    r.set_defaults(func=_cmd_predict)

    e = sub.add_parser("evaluate", **fmt, help="PSNR/SSIM/RMSE/IoU of a prediction against hr")
    e.add_argument("prediction", help="prediction .zarr")
    e.add_argument("--survey", help="survey .zarr holding lr and hr (default: the prediction "
                                    "store)")
    e.add_argument("--model", help="model file: score only its held-out test blocks")
    e.set_defaults(func=_cmd_evaluate)

    o = sub.add_parser("export", **fmt,
                       help="Cloud-Optimized GeoTIFFs of a store's variables, for any GIS")
    o.add_argument("store", help="prediction (or survey) .zarr")
    o.add_argument("out", help="output folder: one <variable>.tif each")
    o.add_argument("--variables", nargs="+",
                   help="variables to write (default: hr_pred hr_pred_std aoa dissimilarity, "
                        "those present)")
    o.add_argument("--clip-to-aoa", action="store_true",
                   help="nodata outside the area of applicability in the element maps")
    o.add_argument("--overwrite", action="store_true", help="replace existing files")
    o.set_defaults(func=_cmd_export)

    x = sub.add_parser("experiment", **fmt, help="the paper's Table 6 + classical baselines")
    x.add_argument("--profile", choices=["cpu", "gpu", "smoke"], default="cpu",
                   help="cpu: about an hour on 2 cores; gpu: the paper's 1000 epochs; "
                        "smoke: a layout check")
    x.add_argument("--out", default="benchmarks/results", help="folder of the results")
    x.add_argument("--seed", type=int, default=0, help="seed of the region, split and networks")
    x.set_defaults(func=_cmd_experiment)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``geochem-sr`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GeoSRError as exc:
        print(f"geochem-sr {args.command}: error: {_as_options(str(exc))}", file=sys.stderr)
        return 2


#: Fixes that library messages phrase for Python callers, as a command-line user applies
#: them: (pattern, replacement), in order, before the keywords of :data:`_OPTIONS`.
_FIXES: tuple[tuple[str, str | Callable[[re.Match[str]], str]], ...] = (
    # --crs reaches the sample files only: a DEM or a vector layer must carry its own CRS
    (r"^(DEM file '(.+?)': expected a CRS, found none) \(pass crs=\.\.\.\)",
     r"\1 (--crs is for the sample files; give the raster its CRS: "
     r"gdal_translate -a_srs EPSG:... '\2' dem_with_crs.tif)"),
    (r"^((geology|faults) file '(.+?)': expected a CRS, found none) \(pass crs=\.\.\.\)",
     r"\1 (--crs is for the sample files; give the layer its CRS: "
     r"ogr2ogr -a_srs EPSG:... \2_with_crs.gpkg '\3')"),
    (r"set_crs\('EPSG:4326', allow_override=True\), or ogr2ogr -a_srs EPSG:4326\)",
     "ogr2ogr -a_srs EPSG:4326 NEW.gpkg FILE)"),
    (r"\(set_crs\(\.\.\., allow_override=True\)\)", "(ogr2ogr -a_srs EPSG:... NEW.gpkg FILE)"),
    (r", or dem\.rio\.write_crs\([^)]*\)\)", ")"),
    (r"pass crs= \(e\.g\. '([^']+)'\)", r"pass --crs (e.g. --crs \1)"),
    (r"reproject it first, e\.g\. with ds\.rio\.reproject\('([^']+)'\)",
     r"pass --grid-crs with a projected CRS for the grid (e.g. --grid-crs \1)"),
    # units are declared in the file, by a column As_unit (or unit, for every element)
    (r"\((?:pass |read_samples\()?units=\{'(\w+)': '?([^'}]*)'?\}\)?\)",
     lambda m: f"(with a column {m[1]}_unit in the file holding "
               f"{'the unit' if m[2] == '...' else m[2]})"),
    (r", a cell_size of at least (\S+) m, or terrain_from_dem\(\.\.\., max_coarsening=\.\.\.\) "
     r"to accept it", r" or a coarser grid: --cell-size \1 or more"),
    (r", or limit the grid to the DEM \(build_survey\(bounds=\.\.\.\)\)", ", or leave out --dem"),
    (r"; use a smaller block_size$",
     "; build the survey over a larger area or with a smaller --cell-size (blocks are "
     "sized in cells)"),
    (r"^clip_to_aoa:", "--clip-to-aoa:"),
    (r"; pass resume=False to start afresh or another checkpoint path",
     "; delete it to start afresh, or pass another --checkpoint"),
    (r"; re-embed with ds\.geosr\.embed_geology\(.*\) or gs\.super_resolve\(\.\.\., "
     r"reembed=True\)",
     "; pass --reembed to embed this survey's geology with the model's vocabulary"),
)

#: Python keywords named in error messages -> the command-line options that set them
#: (``name=True`` for flags).
_OPTIONS = {"crs": "--crs", "target_crs": "--grid-crs", "x": "--x-column",
            "y": "--y-column", "sep": "--sep", "decimal": "--decimal",
            "thousands": "--thousands", "encoding": "--encoding",
            "unit_column": "--unit-column", "cell_size": "--cell-size", "dem": "--dem",
            "geology": "--geology", "faults": "--faults", "overwrite=True": "--overwrite",
            "clip_to_aoa=True": "--clip-to-aoa", "reembed=True": "--reembed"}


def _as_options(message: str) -> str:
    """An error message with its Python keyword arguments phrased as command-line options.

    Examples
    --------
    >>> _as_options("samples file 's.csv': expected a CRS, found none (pass crs=...)")
    "samples file 's.csv': expected a CRS, found none (pass --crs ...)"
    >>> _as_options("output store 'p.zarr': exists (pass overwrite=True)")
    "output store 'p.zarr': exists (pass --overwrite)"
    """
    for pattern, fix in _FIXES:
        message = re.sub(pattern, fix, message)
    for kw, opt in _OPTIONS.items():
        if "=" in kw:  # a flag
            message = re.sub(rf"(?<![\w.]){re.escape(kw)}\b", opt, message)
        else:  # an option with a value: '--crs ...', but '--faults, not --geology'
            message = re.sub(rf"(?<![\w.]){kw}=(?=[^\s,;)])", f"{opt} ", message)
            message = re.sub(rf"(?<![\w.]){kw}=", opt, message)
    return message


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
