"""Training speed of the four networks, and the data pipeline's share of a training step.

1. **Networks**: patches per second of a full training step (forward, the default
   ``mse+ssim`` loss, backward, Adam step) for ``multilevel_unet``, ``srcnn``, ``vdsr`` and
   ``unet`` at the paper's size (19 input channels: the paper's 18 with aspect as sin/cos;
   10 elements), batch 32 of 32x32 patches, ``channels_last`` on CPU, the default number of
   torch threads, after warm-up steps.
2. **Pipeline**: the real loader (:class:`geochem_sr.sampling.PatchDataset` with the 8-fold
   augmentation and :func:`geochem_sr.sampling.make_loader`, in the main process, as
   :func:`geochem_sr.training.train` uses it). Its share of training is
   ``t(loader) / (t(loader) + t(step))`` per patch, for each network (floor: under 10 %);
   and, in the same run, the real loader against a loop over the same batches made
   beforehand, both feeding training steps, in alternating rounds so that a busy machine
   slows both alike (``--paired``).

Run::

    .venv/bin/python benchmarks/bench_training.py            # about 3-5 min on 2 CPU cores
    .venv/bin/python benchmarks/bench_training.py --quick    # about 1-2 min

Writes ``benchmarks/results/training.md`` and ``training.json``. The machine's load average
is recorded: other processes on the same cores lower every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
NETWORKS = ("multilevel_unet", "srcnn", "vdsr", "unet")
FLOOR = 0.10


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps (about half the time)")
    p.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    p.add_argument("--paired", nargs="*", default=None, choices=NETWORKS,
                   help="networks timed with the real loader vs pre-made batches (default: "
                   "srcnn, the fastest, where the loader weighs most; with multilevel_unet "
                   "too unless --quick)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--patch-size", type=int, default=32)
    p.add_argument("--grid", type=int, default=192, help="cells per side of the survey")
    p.add_argument("--device", default=None, help="cpu or cuda (default: automatic)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's own choice, as training leaves it)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.warmup = 1 if args.quick else 2
    args.steps = 3 if args.quick else 5
    args.rounds = 2
    if args.paired is None:
        args.paired = ["srcnn"] if args.quick else ["srcnn", "multilevel_unet"]
    return args


# --------------------------------------------------------------------------- data
def _survey(n: int, seed: int = 0) -> Any:
    """A 10-element survey with terrain and a 5-d geology embedding (all 19 channels)."""
    from scipy import ndimage

    from geochem_sr import schema

    rng = np.random.default_rng(seed)
    g = schema.make_grid((500000.0, 4000000.0, 500000.0 + n * 50, 4000000.0 + n * 50), 50.0,
                         "EPSG:32650")
    elements = schema.DEFAULT_ELEMENTS
    elev = ndimage.gaussian_filter(rng.normal(size=(n, n)), 4) * 400 + 3000
    gy, gx = np.gradient(elev, 50.0)
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    aspect = (np.degrees(np.arctan2(-gx, gy)) + 360) % 360
    units = (ndimage.gaussian_filter(rng.normal(size=(n, n)), 8) > 0).astype(int)
    emb = np.moveaxis(rng.normal(size=(2, 5))[units], -1, 0)
    loglr = np.stack([ndimage.gaussian_filter(rng.normal(size=(n, n)), 6) * 3 + 1
                      for _ in elements])
    loghr = loglr + 0.2 * np.tanh(slope - slope.mean())[None] + 0.05 * rng.normal(size=loglr.shape)
    dims, grid = (schema.ELEMENT, schema.Y, schema.X), (schema.Y, schema.X)
    ds = g.assign({
        schema.LR: (dims, (10**loglr).astype("float32")),
        schema.HR: (dims, (10**loghr).astype("float32")),
        schema.ELEVATION: (grid, elev.astype("float32")),
        schema.SLOPE: (grid, slope.astype("float32")),
        schema.ASPECT: (grid, aspect.astype("float32")),
        schema.GEOLOGY_EMBEDDING: ((schema.EMBEDDING, *grid), emb.astype("float32")),
    })
    units_of = [schema.DEFAULT_UNITS[e] for e in elements]
    return ds.assign_coords(
        {schema.ELEMENT: list(elements), schema.ELEMENT_UNITS: (schema.ELEMENT, units_of)})


# --------------------------------------------------------------------------- steps
class _Stepper:
    """One training step exactly as :func:`geochem_sr.training.train` makes it."""

    def __init__(self, name: str, n_in: int, n_out: int, dev: Any) -> None:
        import torch

        from geochem_sr.models import count_parameters, get_model
        from geochem_sr.training.losses import get_loss
        from geochem_sr.training.runtime import memory_format

        torch.manual_seed(0)
        net = get_model(name, in_channels=n_in, out_channels=n_out)
        self.fmt = memory_format(dev, net)
        self.net = net.to(dev).to(memory_format=self.fmt).train()
        self.params = count_parameters(net)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.loss = get_loss("mse+ssim")
        self.dev = dev

    def __call__(self, x: Any, y: Any, mask: Any) -> float:
        import torch

        x = torch.nan_to_num(x.to(self.dev)).contiguous(memory_format=self.fmt)
        y = torch.nan_to_num(y.to(self.dev))
        mask = mask.to(self.dev)
        self.opt.zero_grad(set_to_none=True)
        value = self.loss(self.net(x), y, mask)
        value.backward()
        self.opt.step()
        return float(value.detach())


def _sync(dev: Any) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _random_batch(b: int, c: int, e: int, p: int) -> tuple:
    import torch

    g = torch.Generator().manual_seed(0)
    y = torch.randn(b, e, p, p, generator=g) * 0.1
    return torch.randn(b, c, p, p, generator=g), y, torch.ones_like(y, dtype=torch.bool)


def bench_network(name: str, args: argparse.Namespace, dev: Any, n_in: int = 19,
                  n_out: int = 10) -> dict[str, Any]:
    """Training patches/s of one network at the paper's size."""
    step = _Stepper(name, n_in, n_out, dev)
    batch = _random_batch(args.batch_size, n_in, n_out, args.patch_size)
    for _ in range(args.warmup):
        step(*batch)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(*batch)
    _sync(dev)
    sec = (time.perf_counter() - t0) / args.steps
    return {"network": name, "parameters": step.params, "seconds_per_step": sec,
            "patches_per_s": args.batch_size / sec, "memory_format": str(step.fmt)}


