"""Named figures regenerated from a finished sweep (``make figures``).

``thesis_logreg``: the thesis's Figure "LogReg" (reference: shared/reference/thesis_logreg.png):
relative gradient norm against cumulative bits under the thesis's accounting, one line per
operator, from ``compress-bench -m experiment=thesis_logreg``; plus a table of rounds, bits
(both conventions) and local gradient evaluations to reach the tolerance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from compress_bench.report.jobs import DIVERGED, Job
from compress_bench.report.logaxes import DIVERGED_MARKER, drawable, plot_curve, set_log_ylim
from compress_bench.report.sweep import colour_for, first_reaching, scan


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
    """One operator's line (drawable points only, an x where it diverged); the y values drawn,
    or [] with a line on stderr when the job has nothing to draw (never silently)."""
    if job.metrics is None or "bits_thesis" not in job.metrics:
        why = job.metrics_error or "metrics.csv has no bits_thesis column"
        print(f"figures: job {job.num} ({job.status}) not drawn: {why}", file=sys.stderr)
        return []
    summary = job.summary or {}
    name = str(summary.get("compressor"))
    x, y = drawable(job.metrics["bits_thesis"], job.metrics["grad_norm_rel"])
    end = DIVERGED_MARKER if job.status == DIVERGED else None
    label = display_name(summary, name) + (" (diverged)" if end else "")
    colour = colour_for(summary.get("family", name), summary.get("colour"))
    plot_curve(ax, x, y, end_marker=end, color=colour, label=label)
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


def thesis_cifar(sweep_dir: Path, out_png: Path) -> pd.DataFrame:
    """The thesis figure "ResNet_CIFAR10": test loss and test accuracy against epochs, one
    line per operator (two panels), from ``compress-bench -m experiment=thesis_cifar``."""
    title = "ResNet18 on CIFAR-10, k/d = 0.2 per tensor, power-of-two rounding"
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
    "esgd_mnist": esgd_mnist,
    "lowrank_ef21_mnist": lowrank_ef21_mnist,
}
#: the figures drawn from one or more sweep folders
MULTI = ("esgd_mnist", "lowrank_ef21_mnist")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m compress_bench.report.figures",
        description="Draw a named figure from a finished sweep.",
    )
    parser.add_argument("figure", choices=sorted(FIGURES))
    parser.add_argument("sweep_dir", type=Path, nargs="+", help=f"{', '.join(MULTI)}: one or more")
    parser.add_argument("out_png", type=Path)
    args = parser.parse_args(argv)
    for sweep_dir in args.sweep_dir:
        if not sweep_dir.is_dir():
            print(f"figures: error: no sweep folder at {sweep_dir}", file=sys.stderr)
            return 2
    if len(args.sweep_dir) > 1 and args.figure not in MULTI:
        print(f"figures: error: {args.figure} draws one sweep folder", file=sys.stderr)
        return 2
    args.out_png.parent.mkdir(parents=True, exist_ok=True)
    dirs = args.sweep_dir if args.figure in MULTI else args.sweep_dir[0]
    table = FIGURES[args.figure](dirs, args.out_png)
    print(table.to_string(index=False))
    print(f"wrote {args.out_png} and its table ({args.out_png.with_suffix('.md')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
