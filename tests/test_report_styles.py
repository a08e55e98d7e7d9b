"""comparison.png of a sweep of operators x methods reads as a grid: one colour per operator,
one line style per method, lines named by display names; a sweep of one method per operator
(the thesis's) keeps each family's colour, solid."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from compress_bench.report import callback
from compress_bench.report.styling import colour_for
from compress_bench.report.sweep import report
from tests.test_sweep_report import fake_metrics, fake_summary, write_job

# operator preset (conf/operator/) -> what its runs declare in summary.json
OPERATORS = {
    "top_k": ("top_k", "none", "top_k", "#d62728", "TopK", "TopK"),
    "top_k_natural_dithering": (
        "top_k",
        "natural_dithering",
        "top_k",
        "#d62728",
        "TopK",
        "TopK + natural dithering",
    ),
    "top_k_power_of_two": (
        "top_k",
        "power_of_two",
        "top_k",
        "#d62728",
        "TopK",
        "TopK + power-of-two",
    ),
    "scaled_sign": ("identity", "scaled_sign", "scaled_sign", "#5254a3", "Identity", "scaled sign"),
}
METHODS = {"dcgd": "DCGD", "ef": "EF", "ef21": "EF21"}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.setattr(callback, "LAST_REPORT", None)
    monkeypatch.setattr(callback, "_pending", None)


def declared(operator: str, method: str) -> dict:
    """summary.json's operator fields, as a run of this preset and method writes them."""
    compressor, quantizer, family, colour, compressor_label, label = OPERATORS[operator]
    wrapped = f"EF({label})" if method == "ef" else label  # the operator as the method ran it
    return dict(
        compressor=compressor,
        quantizer=quantizer,
        family=family,
        colour=colour,
        compressor_label=compressor_label,
        label=wrapped,
        method=method,
    )


def drawn_figure(sweep: Path, monkeypatch) -> Figure:
    """report() on the sweep; the comparison figure it saved."""
    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self))
    report(sweep)
    (fig,) = figures
    return fig


def curves(fig: Figure) -> dict:
    """The lines of the first panel that have a legend entry, by name."""
    return {
        line.get_label(): line
        for line in fig.axes[0].get_lines()
        if not line.get_label().startswith("_")
    }


def test_operators_by_colour_methods_by_line_style(tmp_path, monkeypatch):
    """conf/experiment/error_feedback.yaml: 4 operators x dcgd, ef, ef21. Before: the three TopK
    operators shared TopK's red (9 of 12 lines), and line styles were numbered per family, so
    they repeated and did not follow the method."""
    num = 0
    for operator in OPERATORS:
        for method in METHODS:
            m = fake_metrics("top_k", num)
            s = {**fake_summary("top_k", 0, m), **declared(operator, method)}
            write_job(tmp_path, num, [f"operator={operator}", f"method={method}"], s, m)
            num += 1
    lines = curves(drawn_figure(tmp_path, monkeypatch))
    assert len(lines) == 12
    assert len({(line.get_color(), line.get_linestyle()) for line in lines.values()}) == 12
    grid = {  # named by display names: "TopK + natural dithering, EF21"
        (operator, method): lines[f"{OPERATORS[operator][5]}, {name}"]
        for operator in OPERATORS
        for method, name in METHODS.items()
    }
    for operator in OPERATORS:
        assert len({grid[operator, method].get_color() for method in METHODS}) == 1
    for method in METHODS:
        assert len({grid[operator, method].get_linestyle() for operator in OPERATORS}) == 1
    colours = [grid[operator, "dcgd"].get_color() for operator in OPERATORS]
    assert len(set(colours)) == 4
    # a family's own operator keeps the family's colour; scaled sign is its family's only one
    assert colours[0] == "#d62728" and colours[3] == "#5254a3"
    assert [grid["top_k", m].get_linestyle() for m in METHODS] == ["-", "-.", ":"]


def test_one_method_per_operator_keeps_the_family_colours_solid(tmp_path, monkeypatch):
    """The thesis_logreg sweep: every operator followed by power-of-two rounding, one method:
    each line in its family's colour, solid, as the thesis figure has them."""
    families = ("rand_k", "top_k", "md_greedy")
    for num, family in enumerate(families):
        m = fake_metrics("top_k", num)
        s = fake_summary(
            family,
            0,
            m,
            quantizer="power_of_two",
            family=family,
            colour=colour_for(family),
            compressor_label=family,
            label=f"{family} + power-of-two",
        )
        write_job(tmp_path, num, [f"compressor={family}"], s, m)
    lines = curves(drawn_figure(tmp_path, monkeypatch))
    assert {name: (line.get_color(), line.get_linestyle()) for name, line in lines.items()} == {
        f"{family} + power-of-two": (colour_for(family), "-") for family in families
    }
