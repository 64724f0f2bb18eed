"""A realistic synthetic survey area: the embedded default for demo, notebook, tests, benchmarks.

Modelled on the East Kunlun setting of Pei et al. (2025): the paper's lithological units
(Table 2) and element levels (Table 3). :mod:`.tables` holds the tables, :mod:`.fields` the
model on its fine grid, :mod:`.region` what a user gets (:func:`synthetic_region`).
"""

from geochem_sr.data.synthetic.region import DEFAULT_ELEMENTS, SyntheticRegion, synthetic_region

__all__ = ["DEFAULT_ELEMENTS", "SyntheticRegion", "synthetic_region"]
