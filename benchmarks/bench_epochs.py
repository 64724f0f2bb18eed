"""Training epochs on 1 and 2 threads, and the training pipeline against a bare loop.

What ``train()`` costs a user, on the demo's set-up (the default 12.8 km synthetic region,
``inputs="auto"``, the multi-level U-Net, batch 32 of 32-cell patches, the default margin
of input context): each thread count runs in a fresh process (torch's thread count set
once, at its start), trains ``--epochs`` epochs with ``train()`` (patience off) and then
runs a **bare loop** over the same batches made beforehand — the same network, optimiser,
loss and validation forwards, without the loader, the augmentation, the checkpoint-free
bookkeeping or the validation report — for as many epochs. Reported: seconds per epoch
(the first epoch apart: it loads the patches and warms the kernels up), the 2- vs 1-thread
speed-up of both, and pipeline / bare at each thread count.

Goals (issue 15): epochs on 2 threads >= 1.6x those on 1 thread; pipeline >= 85 % of the
bare loop at 2 threads.

Run::

    .venv/bin/python benchmarks/bench_epochs.py                 # about 6-10 min, 2 cores
    .venv/bin/python benchmarks/bench_epochs.py --base-channels 16 --epochs 3

Writes ``benchmarks/results/training_epochs.md`` and ``.json``. Run it on an otherwise idle
machine: another process on the same cores slows the 2-thread runs most.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Train, then the bare loop, in this process with ``args.threads`` torch threads."""
    import torch

    torch.set_num_threads(args.threads)
    import geochem_sr as gs
    from geochem_sr.models import get_model
    from geochem_sr.sampling import make_loader, prepare_training_data, set_epoch
    from geochem_sr.training import TrainConfig, default_margin, train
    from geochem_sr.training.data import centre
    from geochem_sr.training.losses import get_loss
    from geochem_sr.training.runtime import memory_format

    warnings.simplefilter("ignore")
    region = gs.synthetic_region(seed=0, size_km=(12.8, 12.8))
    ds = gs.build_survey(region.samples_sparse, region.samples_dense, dem=region.dem,
                         geology=region.geology, faults=region.faults,
                         cell_size=region.cell_size, bounds=region.bounds, seed=0)
    kwargs = {"base_channels": args.base_channels}
    margin = default_margin("multilevel_unet", kwargs, 32) if args.margin is None \
        else args.margin
    cfg = TrainConfig(epochs=args.epochs, patience=None, seed=0, progress=False,
                      network_kwargs=kwargs, margin=margin)
    data = prepare_training_data(ds, "auto", patch_size=cfg.patch_size, stride=cfg.stride,
                                 seed=0, margin=cfg.margin)
    t0 = time.perf_counter()
    model = train(ds, "multilevel_unet", config=cfg, data=data)
    t_train = time.perf_counter() - t0
    epochs = [h["seconds"] for h in model.history]

    # the bare loop: same batches, made beforehand (one epoch's order and augmentations)
    loader = make_loader(data.train, batch_size=cfg.batch_size, shuffle=True, seed=0)
    set_epoch(loader, 0)
    batches = [(torch.nan_to_num(x), torch.nan_to_num(y), m.bool()) for x, y, m in loader]
    vloader = make_loader(data.val, batch_size=cfg.batch_size, shuffle=False, seed=0)
    vbatches = [(torch.nan_to_num(x), torch.nan_to_num(y), m.bool()) for x, y, m in vloader]
    torch.manual_seed(0)
    net = get_model("multilevel_unet", in_channels=len(data.channels),
                    out_channels=len(data.elements), base_channels=args.base_channels)
    fmt = memory_format(torch.device("cpu"), net)
    net = net.to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    loss_fn = get_loss(cfg.loss)
    bare = []
    for _ in range(args.epochs):
        t = time.perf_counter()
        net.train()
        for x, y, m in batches:
            opt.zero_grad(set_to_none=True)
            out = centre(net(x.contiguous(memory_format=fmt)), cfg.margin)
            loss_fn(out, y, m).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            for x, y, m in vbatches:
                loss_fn(centre(net(x.contiguous(memory_format=fmt)), cfg.margin), y, m)
        bare.append(time.perf_counter() - t)
    return {"threads": torch.get_num_threads(), "margin": cfg.margin,
            "train_patches": len(data.train), "val_patches": len(data.val),
            "train_s": t_train, "epoch_s": epochs, "bare_epoch_s": bare,
            "load": os.getloadavg()[0]}


