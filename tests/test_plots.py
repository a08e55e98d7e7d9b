"""loss.png (report/plots.py): a diverged run's inf / 1e300 rows do not reach the log axes, a
one-row run shows its point, and matplotlib never warns."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from compress_bench.report.logaxes import ABSURD, log_limits
from compress_bench.report.plots import divergence, figure_run, plot_run


def run_frame(rel: list[float], gap: list[float] | None = None) -> pd.DataFrame:
    """metrics.csv rows, logged every 10 rounds, with the given relative gradient norms."""
    rel = np.asarray(rel, dtype=float)
    gap = rel * 0.5 if gap is None else np.asarray(gap, dtype=float)
    rounds = np.arange(len(rel)) * 10
    return pd.DataFrame(
        {
            "round": rounds,
            "loss": 0.3 + gap,
            "loss_gap": gap,
            "grad_norm": 2.0 * rel,
            "grad_norm_rel": rel,
            "bits": rounds * 148.0,
        }
    )


def drawn(fig, panel: int = 0) -> list:
    """The lines of a panel that hold data (legend or not)."""
    return [line for line in fig.axes[panel].get_lines() if len(line.get_xdata())]


def render(fig) -> None:
    """Draw the figure into a PNG in memory: the warnings come at drawing time."""
    fig.savefig(io.BytesIO(), format="png", dpi=50)


DIVERGED = [1.0, 0.5, 3.0, 1e5, 1e50, 1e300, math.inf]  # lr=1e6: x^k explodes, then inf


def test_a_diverged_run_is_scaled_to_its_finite_part_without_warnings(tmp_path):
    frame = run_frame(DIVERGED)
    frame.loc[6, "loss"] = math.inf  # the runner's divergence: a non-finite loss
    frame.to_csv(tmp_path / "metrics.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a matplotlib or numpy warning fails the test
        fig = figure_run(pd.read_csv(tmp_path / "metrics.csv"), title="lr=1e6 (diverged)")
        render(fig)
        plot_run(tmp_path / "metrics.csv", tmp_path / "loss.png")  # the runner's call
    lo, hi = fig.axes[0].get_ylim()
    # the limits hold the drawable values, 0.25 (f - f* at round 10) to 1e50, with 5% of the
    # decades as margin: not 1e300, not inf (and not 10^0..10^1, as before)
    pad = 0.05 * (50 - math.log10(0.25))
    np.testing.assert_allclose([lo, hi], [0.25 / 10**pad, 1e50 * 10**pad], rtol=1e-9)
    assert fig.axes[1].get_ylim() == (lo, hi)  # the bits panel shares the y axis
    for line in drawn(fig, 0) + drawn(fig, 1):
        y = np.asarray(line.get_ydata(), dtype=float)
        assert np.all(np.isfinite(y)) and y.max() <= ABSURD
        assert line.get_marker() == "x" and list(line.get_markevery()) == [len(y) - 1]
        assert "diverged at round 60" in line.get_label()
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(legend) == 2 and all("diverged at round 60" in t for t in legend)
    assert (tmp_path / "loss.png").stat().st_size > 10_000


def test_a_run_of_one_row_shows_its_point():
    frame = run_frame([1.0], gap=[0.2])  # rounds=0, tol met at x^0, or max_bits=1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = figure_run(frame)
        render(fig)
    for panel in (0, 1):
        lines = drawn(fig, panel)
        assert len(lines) == 2
        for line in lines:
            assert len(line.get_xdata()) == 1 and line.get_marker() == "o"
    lo, hi = fig.axes[0].get_ylim()
    assert lo < 0.2 < 1.0 < hi and hi / lo < 1e3  # both points, and not 10^-300..10^300


def test_a_converging_run_keeps_its_curves_and_limits():
    rel = [10.0**-k for k in range(8)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = figure_run(run_frame(rel, gap=[0.5 * r for r in rel[:-1]] + [0.0]))
        render(fig)
    lines = drawn(fig, 0)
    assert [len(line.get_xdata()) for line in lines] == [7, 8]  # f - f* = 0 is not drawable
    assert all(line.get_marker() in ("None", None, "") for line in lines)
    lo, hi = fig.axes[0].get_ylim()
    assert 1e-8 < lo <= 5e-7 and 1.0 <= hi < 10.0
    assert divergence(run_frame(rel)) is None


def test_divergence_names_the_runners_round_or_the_absurd_one():
    assert divergence(run_frame(DIVERGED)) == "diverged at round 60"
    assert divergence(run_frame([1.0, 1e120, 1e200])) == "beyond 1e+100 from round 10"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([[1.0, 1e-4]], (10**-4.2, 10**0.2)),  # 5% of 4 decades each side
        ([[3.0]], (3.0 / 10**0.5, 3.0 * 10**0.5)),  # one value: half a decade
        ([[np.inf, np.nan, 0.0, -1.0, 1e300, 1e-300]], None),  # nothing drawable
        ([[1.0, np.inf], [1e300, 0.1]], (0.1 / 10**0.1, 10**0.1)),
    ],
)
def test_log_limits(values, expected):
    limits = log_limits(np.asarray(v) for v in values)
    if expected is None:
        assert limits is None
    else:
        np.testing.assert_allclose(limits, expected, rtol=1e-12)
