"""Figures regenerated from a finished sweep (``make figures``):
``python -m compress_bench.report.figures EXPERIMENT SWEEP_DIR OUT_PNG``.

``thesis_logreg``: the thesis's Figure "LogReg" (ours: docs/figures/thesis_logreg.png):
relative gradient norm against cumulative bits under the thesis's accounting, one line per
operator, from ``compress-bench -m experiment=thesis_logreg``; plus a table of rounds, bits
(both conventions) and local gradient evaluations to reach the tolerance. ``thesis_cifar``: the
thesis's Figure "ResNet_CIFAR10" (:func:`thesis_cifar`); ``thesis_cifar_offline``: the same
figure from the sweep on the offline data, titled as such (:func:`thesis_cifar_offline`).

Any other experiment (``error_feedback``, ``mnist_ef``, one of your own): the sweep's comparison
figure (:func:`comparison_figure`, the figure of comparison.png: whatever metrics its jobs
logged, convex or neural), titled with the experiment, and the sweep's summary table beside it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from compress_bench.report.comparison import figure_comparison, title_of
from compress_bench.report.jobs import DIVERGED, DRAWN, Job, ReportError
from compress_bench.report.logaxes import (
    DIVERGED_MARKER,
    drawable,
    plot_curve,
    plot_stop,
    set_log_ylim,
)
from compress_bench.report.sweep import (
    choose_bits_column,
    colour_for,
    first_reaching,
    read_sweep,
    scan,
    summary_frame,
)
from compress_bench.report.values import present


def display_name(summary: dict, name: str) -> str:
    """The compressor's display name the run declared (summary.json), else the registered
    class's label, else the name."""
    if summary.get("compressor_label"):
        return str(summary["compressor_label"])
    from compress_bench.compressors import COMPRESSORS

    cls = COMPRESSORS.get(name)
    return (cls.label if cls is not None else "") or name


def thesis_table(sweep_dir: Path) -> pd.DataFrame:
    """One row per job: status, rounds / bits / gradient evaluations to the run's tol."""
    rows = []
    for job in scan(sweep_dir):
        name = str((job.summary or {}).get("compressor") or job.overrides.get("compressor"))
        tol = job.config.get("tol")
        reach = {
            c: first_reaching(job.metrics, tol, c)
            for c in ("round", "bits_thesis", "bits", "grad_evals")
        }
        rows.append(
            {
                "operator": display_name(job.summary or {}, name),
                "compressor": name,
                "status": job.status,
                "rounds_to_tol": reach["round"],
                "thesis_bits_to_tol": reach["bits_thesis"],
                "spec_bits_to_tol": reach["bits"],
                "grad_evals_to_tol": reach["grad_evals"],
            }
        )
    return pd.DataFrame(rows)


def _draw_thesis_job(ax, job: Job) -> list:
    """One operator's line (drawable points only; an x where it stopped, when it diverged:
    :func:`compress_bench.report.logaxes.plot_stop`); the y values drawn, or [] with a line on
    stderr when the job has nothing to draw (never silently)."""
    if job.metrics is None or "bits_thesis" not in job.metrics:
        why = job.metrics_error or "metrics.csv has no bits_thesis column"
        print(f"figures: job {job.num} ({job.status}) not drawn: {why}", file=sys.stderr)
        return []
    summary = job.summary or {}
    name = str(summary.get("compressor"))
    bits, rel = job.metrics["bits_thesis"], job.metrics["grad_norm_rel"]
    x, y = drawable(bits, rel)
    diverged = job.status == DIVERGED
    label = display_name(summary, name) + (" (diverged)" if diverged else "")
    colour = colour_for(summary.get("family", name), summary.get("colour"))
    if plot_curve(ax, x, y, color=colour, label=label) is not None and diverged:
        plot_stop(ax, bits, rel, DIVERGED_MARKER, color=colour, label=f"_stop: {label}")
    return [y]


def thesis_logreg(sweep_dir: Path, out_png: Path) -> pd.DataFrame:
    """Draw the figure into ``out_png`` and write the table beside it (.csv and .md)."""
    fig = Figure(figsize=(10, 7), layout="constrained")
    ax = fig.subplots()
    shown = []
    for job in scan(sweep_dir):
        shown += _draw_thesis_job(ax, job)
    set_log_ylim(ax, shown)
    ax.set_xlabel("bits per worker (the thesis's accounting)")
    ax.set_ylabel(r"$\|\nabla f(x^k)\| \,/\, \|\nabla f(x^0)\|$")
    ax.set_title(
        "mushrooms logistic regression, k/d = 0.2, power-of-two rounding (experiment=thesis_logreg)"
    )
    ax.grid(True, which="major", alpha=0.5)
    if ax.get_lines():  # an empty legend warns
        ax.legend()
    fig.savefig(out_png, dpi=120)
    table = thesis_table(sweep_dir)
    table.to_csv(out_png.with_suffix(".csv"), index=False)
    out_png.with_suffix(".md").write_text(_markdown(table))
    return table


