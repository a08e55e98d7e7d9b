"""The sweep report: one table and one comparison figure for a Hydra multirun folder.

``compress-bench-report <sweep dir>`` (also run by :mod:`compress_bench.report.callback` at the
end of every multirun) reads each job folder ``<sweep dir>/<job number>/``:

- ``.hydra/overrides.yaml``, the job's command-line overrides (``compressor=top_k``, ``seed=1``);
- ``summary.json``, its status and final figures (a job without one is reported as ``missing``);
- ``metrics.csv``, its logged rounds (any extra columns are kept and may serve as the bits axis),

and writes two files into the sweep folder:

- ``summary.csv``: one row per job, its overrides as columns (string values, keys without the
  leading ``+``/``++``), its status and final figures, the round and bits at which
  ``grad_norm_rel`` first reached the job's ``tol``, the error of a failed job, and ``label``,
  the line of the figure the job belongs to;
- ``comparison.png``: relative gradient norm and loss gap against rounds and against bits (log
  y), one line per label. Seeds of one configuration share a line: with two or more, the line
  is the mean of log10(y) over seeds and the band +- one standard deviation of log10(y)
  (population std, ddof=0), both on the x values where every seed has data. Each compressor
  keeps its colour in every figure (:func:`colour_for`). Jobs that failed, diverged, are missing
  or never finished are listed in a box under the panels; diverged jobs are drawn (dashed, up
  to the divergence), the others are not.

Nothing is dropped silently: every problem job is also logged (logger ``compress_bench``), and
the command exits 1 when a job failed, is missing or never finished (diverged jobs exit 0, as
they do in the runner).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

log = logging.getLogger("compress_bench")

PROG = "compress-bench-report"
SUMMARY_CSV = "summary.csv"
COMPARISON_PNG = "comparison.png"

# Statuses written by the runner, plus the two this module infers.
COMPLETED, DIVERGED, FAILED, RUNNING = "completed", "diverged", "failed", "running"
MISSING = "missing"  # no (readable) summary.json: the job never started or was killed first
DRAWN = (COMPLETED, DIVERGED)

# Columns taken from summary.json when the job has no override of that name. An override wins
# (it is the option the user chose, and it is what tells two configurations apart).
MERGED_KEYS = ("problem", "method", "compressor", "quantizer", "seed")
LABEL_EXCLUDED = ("seed", "compressor")  # seeds share a line; the compressor leads the label

# A fixed colour per known compressor (independent of which others a sweep contains).
KNOWN_COLOURS: dict[str, str] = {
    "identity": "#000000",
    "rand_k": "#1f77b4",
    "biased_rand_k": "#17becf",
    "adaptive_rand_k": "#393b79",
    "top_k": "#d62728",
    "md_greedy": "#2ca02c",
    "md_greedy_weighted": "#e6ab02",
    "md_weighted_greedy": "#c51b7d",
    "md_stochastic": "#9467bd",
    "natural": "#ff7f0e",
    "natural_dithering": "#8c564b",
    "standard_dithering": "#e377c2",
    "qsgd": "#bcbd22",
    "sign": "#7f7f7f",
    "scaled_sign": "#5254a3",
}
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
MAX_BOX_LINES = 12
FIG_WIDTH = 15.0  # inches


class ReportError(ValueError):
    """Bad input to the report (not a sweep folder, unknown bits column): one line, exit 2."""


# --- reading a sweep -----------------------------------------------------------------------


@dataclass
class Job:
    """What one job folder holds; metrics is None when metrics.csv is absent or unreadable."""

    num: int
    path: Path
    overrides: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    summary_error: str | None = None
    metrics: pd.DataFrame | None = None

    @property
    def status(self) -> str:
        if self.summary is None:
            return MISSING
        return str(self.summary.get("status") or MISSING)

    @property
    def config(self) -> Mapping[str, Any]:
        config = (self.summary or {}).get("config")
        return config if isinstance(config, Mapping) else {}


def job_dirs(sweep_dir: Path | str) -> list[tuple[int, Path]]:
    """The numbered job folders of a sweep, in numerical order (2 before 10)."""
    sweep_dir = Path(sweep_dir)
    found = [
        (int(p.name), p)
        for p in sweep_dir.iterdir()
        if p.is_dir() and re.fullmatch(r"[0-9]+", p.name)
    ]
    return sorted(found)


def read_overrides(job_dir: Path) -> dict[str, str]:
    """``.hydra/overrides.yaml`` as {key: value string}; ``+key``/``++key``/``~key`` -> key."""
    path = Path(job_dir) / ".hydra" / "overrides.yaml"
    try:
        items = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    overrides: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        key, sep, value = str(item).partition("=")
        key = key.strip().lstrip("+~")
        if key:
            overrides[key] = value.strip() if sep else ""
    return overrides


def read_metrics(job_dir: Path) -> pd.DataFrame | None:
    """metrics.csv with every column numeric (``inf``/``nan`` kept), or None if unusable."""
    path = Path(job_dir) / "metrics.csv"
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        log.warning("sweep report: cannot read %s: %s", path, err)
        return None
    frame = frame.apply(pd.to_numeric, errors="coerce")
    if "round" not in frame.columns:
        return None
    return frame


def _read_summary(job_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    path = Path(job_dir) / "summary.json"
    if not path.is_file():
        return None, "no summary.json (the job never started, or was killed first)"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return None, f"summary.json unreadable: {err}"
    if not isinstance(summary, dict):
        return None, "summary.json is not a JSON object"
    return summary, None


def scan(sweep_dir: Path | str) -> list[Job]:
    """Read every job folder of a sweep; ReportError if it is not a sweep folder."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.exists():
        raise ReportError(f"{sweep_dir} does not exist")
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir} is not a directory")
    dirs = job_dirs(sweep_dir)
    if not dirs:
        raise ReportError(
            f"{sweep_dir} has no job folders (0/, 1/, ...); pass the folder of a multirun "
            "(outputs/multirun/<date>/<time>-...)"
        )
    jobs = []
    for num, path in dirs:
        summary, error = _read_summary(path)
        jobs.append(
            Job(
                num=num,
                path=path,
                overrides=read_overrides(path),
                summary=summary,
                summary_error=error,
                metrics=read_metrics(path),
            )
        )
    return jobs


