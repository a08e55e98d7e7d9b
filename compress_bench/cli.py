"""The ``compress-bench`` command: compose the config with Hydra, run, report.

No input gives a traceback. Hydra is asked to raise instead of printing its own multi-line
reports (HYDRA_FULL_ERROR=1 inside this process), and :func:`main` turns everything that
reaches it into one line on stderr:

  exit 2    bad input: a config value, an override, a dataset, an output folder
  exit 1    a sweep job failed (its report names it), or an internal error (a bug: the line
            names the file that holds the traceback)
  128 + s   stopped by signal s (SIGTERM 143, SIGINT 130); rows written so far are kept

Set COMPRESS_BENCH_DEBUG=1 to see full tracebacks instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from compress_bench import signals
from compress_bench.cli_checks import check_arguments, refuse_used_run_folder
from compress_bench.config import register_configs
from compress_bench.errors import InternalError, Interrupted, PassThrough, UserError

log = logging.getLogger("compress_bench")
# matplotlib logs its font cache and paths at DEBUG; --info turns DEBUG on for everything
logging.getLogger("matplotlib").setLevel(logging.WARNING)

EXIT_USAGE = 2
EXIT_FAILED = 1
TRACEBACK_FILE = "error.log"

# Run directories are named by time plus this suffix, so runs started in the same second
# (or microsecond, by several processes) never share a folder. Cached: one value per config.
OmegaConf.register_new_resolver(
    "run_id", lambda: f"{os.getpid()}-{secrets.token_hex(3)}", use_cache=True, replace=True
)
register_configs()

# Hydra plugins that a launcher or sweeper option needs (hydra/launcher=joblib, ...)
PLUGINS = {
    "joblib": "hydra-joblib-launcher",
    "submitit_local": "hydra-submitit-launcher",
    "submitit_slurm": "hydra-submitit-launcher",
    "ray": "hydra-ray-launcher",
    "rq": "hydra-rq-launcher",
    "optuna": "hydra-optuna-sweeper",
    "ax": "hydra-ax-sweeper",
    "nevergrad": "hydra-nevergrad-sweeper",
}


@hydra.main(version_base="1.3", config_path="pkg://compress_bench.conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from compress_bench.runner import build_run, execute

    hydra_cfg = HydraConfig.get()
    # resume=<run dir> continues that run in its own folder (Hydra's new folder keeps only
    # the resume command's .hydra record)
    resume = cfg.get("resume")
    out_dir = (
        Path(str(resume)).expanduser().absolute() if resume else Path(hydra_cfg.runtime.output_dir)
    )
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        if not resume:
            refuse_used_run_folder(out_dir)  # a folder given by interpolation reaches here
        summary = execute(build_run(cfg), out_dir)
    except UserError as err:
        _record_failure(out_dir, err)
        if not sweeping:
            raise PassThrough(err) from None
        log.error("job %s failed: %s", hydra_cfg.job.num, one_line(err))
        return  # the sweep goes on; its report names this job
    except Exception as err:  # a bug: keep the traceback in the run folder, say one line
        trace = _save_traceback(out_dir)
        _record_failure(out_dir, err)
        if not sweeping:
            raise PassThrough(
                InternalError(f"{type(err).__name__}: {one_line(err)}", trace)
            ) from err
        log.error("job %s failed (internal error, traceback in %s)", hydra_cfg.job.num, trace)
        return
    _log_final(summary, out_dir)


def _log_final(summary: dict, out_dir: Path) -> None:
    thesis = summary.get("total_bits_thesis") is not None  # bits_convention=thesis
    bits = summary["total_bits_thesis"] if thesis else summary["total_bits"]
    final = summary["final"]
    if "test_accuracy" in final:  # a neural problem
        log.info(
            "%s after %d rounds (epoch %.3g): train loss %.4g, test loss %.4g, test accuracy "
            "%.4f, %.4g bits per worker -> %s",
            summary["status"],
            summary["rounds_done"],
            final["epoch"],
            final["train_loss"],
            final["test_loss"],
            final["test_accuracy"],
            bits,
            out_dir,
        )
        return
    gap = final["loss_gap"]
    log.info(
        "%s after %d rounds: grad_norm_rel %.3e, f - f* %s, %.4g %sbits per worker -> %s",
        summary["status"],
        summary["rounds_done"],
        summary["final"]["grad_norm_rel"],
        "n/a" if gap is None else f"{gap:.3e}",
        bits,
        "thesis " if thesis else "",
        out_dir,
    )


def _save_traceback(out_dir: Path) -> str | None:
    """Write the current exception's traceback to <run dir>/error.log; its path, or None."""
    path = out_dir / TRACEBACK_FILE
    try:
        path.write_text(traceback.format_exc())
    except OSError:
        return None
    return str(path)


