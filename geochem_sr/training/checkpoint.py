"""Checkpoints: the whole state of a training run in a file, to continue it bit for bit.

:func:`save_run` writes weights, optimiser, scheduler, history, best weights and every
random generator atomically; :func:`restore_run` refuses a checkpoint of another set-up
(:func:`setup_fingerprint`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geochem_sr.errors import ModelMismatchError, ParameterError
from geochem_sr.io.files import write_file_atomically
from geochem_sr.jsonable import to_jsonable
from geochem_sr.models.payload import read_payload
from geochem_sr.training.runtime import cpu_copy

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from geochem_sr.training.config import TrainConfig
    from geochem_sr.training.data import TrainingParts
    from geochem_sr.training.loop import Run

__all__ = ["CHECKPOINT_FORMAT", "setup_fingerprint", "save_run", "restore_run",
           "read_checkpoint"]

#: Format tag of a training checkpoint file.
CHECKPOINT_FORMAT = "geochem_sr.checkpoint/1"


def setup_fingerprint(network: str, parts: TrainingParts, net_kwargs: dict[str, Any],
                      config: TrainConfig) -> dict[str, Any]:
    """What determines the course of a training (``epochs`` and ``patience`` do not).

    A checkpoint continues only a training with the same fingerprint. Its keys are those
    of the first checkpoints (``"lr"``: the learning rate, ``"model"``: the network), so
    that they still resume; ``target_scale``, ``weight_decay`` and ``margin`` appear only when
    set.
    """
    setup = json.loads(json.dumps({
        "model": network, "model_kwargs": net_kwargs, "inputs": parts.inputs,
        "channels": parts.channels, "elements": parts.elements,
        "batch_size": config.batch_size, "lr": config.learning_rate,
        "lr_step": config.lr_step, "lr_gamma": config.lr_gamma, "loss": config.loss,
        "augment": config.augment, "seed": config.seed, "patch_size": parts.patch_size,
        "stride": parts.stride, "train_patches": len(parts.train),
        "val_patches": len(parts.val),
    }, sort_keys=True, default=to_jsonable))
    if config.target_scale is not None:
        setup["target_scale"] = config.target_scale
    if config.weight_decay:
        setup["weight_decay"] = float(config.weight_decay)
    if parts.margin:
        setup["margin"] = int(parts.margin)
    return setup


def save_run(path: Path, run: Run, setup: dict[str, Any]) -> None:
    """Write everything needed to continue ``run`` bit for bit, atomically.

    A temporary file in the same folder is written, flushed to disk, then renamed onto
    ``path`` (:func:`~geochem_sr.io.files.write_file_atomically`); a failed write leaves no
    temporary file.
    """
    import torch

    state = {
        "format": CHECKPOINT_FORMAT,
        "setup_json": json.dumps(setup, sort_keys=True),
        "epoch": run.epoch,
        "model": cpu_copy(run.net.state_dict()),
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "best_state": run.best_state,
        "best_val": run.best_val,
        "best_epoch": run.best_epoch,
        "val_zero": run.val_zero,
        "history_json": json.dumps(run.history),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": (torch.cuda.get_rng_state(run.dev) if run.dev.type == "cuda" else None),
            "numpy": _numpy_state(),
            "python": _python_state(),
            "loader": _loader_generator(run.train_loader).get_state(),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(path, lambda fh: torch.save(state, fh))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The state dict of a checkpoint file (read without unpickling code).

    Raises
    ------
    ModelFileError
        An unreadable file or one of another format.
    """
    return read_payload(path, CHECKPOINT_FORMAT, "checkpoint",
                        "; delete it or pass resume=False")


def restore_run(run: Run, state: dict[str, Any], setup: dict[str, Any], path: Path) -> None:
    """Continue ``run`` from a checkpoint written by :func:`save_run` for the same set-up.

    Raises
    ------
    ModelMismatchError
        The checkpoint was written by a training with another :func:`setup_fingerprint`.
    """
    import torch

    saved = json.loads(state["setup_json"])
    if saved != setup:
        diff = sorted(k for k in set(saved) | set(setup) if saved.get(k) != setup.get(k))
        raise ModelMismatchError(
            f"checkpoint '{path}': written by a different training set-up ("
            + ", ".join(f"{k}: {saved.get(k)!r} there, {setup.get(k)!r} now" for k in diff)
            + "); pass resume=False to start afresh or another checkpoint path"
            + ("; a checkpoint from before training margins continues with margin=0"
               if "margin" in diff and saved.get("margin") is None else "")
        )
    run.net.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    run.epoch = int(state["epoch"])
    run.best_state = state["best_state"]
    run.best_val = float(state["best_val"])
    run.best_epoch = int(state["best_epoch"])
    run.history = json.loads(state["history_json"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and run.dev.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], run.dev)
    _set_numpy_state(rng["numpy"])
    _set_python_state(rng["python"])
    _loader_generator(run.train_loader).set_state(rng["loader"])


def _loader_generator(loader: Any) -> torch.Generator:
    gen = getattr(loader, "generator", None)
    if gen is None:
        raise ParameterError("make_loader: expected a loader with a seeded torch.Generator")
    return gen


def _numpy_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {"kind": str(kind), "keys": [int(k) for k in keys], "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_numpy_state(s: Mapping[str, Any]) -> None:
    state = (s["kind"], np.asarray(s["keys"], dtype=np.uint32), s["pos"], s["has_gauss"],
             s["cached"])
    np.random.set_state(state)  # noqa: NPY002


def _python_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    return {"version": int(version), "internal": [int(i) for i in internal],
            "gauss": gauss if gauss is None else float(gauss)}


def _set_python_state(s: Mapping[str, Any]) -> None:
    random.setstate((s["version"], tuple(s["internal"]), s["gauss"]))
