"""The tables of the synthetic model: the paper's elements (Table 3) and units (Table 2).

Per-element tables follow the order of :data:`ELEMENTS`; unit codes index :data:`UNITS`.
"""

from __future__ import annotations

import numpy as np

from geochem_sr import schema

__all__ = [
    "CARBONATE_HOSTS",
    "DETECTION_LIMITS",
    "ELEMENTS",
    "FAULT_AMP",
    "FORMATIONS",
    "GREISEN_AMP",
    "INTRUSIONS",
    "LAB_RSD",
    "LOADINGS",
    "MEDIAN",
    "RANDOM_FIELDS",
    "SKARN_AMP",
    "STREAMS",
    "TERRAIN_EFFECT",
    "UNITS",
]

#: The elements, in the order of every per-element table below.
ELEMENTS = schema.DEFAULT_ELEMENTS

# --- the elements ---------------------------------------------------------------------
#: Regional median (Table 3; ppm, Au and Ag ppb).
MEDIAN = dict(zip(ELEMENTS, (6.5, 0.42, 0.2, 1.3, 50.0, 17.0, 17.0, 50.0, 2.0, 0.95),
                  strict=True))
#: Detection limit of the lab (same units as :data:`MEDIAN`).
DETECTION_LIMITS = dict(zip(ELEMENTS, (0.5, 0.05, 0.08, 0.5, 20.0, 2.0, 3.0, 5.0, 0.5, 0.4),
                            strict=True))
#: Relative standard deviation of the lab.
LAB_RSD = dict(zip(ELEMENTS, (0.06, 0.08, 0.08, 0.10, 0.08, 0.05, 0.05, 0.05, 0.07, 0.08),
                   strict=True))
#: Loadings on three latent suites (orogenic Au-As-Sb, base metal, granitophile) ->
#: correlations between the elements.
LOADINGS = np.array([(0.7, 0, 0), (0.7, 0, 0), (0.2, 0, 0.6), (0.5, 0, 0), (0.3, 0.5, 0),
                     (0, 0.7, 0), (0, 0.5, 0.3), (0, 0.7, 0), (0, 0, 0.7), (0, 0, 0.6)])
#: Terrain effect, log10 per standard deviation of (elevation, topographic position, slope).
TERRAIN_EFFECT = np.array([(0.04, -0.08, -0.04), (0.04, -0.07, -0.04), (-0.03, -0.07, -0.03),
                           (-0.04, -0.12, -0.05), (0.03, -0.05, -0.03), (-0.04, -0.08, -0.04),
                           (0.00, -0.07, -0.04), (-0.04, -0.08, -0.04), (0.03, -0.08, -0.03),
                           (0.00, -0.05, -0.04)])
#: Peak log10 enrichment of fault-hosted (orogenic Au) anomalies.
FAULT_AMP = np.array((1.2, 1.0, 0.2, 1.5, 0.7, 0.15, 0.3, 0.1, 0.0, 0.0))
#: Peak log10 enrichment of skarn (Triassic granodiorite contact) anomalies.
SKARN_AMP = np.array((0.15, 0.0, 0.7, 0.15, 0.6, 1.2, 0.8, 0.9, 0.3, 0.7))
#: Peak log10 enrichment of greisen (Triassic granite contact) anomalies.
GREISEN_AMP = np.array((0.15, 0.0, 1.1, 0.0, 0.3, 0.4, 0.6, 0.4, 1.2, 1.0))

# --- the units ------------------------------------------------------------------------
#: The units (Table 2): name, age, rock class, log10 offset from the median per element.
UNITS: tuple[tuple[str, str, str, tuple[float, ...]], ...] = (
    ("Cenozoic sediments", "Cenozoic", "sediment",
     (-0.08, -0.08, -0.15, 0.08, -0.08, -0.15, -0.08, -0.15, -0.08, -0.15)),
    ("Triassic Elashan Formation", "Triassic", "volcanic",
     (0.15, 0.15, 0.00, 0.00, 0.15, -0.08, 0.22, 0.08, 0.08, 0.15)),
    ("Triassic Hongshuichuan Formation", "Triassic", "sedimentary",
     (0.38, 0.30, -0.08, 0.15, 0.00, -0.08, 0.00, 0.00, 0.00, -0.08)),
    ("Carboniferous Haotelowa Formation", "Carboniferous", "sedimentary",
     (0.22, 0.15, 0.00, 0.08, 0.08, 0.00, 0.15, 0.22, -0.08, 0.08)),
    ("Carboniferous Halagole Formation", "Carboniferous", "sedimentary",
     (-0.15, 0.08, -0.15, -0.08, 0.00, -0.30, -0.08, -0.08, -0.30, -0.15)),
    ("Xiaomiao Formation in Changcheng System", "Mesoproterozoic", "metamorphic",
     (0.08, 0.00, 0.08, 0.15, 0.08, 0.15, 0.08, 0.15, 0.08, 0.00)),
    ("Paleoproterozoic Jinshuikou Group", "Paleoproterozoic", "metamorphic",
     (-0.08, -0.08, 0.08, 0.15, 0.00, 0.30, 0.00, 0.15, 0.00, 0.00)),
    ("Triassic granite", "Triassic", "intrusive",
     (-0.45, -0.30, 0.30, -0.30, 0.08, -0.45, 0.22, -0.22, 0.38, 0.30)),
    ("Triassic granodiorite", "Triassic", "intrusive",
     (-0.30, -0.22, 0.08, -0.15, 0.00, 0.00, 0.08, 0.00, 0.08, 0.15)),
    ("Permian quartz diorite", "Permian", "intrusive",
     (-0.22, -0.15, -0.08, 0.00, 0.00, 0.22, -0.08, 0.08, -0.15, 0.00)),
    ("Carboniferous granodiorite", "Carboniferous", "intrusive",
     (-0.30, -0.22, 0.00, -0.08, -0.08, 0.08, 0.00, 0.00, 0.00, 0.08)),
    ("Silurian granodiorite", "Silurian", "intrusive",
     (-0.30, -0.15, 0.00, -0.08, -0.08, 0.00, 0.00, 0.00, 0.00, 0.00)),
    ("Ordovician tonalite", "Ordovician", "intrusive",
     (-0.38, -0.22, -0.08, 0.00, -0.08, 0.15, -0.15, 0.08, -0.22, -0.08)),
)
#: Formations oldest -> youngest with their share of the folded pile (codes into UNITS).
FORMATIONS = ((6, 0.34), (5, 0.14), (4, 0.12), (3, 0.08), (2, 0.14), (1, 0.18))
#: Intrusions oldest -> youngest (younger cut older): code, area fraction, blob range (m).
INTRUSIONS = ((12, 0.07, 2500.0), (11, 0.02, 1200.0), (10, 0.05, 2000.0), (9, 0.015, 900.0),
              (8, 0.16, 3500.0), (7, 0.07, 2000.0))
#: Correlated random fields: name, range (m), log10 sd.
RANDOM_FIELDS = (("random_3km", 3000.0, 0.15), ("random_800m", 800.0, 0.07),
                 ("random_200m", 200.0, 0.07))
#: Formations with limestone / marble: the best skarn hosts.
CARBONATE_HOSTS = (3, 4, 5)
#: Random stream of each part of the model (``SeedSequence([seed, k])``).
STREAMS = {"dem": 1, "faults": 2, "geology": 3, "fields": 4, "sparse": 5, "dense": 6}
