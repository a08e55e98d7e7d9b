"""Colours and line styles of the comparison figure: a compressor keeps its colour in every
figure and every sweep; several configurations of one compressor differ by line style."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import pandas as pd

from compress_bench.report.values import present


def _declared_colours() -> dict[str, str]:
    """The colour each registered operator declares (``colour`` on its class)."""
    from compress_bench.compressors import COMPRESSORS, QUANTIZERS

    return {
        name: cls.colour
        for registry in (COMPRESSORS, QUANTIZERS)
        for name, cls in registry.items()
        if cls.colour
    }


# A fixed colour per registered operator (independent of which others a sweep contains).
KNOWN_COLOURS: dict[str, str] = _declared_colours()
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


def colour_for(compressor: str, declared: Any = None) -> str:
    """The colour of an operator family in every figure: the colour the run declared (its
    summary.json), else the registered operator's, else a hash of the name into
    :data:`FALLBACK_PALETTE` (the same in every process and every sweep)."""
    if present(declared) and str(declared):
        return str(declared)
    name = str(compressor)
    if name in KNOWN_COLOURS:
        return KNOWN_COLOURS[name]
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return FALLBACK_PALETTE[int.from_bytes(digest[:8], "big") % len(FALLBACK_PALETTE)]


def operator_of(row: Mapping[str, Any] | pd.Series) -> str:
    """The family a job's colour follows, as its run declared it (``family`` in
    summary.json: the compressor, or the quantizer after a compressor that sends every value
    as is, so identity + natural is coloured as natural compression). Runs written before
    runs declared it: the same rule from the registry's declarations."""
    if present(row.get("family")):
        return str(row["family"])
    compressor = str(row["compressor"]) if present(row.get("compressor")) else "unknown"
    quantizer = str(row["quantizer"]) if present(row.get("quantizer")) else "none"
    from compress_bench.compressors import COMPRESSORS, QUANTIZERS

    c_cls, q_cls = COMPRESSORS.get(compressor), QUANTIZERS.get(quantizer)
    if c_cls is not None and c_cls.passthrough and q_cls is not None and not q_cls.passthrough:
        return quantizer
    return compressor


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
        styles[label] = (colour_for(compressor, row.get("colour")), style, marker)
    return styles
