"""Colours and line styles of the comparison figure: a compressor keeps its colour in every
figure and every sweep; several configurations of one compressor differ by line style."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import pandas as pd

from compress_bench.report.values import present

# A fixed colour per known compressor (independent of which others a sweep contains).
KNOWN_COLOURS: dict[str, str] = {
    "identity": "#000000",
    "rand_k": "#1f77b4",
    "biased_rand_k": "#17becf",
    "adaptive_rand_k": "#393b79",
    "top_k": "#d62728",
    "md_greedy": "#2ca02c",
    "md_greedy_weighted": "#e6ab02",
    "md_weighted_greedy": "#c51b7d",
    "md_stochastic": "#9467bd",
    "natural": "#ff7f0e",
    "natural_dithering": "#8c564b",
    "standard_dithering": "#e377c2",
    "qsgd": "#bcbd22",
    "sign": "#7f7f7f",
    "scaled_sign": "#5254a3",
}
# Unknown names hash (sha256, so the same in every process) into colours not used above.
FALLBACK_PALETTE = (
    "#843c39",
    "#d6616b",
    "#7b4173",
    "#ce6dbd",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
    "#9c9ede",
    "#e7ba52",
    "#6baed6",
)
# Several labels of one compressor: solid first, then these ("--" is kept for diverged jobs).
LINE_STYLES: tuple[Any, ...] = ("-", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
MARKERS = (None, "o", "s", "^", "v", "D")
DIVERGED_STYLE = "--"


def colour_for(compressor: str) -> str:
    """The colour of a compressor in every figure: fixed for known names, else a hash of the
    name into :data:`FALLBACK_PALETTE` (the same in every process and every sweep)."""
    name = str(compressor)
    if name in KNOWN_COLOURS:
        return KNOWN_COLOURS[name]
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return FALLBACK_PALETTE[int.from_bytes(digest[:8], "big") % len(FALLBACK_PALETTE)]


def operator_of(row: Mapping[str, Any] | pd.Series) -> str:
    """The name a job's colour follows: its compressor, or its quantizer when the compressor
    is the identity (``identity + natural`` is natural compression and is coloured as such)."""
    compressor = str(row["compressor"]) if present(row.get("compressor")) else "unknown"
    quantizer = str(row["quantizer"]) if present(row.get("quantizer")) else "none"
    return quantizer if compressor == "identity" and quantizer != "none" else compressor


def line_styles(frame: pd.DataFrame) -> dict[str, tuple[str, Any, str | None]]:
    """{label: (colour, line style, marker)}: the colour from the compressor, the style
    telling apart several labels of one compressor (in order of their first job)."""
    styles: dict[str, tuple[str, Any, str | None]] = {}
    per_compressor: dict[str, int] = {}
    for _, row in frame.sort_values("job").iterrows():
        label = row["label"]
        if label in styles:
            continue
        compressor = operator_of(row)
        i = per_compressor.get(compressor, 0)
        per_compressor[compressor] = i + 1
        style = LINE_STYLES[i % len(LINE_STYLES)]
        marker = MARKERS[(i // len(LINE_STYLES)) % len(MARKERS)]
        styles[label] = (colour_for(compressor), style, marker)
    return styles