def loader_alone(data: Any, args: argparse.Namespace) -> float:
    """Seconds per patch of the real loader by itself (best of two whole epochs)."""
    from geochem_sr.sampling import make_loader, set_epoch

    loader = make_loader(data.train, batch_size=args.batch_size, shuffle=True, seed=0)
    best = np.inf
    for epoch in (10, 11):
        set_epoch(loader, epoch)
        t0 = time.perf_counter()
        n = sum(int(x.shape[0]) for x, _, _ in loader)
        best = min(best, (time.perf_counter() - t0) / n)
    return float(best)


def bench_paired(name: str, data: Any, args: argparse.Namespace, dev: Any) -> dict[str, Any]:
    """Real loader vs pre-made batches feeding the same training steps, alternating rounds."""
    from geochem_sr.sampling import make_loader, set_epoch

    loader = make_loader(data.train, batch_size=args.batch_size, shuffle=True, seed=0)
    n_batches = min(args.steps, len(loader))
    step = _Stepper(name, len(data.channels), len(data.elements), dev)
    set_epoch(loader, 0)
    premade = [b for _, b in zip(range(n_batches), loader, strict=False)]
    n_patches = sum(int(b[0].shape[0]) for b in premade)

    def real(epoch: int) -> float:
        set_epoch(loader, epoch)
        _sync(dev)
        t0 = time.perf_counter()
        for i, (x, y, m) in enumerate(loader):
            if i == n_batches:
                break
            step(x, y, m)
        _sync(dev)
        return time.perf_counter() - t0

    def made() -> float:
        _sync(dev)
        t0 = time.perf_counter()
        for x, y, m in premade:
            step(x, y, m)
        _sync(dev)
        return time.perf_counter() - t0

    for b in premade[: args.warmup]:
        step(*b)
    t_real, t_made = [], []
    for r in range(args.rounds):
        t_real.append(real(r + 1))
        t_made.append(made())
    return {
        "network": name,
        "batches_per_round": n_batches,
        "rounds": args.rounds,
        "patches_per_s_real_loader": n_patches / float(np.median(t_real)),
        "patches_per_s_premade": n_patches / float(np.median(t_made)),
        "pipeline_share_paired": 1.0 - float(np.median(t_made)) / float(np.median(t_real)),
    }


