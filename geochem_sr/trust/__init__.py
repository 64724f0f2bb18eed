"""When to trust a prediction: measured on blocks of the map the model never trained on.

* :func:`cross_validate` -- spatial block k-fold cross-validation
  (:class:`CrossValidationReport`) (:mod:`.cross_validation`, :mod:`.cv_report`);
* :func:`calibrate` -- do-no-harm shrinkage and the standard-deviation scale fitted on the
  validation blocks, the area-of-applicability reference on the training blocks, gains and
  coverage measured on the test blocks (:mod:`.calibrate`, :mod:`.shrinkage`, :mod:`.aoa`);
* :func:`select` -- per element, the best of several methods (networks, per-cell trees
  or ridge, the sparse map itself) on the validation blocks (:mod:`.selection`);
* :func:`trust_report` -- one table per element (:mod:`.report`);
* block roles: :class:`RolesSplitter`, :func:`training_roles`, :func:`default_blocks`
  (:mod:`.roles`).

Applying a calibrated model (its shrinkage, calibrated standard deviation and area of
applicability) to new cells is inference: :func:`geochem_sr.inference.calibrated_std`,
:func:`geochem_sr.inference.applicability`. The decisions and their reasons are in
``docs/notes/trust.md``.
"""

from geochem_sr.trust.aoa import AOA_SAMPLE
from geochem_sr.trust.calibrate import calibrate
from geochem_sr.trust.cross_validation import cross_validate
from geochem_sr.trust.cv_report import CrossValidationReport
from geochem_sr.trust.report import trust_report
from geochem_sr.trust.roles import RolesSplitter, default_blocks, training_roles
from geochem_sr.trust.selection import DEFAULT_CANDIDATES, SPARSE_MAP, select
from geochem_sr.trust.shrinkage import (
    COVERAGE_1STD,
    MIN_GAIN,
    MIN_Z,
    STD_FLOOR_FRACTION,
)

__all__ = [
    "cross_validate",
    "CrossValidationReport",
    "calibrate",
    "select",
    "DEFAULT_CANDIDATES",
    "SPARSE_MAP",
    "trust_report",
    "RolesSplitter",
    "default_blocks",
    "training_roles",
    "COVERAGE_1STD",
    "STD_FLOOR_FRACTION",
    "MIN_GAIN",
    "MIN_Z",
    "AOA_SAMPLE",
]