def _markdown(table: pd.DataFrame) -> str:
    lines = [
        "| operator | rounds to 1e-6 | thesis bits | spec bits | gradient evaluations |",
        "|---|---|---|---|---|",
    ]
    for row in table.itertuples():

        def fmt(value):
            return "not reached" if pd.isna(value) else f"{value:,.0f}"

        lines.append(
            f"| {row.operator} | {fmt(row.rounds_to_tol)} | "
            f"{fmt(row.thesis_bits_to_tol)} | {fmt(row.spec_bits_to_tol)} | "
            f"{fmt(row.grad_evals_to_tol)} |"
        )
    return "\n".join(lines) + "\n"


CIFAR_TITLE = "ResNet18 on CIFAR-10, k/d = 0.2 per tensor, power-of-two rounding"


def thesis_cifar(sweep_dir: Path, out_png: Path) -> pd.DataFrame:
    """The thesis figure "ResNet_CIFAR10": test loss and test accuracy against epochs, one
    line per operator (two panels), from ``compress-bench -m experiment=thesis_cifar``."""
    return accuracy_curves([sweep_dir], out_png, CIFAR_TITLE)


def thesis_cifar_offline(sweep_dir: Path, out_png: Path) -> pd.DataFrame:
    """thesis_cifar's figure from ``compress-bench -m experiment=thesis_cifar_offline``: the
    title says it was drawn on the offline data (a fifth of the training set, a tenth of the
    test set, the importance solve joint), so it is never taken for the thesis's figure."""
    title = (
        f"{CIFAR_TITLE}\noffline data: 10,000 training images, 1,000 test images "
        "(experiment=thesis_cifar_offline, importance solve joint)"
    )
    return accuracy_curves([sweep_dir], out_png, title)


def esgd_mnist(sweep_dirs: Path | list[Path], out_png: Path) -> pd.DataFrame:
    """eSGD against TopK + EF on MNIST (``experiment=esgd_mnist``, one or more sweep
    folders): test loss and accuracy against epochs, with the 81.5% test accuracy the eSGD
    paper reports at 12.5% drawn as a reference that could not be confirmed (spec 19)."""
    dirs = sweep_dirs if isinstance(sweep_dirs, list) else [sweep_dirs]
    title = "MNIST, n = 4, k/d = 0.125 per tensor: eSGD (dcgd) against TopK (ef)"
    return accuracy_curves(
        dirs, out_png, title, reference=(0.815, "eSGD paper: 81.5% (unconfirmable)")
    )


STYLES = ("-", "--", ":", "-.")


def lowrank_ef21_mnist(sweep_dirs: Path | list[Path], out_png: Path) -> pd.DataFrame:
    """EF21 with rsvd, PowerSGD and TopK per tensor on MNIST (``experiment=lowrank_ef21_mnist``
    and its TopK sweep): test loss and accuracy against epochs, one line per operator and
    rank or ratio."""
    dirs = sweep_dirs if isinstance(sweep_dirs, list) else [sweep_dirs]
    title = "MNIST, n = 4, EF21 per tensor: rsvd and PowerSGD at ranks 1, 2, 4, TopK at their bits"
    return accuracy_curves(dirs, out_png, title, label_keys=("operator", "ratio"))