# --------------------------------------------------------------------------- report
def _markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# Training speed (`benchmarks/bench_training.py`)",
        "",
        f"Run {res['when']} on {m['device']} ({m['cpus']} CPUs, torch {m['torch']}, "
        f"{m['threads']} torch threads), batch {res['batch_size']} of "
        f"{res['patch_size']}x{res['patch_size']} patches, 19 input channels, 10 elements, "
        f"loss mse+ssim, Adam. Command: `{res['command']}`.",
        "",
        f"Load average at start / end: {m['load_start']} / {m['load_end']} "
        "(other processes shared these cores during the run: every figure is a lower "
        "bound of what an idle machine gives).",
        "",
    ]
    if m.get("default_threads") and m["threads"] != m["default_threads"]:
        lines += [
            f"Torch threads were set to {m['threads']} (`--threads`; torch's default here is "
            f"{m['default_threads']}, which training keeps). On a machine this busy, "
            "multi-threaded kernels wait for each other behind the other processes.",
            "",
        ]
        ref = res.get("default_threads_check")
        if ref:
            lines += [
                f"Check in the same run: {ref['network']} with {m['default_threads']} threads "
                f"took {ref['seconds_per_step']:.2f} s/step ({ref['patches_per_s']:.1f} "
                f"patches/s) against {ref['set_threads_seconds_per_step']:.2f} s/step with "
                f"{m['threads']}.",
                "",
            ]
    lines += [
        "## Training patches/s per network (paper size)",
        "",
        "| network | parameters | s / step | patches/s | memory format |",
        "|---|---:|---:|---:|---|",
    ]
    for r in res["networks"]:
        lines.append(f"| {r['network']} | {r['parameters']:,} | {r['seconds_per_step']:.3f} | "
                     f"{r['patches_per_s']:.1f} | {r['memory_format'].split('.')[-1]} |")
    loader_pps = res["loader_alone_patches_per_s"]
    lines += [
        "",
        "## Data pipeline's share (floor: under 10 %)",
        "",
        f"Real loader: `PatchDataset` (8-fold augmentation, aspect vector rotated) + "
        f"`make_loader` on a {res['grid']}x{res['grid']} survey ({res['train_patches']} training "
        f"patches), in the main process. By itself it delivers **{loader_pps:,.0f} patches/s**. "
        "Share of a training step = loader time / (loader time + step time):",
        "",
        "| network | step, patches/s | loader share | under floor |",
        "|---|---:|---:|---|",
    ]
    for r in res["networks"]:
        share = r["pipeline_share"]
        lines.append(f"| {r['network']} | {r['patches_per_s']:.1f} | {100 * share:.2f} % | "
                     f"{'yes' if share < FLOOR else 'NO'} |")
    lines += [
        "",
        "Real loader vs the same batches made beforehand, feeding the same training steps in "
        "the same run (rounds alternate so that a busy machine slows both alike):",
        "",
        "| network | batches x rounds | patches/s real loader | patches/s pre-made | "
        "difference |",
        "|---|---|---:|---:|---:|",
    ]
    for r in res["paired"]:
        lines.append(
            f"| {r['network']} | {r['batches_per_round']} x {r['rounds']} | "
            f"{r['patches_per_s_real_loader']:.1f} | {r['patches_per_s_premade']:.1f} | "
            f"{100 * r['pipeline_share_paired']:+.1f} % |")
    lines += [
        "",
        "The paired difference subtracts two timings of a few batches on a shared machine: it "
        "is noise-dominated when the pipeline's true share is well under the timing noise "
        "(it can even come out negative). The loader share above is the steadier figure.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print and write the results."""
    import torch

    from geochem_sr.sampling import BlockSplitter, prepare_training_data
    from geochem_sr.training.runtime import pick_device

    args = _args(argv)
    default_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = pick_device(args.device)
    res: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python benchmarks/bench_training.py" + (" --quick" if args.quick else "")
        + (f" --threads {args.threads}" if args.threads else ""),
        "batch_size": args.batch_size, "patch_size": args.patch_size, "grid": args.grid,
        "warmup_steps": args.warmup, "timed_steps": args.steps,
        "machine": {
            "device": (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                       else platform.processor() or platform.machine()),
            "cpus": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "default_threads": default_threads,
            "load_start": [round(v, 2) for v in os.getloadavg()],
        },
        "networks": [], "paired": [],
    }
    t_all = time.perf_counter()
    for name in args.networks:
        r = bench_network(name, args, dev)
        res["networks"].append(r)
        print(f"{name:16s} {r['parameters']:>11,d} params  {r['seconds_per_step']:.3f} s/step"
              f"  {r['patches_per_s']:7.1f} patches/s", flush=True)
    if args.threads and args.threads != default_threads and "srcnn" in args.networks:
        torch.set_num_threads(default_threads)
        ref = bench_network("srcnn", args, dev)
        torch.set_num_threads(args.threads)
        ref["set_threads_seconds_per_step"] = next(
            r["seconds_per_step"] for r in res["networks"] if r["network"] == "srcnn")
        res["default_threads_check"] = ref
        print(f"srcnn with {default_threads} threads: {ref['seconds_per_step']:.3f} s/step",
              flush=True)
    ds = _survey(args.grid)
    data = prepare_training_data(ds, "geochem+terrain+geology",
                                 splitter=BlockSplitter(2 * args.patch_size, seed=0),
                                 patch_size=args.patch_size, stride=args.patch_size // 2)
    data.train.load()
    res["train_patches"] = len(data.train)
    t_load = loader_alone(data, args)
    res["loader_alone_patches_per_s"] = 1.0 / t_load
    print(f"loader alone: {1.0 / t_load:,.0f} patches/s", flush=True)
    for r in res["networks"]:
        t_step = r["seconds_per_step"] / args.batch_size
        r["pipeline_share"] = t_load / (t_load + t_step)
        print(f"  {r['network']:16s} loader share {100 * r['pipeline_share']:.2f} %")
    for name in [n for n in args.paired if n in args.networks]:
        r = bench_paired(name, data, args, dev)
        res["paired"].append(r)
        print(f"paired {name:16s} real loader {r['patches_per_s_real_loader']:.1f} vs "
              f"pre-made {r['patches_per_s_premade']:.1f} patches/s "
              f"({100 * r['pipeline_share_paired']:+.1f} %)", flush=True)
    res["machine"]["load_end"] = [round(v, 2) for v in os.getloadavg()]
    res["seconds"] = round(time.perf_counter() - t_all, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "training.json").write_text(json.dumps(res, indent=2))
    (args.out / "training.md").write_text(_markdown(res))
    print(f"wrote {args.out / 'training.md'} and training.json ({res['seconds']} s)")
    return res


if __name__ == "__main__":
    main()
