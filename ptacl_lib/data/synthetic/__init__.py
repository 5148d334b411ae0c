"""Synthetic paired ECG-cine cohort with known ground truth (docs/design.md §2.4).

One latent state per subject (``latent``) drives a 12-lead ECG built from a cardiac dipole
(``ecg``), ventricular volume curves timed by that ECG (``mechanics``) and short-axis cine frames
drawn from those curves (``cine``); ``cohort`` writes manifest and array store.
"""

from .cohort import (
                     EXTRA_DESCRIPTIONS,
                     FIDUCIALS,
                     GENERATOR_VERSION,
                     SyntheticOptions,
                     generate_cohort,
                     simulate_subject,
                     store_geometry_for,
                     true_beats,
)
from .ecg import BEAT_LABELS
from .latent import CONDUCTIONS, ECG_LATENTS, PHENOTYPE_CLASSES

__all__ = ["BEAT_LABELS", "CONDUCTIONS", "ECG_LATENTS", "EXTRA_DESCRIPTIONS", "FIDUCIALS", "GENERATOR_VERSION",
           "PHENOTYPE_CLASSES", "SyntheticOptions", "generate_cohort", "simulate_subject", "store_geometry_for",
           "true_beats"]
