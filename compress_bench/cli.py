"""The ``compress-bench`` command: compose the config with Hydra, run, report.

No input gives a traceback. Hydra is asked to raise instead of printing its own multi-line
reports (HYDRA_FULL_ERROR=1 inside this process), and :func:`main` turns everything that
reaches it into one line on stderr:

  exit 2    bad input: a config value, an override, a dataset, an output folder
  exit 1    a sweep job failed (its report names it), or an internal error (a bug: the line
            names the file that holds the traceback)
  128 + s   stopped by signal s (SIGTERM 143, SIGINT 130); rows written so far are kept

A single run refused after Hydra made its folder (a missing dataset, say: most bad input is
refused before, by :mod:`compress_bench.cli_checks`) removes that folder again, so a refused
command leaves nothing behind.

Set COMPRESS_BENCH_DEBUG=1 to see full tracebacks instead.
"""

# ruff: noqa: E402  (the imports below come after signals.hold(): they take a second)

from __future__ import annotations

import sys
from pathlib import Path

from compress_bench import signals

if Path(sys.argv[0]).stem == "compress-bench":  # the console script (python -m: __main__.py)
    signals.hold()  # a signal while the slow imports below run is reported by main()

import contextlib
import logging
import os
import re
import secrets
import shutil
import traceback

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import (
    ConfigCompositionException,
    InstantiationException,
    MissingConfigException,
)
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from compress_bench.cli_checks import Checked, check_arguments, refuse_used_run_folder
from compress_bench.config import register_configs, top_level_keys, unknown_key
from compress_bench.errors import InternalError, Interrupted, PassThrough, UserError

log = logging.getLogger("compress_bench")
# matplotlib logs its font cache and paths at DEBUG; --info turns DEBUG on for everything.
# torch logs statistics at exit (FakeTensor cache stats) at INFO when its import was cut short
# by a signal before torch could set its own levels.
logging.getLogger("matplotlib").setLevel(logging.WARNING)
logging.getLogger("torch").setLevel(logging.WARNING)

EXIT_USAGE = 2
EXIT_FAILED = 1
TRACEBACK_FILE = "error.log"

