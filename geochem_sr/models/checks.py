"""Checks of a model's values: what :meth:`GeoSRModel.load` refuses and ``save`` won't write.

Every value that changes a prediction is checked, and the weights against the network that
``network_name`` and ``network_config`` build; a wrong one raises :class:`ModelFileError`
naming the file, the field, the element or channel, what was expected and what was found.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from geochem_sr import schema
from geochem_sr.checks import is_integer, is_number
from geochem_sr.errors import ModelFileError, ParameterError
from geochem_sr.models.records import CONTEXTS, SPREADS, PredictionSettings, TrainingRecord

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from geochem_sr.models.model_file import GeoSRModel

__all__ = ["check_model", "check_values", "check_weights", "check_folder"]

#: At most this many keys are named per kind of weight mismatch.
_SHOWN = 4


def check_model(model: GeoSRModel, where: str = "model") -> None:
    """Check the values (:func:`check_values`), then the weights (:func:`check_weights`).

    Parameters
    ----------
    model : GeoSRModel
        The model to check.
    where : str, default "model"
        What the messages start with, e.g. ``"model file 'm.pt'"``.

    Raises
    ------
    ModelFileError
        On the first wrong value.
    """
    check_values(model, where)
    check_weights(model, where)


def _fail(where: str, field: str, expected: str, found: Any) -> ModelFileError:
    return ModelFileError(f"{where}: {field}: expected {expected}, found {found!r}")


def _number(where: str, field: str, x: Any, low: float, *, strict: bool = False,
            high: float | None = None) -> None:
    """A finite number ``>= low`` (``> low`` when ``strict``) and ``<= high``."""
    ok = is_number(x) and math.isfinite(x) and (x > low if strict else x >= low)
    if high is not None:
        ok = ok and x <= high
    if not ok:
        if high is not None:
            expected = f"a finite number in [{low:g}, {high:g}]"
        else:
            expected = f"a finite number {'>' if strict else '>='} {low:g}"
        raise _fail(where, field, expected, x)


def _names(where: str, field: str, value: Any) -> list[str]:
    """A non-empty list of unique str."""
    if not isinstance(value, list | tuple) or not value:
        raise _fail(where, field, "a non-empty list of unique str", value)
    for item in value:
        if not isinstance(item, str):
            raise ModelFileError(f"{where}: {field}: expected a list of unique str, found "
                                 f"{item!r} ({type(item).__name__}) among them")
    dup = sorted({v for v in value if value.count(v) > 1})
    if dup:
        raise ModelFileError(f"{where}: {field}: expected unique names, found duplicates {dup}")
    return list(value)


def _per_element(where: str, field: str, value: Any, elements: Iterable[str]) -> dict[str, Any]:
    """A mapping whose keys are elements of the model."""
    if not isinstance(value, Mapping):
        raise _fail(where, field, "a mapping element -> number", value)
    other = sorted(set(value) - set(elements))
    if other:
        raise _fail(where, field, f"keys among the model's elements {list(elements)}", other)
    return dict(value)


def check_values(model: GeoSRModel, where: str = "model") -> None:
    """Check every metadata value that changes a prediction, and the types of the rest.

    Elements are unique chemical symbols with a unit each; channels unique names with one
    finite ``(mean, std > 0)`` each in ``norm_stats``; ``patch_size`` a positive integer;
    ``shrinkage`` in [0, 1] and ``std_scale`` > 0 per element; ``prediction.context`` one
    of :data:`~geochem_sr.models.records.CONTEXTS` and ``prediction.std_floor`` >= 0;
    ``aoa`` a finite threshold >= 0, mean distance > 0 and a reference table with one
    column per channel; the run record (validation, history, training record, notes, version,
    creation time) of the right types.

    Raises
    ------
    ModelFileError
        On the first wrong value, naming ``where``, the field and the element or channel.
    """
    from geochem_sr.models import available_methods, model_class

    try:
        model_class(model.network_name)
    except ParameterError:
        raise _fail(where, "network_name",
                    f"one of {available_methods() + ['ensemble', 'selection']}",
                    model.network_name) from None
    if not isinstance(model.network_config, Mapping):
        raise _fail(where, "network_config", "a mapping of constructor arguments",
                    model.network_config)
    if not isinstance(model.inputs, str):
        raise _fail(where, "inputs", "an input set (str)", model.inputs)
    channels = _names(where, "channels", model.channels)
    elements = _names(where, "elements", model.elements)
    unknown = [e for e in elements if e not in schema.KNOWN_ELEMENTS]
    if unknown:
        raise _fail(where, "elements", "chemical symbols", unknown)
    units = model.units if isinstance(model.units, Mapping) else {}
    no_unit = [e for e in elements if not isinstance(units.get(e), str)]
    if not isinstance(model.units, Mapping) or no_unit:
        raise ModelFileError(f"{where}: units: expected a unit (str) for every element, found "
                             f"none for {no_unit or elements}")
    _check_norm_stats(model.norm_stats, channels, where)
    if model.geology_vocabulary is not None and not isinstance(model.geology_vocabulary, str):
        raise _fail(where, "geology_vocabulary", "JSON text or None", model.geology_vocabulary)
    p = model.patch_size
    if not is_integer(p) or p < 1:
        raise _fail(where, "patch_size", "a positive integer", p)
    for el, s in _per_element(where, "shrinkage", model.shrinkage, elements).items():
        _number(where, f"shrinkage[{el!r}]", s, 0.0, high=1.0)
    for el, s in _per_element(where, "std_scale", model.std_scale, elements).items():
        _number(where, f"std_scale[{el!r}]", s, 0.0, strict=True)
    _check_records(model, elements, where)
    _check_aoa(model.aoa, channels, where)
    for field, kind, name in (("validation", Mapping, "a mapping"), ("history", list, "a list"),
                              ("package_version", str, "str"), ("created", str, "str")):
        if not isinstance(getattr(model, field), kind):
            raise _fail(where, field, name, getattr(model, field))


def _check_norm_stats(stats: Any, channels: list[str], where: str) -> None:
    if not isinstance(stats, Mapping):
        raise _fail(where, "norm_stats", "a mapping channel -> (mean, std)", stats)
    missing = [c for c in channels if c not in stats]
    if missing:
        raise ModelFileError(f"{where}: norm_stats: expected one (mean, std) per channel, "
                             f"missing for {missing}")
    other = sorted(str(c) for c in set(stats) - set(channels))
    if other:
        raise ModelFileError(f"{where}: norm_stats: expected one (mean, std) per channel, "
                             f"found them for channels the model does not have: {other}")
    for ch in channels:
        v = stats[ch]
        field = f"norm_stats[{ch!r}]"
        if not isinstance(v, list | tuple) or len(v) != 2 or not all(map(is_number, v)):
            raise _fail(where, field, "[mean, std], two numbers", v)
        if not math.isfinite(v[0]):
            raise ModelFileError(f"{where}: {field}: expected a finite mean, found {v[0]!r}")
        if not (math.isfinite(v[1]) and v[1] > 0):
            raise ModelFileError(f"{where}: {field}: expected a finite std > 0, "
                                 f"found {v[1]!r}")


def _check_records(model: GeoSRModel, elements: list[str], where: str) -> None:
    """The prediction settings (context, std floor), the training record and the notes."""
    settings = model.prediction
    if not isinstance(settings, PredictionSettings):
        raise _fail(where, "prediction", "PredictionSettings", settings)
    if settings.context is not None and settings.context not in CONTEXTS:
        raise _fail(where, "prediction.context", f"one of {CONTEXTS}", settings.context)
    if settings.border is not None and not (
            isinstance(settings.border, int) and not isinstance(settings.border, bool)
            and settings.border >= 0):
        raise _fail(where, "prediction.border", "a number of cells >= 0", settings.border)
    if settings.spread is not None and settings.spread not in SPREADS:
        raise _fail(where, "prediction.spread", f"one of {SPREADS}", settings.spread)
    if settings.spread == "members" and model.network_name not in ("ensemble", "selection"):
        raise _fail(where, "prediction.spread", "'orientations' for a single network "
                    "('members' needs an ensemble or a selection of them)", settings.spread)
    if settings.std_floor is not None:
        floors = _per_element(where, "prediction.std_floor", settings.std_floor, elements)
        for el, f in floors.items():
            _number(where, f"prediction.std_floor[{el!r}]", f, 0.0)
    if not isinstance(model.training, TrainingRecord):
        raise _fail(where, "training", "TrainingRecord", model.training)
    if not isinstance(model.notes, Mapping):
        raise _fail(where, "notes", "a mapping", model.notes)


def _check_aoa(aoa: Any, channels: list[str], where: str) -> None:
    if not isinstance(aoa, Mapping):
        raise _fail(where, "aoa", "a mapping", aoa)
    if "threshold" in aoa:
        _number(where, "aoa['threshold']", aoa["threshold"], 0.0)
    if "mean_distance" in aoa:
        _number(where, "aoa['mean_distance']", aoa["mean_distance"], 0.0, strict=True)
    seen = aoa.get("channels", channels)
    if not isinstance(seen, list | tuple) or list(seen) != channels:
        raise _fail(where, "aoa['channels']", f"the model's channels {channels}",
                    aoa["channels"])
    if "reference" in aoa:
        try:
            ref = np.asarray(aoa["reference"], dtype=np.float64)
        except (TypeError, ValueError):
            ref = np.empty(0)
        if ref.ndim != 2 or ref.shape[0] < 1 or ref.shape[1] != len(channels):
            raise ModelFileError(
                f"{where}: aoa['reference']: expected a table (points, {len(channels)} "
                f"channels), found shape {ref.shape}")
        if not np.isfinite(ref).all():
            raise ModelFileError(f"{where}: aoa['reference']: expected finite values, found "
                                 f"{int((~np.isfinite(ref)).sum())} non-finite")


def _listed(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return f"{keys[:_SHOWN]}{more}"


def check_weights(model: GeoSRModel, where: str = "model") -> None:
    """Check the weights: finite tensors with the keys and shapes of the configured network.

    The network is built from ``network_name`` and ``network_config``; its state dict must
    have exactly the stored keys, with the same shapes (what
    ``load_state_dict(strict=True)`` requires).

    Raises
    ------
    ModelFileError
        Naming the missing and unexpected keys and the keys whose shapes differ.
    """
    import torch

    from geochem_sr.models import get_model

    state = model.state_dict
    if not isinstance(state, Mapping):
        raise _fail(where, "weights", "a mapping name -> tensor", type(state).__name__)
    for key, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise _fail(where, f"weights[{key!r}]", "a tensor", type(t).__name__)
        if t.is_floating_point() or t.is_complex():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise ModelFileError(f"{where}: weights[{key!r}]: expected finite values, "
                                     f"found {bad} non-finite of {t.numel()}")
    cfg = dict(model.network_config)
    for key, field, n in (("in_channels", "channels", len(model.channels)),
                          ("out_channels", "elements", len(model.elements))):
        if key in cfg and cfg[key] != n:
            raise _fail(where, f"network_config[{key!r}]", f"{n} (the number of {field})",
                        cfg[key])
    try:
        net = get_model(model.network_name, **cfg)
    except Exception as exc:  # ParameterError, TypeError, ... from a constructor
        raise ModelFileError(f"{where}: network_config: cannot build a "
                             f"{model.network_name!r} network from {cfg} ({exc})") from exc
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    problems = []
    missing, unexpected = set(want) - set(have), set(have) - set(want)
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listed(unexpected)}")
    sized = {f"{prefix}.{b}" if prefix else b for prefix, mod in net.named_modules()
             for b in getattr(mod, "sized_by_contents", ())}  # e.g. the trees' text
    shapes = sorted(k for k in set(want) & set(have) - sized if want[k] != have[k])
    if shapes:
        more = f" and {len(shapes) - _SHOWN} more" if len(shapes) > _SHOWN else ""
        problems.append("shapes differ: " + ", ".join(
            f"{k!r} expected {want[k]} by network_config, found {have[k]}"
            for k in shapes[:_SHOWN]) + more)
    if problems:
        raise ModelFileError(
            f"{where}: weights: expected those of network {model.network_name!r} built from "
            f"network_config {cfg}; " + "; ".join(problems))


def check_folder(path: Path) -> None:
    """Raise :class:`ModelFileError` unless the folder of ``path`` exists (before a save).

    The message names the missing folder, or the file that stands where a folder should.
    """
    folder = path.parent
    if folder.is_dir():
        return
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ModelFileError(f"model file '{path}': cannot be written: '{existing}' is a "
                             "file, not a folder")
    raise ModelFileError(f"model file '{path}': cannot be written: the folder '{folder}' "
                         "does not exist; create it first")
