"""The thesis figure's claim, end to end (slow: about 3 minutes; make test-slow)."""

from __future__ import annotations

import pandas as pd
import pytest

from compress_bench.config import compose_config
from compress_bench.report.sweep import first_reaching
from compress_bench.runner import build_run, execute

pytestmark = pytest.mark.slow


def thesis_run(tmp_path, mushrooms_dir, compressor):
    cfg = compose_config(
        "experiment=thesis_logreg",
        f"compressor={compressor}",
        f"data_dir={mushrooms_dir}",
        "progress=false",
    )
    out = tmp_path / compressor
    out.mkdir()
    summary = execute(build_run(cfg), out)
    metrics = pd.read_csv(out / "metrics.csv")
    return summary, first_reaching(metrics, 1e-6, "bits_thesis")


def test_md_operators_track_top_k_and_beat_rand_k_in_bits(tmp_path, mushrooms_dir):
    """What the thesis reports: MD ~ TopK, and both need far fewer bits than RandK to 1e-6."""
    bits = {}
    for compressor in ("rand_k", "top_k", "md_weighted_greedy"):
        summary, bits[compressor] = thesis_run(tmp_path, mushrooms_dir, compressor)
        assert summary["status"] == "completed" and summary["stop_reason"] == "tol"
    assert bits["md_weighted_greedy"] <= 1.05 * bits["top_k"]
    assert bits["md_weighted_greedy"] <= 0.85 * bits["rand_k"]
    assert bits["top_k"] <= 0.85 * bits["rand_k"]
