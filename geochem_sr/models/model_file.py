"""A trained model and all that applying it needs, in one file read without unpickling code.

:class:`GeoSRModel` holds the network's name, configuration and weights, the channels and
elements, the calibration, the typed records (:mod:`geochem_sr.models.records`) and the run
record; :meth:`GeoSRModel.save` and :meth:`GeoSRModel.load` write and read the model file.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geochem_sr.errors import ModelFileError
from geochem_sr.io.files import write_file_atomically
from geochem_sr.models.checks import check_folder, check_model
from geochem_sr.models.compatibility import check_compatible
from geochem_sr.models.payload import checksum, content_hash, json_default, read_model_payload
from geochem_sr.models.records import PredictionSettings, TrainingRecord, merge_extra, split_extra
from geochem_sr.sampling.leakage import describe_gap

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import xarray as xr

__all__ = ["GeoSRModel", "FORMAT", "FORMAT_2", "FORMAT_1", "IDENTITY_FIELDS"]

#: Format of the files written: the records as ``prediction``, ``training`` and ``notes``.
FORMAT = "geochem_sr.model/3"
#: The previous format, still read: the records in one untyped ``extra`` dict.
FORMAT_2 = "geochem_sr.model/2"
#: The first format, still read: its ``digest`` hashes the whole payload.
FORMAT_1 = "geochem_sr.model/1"
#: Fields that determine a model's predictions: with the weights and ``prediction``, its
#: :attr:`~GeoSRModel.digest`.
IDENTITY_FIELDS = ("network_name", "network_config", "inputs", "channels", "elements",
                   "units", "norm_stats", "geology_vocabulary", "patch_size", "shrinkage",
                   "std_scale", "aoa")


@dataclasses.dataclass(init=False)
class GeoSRModel:
    """A trained super-resolution network with its metadata.

    Attributes
    ----------
    network_name : str
        Registry name (``geochem_sr.models.get_model``), e.g. ``"multilevel_unet"``.
    network_config : dict
        Constructor keywords of the network (``in_channels``, ``out_channels``, ...).
    state_dict : dict of str -> torch.Tensor
        The weights.
    inputs : str
        The input set, e.g. ``"geochem+terrain+geology"``.
    channels : list of str
        Input channel names in order (:func:`geochem_sr.features.channel_names`).
    elements : list of str
        Output elements in order.
    units : dict
        Element -> unit of the data the model was trained on.
    norm_stats : dict
        Channel -> (mean, std) used to normalise inputs.
    geology_vocabulary : str or None
        JSON of the geology word vectors the model was trained with.
    patch_size : int
        Training patch size.
    shrinkage : dict
        Element -> factor in [0, 1] applied to the predicted residual (do-no-harm).
    std_scale : dict
        Element -> factor calibrating the predictive standard deviation.
    validation : dict
        Spatial validation report (per element), filled by training / cross-validation.
    history : list of dict
        Per-epoch training record (loss, validation loss, learning rate ``lr``, ...).
    aoa : dict
        Area-of-applicability reference (training feature sample and threshold).
    prediction : PredictionSettings
        Inference context and calibrated standard-deviation floor (change predictions).
    training : TrainingRecord
        Seed, epochs run, spatial split, loss, ... of the training.
    notes : dict
        Anything else, free-form (JSON-serialisable).
    package_version : str
        Version of geochem_sr that made the model.
    created : str
        When the model was first saved (ISO 8601, UTC).
    extra : mapping, optional
        Constructor keyword only: the untyped dict of format 2 (:attr:`extra`), sorted into
        ``prediction``, ``training`` and ``notes``; it replaces all three.

    Notes
    -----
    :attr:`digest`, the model's identity, covers the weights, :data:`IDENTITY_FIELDS` and
    ``prediction``; the rest (``validation``, ``history``, ``training``, ``notes``,
    ``package_version``, ``created``) is the run record, which only the file checksum covers.
    """

    network_name: str
    network_config: dict[str, Any]
    state_dict: dict[str, Any]
    inputs: str
    channels: list[str]
    elements: list[str]
    units: dict[str, str]
    norm_stats: dict[str, tuple[float, float]]
    geology_vocabulary: str | None
    patch_size: int
    shrinkage: dict[str, float]
    std_scale: dict[str, float]
    validation: dict[str, Any]
    history: list[dict[str, Any]]
    aoa: dict[str, Any]
    prediction: PredictionSettings
    training: TrainingRecord
    notes: dict[str, Any]
    package_version: str
    created: str

    def __init__(self, network_name: str, network_config: dict[str, Any],
                 state_dict: dict[str, Any], inputs: str, channels: list[str],
                 elements: list[str], units: dict[str, str],
                 norm_stats: dict[str, tuple[float, float]],
                 geology_vocabulary: str | None = None, patch_size: int = 32,
                 shrinkage: dict[str, float] | None = None,
                 std_scale: dict[str, float] | None = None,
                 validation: dict[str, Any] | None = None,
                 history: list[dict[str, Any]] | None = None,
                 aoa: dict[str, Any] | None = None,
                 prediction: PredictionSettings | None = None,
                 training: TrainingRecord | None = None,
                 notes: dict[str, Any] | None = None,
                 package_version: str = "", created: str = "", *,
                 extra: Mapping[str, Any] | None = None) -> None:
        self.network_name, self.network_config = network_name, network_config
        self.state_dict, self.inputs = state_dict, inputs
        self.channels, self.elements, self.units = channels, elements, units
        self.norm_stats, self.geology_vocabulary = norm_stats, geology_vocabulary
        self.patch_size = patch_size
        self.shrinkage = {} if shrinkage is None else shrinkage
        self.std_scale = {} if std_scale is None else std_scale
        self.validation = {} if validation is None else validation
        self.history = [] if history is None else history
        self.aoa = {} if aoa is None else aoa
        self.prediction = PredictionSettings() if prediction is None else prediction
        self.training = TrainingRecord() if training is None else training
        self.notes = {} if notes is None else notes
        if extra is not None:
            self.extra = extra
        if not package_version:
            from geochem_sr.version import __version__

            package_version = __version__
        self.package_version, self.created = package_version, created

    @property
    def extra(self) -> dict[str, Any]:
        """The records as the untyped dict of format 2: notes and every field not None.

        Keys ``context``, ``std_floor`` (:attr:`prediction`), ``seed``, ``epochs_run``,
        ``split``, ... (:attr:`training`) and the :attr:`notes`. A new dict each time:
        changing it changes nothing; assigning one sorts it into the three (see
        :func:`~geochem_sr.models.records.split_extra`). Kept for code written against
        format 2; use :attr:`prediction`, :attr:`training` and :attr:`notes`.
        """
        return merge_extra(self.prediction, self.training, self.notes)

    @extra.setter
    def extra(self, value: Mapping[str, Any]) -> None:
        self.prediction, self.training, self.notes = split_extra(value)

    # ------------------------------------------------------------------ network
    def build_network(self, device: str | None = None) -> torch.nn.Module:
        """Instantiate the network with the stored weights, in eval mode."""
        from geochem_sr.models import get_model

        net = get_model(self.network_name, **self.network_config)
        net.load_state_dict(self.state_dict)
        net.eval()
        if device is not None:
            net = net.to(device)
        return net

    @property
    def receptive_field(self) -> int:
        """Receptive field of the network in cells (tile halos: its ``tile_reach``)."""
        from geochem_sr.models.geometry import network_geometry

        return network_geometry(self.network_name, self.network_config)[1]

    # ------------------------------------------------------------------ metadata
    def metadata(self) -> dict[str, Any]:
        """All fields but the weights, as JSON-serializable values (the file's metadata)."""
        meta = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "state_dict"}
        meta["norm_stats"] = {k: [float(v[0]), float(v[1])] for k, v in self.norm_stats.items()}
        meta["prediction"] = dataclasses.asdict(self.prediction)
        meta["training"] = dataclasses.asdict(self.training)
        meta["format"] = FORMAT
        return json.loads(json.dumps(meta, default=json_default))

    def identity(self, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What determines the predictions, but the weights: the content behind :attr:`digest`.

        Parameters
        ----------
        meta : mapping, optional
            This model's :meth:`metadata`, when already built (not changed).

        Returns
        -------
        dict
            The :data:`IDENTITY_FIELDS` of :meth:`metadata` and, under ``"extra"`` as in
            format 2 (so that digests stay those of earlier files), the prediction settings
            that are set; not the run record.
        """
        if meta is None:
            meta = self.metadata()
        out = {k: meta[k] for k in IDENTITY_FIELDS}
        out["extra"] = {k: v for k, v in meta["prediction"].items() if v is not None}
        return out

    @property
    def digest(self) -> str:
        """Content identity: SHA-256 of :meth:`identity` and of the weights.

        Equal for two models that predict the same (two trainings with the same seed, a
        model and its copy with another history), different when a weight, a channel, the
        shrinkage, ... differs. Inference records it as the model's identity in provenance
        and compares it to resume a prediction store. Damage to a file is detected by the
        file checksum instead.
        """
        return self._digest_of(self.metadata())

    def _digest_of(self, meta: Mapping[str, Any]) -> str:
        """:attr:`digest` from this model's :meth:`metadata`, already built."""
        return content_hash([json.dumps(self.identity(meta), sort_keys=True)], self.state_dict)

    def shrinkage_of(self, element: str) -> float:
        """Do-no-harm factor of an element (1 when not fitted)."""
        return float(self.shrinkage.get(element, 1.0))

    def verdict_of(self, element: str) -> str:
        """Calibration's verdict on an element, in words: kept (on how many independent
        blocks, with what gain and lower bound) or returned as the sparse map (and why);
        ``""`` when the model was not calibrated."""
        per_el = (self.validation or {}).get("per_element", {})
        return str(per_el.get(element, {}).get("verdict", ""))

    def check(self, where: str = "model") -> None:
        """Check every value that changes a prediction, and the weights against the network.

        Called by :meth:`load` and, before writing, by :meth:`save`; the rules are those of
        :func:`geochem_sr.models.checks.check_model` (shrinkage in [0, 1], std scale > 0,
        finite normalisation statistics for exactly the channels, weights that fit
        ``network_config``, ...).

        Parameters
        ----------
        where : str, default "model"
            What the messages start with (the file, for a file).

        Raises
        ------
        ModelFileError
            Naming ``where``, the field, the element or channel, what was expected and what
            was found.
        """
        check_model(self, where)

    def check_compatible(self, ds: xr.Dataset) -> None:
        """Raise :class:`ModelMismatchError` unless ``ds`` provides what the model needs.

        Checks elements, units, the variables behind each channel, and the geology
        vocabulary, before any computation starts
        (:func:`geochem_sr.models.compatibility.check_compatible`).
        """
        check_compatible(self, ds)

    # ------------------------------------------------------------------ file
    def save(self, path: str | os.PathLike) -> Path:
        """Check the model, then write the model file atomically.

        The file is written to a temporary file next to ``path``, flushed to disk, then
        renamed onto ``path``: a failure leaves no temporary file and ``path`` as it was.

        Returns
        -------
        pathlib.Path
            ``path``.

        Raises
        ------
        ModelFileError
            A wrong value (:meth:`check`), a folder of ``path`` that is missing or a file,
            or a write that failed (the message names the path and the reason).
        """
        import torch

        from geochem_sr.version import __version__

        path = Path(path)
        self.check(f"model (not saved to '{path}')")
        check_folder(path)
        if not self.package_version:
            self.package_version = __version__
        if not self.created:
            self.created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        meta = self.metadata()
        meta_json = json.dumps(meta, sort_keys=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict.items()}
        digest = self._digest_of(meta)
        payload = {"format": FORMAT, "meta_json": meta_json, "state_dict": state,
                   "digest": digest, "checksum": checksum(FORMAT, meta_json, digest, state)}
        try:
            write_file_atomically(path, lambda fh: torch.save(payload, fh))
        except (OSError, RuntimeError) as exc:
            raise ModelFileError(f"model file '{path}': cannot be written ({exc})") from exc
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> GeoSRModel:
        """Read a model file; refuse damaged, tampered or inconsistent files.

        Files of the formats 2 and 1 (:data:`FORMAT_2`, :data:`FORMAT_1`) are read too;
        their ``extra`` dict is sorted into the records (:attr:`extra`).

        Raises
        ------
        ModelFileError
            Unreadable file, unknown format, content that does not match the file checksum,
            a wrong value or weights that do not fit the network (:meth:`check`).
        """
        path = Path(path)
        where = f"model file '{path}'"
        fmt, meta_json, state, digest = read_model_payload(path, (FORMAT, FORMAT_2, FORMAT_1),
                                                           legacy=FORMAT_1)
        model = cls._from_metadata(json.loads(meta_json), state, fmt, where)
        model.check(where)
        model.norm_stats = {k: (float(v[0]), float(v[1])) for k, v in model.norm_stats.items()}
        if fmt != FORMAT_1 and model.digest != digest:
            raise ModelFileError(
                f"{where}: its digest {digest[:12]}... is not that of its content "
                f"({model.digest[:12]}...); written by another version of geochem_sr?"
            )
        return model

    @classmethod
    def _from_metadata(cls, meta: Any, state: dict[str, Any], fmt: str,
                       where: str) -> GeoSRModel:
        """The model from a file's metadata; ``extra`` only in files of formats 1 and 2."""
        if not isinstance(meta, dict):
            raise ModelFileError(f"{where}: metadata incomplete (not a mapping)")
        meta.pop("format", None)
        known = {f.name for f in dataclasses.fields(cls)} | ({"extra"} if fmt != FORMAT
                                                              else set())
        unknown = set(meta) - known
        if unknown:
            raise ModelFileError(f"{where}: unknown fields {sorted(unknown)}")
        try:
            for name, record in (("prediction", PredictionSettings),
                                 ("training", TrainingRecord)):
                if isinstance(meta.get(name), Mapping):
                    meta[name] = record(**meta[name])
            return cls(state_dict=state, **meta)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelFileError(f"{where}: metadata incomplete ({exc!r})") from exc

    # ------------------------------------------------------------------ reports
    def summary(self) -> str:
        """A human-readable summary with the spatial validation report."""
        lines = [
            f"GeoSRModel {self.network_name} ({self.inputs}), {len(self.channels)} channels -> "
            f"{len(self.elements)} elements",
            f"  trained {len(self.history)} epochs; package {self.package_version}; "
            f"digest {self.digest[:12]}",
        ]
        split = self.training.split if self.training else None
        if split:
            lines.append(f"  {describe_gap(split)}")
        per_el = self.validation.get("per_element") if self.validation else None
        if per_el:
            calibrated = "calibration" in self.validation
            lines.append(
                "  scores on the test blocks (never trained on, not used for calibration):"
                if calibrated else
                "  scores on the validation blocks (used for early stopping; not calibrated):")
            lines.append("  gain = 1 - RMSE(prediction) / RMSE(sparse map), log10, against the "
                         "dense map; shrink = do-no-harm factor (0: the sparse map is "
                         "returned); cov1, cov2 = share of cells within 1 and 2 calibrated "
                         "std (68 % and 95 % expected)")
            lines.append(f"  {'element':<8}{'rmse_lr':>10}{'rmse_pred':>11}{'gain':>8}"
                         f"{'shrink':>8}{'cov1':>7}{'cov2':>7}")
            for el in self.elements:
                r = per_el.get(el, {})
                gain = float(r.get("gain", np.nan))
                flag = "  <- worse than the sparse map" if gain < -0.01 else ""
                lines.append(
                    f"  {el:<8}{r.get('rmse_lr', np.nan):>10.4f}{r.get('rmse_pred', np.nan):>11.4f}"
                    f"{gain:>8.3f}{self.shrinkage_of(el):>8.2f}"
                    f"{r.get('coverage_1std', np.nan):>7.2f}{r.get('coverage_2std', np.nan):>7.2f}"
                    f"{flag}"
                )
            verdicts = [(el, self.verdict_of(el)) for el in self.elements]
            if any(v for _, v in verdicts):
                lines.append("  verdicts (each names the held-out blocks it rests on):")
                lines.extend(f"  {el}: {v}" for el, v in verdicts if v)
        else:
            lines.append("  no spatial validation report (run ds.geosr.cross_validate)")
        lines.extend(_selection_lines(self.notes.get("selection")))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"GeoSRModel(network={self.network_name!r}, inputs={self.inputs!r}, "
                f"elements={self.elements}, channels={len(self.channels)})")


