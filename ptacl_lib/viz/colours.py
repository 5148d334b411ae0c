"""One fixed colour per arm, so that an arm looks the same in every figure."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt

from ..arms import ARMS


def arm_colours(arms: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """``{arm: RGB}`` from tab10 by the arm's place in the registry (unregistered arms after it)."""
    palette = plt.get_cmap("tab10").colors
    return {arm: palette[ARMS.index(arm) if arm in ARMS else (len(ARMS) + i) % 10] for i, arm in enumerate(arms)}
