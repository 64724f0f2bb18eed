"""The experiment benchmark (issue 7) on its ``smoke`` profile: layout, determinism, files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from geochem_sr import experiment as ex
from geochem_sr.errors import ParameterError, SchemaError
from geochem_sr.experiment.cache import RowCache
from geochem_sr.experiment.figure import figure_elements
from geochem_sr.experiment.findings import check_expectations
from geochem_sr.experiment.methods_report import CLASSICAL_ROWS
from geochem_sr.experiment.report import format_value
from geochem_sr.training import TrainConfig

N_ROWS = len(ex.NETWORKS) * len(ex.INPUT_SETS)


def _run(out: Path, resume: bool = False, log: list[str] | None = None) -> dict:
    sink = log.append if log is not None else None
    md = ex.run_experiment("smoke", out_dir=out, seed=0, resume=resume, log=sink)
    assert md == out / "experiment-smoke.md"
    return json.loads((out / "experiment-smoke.json").read_text())


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("exp1")
    return out, _run(out, resume=True)


def _scores(result: dict) -> list[tuple]:
    return [(r["key"], tuple(sorted((k, v) for k, v in r["scores"].items())),
             json.dumps(r["per_element"], sort_keys=True)) for r in result["rows"]]


def test_files_written(first: tuple[Path, dict]) -> None:
    out, _ = first
    for name in ("experiment-smoke.md", "experiment-smoke.json", "experiment-smoke.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "experiment-smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_rows_and_columns(first: tuple[Path, dict]) -> None:
    _, res = first
    rows = res["rows"]
    nets = [r for r in rows if r["kind"] == "network"]
    base = [r for r in rows if r["kind"] == "baseline"]
    assert len(nets) == N_ROWS
    assert [r["key"] for r in base] == list(ex.BASELINES)
    assert {(r["network"], r["inputs"]) for r in nets} == {
        (n, i) for n in ex.NETWORKS for i in ex.INPUT_SETS}
    elements = res["data"]["elements"]
    for r in rows:
        assert set(ex.TABLE_COLUMNS) <= set(r["scores"]), r["key"]
        assert set(r["per_element"]) == set(elements)
        for el in elements:
            assert {"rmse_log10", "iou95", "iou85", "truth_rmse_log10"} <= set(
                r["per_element"][el])
        assert np.isfinite(r["scores"]["psnr_avg"]) and 0 < r["scores"]["rmse_log10"] < 5
        assert r["scores"]["psnr_max"] >= r["scores"]["psnr_avg"]
    # the survey is kriged, so ordinary kriging of the sparse samples is the sparse map
    by = {r["key"]: r for r in base}
    assert res["baseline_info"]["kriging"]["equals_lr"] is True
    assert by["kriging"]["scores"] == by["sparse"]["scores"]
    # the baselines differ from each other (they are really computed)
    assert by["idw"]["scores"]["rmse_log10"] != by["sparse"]["scores"]["rmse_log10"]
    assert by["regression_kriging"]["scores"]["rmse_log10"] != by["sparse"]["scores"][
        "rmse_log10"]
    # the second regression kriging uses the fault and contact distances too
    covs = res["baseline_info"]["regression_kriging_all"]["covariates"]
    assert {"fault_distance", "contact_distance"} <= set(covs)
    assert set(res["baseline_info"]["regression_kriging"]["covariates"]) < set(covs)
    assert by["regression_kriging_all"]["scores"]["rmse_log10"] != by["regression_kriging"][
        "scores"]["rmse_log10"]
    # the re-tuned interpolation records a setting per element; where it kept the default
    # kriging (k = 16, the survey's own) its map is the sparse map
    settings = res["baseline_info"]["retuned"]["settings"]
    assert set(settings) == set(elements)
    kept = {el for el, s in settings.items()
            if s == {"method": "kriging", "k": 16, "nugget_share": None}}
    for el in elements:
        same = by["retuned"]["per_element"][el] == by["sparse"]["per_element"][el]
        assert same == (el in kept), el
    # the classical rows are scored as the methods are: test-block gain and jackknife error
    for key in CLASSICAL_ROWS:
        g = by[key]["gains"]
        assert set(g) == set(elements), key
        assert all(np.isfinite(v["gain"]) and v["gain_se"] >= 0 for v in g.values()), key
    assert all(by["retuned"]["gains"][el]["gain"] == 0 for el in kept)
    # one split for every row, windows inside test blocks
    split = res["data"]["split"]
    assert split["patches"]["test"] == len(res["data"]["test_windows"]) > 0
    assert all(r["scores"]["n_patches"] == split["patches"]["test"] for r in rows)


def test_trust_columns(first: tuple[Path, dict]) -> None:
    _, res = first
    assert set(res["trust"]) == set(ex.INPUT_SETS)
    for inputs, t in res["trust"].items():
        assert "error" not in t, (inputs, t.get("error"))
        for el in res["data"]["elements"]:
            p = t["per_element"][el]
            assert 0.0 <= p["shrinkage"] <= 1.0
            assert 0.0 <= p["coverage_1std"] <= p["coverage_2std"] <= 1.0
            assert p["gain"] is not None


def test_markdown_layout(first: tuple[Path, dict]) -> None:
    out, res = first
    md = (out / "experiment-smoke.md").read_text()
    header = ("| Network | Geochem | Topo | Geology | PSNR max | PSNR avg | SSIM max | SSIM avg "
              "| RMSE (log10) | IoU95 |")
    assert md.count(header) == 3  # networks, the toolkit default, then baselines
    table = md.split(header)[1].split("\n\n")[0].strip().splitlines()[1:]
    toolkit = md.split(header)[2].split("\n\n")[0].strip().splitlines()[1:]
    assert [line.split("|")[1].strip() for line in toolkit] == [ex.TOOLKIT_LABEL]
    tk = next(r for r in res["rows"] if r["kind"] == "toolkit")
    assert tk["inputs"] == "geochem+terrain+geology+faults+contacts+unseen"
    assert tk["training"]["epochs_run"] >= 1 and "error" not in tk["trust"]
    assert "Its test-block gains after do-no-harm calibration" in md
    assert len(table) == N_ROWS
    labels = [line.split("|")[1].strip() for line in table]
    assert labels == [ex.NETWORK_LABELS[n] for n in ex.NETWORKS for _ in ex.INPUT_SETS]
    flags = [tuple(c.strip() for c in line.split("|")[2:5]) for line in table[:3]]
    assert flags == [("Yes", "Yes", "Yes"), ("Yes", "Yes", "No"), ("Yes", "No", "No")]
    base = md.split(header)[3].split("\n\n")[0].strip().splitlines()[1:]
    assert [line.split("|")[1].strip() for line in base] == [
        ex.BASELINE_LABELS[b] for b in ex.BASELINES]
    for section in ("## Settings", "## Per element: RMSE (log10)", "## Per element: anomaly IoU",
                    "## Trust", "## Findings", "<!-- findings-notes:start -->"):
        assert section in md
    # the first network row shows the JSON's numbers
    first_row = res["rows"][0]
    cells = [c.strip() for c in table[0].split("|")[5:11]]
    assert cells[1] == f"{first_row['scores']['psnr_avg']:.2f}"
    assert cells[4] == f"{first_row['scores']['rmse_log10']:.4f}"
    assert re.search(r"Profile \*\*smoke\*\*", md)
    assert "(2-fold spatial cross-fitting)" in md  # the profile's folds, not the default


def test_same_seed_same_table_and_notes_kept(first: tuple[Path, dict], tmp_path: Path) -> None:
    """Rows recomputed with the same seed equal the first run's; notes survive a rerun.

    The rerun starts from a copy of the first run's cache less two network rows (one of
    them with its trust figures), so those rows, the survey, the split and the baselines
    are computed again and compared with the first run's; the others come from the cache.
    The per-cell methods' determinism is tested in ``test_cell_models``.
    """
    out, res = first
    stem = "experiment-smoke"
    shutil.copytree(out / f".{stem}-cache", tmp_path / f".{stem}-cache")
    recomputed = [ex.row_key("multilevel_unet", ex.INPUT_SETS[0]),
                  ex.row_key("srcnn", ex.INPUT_SETS[-1])]
    for key in recomputed:
        for suffix in (".json", ".npz"):
            (tmp_path / f".{stem}-cache" / f"{key}{suffix}").unlink()
    # a hand-written analysis between the markers survives a rerun
    text = (out / f"{stem}.md").read_text().replace("(No analysis written yet for this profile.)",
                                                    "Because the region is tiny.")
    (tmp_path / f"{stem}.md").write_text(text)
    log: list[str] = []
    again = _run(tmp_path, resume=True, log=log)
    assert sum("from the cache" in line for line in log) == N_ROWS - len(recomputed)
    assert not any(line.startswith(tuple(f"{k}: from" for k in recomputed)) for line in log)
    assert _scores(again) == _scores(res)
    assert again["trust"] == res["trust"]
    assert "Because the region is tiny." in (tmp_path / f"{stem}.md").read_text()


def test_render_results_keeps_numbers_and_notes(first: tuple[Path, dict], tmp_path: Path
                                                ) -> None:
    out, _ = first
    (tmp_path / "experiment-smoke.json").write_text((out / "experiment-smoke.json").read_text())
    res = json.loads((tmp_path / "experiment-smoke.json").read_text())
    md = tmp_path / "experiment-smoke.md"
    text = (out / "experiment-smoke.md").read_text()
    start, end = "<!-- findings-notes:start -->", "<!-- findings-notes:end -->"
    md.write_text(text[:text.index(start) + len(start)] + "\nHand-written.\n"
                  + text[text.index(end):])
    before = md.read_text()
    assert ex.render_results(tmp_path / "experiment-smoke.json") == md
    after = md.read_text()
    assert "Hand-written." in after
    assert after == before  # same JSON, same notes -> same file
    rerendered = json.loads((tmp_path / "experiment-smoke.json").read_text())
    assert rerendered["rows"] == res["rows"] and rerendered["checks"] == res["checks"]
    assert "Adam 1e-3 halved" in after  # the profile's learning rate, as the paper writes it
    rerendered["profile"]["lr"] = 2.5e-4
    (tmp_path / "experiment-smoke.json").write_text(json.dumps(rerendered))
    ex.render_results(tmp_path / "experiment-smoke.json")
    assert "Adam 2.5e-4 halved" in md.read_text()
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(SchemaError, match="experiment result"):
        ex.render_results(tmp_path / "bad.json")


def test_profiles_and_errors() -> None:
    assert set(ex.PROFILES) == {"smoke", "cpu", "gpu"}
    gpu, cpu = ex.get_profile("gpu"), ex.get_profile("cpu")
    t = gpu.training
    assert t.epochs == 1000 and t.batch_size == 32 and t.patch_size == 32
    assert t.learning_rate == 1e-3 and t.lr_step == 40 and not t.progress  # Table 5
    assert not gpu.network_kwargs and not cpu.network_kwargs  # the paper's networks
    assert cpu.size_km[0] * cpu.size_km[1] < gpu.size_km[0] * gpu.size_km[1]
    with pytest.raises(ParameterError, match="profile"):
        ex.get_profile("laptop")


def test_profile_train_config_per_row() -> None:
    smoke = ex.get_profile("smoke")
    row = smoke.train_config("vdsr", seed=7)
    assert row.seed == 7 and dict(row.network_kwargs) == {"depth": 3, "features": 8}
    assert (row.epochs, row.learning_rate, row.ensemble) == (1, 1e-3, 1)
    toolkit = smoke.train_config("multilevel_unet", seed=7, toolkit=True)
    assert toolkit.learning_rate == TrainConfig().learning_rate
    assert toolkit.ensemble == smoke.toolkit_ensemble
    d = smoke.to_dict()  # the flat layout of the results files
    assert (d["epochs"], d["lr"], d["patch_size"], d["stride"]) == (1, 1e-3, 16, 4)
    assert d["model_kwargs"]["vdsr"] == {"depth": 3, "features": 8}
    json.dumps(d)


# ----------------------------------------------------------------- parts, without training
def test_cross_validation_trains_with_the_row_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import geochem_sr.trust as trust
    from geochem_sr.experiment.networks import cross_validate_network

    seen: dict = {}

    class Report:
        def to_dict(self) -> dict:
            return {"per_element": {}}

    def fake(ds, model, inputs, **kw):
        seen.update(kw, model=model, inputs=inputs)
        return Report()

    monkeypatch.setattr(trust, "cross_validate", fake)
    gpu = ex.get_profile("gpu")
    assert cross_validate_network(None, "geochem", gpu, seed=3) == {"per_element": {}}
    row = gpu.train_config("multilevel_unet", seed=3)
    assert (seen["model"], seen["inputs"], seen["folds"], seen["keep_oof"]) == (
        "multilevel_unet", "geochem", gpu.cv_folds, False)
    for name in ("epochs", "seed", "patch_size", "stride", "patience", "learning_rate",
                 "lr_step", "lr_gamma", "batch_size", "loss", "target_scale", "progress"):
        assert seen[name] == getattr(row, name), name
    assert seen["network_kwargs"] == {}
    assert not {"splitter", "checkpoint", "resume", "ensemble"} & set(seen)


def test_row_cache_round_trip_and_fingerprint(tmp_path: Path) -> None:
    row = {"key": "k", "scores": {"psnr_avg": np.float32(20.5), "bad": float("nan")}}
    crops = {"pred": np.arange(6.0).reshape(1, 2, 3)}
    RowCache(tmp_path, "fp", enabled=False).put("k", row, crops)
    assert not any(tmp_path.iterdir())
    RowCache(tmp_path, "fp", enabled=True).put("k", row, crops)
    got, got_crops = RowCache(tmp_path, "fp", enabled=True).get("k")
    assert got == {"key": "k", "scores": {"psnr_avg": 20.5, "bad": None}}
    np.testing.assert_array_equal(got_crops["pred"], crops["pred"])
    assert RowCache(tmp_path, "other", enabled=True).get("k") is None
    assert RowCache(tmp_path, "fp", enabled=False).get("k") is None
    assert RowCache(tmp_path, "fp", enabled=True).get("missing") is None


def _row(kind: str, key: str, psnr: float, ssim: float, rmse: float,
         network: str | None = None, inputs: str = "geochem") -> dict:
    # the label is only displayed: the checks find rows by network and input set
    return {"key": key, "kind": kind, "network": network, "inputs": inputs, "label": key,
            "scores": {"psnr_avg": psnr, "ssim_avg": ssim, "rmse_log10": rmse}}


def test_expectations_checked_on_a_made_up_table() -> None:
    best = {n: float(n == "multilevel_unet") for n in ex.NETWORKS}
    rows = [_row("network", f"{n}-{i}", 20.0 + j + 5 * best[n], 0.5 + 0.1 * j + 0.1 * best[n],
                 0.3 - 0.01 * j, network=n, inputs=i)
            for n in ex.NETWORKS for j, i in enumerate(reversed(ex.INPUT_SETS))]
    rows += [_row("baseline", b, 19.0, 0.4, 0.5) for b in ex.BASELINES]
    lines, checks = check_expectations(rows)
    assert len(lines) == 3 and all("**holds**" in line for line in lines)
    assert checks["expect_multilevel_all_best"] and checks["expect_geology_improves_each"]
    best = f"multilevel_unet-{ex.INPUT_SETS[0]}"
    assert checks["best_psnr_avg"] == checks["best_ssim_avg"] == best
    assert checks["expect_every_network_beats_sparse_and_idw"]
    rk = next(r for r in rows if r["key"] == "regression_kriging")
    rk["scores"]["psnr_avg"] = 99.0  # regression kriging now beats every network
    _, checks = check_expectations(rows)
    assert checks["best_psnr_avg"] == "regression_kriging"
    assert not checks["expect_multilevel_all_best"]
    assert checks["beats_by_metric"]["regression_kriging"]["psnr_avg"] == 0
    assert checks["beats_by_metric"]["regression_kriging_all"]["psnr_avg"] == 12


def test_format_value_and_figure_elements() -> None:
    assert format_value(None) == format_value(float("nan")) == "—"
    assert format_value(1.23456, "rmse_log10") == "1.2346"
    assert format_value(20.0, "psnr_avg") == "20.00" and format_value(0.5) == "0.500"
    assert figure_elements(["As", "Cu", "Au"]) == ["Au", "Cu"]
    assert figure_elements(["As", "Cu", "Zn"]) == ["As", "Cu"]


def test_modules_stay_small() -> None:
    root = Path(ex.__file__).parent.parent
    for pkg in ("experiment", "plotting"):
        for path in (root / pkg).glob("*.py"):
            n = len(path.read_text(encoding="utf-8").splitlines())
            assert n <= 400, f"{path.name}: {n} lines"


def test_method_rows_are_calibrated_and_costed(first: tuple[Path, dict]) -> None:
    out, res = first
    methods = {r["key"]: r for r in res["rows"] if r["kind"] == "method"}
    assert list(methods) == ["toolkit", "trees", "ridge", "auto"]
    elements = res["data"]["elements"]
    for key, r in methods.items():
        assert set(r["gains"]) == set(elements), key
        assert r["train_cpu_s"] > 0 and r["predict_cpu_s_1024"] > 0, key
    assert set(methods["auto"]["selection"]) == set(elements)
    assert res["profile"]["toolkit_margin"] > 0  # the toolkit row predicts whole tiles
    assert "auto_mean_gain" in res["checks"]["methods"]
    md = (out / "experiment-smoke.md").read_text()
    assert "## Methods a geochemist could pick" in md and "Checks (issue 16)" in md


def test_methods_checks_compare_the_selection_with_the_best_alternative() -> None:
    from geochem_sr.experiment.methods_report import methods_checks, methods_lines

    els = ["As", "Cu"]

    def row(key: str, kind: str, gains: list[float]) -> dict:
        return {"key": key, "kind": kind,
                "gains": {e: {"gain": g, "gain_se": 0.01} for e, g in zip(els, gains, strict=True)}}

    rows = [row("trees", "method", [0.05, 0.02]), row("ridge", "method", [0.04, 0.06]),
            row("auto", "method", [0.05, 0.06])]
    c = methods_checks(rows, els)
    assert c["best_alternative"] == "ridge" and c["auto_at_least_best_on_mean"]
    assert c["elements_auto_at_least_best"] == 2 and not c["auto_meets_goal"]
    rows[-1] = row("auto", "method", [0.10, -0.01])
    c = methods_checks(rows, els)
    assert c["auto_below_zero"] == ["Cu"] and c["elements_auto_at_least_best"] == 1
    # where it is behind: how far on the test blocks and what it saw on its evidence
    rows[-1]["selection"] = {"Cu": {"method": "trees x3", "candidates": {
        "trees x3": {"gain_val": 0.05, "gain_val_se": 0.01},
        "ridge x3": {"gain_val": 0.01, "gain_val_se": 0.01}}}}
    (b,) = methods_checks(rows, els)["behind_best"]
    assert b["element"] == "Cu" and b["method"] == "trees x3"
    assert b["best_gain_test"] - b["gain_test"] == pytest.approx(0.07)
    assert (b["gain_evidence"], b["best_gain_evidence"]) == (0.05, 0.01)
    text = "\n".join(methods_lines(rows, els, {}))
    assert "Cu (trees x3): 7.00 points behind" in text
    assert "led by Cu +4.00 points; by more than either error for Cu" in text