def _selection_lines(table: Any) -> list[str]:
    """The summary's lines of a selection: per element the winner (a candidate, a mean of
    candidates or the sparse map) with its calibrated gain on held-out evidence +-
    jackknife error, and the best other option."""
    if not isinstance(table, Mapping) or not table:
        return []
    lines = ["  method per element, chosen on held-out evidence (out of fold for the per-cell "
             "regressors; calibrated gain there +- jackknife error):"]

    def gain(row: Mapping[str, Any]) -> str:
        g, se = float(row.get("gain_val", np.nan)), float(row.get("gain_val_se", np.nan))
        return f"{g:+.3f} +- {se:.3f}" if np.isfinite(se) else f"{g:+.3f}"

    for el, row in table.items():
        options = row.get("candidates", {}) if isinstance(row, Mapping) else {}
        method = str(row.get("method"))
        ranked = sorted(options, key=lambda n: -float(options[n].get("gain_val", -np.inf)))
        other = next((n for n in ranked if n != method), None)
        text = f"  {el:<8}{method}"
        if method in options:
            text += f"  {gain(options[method])}"
        if not any(float(o.get("shrinkage", 0)) > 0 for o in options.values()):
            text += "   (every option refused by the do-no-harm rule)"
        elif other is not None:
            text += f"   (next: {other} {gain(options[other])})"
        lines.append(text)
    return lines
