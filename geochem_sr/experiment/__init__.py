"""The paper's experiment (Pei et al. 2025, Table 6) with classical baselines, rerunnable.

:func:`run_experiment` (``geochem-sr experiment``) trains the paper's four networks on its
three input sets, adds the classical maps a geochemist would use instead, scores them all
on the same held-out test blocks and writes a markdown report, a JSON and a figure.
Profiles (:data:`PROFILES`): ``smoke`` (tests), ``cpu`` (about an hour), ``gpu`` (the paper).
"""

from __future__ import annotations

from geochem_sr.experiment import profiles
from geochem_sr.experiment.baselines import regression_kriging
from geochem_sr.experiment.profiles import *
from geochem_sr.experiment.report import render_results, table_frame
from geochem_sr.experiment.run import run_experiment

__all__ = [*profiles.__all__, "regression_kriging", "run_experiment", "render_results",
           "table_frame"]
