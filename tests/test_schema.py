import numpy as np
import pytest
from conftest import make_survey

import geochem_sr as gs
from geochem_sr import schema


def test_valid_survey_passes(survey):
    assert gs.validate(survey) is survey


def test_missing_crs(survey):
    ds = survey.drop_vars("spatial_ref")
    with pytest.raises(gs.CRSError, match="projected CRS"):
        gs.validate(ds)


def test_geographic_crs(survey):
    ds = survey.rio.write_crs("EPSG:4326")
    with pytest.raises(gs.CRSError, match="degrees"):
        gs.validate(ds)


def test_irregular_spacing(survey):
    x = survey.x.values.copy()
    x[5] += 7.0
    with pytest.raises(gs.GridError, match="regular spacing"):
        gs.validate(survey.assign_coords(x=x))


def test_wrong_dim_order(survey):
    ds = survey.assign(lr=survey.lr.transpose("y", "x", "element"))
    with pytest.raises(gs.SchemaError, match=r"variable 'lr': expected dims"):
        gs.validate(ds)


def test_unknown_element():
    ds = make_survey(elements=("As", "Xx"))
    with pytest.raises(gs.SchemaError, match="unknown.*Xx"):
        gs.validate(ds)


def test_integer_concentrations(survey):
    ds = survey.assign(lr=survey.lr.astype("int32"))
    with pytest.raises(gs.SchemaError, match="floating-point"):
        gs.validate(ds)


def test_all_nan(survey):
    lr = survey.lr.copy()
    lr[1] = np.nan
    with pytest.raises(gs.DataError, match="element Cu: every value is NaN"):
        gs.validate(survey.assign(lr=lr))


def test_non_positive(survey):
    lr = survey.lr.copy()
    lr[0, 2, 3] = -1.0
    with pytest.raises(gs.DataError, match="positive concentrations"):
        gs.validate(survey.assign(lr=lr))


def test_missing_required(survey):
    with pytest.raises(gs.SchemaError, match="'hr_pred': required"):
        gs.validate(survey, require=("hr_pred",))


def test_lr_hr_on_different_grids(survey):
    other = make_survey(nx=21)
    with pytest.raises(gs.GridError, match="same 'x'"):
        schema.check_same_grid(survey.lr, other.hr, "lr vs hr")


def test_make_grid_snaps_and_descends():
    g = schema.make_grid((100, 200, 1001, 1190), 100.0, "EPSG:32650")
    assert g.x.values[0] == 150 and g.x.values[-1] == 1050
    assert np.all(np.diff(g.y.values) < 0)
    assert g.rio.crs.to_epsg() == 32650
    assert g.rio.transform().a == 100.0


def test_parse_input_set():
    assert schema.parse_input_set("geochem+terrain") == ("geochem", "terrain")
    with pytest.raises(gs.SchemaError, match="inputs"):
        schema.parse_input_set("terrain")


def test_ascending_y_refused(survey):
    with pytest.raises(gs.GridError, match="'y': expected descending"):
        gs.validate(survey.isel(y=slice(None, None, -1)))


def test_non_square_cells_refused(survey):
    y = survey.y.values[0] - 80.0 * np.arange(survey.sizes["y"])
    with pytest.raises(gs.GridError, match="square cells, found 50 x 80"):
        gs.validate(survey.assign_coords(y=y))


def test_infinite_concentration_refused(survey):
    lr = survey.lr.values.copy()
    lr[1, 2, 3] = np.inf
    with pytest.raises(gs.DataError, match="element Cu: expected finite.*1 infinite"):
        gs.validate(survey.assign(lr=(survey.lr.dims, lr)))
