"""The thesis figure (report/figures.py) on a hand-made sweep: diverged jobs end with an x
inside finite axes, jobs without metrics are named, and matplotlib never warns."""

from __future__ import annotations

import math
import warnings

import numpy as np

from compress_bench.report.figures import thesis_logreg
from tests.test_plots import position
from tests.test_sweep_report import ROUNDS, fake_metrics, fake_summary, write_job


def test_the_thesis_figure_survives_a_diverged_job_and_names_the_undrawn(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    m = fake_metrics("top_k", 0, extra={"bits_thesis": ROUNDS * 300.0})
    write_job(sweep, 0, ["compressor=top_k"], fake_summary("top_k", 0, m), m)
    m = fake_metrics("rand_k", 0, extra={"bits_thesis": ROUNDS * 100.0}).iloc[:4].copy()
    m["grad_norm_rel"] = [1.0, 1e40, 1e300, math.inf]
    s = fake_summary("rand_k", 0, m, status="diverged", stop_reason="diverged")
    write_job(sweep, 1, ["compressor=rand_k"], s, m)
    write_job(sweep, 2, ["compressor=md_greedy"], fake_summary("md_greedy", 0, m), None)
    out = tmp_path / "thesis.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = thesis_logreg(sweep, out)
    assert out.stat().st_size > 10_000 and len(table) == 3
    assert "figures: job 2 (completed) not drawn: metrics.csv is missing" in capsys.readouterr().err


def test_the_thesis_figure_axes_come_from_the_finite_values(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self))
    m = fake_metrics("rand_k", 0, extra={"bits_thesis": ROUNDS * 100.0}).iloc[:4].copy()
    m["grad_norm_rel"] = [1.0, 1e-3, 1e300, math.inf]
    s = fake_summary("rand_k", 0, m, status="diverged", stop_reason="diverged")
    write_job(tmp_path, 0, ["compressor=rand_k"], s, m)
    thesis_logreg(tmp_path, tmp_path / "t.png")
    (ax,) = figures[0].axes
    lo, hi = ax.get_ylim()
    assert 1e-4 < lo < 1e-3 and 1.0 < hi < 10.0
    line, stop = ax.get_lines()
    assert np.asarray(line.get_ydata()).tolist() == [1.0, 1e-3]
    assert line.get_label() == "RandK (diverged)"
    # the x where it stopped (its last row: round 30, 3000 bits; inf: the top edge), not at 1e-3
    assert stop.get_marker() == "x" and stop.get_label() == "_stop: RandK (diverged)"
    np.testing.assert_allclose(position(stop), (3000.0, hi), rtol=1e-9)
