"""Colours, line styles and names of the comparison figure's lines.

The colour tells the operator apart, the line style the rest of the configuration (the method,
or any other swept key: ``lr``, ``ratio``): so a sweep of operators x methods reads as a grid, one
colour per operator and one style per method (:func:`line_styles`). An operator keeps the colour
its family declares (:func:`colour_for`: TopK is red in every figure) unless other operators of
that family are drawn beside it (TopK, TopK + natural dithering, TopK + power-of-two): then the
family's own operator keeps it and each of the others gets a colour of its own, hashed from its
name and never one already drawn (:func:`operator_colours`). The legend names lines by display
names: the operator's ("TopK + natural dithering": :func:`operator_label`), then the method's
("EF21"): :func:`display_names`.
"""

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
# One per configuration other than the operator: solid first, then these ("--" is kept for
# diverged jobs); past them, markers tell configurations apart.
LINE_STYLES: tuple[Any, ...] = ("-", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
MARKERS = (None, "o", "s", "^", "v", "D")
DIVERGED_STYLE = "--"
MIN_DISTANCE = 250.0  # between two operators' colours in one figure, when possible (_distance)


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


OPERATOR_KEYS = ("operator", "compressor", "quantizer")  # the swept keys the colour follows


def operator_key(row: Mapping[str, Any] | pd.Series) -> str:
    """The operator a job ran, as the colours tell operators apart: the parts of its
    (compressor, quantizer) pair that change the message, e.g. ``top_k + natural_dithering``,
    ``top_k`` (quantizer none), ``scaled_sign`` (identity + scaled sign)."""
    from compress_bench.compressors import COMPRESSORS, QUANTIZERS

    compressor = str(row["compressor"]) if present(row.get("compressor")) else "unknown"
    quantizer = str(row["quantizer"]) if present(row.get("quantizer")) else "none"
    c_cls, q_cls = COMPRESSORS.get(compressor), QUANTIZERS.get(quantizer)
    parts = []
    if c_cls is None or not c_cls.passthrough:
        parts.append(compressor)
    if quantizer != "none" and (q_cls is None or not q_cls.passthrough):
        parts.append(quantizer)
    return " + ".join(parts) or compressor


def _rgb(colour: str) -> tuple[float, ...]:
    """A matplotlib colour (a name, #rrggbb) as (r, g, b) in 0..255."""
    from matplotlib.colors import to_rgb

    return tuple(255 * c for c in to_rgb(colour))


def _distance(a: str, b: str) -> float:
    """How far apart two colours look, roughly: the "redmean" weighted distance of their RGB
    values (0 to about 765), closer to what the eye sees than the plain Euclidean one."""
    (r1, g1, b1), (r2, g2, b2) = _rgb(a), _rgb(b)
    red = (r1 + r2) / 2
    return (
        (2 + red / 256) * (r1 - r2) ** 2
        + 4 * (g1 - g2) ** 2
        + (2 + (255 - red) / 256) * (b1 - b2) ** 2
    ) ** 0.5


def _hashed(name: str, used: set[str]) -> str:
    """A colour of :data:`FALLBACK_PALETTE` for ``name``: from the one its sha256 picks on,
    the first at least :data:`MIN_DISTANCE` from every colour in ``used`` (so that it reads
    as another colour, not another shade), else the one farthest from them."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    start = int.from_bytes(digest[:8], "big") % len(FALLBACK_PALETTE)
    order = FALLBACK_PALETTE[start:] + FALLBACK_PALETTE[:start]
    if not used:
        return order[0]

    def nearest(colour: str) -> float:
        return min(_distance(colour, other) for other in used)

    for colour in order:
        if nearest(colour) >= MIN_DISTANCE:
            return colour
    return max(order, key=nearest)  # the first of equals: max keeps it


def operator_colours(frame: pd.DataFrame) -> dict[str, str]:
    """{operator (:func:`operator_key`): colour} for the jobs of ``frame`` whose operator is
    known. One operator of each family (:func:`operator_of`) keeps the family's colour
    (:func:`colour_for`): the family's own operator (``top_k`` among ``top_k``,
    ``top_k + natural_dithering``, ``top_k + power_of_two``), else the family's first in job
    order; so a sweep of one operator per family (the thesis's) keeps every colour. Each other
    operator gets a colour of its own from :data:`FALLBACK_PALETTE`, from where its name's hash
    points, far from the colours already taken (:func:`_hashed`): no two operators of one
    figure share a colour while the palette lasts."""
    families: dict[str, tuple[str, Any]] = {}  # operator -> (family, declared colour)
    for _, row in frame.sort_values("job").iterrows():
        if not (present(row.get("compressor")) or present(row.get("family"))):
            continue  # a job that never ran: its operator is not known
        families.setdefault(operator_key(row), (operator_of(row), row.get("colour")))
    owners = {family: key for key, (family, _) in families.items() if key == family}
    for key, (family, _) in families.items():  # a family without its own operator: its first
        owners.setdefault(family, key)
    colours: dict[str, str] = {}
    used: set[str] = set()
    for key, (family, declared) in families.items():  # the owners first: they keep theirs
        if owners[family] == key:
            colour = colour_for(family, declared)
            colours[key] = colour if colour.lower() not in used else _hashed(key, used)
            used.add(colours[key].lower())
    for key in families:
        if key not in colours:
            colours[key] = _hashed(key, used)
            used.add(colours[key].lower())
    return colours


def _label_keys(frame: pd.DataFrame) -> list[str]:
    """The swept keys the labels name (``attrs["label_keys"]``, else the varying ones)."""
    if "label_keys" in frame.attrs:
        return list(frame.attrs["label_keys"])
    from compress_bench.report.table import varying_keys

    return varying_keys(frame)


def line_styles(frame: pd.DataFrame) -> dict[str, tuple[str, Any, str | None]]:
    """{label: (colour, line style, marker)}: the colour from the operator
    (:func:`operator_colours`), the style from the rest of the configuration: the values of the
    swept keys other than the operator's (the method, lr, ...), numbered in order of their
    first job, so one method has one style in every operator. Two labels that would still
    look alike (keys unknown) take the next style."""
    frame = frame.sort_values("job")
    colours = operator_colours(frame)
    keys = [k for k in _label_keys(frame) if k not in OPERATOR_KEYS and k in frame.columns]
    variants: dict[tuple[str, ...], int] = {}
    for _, row in frame.iterrows():
        variants.setdefault(tuple(str(row.get(k)) for k in keys), len(variants))
    styles: dict[str, tuple[str, Any, str | None]] = {}
    taken: set[tuple[str, int]] = set()
    for _, row in frame.iterrows():
        label = row["label"]
        if label in styles:
            continue
        colour = colours.get(operator_key(row)) or colour_for(operator_of(row), row.get("colour"))
        i = variants[tuple(str(row.get(k)) for k in keys)]
        while (colour, i) in taken:
            i += 1
        taken.add((colour, i))
        style = LINE_STYLES[i % len(LINE_STYLES)]
        marker = MARKERS[(i // len(LINE_STYLES)) % len(MARKERS)]
        styles[label] = (colour, style, marker)
    return styles


def method_label(name: Any) -> str:
    """A method's display name: its class's ``label`` when it declares one, else its name in
    capitals (dcgd -> DCGD, ef21 -> EF21)."""
    from compress_bench.methods import METHODS

    cls = METHODS.get(str(name))
    return str(getattr(cls, "label", "") or str(name).upper())


def operator_label(row: Mapping[str, Any] | pd.Series, summary: Mapping[str, Any]) -> str:
    """An operator's display name, the same for every method that runs it: the display names
    of the parts of :func:`operator_key` joined by " + " ("TopK + natural dithering", "scaled
    sign"), the compressor's as the run declared it (summary.json's ``compressor_label``).
    summary.json's ``label`` is not it: it is the operator as the method ran it
    ("EF(TopK per tensor)", "0.8835 * (TopK + natural dithering)" under ef21)."""
    from compress_bench.compressors import COMPRESSORS, QUANTIZERS

    compressor = str(row["compressor"]) if present(row.get("compressor")) else "unknown"
    quantizer = str(row["quantizer"]) if present(row.get("quantizer")) else "none"
    c_cls, q_cls = COMPRESSORS.get(compressor), QUANTIZERS.get(quantizer)
    declared = str(summary.get("compressor_label") or "")
    parts = []
    if c_cls is None or not c_cls.passthrough:
        parts.append(declared or (c_cls.label if c_cls is not None else "") or compressor)
    if quantizer != "none" and (q_cls is None or not q_cls.passthrough):
        parts.append((q_cls.label if q_cls is not None else "") or quantizer)
    return " + ".join(parts) or declared or compressor


def display_names(
    frame: pd.DataFrame, summaries: Mapping[int, Mapping[str, Any] | None] | None = None
) -> dict[str, str]:
    """{label: legend name}. A label whose job declared display names (summary.json's
    ``compressor_label``) is named by its operator's (:func:`operator_label`), then by the
    other swept keys of the label: the method by its display name (:func:`method_label`), any
    other as ``key=value``; so "top_k, operator=top_k_natural_dithering, method=ef21" is shown
    as "TopK + natural dithering, EF21". Labels without one keep the label. Names that would
    be shown for two labels get the label in brackets."""
    summaries = summaries or {}
    keys = [k for k in _label_keys(frame) if k not in OPERATOR_KEYS]
    names: dict[str, str] = {}
    for _, row in frame.sort_values("job").iterrows():
        label = row["label"]
        summary = summaries.get(int(row["job"])) or {}
        if label in names and names[label] != label:
            continue
        if not summary.get("compressor_label"):
            names.setdefault(label, label)
            continue
        parts = [operator_label(row, summary)]
        for key in keys:
            if present(row.get(key)):
                value = row.get(key)
                parts.append(method_label(value) if key == "method" else f"{key}={value}")
        names[label] = ", ".join(parts)
    shown: dict[str, int] = {}
    for name in names.values():
        shown[name] = shown.get(name, 0) + 1
    return {
        label: name if shown[name] == 1 else f"{name} [{label}]" for label, name in names.items()
    }