def accuracy_curves(
    sweep_dirs: list[Path],
    out_png: Path,
    title: str,
    reference: tuple[float, str] | None = None,
    label_keys: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Test loss and test accuracy against epochs, one line per job of the sweeps (two
    panels), and their last rows as a table (.csv and .md next to the figure); ``reference``
    is an accuracy drawn as a dashed line with its label."""
    fig = Figure(figsize=(12, 5), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    rows: list[dict] = []
    seen: list[str] = []
    jobs = [job for sweep_dir in sweep_dirs for job in scan(sweep_dir)]
    for job in jobs:
        summary = job.summary or {}
        name = str(summary.get("compressor") or job.overrides.get("compressor"))
        label = display_name(summary, name)
        if reference is not None:  # several methods: name the method too
            label = f"{label} ({summary.get('method', '?')})"
        extra = [f"{k}={job.overrides[k]}" for k in label_keys if k in job.overrides]
        if extra:  # the sweep's varying keys tell the lines apart
            label = f"{label}, {', '.join(extra)}"
        metrics = job.metrics
        if metrics is None or "test_accuracy" not in metrics:
            print(f"figures: job {job.num} ({job.status}) not drawn", file=sys.stderr)
            continue
        colour = colour_for(summary.get("family", name), summary.get("colour"))
        style = STYLES[seen.count(colour) % len(STYLES)]  # lines of one family told apart
        seen.append(colour)
        for ax, column in ((loss_ax, "test_loss"), (acc_ax, "test_accuracy")):
            ax.plot(
                metrics["epoch"], metrics[column], color=colour, label=label, marker=".", ls=style
            )
        last = metrics.iloc[-1]
        rows.append(
            {
                "operator": label,
                "status": job.status,
                "method": summary.get("method"),
                "epochs": float(last["epoch"]),
                "test_loss": float(last["test_loss"]),
                "test_accuracy": float(last["test_accuracy"]),
                "bits_per_worker": float(last["bits"]),
            }
        )
    for ax, what in ((loss_ax, "test loss"), (acc_ax, "test accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.grid(True, alpha=0.5)
    if reference is not None:
        acc_ax.axhline(reference[0], color="grey", linestyle="--", label=reference[1])
    if acc_ax.get_lines():
        acc_ax.legend()
    fig.suptitle(title)
    fig.savefig(out_png, dpi=120)
    table = pd.DataFrame(rows)
    table.to_csv(out_png.with_suffix(".csv"), index=False)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += [
        "| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r) + " |"
        for r in table.itertuples(index=False)
    ]
    out_png.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return table


FIGURES = {
    "thesis_logreg": thesis_logreg,
    "thesis_cifar": thesis_cifar,
    "thesis_cifar_offline": thesis_cifar_offline,
    "esgd_mnist": esgd_mnist,
    "lowrank_ef21_mnist": lowrank_ef21_mnist,
}
#: the figures drawn from one or more sweep folders
MULTI = ("esgd_mnist", "lowrank_ef21_mnist")
# the columns of summary.csv the table of a generic figure shows, when some job has a value
TABLE_COLUMNS = (
    "job",
    "label",
    "seed",
    "status",
    "rounds_done",
    "total_bits",
    "final_loss_gap",
    "final_grad_norm_rel",
    "final_train_loss",
    "final_test_loss",
    "final_test_accuracy",
    "final_epoch",
    "rounds_to_tol",
    "bits_to_tol",
    "error",
)


def _check_experiment(frame: pd.DataFrame, experiment: str, sweep_dir: Path) -> None:
    """A line on stderr when the sweep's jobs say they ran another experiment (the
    ``experiment`` override): the figure is drawn anyway, but its title would be wrong."""
    if "experiment" not in frame.columns:
        return
    ran = sorted({str(v) for v in frame["experiment"] if present(v)})
    if ran and experiment not in ran:
        print(
            f"figures: warning: the jobs of {sweep_dir} ran experiment={','.join(ran)}, "
            f"not {experiment}",
            file=sys.stderr,
        )


def _cell(value) -> str:
    if not present(value):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def comparison_figure(sweep_dir: Path, out_png: Path, experiment: str) -> pd.DataFrame:
    """Any experiment's figure: the sweep's comparison figure (the one of comparison.png:
    :func:`compress_bench.report.comparison.figure_comparison`) titled with ``experiment``,
    into ``out_png``; beside it the sweep's whole summary table (.csv) and its main columns
    (:data:`TABLE_COLUMNS` with a value, .md). Returns those main columns."""
    jobs, declared = read_sweep(sweep_dir)
    frame = summary_frame(jobs, declared.count)
    _check_experiment(frame, experiment, sweep_dir)
    drawn = [job for job in jobs if job.status in DRAWN]
    fig = figure_comparison(
        frame,
        {job.num: job.metrics for job in drawn},
        choose_bits_column(jobs, None),
        title=f"experiment={experiment}: {title_of(frame, sweep_dir)}",
        summaries={job.num: job.summary for job in drawn},
    )
    fig.savefig(out_png, dpi=110)
    frame.to_csv(out_png.with_suffix(".csv"), index=False)
    shown = [c for c in TABLE_COLUMNS if c in frame.columns and frame[c].map(present).any()]
    table = frame[shown]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.itertuples(False)]
    out_png.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m compress_bench.report.figures",
        description="Draw an experiment's figure from its finished sweep: the thesis's figures "
        f"for {' and '.join(sorted(FIGURES))}, the sweep's comparison figure for any other.",
    )
    parser.add_argument(
        "experiment",
        metavar="EXPERIMENT",
        help=f"the experiment the sweep ran ({', '.join(sorted(FIGURES))}: their own figures)",
    )
    parser.add_argument(
        "sweep_dir",
        metavar="SWEEP_DIR",
        type=Path,
        nargs="+",
        help=f"the multirun folder ({', '.join(MULTI)}: one or more)",
    )
    parser.add_argument(
        "out_png",
        metavar="OUT_PNG",
        type=Path,
        help="the figure to write; its table goes beside it (.csv, .md)",
    )
    args = parser.parse_args(argv)
    for sweep_dir in args.sweep_dir:
        if not sweep_dir.is_dir():
            print(f"figures: error: no sweep folder at {sweep_dir}", file=sys.stderr)
            return 2
    if len(args.sweep_dir) > 1 and args.experiment not in MULTI:
        print(f"figures: error: {args.experiment} draws one sweep folder", file=sys.stderr)
        return 2
    args.out_png.parent.mkdir(parents=True, exist_ok=True)
    try:
        dirs = args.sweep_dir if args.experiment in MULTI else args.sweep_dir[0]
        if args.experiment in FIGURES:
            table = FIGURES[args.experiment](dirs, args.out_png)
        else:
            table = comparison_figure(dirs, args.out_png, args.experiment)
    except ReportError as err:  # not a sweep folder: one line, as compress-bench-report
        print(f"figures: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(table.to_string(index=False))
    print(f"wrote {args.out_png} and its table ({args.out_png.with_suffix('.md')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
