"""The operator catalogue (docs/compressors.md), generated from the registries so it cannot
drift from the code: ``python -m compress_bench.docs > docs/compressors.md`` (``make docs``);
``tests/test_docs.py`` fails when the committed page differs from what this prints.
"""

from __future__ import annotations

import inspect

from compress_bench.compressors import COMPRESSORS, QUANTIZERS, build_compressor, build_quantizer
from compress_bench.compressors.base import k_from_ratio

# the worked setting of spec table 26.2: mushrooms, d = 112, ratio 0.2 (k = 22); the low-rank
# operators see x as the 8 x 14 matrix of spec 18 (problem.matrix_shape=[8,14])
D, RATIO, MATRIX = 112, 0.2, (8, 14)


def _compressor(name: str):
    if COMPRESSORS[name].support == "factors":
        return build_compressor({"name": name}, ratio=RATIO, global_shape=MATRIX)
    return build_compressor({"name": name}, ratio=RATIO)


def _constant(value) -> str:
    if value is None:
        return "none"
    return f"{value:.6g}"


def _section(kind: str, name: str, operator, rows: list[tuple[str, str]]) -> list[str]:
    doc = inspect.cleandoc(type(operator).__doc__ or "(no docstring)")
    lines = [f"### `{kind}={name}`", "", doc, "", "| property | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    return lines + [""]


def compressor_rows(name: str) -> list[tuple[str, str]]:
    comp = _compressor(name)
    bits = comp.expected_bits(D)
    return [
        ("unbiased", "yes" if comp.unbiased else "no"),
        ("deterministic", "yes" if comp.deterministic else "no"),
        (f"omega (U class), d = {D}", _constant(comp.omega(D))),
        (
            f"delta (B3 class), d = {D}, k = {k_from_ratio(RATIO, D)}",
            _constant(comp.contraction(D)),
        ),
        (
            f"bits per worker per round, d = {D}, k = {k_from_ratio(RATIO, D)}",
            "depends on the input" if bits is None else str(bits),
        ),
    ]


def quantizer_rows(name: str) -> list[tuple[str, str]]:
    quant = build_quantizer({"name": name})
    value_bits = getattr(quant, "value_bits", None)
    return [
        ("unbiased", "yes" if quant.unbiased else "no"),
        ("deterministic", "yes" if quant.deterministic else "no"),
        (f"omega (U class), {D} values", _constant(quant.omega(D))),
        (f"delta (B3 class), {D} values", _constant(quant.contraction(D))),
        ("bits per sent value", "unchanged" if value_bits is None else str(value_bits)),
    ]


def generate() -> str:
    lines = [
        "# Compression operators",
        "",
        "Generated from the registries by `python -m compress_bench.docs` (`make docs`); do not",
        "edit by hand. Every operator's formula, class constants, bits and reference come from",
        "its docstring and metadata; the numbers are for mushrooms (d = 112, ratio 0.2, k = 22;",
        "the low-rank operators at their default rank 2 on x viewed as 8 x 14).",
        "A quantizer acts on the values a compressor sends (`compressor=top_k",
        "quantizer=natural_dithering`); bits of a composition are",
        "`sent values x bits per value + side information` (indices, norms).",
        "",
        "## Compressors",
        "",
    ]
    for name in sorted(COMPRESSORS):
        comp = _compressor(name)
        lines += _section("compressor", name, comp, compressor_rows(name))
    lines += ["## Quantizers", ""]
    for name in sorted(QUANTIZERS):
        lines += _section("quantizer", name, build_quantizer({"name": name}), quantizer_rows(name))
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(generate(), end="")
