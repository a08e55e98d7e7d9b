"""Cell values of the summary table: is one present (not None/NaN), and as a number."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def present(value: Any) -> bool:
    """False for None and NaN/NA (an empty cell), True for anything else."""
    if value is None:
        return False
    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or other container: a value
        return True


def number(value: Any) -> float:
    """``value`` as a float, NaN when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
