"""The arms of the comparison: one registry of names, labels, order and roles (torch-free).

Every trained arm is one training objective (``ptacl_lib.train``); ``cmr_probe`` is not trained: it
is the ridge probe on the CMR embedding of the ``ptacl`` runs, the upper reference of what an ECG
embedding could reach if it held everything the aligned CMR embedding holds. Reference rows from
the information ceiling (``ptacl_lib.evaluate.ceiling``) are listed here too, so that every table
and figure orders and names them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping


@dataclass(frozen=True)
class Arm:
    """One row of the comparison."""

    name: str
    label: str
    trained: bool  # a training objective of ``ptacl train``
    description: str


REGISTRY: tuple[Arm, ...] = (
    Arm("none", "random init", True, "random initialisation, no training (an evaluation baseline)"),
    Arm("ecg_ssl", "ECG-only SSL", True, "ECG-only masked (lead, time-patch) reconstruction"),
    Arm("global", "global-only (CLIP)", True, "the global patient-level InfoNCE term only"),
    Arm("ptacl", "PTACL", True, "global InfoNCE + lambda x local phase contrast"),
    Arm("supervised", "supervised ECG", True, "ECG -> standardised phenotypes (linear head)"),
    Arm("cmr_probe", "CMR probe (upper ref.)", False, "ridge probe on the PTACL run's CMR embedding"),
    Arm("median_beat", "median-beat ridge (ref.)", False, "ridge on 12-lead median beats + RR (ceiling)"),
    Arm("latent_oracle", "latent oracle (ref.)", False, "ridge on the generator's ECG-side latents (ceiling)"),
    Arm("latent_oracle_nonlinear", "latent oracle, trees (ref.)", False,
        "gradient-boosted trees on the generator's ECG-side latents (ceiling)"),
)

#: Every arm, in reporting order.
ARMS: tuple[str, ...] = tuple(a.name for a in REGISTRY)
#: Human-readable names for tables and figures.
ARM_LABELS: dict[str, str] = {a.name: a.label for a in REGISTRY}
#: The training objectives (``ptacl train --objective``), in reporting order.
OBJECTIVES: tuple[str, ...] = tuple(a.name for a in REGISTRY if a.trained)
#: The arm whose CMR embedding gives the ``cmr_probe`` reference, and that reference's name.
CMR_PROBE_SOURCE = "ptacl"
CMR_PROBE_ARM = "cmr_probe"
#: The baseline every arm's gain is measured from (the share of the window it closes).
BASELINE_ARM = "none"
#: Per-arm departures from a study's batch size, learning rate, warm-up and epochs, as multipliers
#: (``StudyConfig.recipes``). Learning rate and warm-up were chosen on each arm's own validation loss on the
#: CPU demo cohort over the same grid, and checked again after the ECG stem (supervised ECG then moved from
#: 4x to 2x the lr) and after the frame CNN's 4x4 first stage. Epochs: the supervised arm trains 1.5x, the
#: contrastive arms 2x, the fewest at which their validation losses flatten on the 3,000-subject demo
#: cohort (docs/design.md §5); ECG-SSL's flattens at 1x. An arm without an entry keeps the study's values.
ARM_RECIPES: dict[str, dict[str, float]] = {
    "ecg_ssl": {"lr": 4.0},
    "global": {"lr": 2.0, "warmup_epochs": 3.0, "epochs": 2.0},
    "ptacl": {"lr": 4.0, "epochs": 2.0},
    "supervised": {"batch_size": 0.5, "lr": 2.0, "epochs": 1.5},
}
#: The training settings a recipe may scale; ``batch_size`` and ``epochs`` are rounded to whole numbers.
RECIPE_SETTINGS: tuple[str, ...] = ("batch_size", "lr", "warmup_epochs", "epochs")
#: Reference rows that are not ECG-embedding arms (they need no training and have no seeds of their own).
REFERENCE_ARMS: tuple[str, ...] = tuple(a.name for a in REGISTRY if not a.trained)


def arm_label(name: str) -> str:
    """The display label of an arm (the name itself when it is not registered)."""
    return ARM_LABELS.get(name, name)


def arm_rank(name: str) -> int:
    """Position in the reporting order; unregistered arms sort last."""
    return ARMS.index(name) if name in ARMS else len(ARMS)


def order_arms(names: Iterable[str]) -> list[str]:
    """``names`` without duplicates, in reporting order (unregistered names last, in their given order)."""
    unique = list(dict.fromkeys(names))
    return sorted(unique, key=arm_rank)


def check_objectives(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as a tuple, or a ValueError naming the first that is not a training objective."""
    names = tuple(names)
    for name in names:
        if name not in OBJECTIVES:
            raise ValueError(f"unknown arm {name!r}; choose from {OBJECTIVES}")
    return names


def arm_recipe(name: str, settings: Mapping[str, float],
               table: Mapping[str, Mapping[str, float]]) -> dict[str, int | float]:
    """``settings`` (a study's ``RECIPE_SETTINGS``) as arm ``name`` trains them under the multipliers of
    ``table`` (such as ``ARM_RECIPES``); an arm without an entry gets them unchanged."""
    recipe = table.get(name, {})
    unknown = set(recipe) - set(RECIPE_SETTINGS)
    if unknown:
        raise ValueError(f"recipe of {name!r} scales {sorted(unknown)}; a recipe may scale {RECIPE_SETTINGS}")
    scaled: dict[str, int | float] = {k: settings[k] * recipe.get(k, 1.0) for k in RECIPE_SETTINGS}
    for whole in ("batch_size", "epochs"):
        scaled[whole] = max(1, round(scaled[whole])) if whole in recipe else settings[whole]
    return scaled
