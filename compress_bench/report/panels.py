"""What the figures draw, by kind of run: the metrics on their y axes and the x axes.

A convex run's metrics.csv (:data:`compress_bench.report.metrics.METRIC_COLUMNS`) has the loss
gap and the relative gradient norm; a neural run's (``TRAINING_COLUMNS`` of
:mod:`compress_bench.run.metrics`) has the training loss, the test loss and the test accuracy, and
the epoch as a third x axis; a run with a simulated network (spec 28) adds ``sim_time`` as
the last x axis, next to the bits. The figures decide which from the columns a metrics table has, so
a sweep of either kind (or of both) draws what its jobs logged rather than empty panels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A y axis: the metrics.csv ``column``, its ``label``, and whether it is drawn on a log
    scale (losses, gradient norms) or a linear one (an accuracy in [0, 1])."""

    column: str
    label: str
    log: bool = True


GRAD_NORM_REL = Metric("grad_norm_rel", r"$\|\nabla f(x^k)\| \,/\, \|\nabla f(x^0)\|$")
LOSS_GAP = Metric("loss_gap", r"$f(x^k) - f^*$")
TRAIN_LOSS = Metric("train_loss", "train loss")
TEST_LOSS = Metric("test_loss", "test loss")
TEST_ACCURACY = Metric("test_accuracy", "test accuracy", log=False)

CONVEX_METRICS = (GRAD_NORM_REL, LOSS_GAP)
NEURAL_METRICS = (TRAIN_LOSS, TEST_LOSS, TEST_ACCURACY)
EPOCH = "epoch"  # the x axis only neural runs log
SIM_TIME = "sim_time"  # the x axis of runs with a simulated network (spec 28)
SIM_TIME_LABEL = "simulated time (s): compute + comm_time"


def is_neural(columns: Iterable[str]) -> bool:
    """True for the metrics of the neural loop: a column of :data:`NEURAL_METRICS` and neither
    of :data:`CONVEX_METRICS` (a convex run logs both of those)."""
    columns = set(columns)
    neural = any(m.column in columns for m in NEURAL_METRICS)
    return neural and not any(m.column in columns for m in CONVEX_METRICS)


def metrics_in(tables: Iterable[Iterable[str]]) -> tuple[Metric, ...]:
    """The metrics to draw for metrics tables with these columns: the convex ones when a table
    has one of them, then the neural ones when a table has one of them; the convex ones when no
    table has either (an empty figure looks as it always did)."""
    present: set[str] = set()
    for columns in tables:
        present.update(columns)
    chosen = [m for m in (*CONVEX_METRICS, *NEURAL_METRICS) if m.column in present]
    convex = [m for m in chosen if m in CONVEX_METRICS]
    neural = [m for m in chosen if m in NEURAL_METRICS]
    if convex:
        convex = list(CONVEX_METRICS)  # both rows, as before, even if one column is absent
    if neural:
        neural = list(NEURAL_METRICS)
    return tuple(convex + neural) or CONVEX_METRICS


def x_columns(tables: Iterable[Iterable[str]], bits_column: str) -> tuple[str, ...]:
    """The x axes: rounds, epochs when some table logs them, ``bits_column``, and the
    simulated time when some table logs it (a run with a network, spec 28)."""
    tables = [set(columns) for columns in tables]
    has_epoch = any(EPOCH in columns for columns in tables)
    axes = ("round", EPOCH, bits_column) if has_epoch else ("round", bits_column)
    return axes + ((SIM_TIME,) if any(SIM_TIME in columns for columns in tables) else ())