def _record_failure(out_dir: Path, err: Exception) -> None:
    """A job that fails before its first round still leaves a summary (sweep reports read it);
    one that fails during the rounds already has the runner's fuller one, which is kept."""
    from compress_bench.report import write_json_atomic

    path = out_dir / "summary.json"
    try:
        if out_dir.is_dir() and not path.exists():
            write_json_atomic(path, {"status": "failed", "error": one_line(err)})
    except OSError:
        pass  # an unwritable folder is the error being reported; don't mask it


def one_line(err: BaseException) -> str:
    """A single line saying what is wrong, from our errors or Hydra's and OmegaConf's."""
    if isinstance(err, MissingConfigException) and err.options:
        return _unknown_option(err)
    if isinstance(err, OmegaConfBaseException):
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        key = getattr(err, "full_key", None)
        return f"invalid config value for {key}: {message}" if key else message
    if isinstance(err, OSError) and err.filename and not isinstance(err, UserError):
        return f"cannot use {err.filename}: {err.strerror or type(err).__name__}"
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException) and not isinstance(err, UserError):
        return f"{text.rstrip('.')}: {one_line(cause)}"
    return text or type(err).__name__


def _unknown_option(err: MissingConfigException) -> str:
    """'unknown compressor 'x' (available: ...)', naming the plugin for Hydra's groups."""
    parts = (err.missing_cfg_file or "option").split("/")
    group, wanted = "/".join(parts[:-1]) or "option", parts[-1]
    options = ", ".join(o for o in sorted(err.options) if not o.startswith("_"))
    text = f"unknown {group} {wanted!r} (available: {options})"
    if group.startswith("hydra/") and wanted in PLUGINS:
        text += f"; {group} '{wanted}' is a Hydra plugin: pip install {PLUGINS[wanted]}"
    return text


def _version() -> str:
    import hydra as hydra_pkg
    import torch

    from compress_bench import __version__

    versions = f"hydra-core {hydra_pkg.__version__}, torch {torch.__version__}"
    return f"compress-bench {__version__} ({versions})"


def _fail(message: str, code: int) -> None:
    print(f"compress-bench: {message}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    """Entry point of ``compress-bench`` and ``python -m compress_bench``."""
    debug = bool(os.environ.get("COMPRESS_BENCH_DEBUG"))
    os.environ["HYDRA_FULL_ERROR"] = "1"
    signals.install()
    try:
        if "--version" in sys.argv[1:]:
            print(_version())
            return
        check_arguments(sys.argv[1:])
        try:
            _hydra_main()
        except PassThrough as job:
            raise job.error from job.error.__cause__
        _exit_after_sweep()
    except Interrupted as sig:
        _finish_sweep_report()
        _fail(f"interrupted by {sig.signal.name}; metrics written so far are kept", sig.exit_code)
    except InternalError as err:
        if debug:
            raise
        where = f"traceback in {err.traceback_file}" if err.traceback_file else "no traceback"
        _fail(f"internal error (a bug, please report it): {err} ({where})", EXIT_FAILED)
    except Exception as err:
        # Everything else comes from composing the config or the overrides (our own job code
        # is wrapped above): bad input, whatever type Hydra or OmegaConf gave it.
        if debug:
            raise
        _fail(f"error: {one_line(err)}", EXIT_USAGE)


def _exit_after_sweep() -> None:
    """After a sweep: non-zero when a job failed (the report in the sweep folder names it)."""
    from compress_bench.report import callback, sweep

    code = sweep.exit_code(callback.LAST_REPORT)
    if code:
        sys.exit(code)


def _finish_sweep_report() -> None:
    """A sweep stopped by a signal still gets its report (it lists the jobs never run)."""
    from compress_bench.report import callback

    with contextlib.suppress(BaseException):  # the signal is what must be reported
        callback.finish_pending_report()


if __name__ == "__main__":
    main()