# --- the table -----------------------------------------------------------------------------


def _number(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def first_reaching(metrics: pd.DataFrame | None, tol: Any, column: str) -> float:
    """``column`` at the first logged row with grad_norm_rel <= tol (NaN: never, or no tol)."""
    tol = _number(tol)
    if (
        metrics is None
        or math.isnan(tol)
        or column not in metrics
        or "grad_norm_rel" not in metrics
    ):
        return math.nan
    hit = metrics.loc[metrics["grad_norm_rel"] <= tol, column]
    return float(hit.iloc[0]) if len(hit) else math.nan


def _error_of(job: Job) -> str | None:
    if job.summary is None:
        return job.summary_error
    if job.status == RUNNING:
        return "did not finish: summary.json still says 'running' (was the job killed?)"
    error = job.summary.get("error")
    if error is None and job.status == FAILED:
        error = job.summary.get("stop_reason") or "failed (no error recorded)"
    # one line in the table (the job's summary.json keeps the message as it was)
    return None if error is None else " ".join(str(error).split())


def _row(job: Job, override_keys: Sequence[str], extra_to_tol: Sequence[str]) -> dict[str, Any]:
    summary = job.summary or {}
    final = summary.get("final") if isinstance(summary.get("final"), Mapping) else {}
    last = (
        job.metrics.iloc[-1]
        if job.metrics is not None and len(job.metrics)
        else pd.Series(dtype=float)
    )

    def figure(name: str, summary_value: Any) -> float:
        # summary.json first; the last metrics row for a job that never wrote its final figures
        value = _number(summary_value)
        return float(last.get(name, math.nan)) if math.isnan(value) else value

    row: dict[str, Any] = {"job": job.num}
    for key in override_keys:
        row[key] = job.overrides.get(key)
    for key in MERGED_KEYS:  # the override if the job has one, else summary.json
        if row.get(key) is None:
            row[key] = summary.get(key)
    tol = job.config.get("tol")
    row.update(
        status=job.status,
        stop_reason=summary.get("stop_reason"),
        rounds_done=figure("round", summary.get("rounds_done")),
        total_bits=figure("bits", summary.get("total_bits")),
        final_loss=figure("loss", final.get("loss")),
        final_loss_gap=figure("loss_gap", final.get("loss_gap")),
        final_grad_norm=figure("grad_norm", final.get("grad_norm")),
        final_grad_norm_rel=figure("grad_norm_rel", final.get("grad_norm_rel")),
        rounds_to_tol=first_reaching(job.metrics, tol, "round"),
        bits_to_tol=first_reaching(job.metrics, tol, "bits"),
    )
    for column in extra_to_tol:
        row[f"{column}_to_tol"] = first_reaching(job.metrics, tol, column)
    row["error"] = _error_of(job)
    return row


def _as_int_if_whole(series: pd.Series) -> pd.Series:
    """Integer-valued columns (rounds, seeds) as nullable integers, so the CSV says 120, not
    120.0; anything else unchanged."""
    numeric = pd.to_numeric(series, errors="coerce")
    present = series.notna()
    if not present.any() or numeric[present].isna().any():
        return series
    values = numeric[present].to_numpy(dtype=float)
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        return series
    return numeric.round().astype("Int64")


def frame_of(jobs: Sequence[Job]) -> pd.DataFrame:
    """The summary table of :func:`collect` from already-read jobs."""
    override_keys: list[str] = []
    for job in jobs:
        override_keys += [key for key in job.overrides if key not in override_keys]
    # other bits conventions in the metrics (e.g. bits_thesis) get their own "_to_tol" column
    extra_to_tol: list[str] = []
    for job in jobs:
        if job.metrics is not None:
            extra_to_tol += [
                c
                for c in job.metrics.columns
                if c.startswith("bits_") and c != "bits_total" and c not in extra_to_tol
            ]
    frame = pd.DataFrame([_row(job, override_keys, extra_to_tol) for job in jobs])
    for key in override_keys:  # override values are strings, as typed on the command line
        frame[key] = frame[key].astype(object)
    for column in ("job", "seed", "rounds_done", "rounds_to_tol"):
        frame[column] = _as_int_if_whole(frame[column])
    frame.attrs["override_keys"] = list(override_keys)
    keys = varying_keys(frame, override_keys)
    frame.attrs["label_keys"] = keys
    frame["label"] = [label_of(row, keys) for _, row in frame.iterrows()]
    return frame


def collect(sweep_dir: Path | str) -> pd.DataFrame:
    """One row per job folder (numerical order): ``job``, one column per override key, then
    status, stop_reason, rounds_done, total_bits, final figures, rounds_to_tol, bits_to_tol,
    error, compressor/quantizer/seed (from the overrides, else summary.json) and ``label``."""
    return frame_of(scan(sweep_dir))


def varying_keys(frame: pd.DataFrame, override_keys: Sequence[str] | None = None) -> list[str]:
    """The override keys, other than seed and compressor, whose value differs between jobs
    (among the jobs whose overrides could be read)."""
    if override_keys is None:
        override_keys = frame.attrs.get("override_keys", [])
    keys = [k for k in override_keys if k in frame.columns]
    if not keys:
        return []
    known = frame[keys].notna().any(axis=1)
    rows = frame.loc[known, keys]
    return [
        k for k in keys if k not in LABEL_EXCLUDED and rows[k].astype(str).nunique(dropna=False) > 1
    ]


def label_of(row: Mapping[str, Any] | pd.Series, keys: Sequence[str] = ()) -> str:
    """A job's line label: its compressor, then ``key=value`` for each key in ``keys`` (the
    varying override keys, :func:`varying_keys`; ``collect`` stores them in
    ``frame.attrs["label_keys"]`` and the labels in the ``label`` column)."""
    compressor = row.get("compressor")
    parts = [str(compressor) if _present(compressor) else "unknown"]
    for key in keys:
        value = row.get(key)
        if _present(value):
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def _present(value: Any) -> bool:
    if value is None:
        return False
    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):
        return True