# Run directories are named by time plus this suffix, so runs started in the same second
# (or microsecond, by several processes) never share a folder. Cached: one value per config.
OmegaConf.register_new_resolver(
    "run_id", lambda: f"{os.getpid()}-{secrets.token_hex(3)}", use_cache=True, replace=True
)
# ${cb_default:${key},fallback}: the value, or the fallback when it is null (conf/hydra/launcher)
OmegaConf.register_new_resolver(
    "cb_default", lambda value, fallback: fallback if value is None else value, replace=True
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


# What the checks before Hydra found for this command: the folder a refused single run's
# cleanup stops at, and warnings for the run's log
_checked = Checked()


@hydra.main(version_base="1.3", config_path="pkg://compress_bench.conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from compress_bench import dist
    from compress_bench.compressors.paths import portable
    from compress_bench.run.build import build_run
    from compress_bench.run.rounds import execute

    signals.check()  # a signal held while the imports ran
    hydra_cfg = HydraConfig.get()
    # resume=<run dir> continues that run in its own folder (Hydra's new folder keeps only
    # the resume command's .hydra record)
    resume = cfg.get("resume")
    out_dir = (
        Path(str(resume)).expanduser().absolute() if resume else Path(hydra_cfg.runtime.output_dir)
    )
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        torchrun_rank = dist.is_distributed(cfg) and dist.under_torchrun()
        if not resume and not (torchrun_rank and os.environ["RANK"] != "0"):
            # (a torchrun rank other than 0 may share rank 0's folder: it writes nothing there)
            refuse_used_run_folder(out_dir)  # a folder given by interpolation reaches here
        distributed = dist.is_distributed(cfg)
        if torchrun_rank:  # this process is one rank of torchrun's
            summary = dist.run_as_torchrun_rank(cfg, out_dir)
            if summary is None:  # not rank 0: rank 0's folder holds the run
                _discard_refused_run(hydra_cfg)
                return
            _log_final(summary, out_dir)
            return
        run = build_run(cfg)  # in the parent too: every config error is one line here
        signals.check()  # one held while build_run imported a module
        _log_warnings(log.warning)
        if distributed:
            dist.check(cfg, stochastic=run.problem.stochastic)
            del run
            summary = dist.launch(cfg, out_dir)
        else:
            # kernels=portable: the CPU runs the accelerators' sync-free code (paths.py)
            with portable(getattr(cfg.get("kernels"), "name", None) == "portable"):
                summary = execute(run, out_dir)
    except UserError as err:
        _reraise_signal()
        discarded = not sweeping and _discard_refused_run(hydra_cfg)
        if not discarded:  # a sweep's report reads a failed job's summary
            _record_failure(out_dir, err)
        if not sweeping:
            raise PassThrough(err) from None
        log.error("job %s failed: %s", hydra_cfg.job.num, one_line(err))
        return  # the sweep goes on; its report names this job
    except Exception as err:  # a bug: keep the traceback in the run folder, say one line
        _reraise_signal()
        trace = _save_traceback(out_dir)
        _record_failure(out_dir, err)
        if not sweeping:
            raise PassThrough(
                InternalError(f"{type(err).__name__}: {one_line(err)}", trace)
            ) from err
        log.error("job %s failed (internal error, traceback in %s)", hydra_cfg.job.num, trace)
        return
    _log_final(summary, out_dir)


def _log_warnings(say) -> None:
    """Say the checks' warnings once: in the run's log when the run is built (a refused run
    says its one error line only), else (--cfg) on stderr once the command is done."""
    warnings, _checked.warnings = _checked.warnings, []
    for text in warnings:
        say(text)


def _reraise_signal() -> None:
    """A signal whose Interrupted library code turned into another error (or swallowed)
    stops the command as the signal it is, not as a failed job."""
    sig = signals.received()
    if sig is not None:
        raise Interrupted(sig) from None


def _discard_refused_run(hydra_cfg) -> bool:
    """A single run refused before its first round leaves no folder: remove the run folder
    Hydra made when it holds nothing but Hydra's record (.hydra/) and the job's log, and the
    empty folders above it up to the deepest one that existed before (``_checked``; a
    folder the user gave that existed is kept, empty). True when the record was removed."""
    folder = Path(hydra_cfg.runtime.output_dir)
    own = {str(hydra_cfg.output_subdir), f"{hydra_cfg.job.name}.log"}
    try:
        entries = list(folder.iterdir())
        if any(entry.name not in own for entry in entries):
            return False  # the run wrote something (or the folder held files): keep it all
        for entry in entries:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    except OSError:
        return False
    with contextlib.suppress(OSError):  # what is left is an empty folder at worst
        floor = _checked.run_floor
        while floor is not None and floor in folder.parents:
            folder.rmdir()  # fails (and stops) on a folder that holds anything else
            folder = folder.parent
    return True


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
    if isinstance(err, InstantiationException) and isinstance(err.__cause__, UserError):
        return one_line(err.__cause__)  # our launcher refused its settings (hydra_plugins/)
    if isinstance(err, MissingConfigException) and err.options:
        return _unknown_option(err)
    if isinstance(err, ConfigCompositionException):
        text = _composition_error(err)
        if text:
            return text
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


def _composition_error(err: ConfigCompositionException) -> str | None:
    """Hydra's errors for an unknown key and for ``+key`` on a known one, in our words; they
    suggest ``+key=value``, which would only store a typo in the config. None: another one."""
    cause = err.__cause__
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and cause.full_key:
        path = str(cause.full_key)
        if "." not in path:
            return unknown_key(path, top_level_keys())
        parent = cause.parent_node if isinstance(cause.parent_node, DictConfig) else {}
        name = parent.get("name")
        option = f"{path.partition('.')[0]}={name}" if name else None
        return unknown_key(path, [str(key) for key in parent], option)
    appended = re.search(
        r"An item is already at '([^']*)'.*?remove \+ prefix: '([^']*)'", str(err), re.S
    )
    if appended:
        key, plain = appended.groups()
        return f"{key} is already in the config: write {plain!r}, without the +"
    return None


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
    global _checked
    debug = bool(os.environ.get("COMPRESS_BENCH_DEBUG"))
    os.environ["HYDRA_FULL_ERROR"] = "1"
    signals.install()
    try:
        signals.check()  # a signal held since start-up
        if "--version" in sys.argv[1:]:
            print(_version())
            return
        _forget_last_sweep()
        _checked = check_arguments(sys.argv[1:])
        signals.check()
        _register_launchers()
        try:
            _hydra_main()
        except PassThrough as job:
            raise job.error from job.error.__cause__
        signals.check()
        _reraise_signal()
        _log_warnings(lambda text: print(f"compress-bench: warning: {text}", file=sys.stderr))
        _exit_after_sweep()
    except Interrupted as sig:
        _interrupted(sig.signal)
    except InternalError as err:
        _stop_if_signalled()
        if debug:
            raise
        where = f"traceback in {err.traceback_file}" if err.traceback_file else "no traceback"
        _fail(f"internal error (a bug, please report it): {err} ({where})", EXIT_FAILED)
    except Exception as err:
        # Everything else comes from composing the config or the overrides (our own job code
        # is wrapped above): bad input, whatever type Hydra or OmegaConf gave it.
        _stop_if_signalled()
        if debug:
            raise
        _fail(f"error: {one_line(err)}", EXIT_USAGE)


def _register_launchers() -> None:
    """hydra/launcher=slurm and slurm_local (conf/hydra/launcher/): Hydra's plugin scan misses
    them in an editable install (hydra_plugins/compress_bench_launcher)."""
    from hydra_plugins.compress_bench_launcher import register

    register()


def _stop_if_signalled() -> None:
    """An error that a signal caused (library code caught its Interrupted and raised another
    error in its place) is reported as the signal."""
    sig = signals.received()
    if sig is not None:
        _interrupted(sig)


def _interrupted(sig) -> None:
    _finish_sweep_report()
    _fail(f"interrupted by {sig.name}; metrics written so far are kept", Interrupted(sig).exit_code)


def _forget_last_sweep() -> None:
    """The exit status follows this command's sweep only, not the report of one that an
    earlier main() in this process made (tests call main() many times)."""
    callback = sys.modules.get("compress_bench.report.callback")
    if callback is not None:
        callback.LAST_REPORT = None


def _exit_after_sweep() -> None:
    """After a sweep: non-zero when a job failed (the report in the sweep folder names it)."""
    from compress_bench.report import callback, sweep

    code = sweep.exit_code(callback.LAST_REPORT)
    if code:
        sys.exit(code)


def _finish_sweep_report() -> None:
    """A sweep stopped by a signal still gets its report (it lists the jobs never run). Only
    a sweep that started has one to finish, and then the callback module is imported already:
    importing it now could fail on a module that the signal left half imported."""
    callback = sys.modules.get("compress_bench.report.callback")
    if callback is None:
        return
    with contextlib.suppress(BaseException):  # the signal is what must be reported
        callback.finish_pending_report()


if __name__ == "__main__":
    main()
