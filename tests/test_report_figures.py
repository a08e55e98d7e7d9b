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


def _neural_sweep(sweep):
    """Two jobs of a thesis_cifar-like sweep: one row per epoch with the test metrics."""
    for num, name in enumerate(("top_k", "rand_k")):
        m = fake_metrics(name, 0).iloc[:3].copy()
        m["epoch"] = [0.0, 0.9984, 1.9968]
        m["test_loss"] = [2.3, 1.9, 1.6]
        m["test_accuracy"] = [0.1, 0.3, 0.4]
        write_job(sweep, num, [f"compressor={name}"], fake_summary(name, 0, m), m)


def test_the_offline_cifar_figure_says_it_was_drawn_on_the_offline_data(tmp_path, monkeypatch):
    """make figures-cifar-offline draws thesis_cifar's figure from 10,000 training images: its
    title must say so, or it reads as the thesis's figure; thesis_cifar's own title does not."""
    from matplotlib.figure import Figure

    from compress_bench.report.figures import main

    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self))
    _neural_sweep(tmp_path / "sweep")
    for experiment in ("thesis_cifar_offline", "thesis_cifar"):
        assert main([experiment, str(tmp_path / "sweep"), str(tmp_path / f"{experiment}.png")]) == 0
    offline, full = (fig.get_suptitle() for fig in figures)
    assert "offline data: 10,000 training images, 1,000 test images" in offline
    assert offline.startswith(full) and "offline" not in full
    assert len(figures[0].axes[1].get_lines()) == 2  # both operators drawn