# --- colours and the mean/std band ---------------------------------------------------------


def colour_for(compressor: str) -> str:
    """The colour of a compressor in every figure: fixed for known names, else a hash of the
    name into :data:`FALLBACK_PALETTE` (the same in every process and every sweep)."""
    name = str(compressor)
    if name in KNOWN_COLOURS:
        return KNOWN_COLOURS[name]
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return FALLBACK_PALETTE[int.from_bytes(digest[:8], "big") % len(FALLBACK_PALETTE)]


def mean_std_log10(
    curves: Sequence[tuple[Any, Any]], ddof: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean and std over curves of log10(y), on one x grid.

    Each curve (x, y) loses its non-finite and non-positive y first; log10(y) is interpolated
    linearly in x onto the union of the curves' x values inside the range every curve covers
    (max of the first x .. min of the last x). Returns (x, mean, std), std with ``ddof``
    (default 0: the spread of the seeds that ran), or None when fewer than two curves have data
    or their ranges do not overlap.
    """
    cleaned = []
    for x, y in curves:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y) & (y > 0)
        x, logy = x[ok], np.log10(y[ok])
        if x.size == 0:
            continue
        order = np.argsort(x, kind="stable")
        x, logy = x[order], logy[order]
        # a repeated x keeps its last value (np.interp wants increasing x)
        keep = np.append(x[1:] != x[:-1], True)
        cleaned.append((x[keep], logy[keep]))
    if len(cleaned) < 2:
        return None
    lo = max(x[0] for x, _ in cleaned)
    hi = min(x[-1] for x, _ in cleaned)
    if lo > hi:
        return None
    grid = np.unique(np.concatenate([x[(x >= lo) & (x <= hi)] for x, _ in cleaned]))
    values = np.vstack([np.interp(grid, x, logy) for x, logy in cleaned])
    return grid, values.mean(axis=0), values.std(axis=0, ddof=ddof)


# --- the figure ----------------------------------------------------------------------------

PANELS = (  # (row, column, y column, y label, x is bits)
    (0, 0, "grad_norm_rel", r"$\|\nabla f(x^k)\| \,/\, \|\nabla f(x^0)\|$", False),
    (0, 1, "grad_norm_rel", r"$\|\nabla f(x^k)\| \,/\, \|\nabla f(x^0)\|$", True),
    (1, 0, "loss_gap", r"$f(x^k) - f^*$", False),
    (1, 1, "loss_gap", r"$f(x^k) - f^*$", True),
)


def _bits_label(column: str) -> str:
    if column == "bits":
        return "uplink bits per worker (bits)"
    if column == "bits_thesis":
        return "uplink bits per worker (bits_thesis: thesis convention)"
    return f"uplink bits ({column})"


def _plain(text: str) -> str:
    """Text shown as typed (a '$' would start mathtext and could break the drawing)."""
    return str(text).replace("$", r"\$")


def _describe(row: Mapping[str, Any], override_keys: Sequence[str]) -> str:
    parts = [f"{k}={row.get(k)}" for k in override_keys if _present(row.get(k))]
    if not parts and _present(row.get("compressor")):
        parts = [f"compressor={row.get('compressor')}"]
    return ", ".join(parts) or "no overrides recorded"


def problem_lines(frame: pd.DataFrame) -> list[tuple[int, str, str]]:
    """(job, kind, one-line description) for each job that failed, diverged, is missing or did
    not finish; kind is the status (``running`` shown as ``incomplete``)."""
    override_keys = frame.attrs.get("override_keys") or [
        c for c in frame.columns if c not in _FIXED_COLUMNS and not c.endswith("_to_tol")
    ]
    lines = []
    for _, row in frame.iterrows():
        status = row["status"]
        if status == COMPLETED:
            continue
        kind = "incomplete" if status == RUNNING else str(status)
        what = _describe(row, override_keys)
        if status == DIVERGED:
            rounds = row.get("rounds_done")
            detail = f"non-finite at round {rounds}" if _present(rounds) else "non-finite"
        else:
            detail = str(row.get("error")) if _present(row.get("error")) else "no error recorded"
        detail = " ".join(detail.split())  # one line
        lines.append((int(row["job"]), kind, f"{kind}: job {int(row['job'])} ({what}): {detail}"))
    return lines


_FIXED_COLUMNS = {
    "job",
    *MERGED_KEYS,
    "status",
    "stop_reason",
    "rounds_done",
    "total_bits",
    "final_loss",
    "final_loss_gap",
    "final_grad_norm",
    "final_grad_norm_rel",
    "rounds_to_tol",
    "bits_to_tol",
    "error",
    "label",
}


def operator_of(row: Mapping[str, Any] | pd.Series) -> str:
    """The name a job's colour follows: its compressor, or its quantizer when the compressor
    is the identity (``identity + natural`` is natural compression and is coloured as such)."""
    compressor = str(row["compressor"]) if _present(row.get("compressor")) else "unknown"
    quantizer = str(row["quantizer"]) if _present(row.get("quantizer")) else "none"
    return quantizer if compressor == "identity" and quantizer != "none" else compressor


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
        styles[label] = (colour_for(compressor), style, marker)
    return styles


def figure_comparison(
    frame: pd.DataFrame,
    metrics: Mapping[int, pd.DataFrame | None],
    x_bits_column: str = "bits",
    title: str = "",
) -> Figure:
    """The 2x2 comparison figure (not saved). ``metrics`` maps job number -> metrics.csv."""
    if "label" not in frame.columns:
        frame = frame.copy()
        keys = varying_keys(frame)
        frame["label"] = [label_of(row, keys) for _, row in frame.iterrows()]
    problems = problem_lines(frame)
    shown = problems[:MAX_BOX_LINES]
    box = [_clip(text) for _, _, text in shown]
    if len(problems) > len(shown):
        box.append(f"... and {len(problems) - len(shown)} more (see {SUMMARY_CSV})")

    # A fixed layout (constrained layout doubles the drawing time): the 2x2 panels, the legend
    # to their right (as wide as its longest entry), the problem list under them.
    box_height = 0.25 + 0.16 * len(box) if box else 0.0
    height = 8.4 + box_height
    fig = Figure(figsize=(FIG_WIDTH, height))
    grid = fig.add_gridspec(
        2,
        2,
        left=0.07,
        top=1 - 0.55 / height,
        bottom=(box_height + 0.6) / height,
        hspace=0.3,
        wspace=0.12,
    )
    axes = [[fig.add_subplot(grid[r, c]) for c in range(2)] for r in range(2)]
    axes[0][1].sharey(axes[0][0])
    axes[1][1].sharey(axes[1][0])

    styles = line_styles(frame)
    handles: dict[str, Line2D] = {}
    drawn = frame[frame["status"].isin(DRAWN)]
    for label in dict.fromkeys(drawn.sort_values("job")["label"]):
        rows = drawn[drawn["label"] == label]
        colour, style, marker = styles[label]
        completed = [int(j) for j in rows.loc[rows["status"] == COMPLETED, "job"]]
        diverged = [int(j) for j in rows.loc[rows["status"] == DIVERGED, "job"]]
        completed = [j for j in completed if metrics.get(j) is not None]
        diverged = [j for j in diverged if metrics.get(j) is not None]
        for r, c, ycol, _, bits in PANELS:
            ax = axes[r][c]
            xcol = x_bits_column if bits else "round"
            curves = [
                (metrics[j][xcol], metrics[j][ycol])
                for j in completed
                if xcol in metrics[j] and ycol in metrics[j]
            ]
            band = mean_std_log10(curves) if len(curves) >= 2 else None
            if band is not None:
                x, mean, std = band
                name = f"{label} (mean \u00b1 std over {len(curves)} seeds)"
                (line,) = ax.plot(
                    x,
                    10**mean,
                    color=colour,
                    ls=style,
                    marker=marker,
                    markevery=0.1,
                    lw=1.6,
                    label=name,
                )
                ax.fill_between(
                    x, 10 ** (mean - std), 10 ** (mean + std), color=colour, alpha=0.2, lw=0
                )
                handles.setdefault(name, line)
            else:  # one seed, or seeds without a common range: each on its own
                for x, y in curves:
                    x, y = _positive_points(x, y)
                    (line,) = ax.plot(
                        x,
                        y,
                        color=colour,
                        ls=style,
                        marker=marker,
                        markevery=0.1,
                        lw=1.4,
                        label=label,
                    )
                    handles.setdefault(label, line)
            for j in diverged:
                m = metrics[j]
                if xcol not in m or ycol not in m:
                    continue
                x, y = _positive_points(m[xcol], m[ycol])
                name = f"{label} (job {j} diverged)"
                (line,) = ax.plot(x, y, color=colour, ls="--", lw=1.0, alpha=0.8, label=name)
                if len(x):
                    ax.plot(x[-1:], y[-1:], color=colour, marker="x", ms=8, ls="none")
                handles.setdefault(name, line)

    for r, c, _, ylabel, bits in PANELS:
        ax = axes[r][c]
        ax.set_yscale("log")
        ax.set_xlabel(_bits_label(x_bits_column) if bits else "round")
        if c == 0:
            ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.1)
    if handles:
        legend = fig.legend(
            list(handles.values()),
            [_clip(_plain(name), 80) for name in handles],
            loc="upper right",
            bbox_to_anchor=(0.995, 1 - 0.55 / height),
            fontsize=8,
            frameon=False,
        )
        # make room for the legend: its measured width, not a guess from the label lengths
        renderer = FigureCanvasAgg(fig).get_renderer()
        width = legend.get_window_extent(renderer).width / fig.dpi  # inches
        grid.update(right=max(0.45, 1 - (width + 0.15) / FIG_WIDTH))
        for ax in (a for row in axes for a in row):  # update() moves pyplot figures only
            ax.set_position(ax.get_subplotspec().get_position(fig))
    else:
        axes[0][0].text(
            0.5,
            0.5,
            "no completed job to draw",
            transform=axes[0][0].transAxes,
            ha="center",
            va="center",
        )
    if box:
        fig.text(
            0.01,
            (box_height + 0.05) / height,
            "\n".join(box),
            ha="left",
            va="top",
            family="monospace",
            fontsize=8,
            color="#8b0000",
            parse_math=False,
        )
    if title:
        fig.suptitle(_plain(title))
    return fig


def _positive_points(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (y > 0)
    return x[ok], y[ok]


def _clip(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _title(frame: pd.DataFrame, sweep_dir: Path) -> str:
    problems = [
        str(p) for p in dict.fromkeys(frame.get("problem", pd.Series(dtype=object))) if _present(p)
    ]
    counts = frame["status"].value_counts()
    status = ", ".join(f"{n} {s}" for s, n in counts.items())
    head = f"{' / '.join(problems)}: " if problems else ""
    where = "/".join(sweep_dir.resolve().parts[-2:])
    return f"{head}{len(frame)} jobs ({status}) - {where}"


def plot_comparison(
    frame: pd.DataFrame, sweep_dir: Path | str, x_bits_column: str = "bits"
) -> list[Path]:
    """Write ``<sweep_dir>/comparison.png`` from the table of :func:`collect`."""
    sweep_dir = Path(sweep_dir)
    metrics = {
        int(j): read_metrics(sweep_dir / str(int(j)))
        for j in frame.loc[frame["status"].isin(DRAWN), "job"]
    }
    return _save_comparison(frame, metrics, sweep_dir, x_bits_column)


def _save_comparison(
    frame: pd.DataFrame,
    metrics: Mapping[int, pd.DataFrame | None],
    sweep_dir: Path,
    x_bits_column: str,
) -> list[Path]:
    fig = figure_comparison(frame, metrics, x_bits_column, title=_title(frame, sweep_dir))
    out = sweep_dir / COMPARISON_PNG
    fig.savefig(out, dpi=110)
    return [out]


# --- the report ----------------------------------------------------------------------------


def choose_bits_column(jobs: Sequence[Job], requested: str | None) -> str:
    """The bits axis: ``requested`` if given (it must be a column of some drawn job's metrics),
    else ``bits_thesis`` when every drawn job has that column and bits_convention: thesis,
    else ``bits``."""
    drawn = [j for j in jobs if j.status in DRAWN and j.metrics is not None]
    if requested is not None:
        have = [j for j in drawn if requested in j.metrics.columns]
        if drawn and not have:
            columns = ", ".join(drawn[0].metrics.columns)
            raise ReportError(
                f"no job's metrics.csv has a column {requested!r} (columns: {columns})"
            )
        for j in drawn:
            if requested not in j.metrics.columns:
                log.warning(
                    "sweep report: job %d has no %r column; left out of the bits panels",
                    j.num,
                    requested,
                )
        return requested
    thesis = bool(drawn) and all(
        "bits_thesis" in j.metrics.columns and j.config.get("bits_convention") == "thesis"
        for j in drawn
    )
    return "bits_thesis" if thesis else "bits"


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Through a temporary file and a rename: a reader never sees half a table (and the file
    gets the usual permissions, which a tempfile.NamedTemporaryFile would not give it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", newline="") as fh:
            frame.to_csv(fh, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def report(sweep_dir: Path | str, x_bits_column: str | None = None) -> dict[str, Any]:
    """Write summary.csv and comparison.png into a sweep folder and log every problem job.

    Returns {"jobs": number of job folders, "failed": [...], "diverged": [...],
    "missing": [...], "incomplete": [...] (job numbers), "bits_column": the bits axis used,
    "files": [paths written, as strings]}.
    """
    sweep_dir = Path(sweep_dir)
    jobs = scan(sweep_dir)
    bits_column = choose_bits_column(jobs, x_bits_column)
    frame = frame_of(jobs)
    files = []
    csv_path = sweep_dir / SUMMARY_CSV
    _write_csv(frame, csv_path)
    files.append(str(csv_path))

    problems = problem_lines(frame)
    for _, kind, text in problems:
        level = logging.ERROR if kind in (FAILED, MISSING, "incomplete") else logging.WARNING
        log.log(level, "sweep report: %s", text)

    metrics = {job.num: job.metrics for job in jobs if job.status in DRAWN}
    files += [str(p) for p in _save_comparison(frame, metrics, sweep_dir, bits_column)]
    result = {
        "jobs": len(jobs),
        "failed": [j for j, kind, _ in problems if kind == FAILED],
        "diverged": [j for j, kind, _ in problems if kind == DIVERGED],
        "missing": [j for j, kind, _ in problems if kind == MISSING],
        "incomplete": [j for j, kind, _ in problems if kind == "incomplete"],
        "bits_column": bits_column,
        "files": files,
    }
    log.info(
        "sweep report: %d jobs (%s) -> %s",
        len(jobs),
        ", ".join(f"{n} {s}" for s, n in frame["status"].value_counts().items()),
        ", ".join(files),
    )
    return result


def exit_code(result: Mapping[str, Any] | None) -> int:
    """1 when a job failed, is missing or did not finish, or the report itself failed (a
    result with "error", as the callback stores it); else 0, also for None (no report made).
    Diverged jobs do not count: a diverging step size is a result, as in the runner."""
    if result is None:
        return 0
    if result.get("error"):
        return 1
    return 1 if any(result.get(k) for k in ("failed", "missing", "incomplete")) else 0


# --- the command ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Summarise a compress-bench sweep (a multirun folder): writes summary.csv (one row "
            "per job) and comparison.png (relative gradient norm and loss gap against rounds "
            "and bits, one line per compressor configuration, mean +- std over seeds) into it."
        ),
        epilog="Exit status: 0 all jobs ran, 1 a job failed/is missing, 2 bad input.",
    )
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="the multirun folder")
    parser.add_argument(
        "--bits-column",
        metavar="COL",
        default=None,
        help="metrics.csv column for the bits axis (default: bits_thesis for runs with "
        "bits_convention=thesis, else bits)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``compress-bench-report SWEEP_DIR [--bits-column COL]``; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed as one line
        return stop.code if isinstance(stop.code, int) else 2
    handler = None
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.setLevel(logging.WARNING)
        log.addHandler(handler)
        if log.getEffectiveLevel() > logging.WARNING:
            log.setLevel(logging.WARNING)
    try:
        result = report(args.sweep_dir, x_bits_column=args.bits_column)
    except (ReportError, OSError) as err:
        if os.environ.get("COMPRESS_BENCH_DEBUG"):
            raise
        text = " ".join(str(err).split()) or type(err).__name__
        print(f"{PROG}: error: {text}", file=sys.stderr)
        return 2
    finally:
        if handler is not None:
            log.removeHandler(handler)
    for path in result["files"]:
        print(path)
    return exit_code(result)


if __name__ == "__main__":
    sys.exit(main())
