"""Run outputs: the metrics writer, summary.json, and plots."""

from compress_bench.report.metrics import (
    METRIC_COLUMNS,
    THESIS_BITS_COLUMN,
    MetricsWriter,
    write_json_atomic,
)
from compress_bench.report.plots import plot_run

__all__ = ["METRIC_COLUMNS", "THESIS_BITS_COLUMN", "MetricsWriter", "plot_run", "write_json_atomic"]