def _section(record: dict[str, Any]) -> list[str]:
    """The markdown of one run (one network width)."""
    runs = {int(k): v for k, v in record["runs"].items()}
    one = runs[1]
    share = {int(k): v for k, v in record["pipeline_vs_bare"].items()}
    speedup, speedup_bare = record["speedup_2_vs_1"], record["speedup_2_vs_1_bare"]
    lines = [
        f"## multi-level U-Net base {record['base_channels']}", "",
        f"`{record['command']}` on {record['machine']}, {record['date']}: the demo's "
        f"set-up (12.8 km synthetic region, inputs auto, margin {one['margin']}, "
        f"{one['train_patches']} training and {one['val_patches']} validation patches). "
        "Seconds per epoch after the first (the first loads the patches and warms the "
        "kernels up); bare = the same steps and validation forwards over batches made "
        "beforehand.", "",
        "| threads | train() epochs | first epoch s | steady s/epoch | bare s/epoch | "
        "pipeline / bare | load avg at end |",
        "|---|---|---|---|---|---|---|",
    ]
    for t, r in sorted(runs.items()):
        lines.append(f"| {t} | {len(r['epoch_s'])} | {r['epoch_s'][0]:.2f} | "
                     f"{_steady(r['epoch_s']):.2f} | {_steady(r['bare_epoch_s']):.2f} | "
                     f"{share[t]:.3f} | {r['load']:.1f} |")
    lines += ["", f"- 2 threads vs 1: **x{speedup:.2f}** (train()), x{speedup_bare:.2f} (bare "
                  f"loop); goal >= 1.6 -> {'PASS' if speedup >= 1.6 else 'FAIL'}",
              f"- pipeline / bare at 2 threads: **{share[2]:.3f}**; goal >= 0.85 -> "
              f"{'PASS' if share[2] >= 0.85 else 'FAIL'}", ""]
    return lines


def _steady(v: list[float]) -> float:
    """Mean seconds per epoch after the first."""
    rest = v[1:] or v
    return sum(rest) / len(rest)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--base-channels", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="base width 16 (about a minute)")
    p.add_argument("--margin", type=int, default=None, help="default: train()'s")
    p.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.base_channels = 16
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return 0
    runs = {}
    for threads in (1, 2):
        cmd = [sys.executable, __file__, "--child", "1", "--threads", str(threads),
               "--epochs", str(args.epochs), "--base-channels", str(args.base_channels)]
        if args.margin is not None:
            cmd += ["--margin", str(args.margin)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if out.returncode:
            sys.stderr.write(out.stdout[-2000:] + out.stderr[-4000:])
            return out.returncode
        runs[threads] = json.loads(out.stdout.strip().splitlines()[-1])
        r = runs[threads]
        print(f"{threads} thread(s): epochs {[round(s, 2) for s in r['epoch_s']]} s, bare "
              f"{[round(s, 2) for s in r['bare_epoch_s']]} s", flush=True)
    one, two = runs[1], runs[2]
    speedup = _steady(one["epoch_s"]) / _steady(two["epoch_s"])
    speedup_bare = _steady(one["bare_epoch_s"]) / _steady(two["bare_epoch_s"])
    share = {t: _steady(r["bare_epoch_s"]) / _steady(r["epoch_s"]) for t, r in runs.items()}
    record = {
        "command": "python benchmarks/bench_epochs.py "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "base_channels": args.base_channels, "runs": runs,
        "speedup_2_vs_1": speedup, "speedup_2_vs_1_bare": speedup_bare,
        "pipeline_vs_bare": share,
        "goals": {"speedup >= 1.6": speedup >= 1.6,
                  "pipeline >= 0.85 of bare at 2 threads": share[2] >= 0.85},
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "training_epochs.json"
    allres = json.loads(path.read_text()) if path.exists() else {}
    if "runs" in allres:  # one result of an earlier layout
        allres = {f"base {allres['base_channels']}": allres}
    allres[f"base {args.base_channels}"] = record
    path.write_text(json.dumps(allres, indent=1))
    lines = ["# Training epochs on 1 and 2 threads (`benchmarks/bench_epochs.py`)", ""]
    for rec in sorted(allres.values(), key=lambda r: r["base_channels"]):
        lines += _section(rec)
    (RESULTS / "training_epochs.md").write_text("\n".join(lines))
    print("\n".join(_section(record)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
