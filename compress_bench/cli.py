"""The ``compress-bench`` command: compose the config with Hydra, run, report.

Bad input ends with one line on stderr and exit code 2, never a traceback. Hydra is asked to
raise instead of printing its own multi-line reports (HYDRA_FULL_ERROR=1 inside this
process); :func:`main` turns what it raises into that one line. Set COMPRESS_BENCH_DEBUG=1 to
see the full traceback instead.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from compress_bench.config import register_configs
from compress_bench.errors import UserError

log = logging.getLogger("compress_bench")

EXIT_USAGE = 2

# Run directories are named by time plus this suffix, so runs started in the same second
# (or microsecond, by several processes) never share a folder. Cached: one value per config.
OmegaConf.register_new_resolver(
    "run_id", lambda: f"{os.getpid()}-{secrets.token_hex(3)}", use_cache=True, replace=True
)
register_configs()


@hydra.main(version_base="1.3", config_path="pkg://compress_bench.conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from compress_bench.runner import build_run, execute

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        summary = execute(build_run(cfg), out_dir)
    except UserError as err:
        _record_failure(out_dir, err)
        if not sweeping:
            # Leave through SystemExit: Hydra would add its own "Error executing job" line.
            print(f"compress-bench: error: {one_line(err)}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None
        log.error("job %s failed: %s", hydra_cfg.job.num, one_line(err))
        return  # the sweep goes on; its report names this job
    except Exception as err:
        if not sweeping:
            raise  # an unexpected error is a bug: show the traceback
        _record_failure(out_dir, err)
        log.exception("job %s failed", hydra_cfg.job.num)
        return
    log.info(
        "%s after %d rounds: grad_norm_rel %.3e, f - f* %.3e, %.4g bits per worker -> %s",
        summary["status"],
        summary["rounds_done"],
        summary["final"]["grad_norm_rel"],
        summary["final"]["loss_gap"],
        summary["total_bits"],
        out_dir,
    )


def _record_failure(out_dir: Path, err: Exception) -> None:
    """A job that fails before its first round still leaves a summary (sweep reports read it);
    one that fails during the rounds already has the runner's fuller one, which is kept."""
    from compress_bench.report import write_json_atomic

    path = out_dir / "summary.json"
    if out_dir.is_dir() and not path.exists():
        write_json_atomic(path, {"status": "failed", "error": one_line(err)})


def one_line(err: BaseException) -> str:
    """A single line saying what is wrong, from our errors or Hydra's and OmegaConf's."""
    if isinstance(err, MissingConfigException) and err.options:
        group = (err.missing_cfg_file or "").split("/")[0] or "option"
        wanted = (err.missing_cfg_file or "").split("/")[-1]
        options = ", ".join(o for o in sorted(err.options) if not o.startswith("_"))
        return f"unknown {group} {wanted!r} (available: {options})"
    if isinstance(err, OmegaConfBaseException):
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        key = getattr(err, "full_key", None)
        return f"invalid config value for {key}: {message}" if key else message
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException) and not isinstance(err, UserError):
        return f"{text.rstrip('.')}: {one_line(cause)}"
    return text or type(err).__name__


def main() -> None:
    """Entry point of ``compress-bench`` and ``python -m compress_bench``."""
    debug = bool(os.environ.get("COMPRESS_BENCH_DEBUG"))
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        _hydra_main()
        # after a sweep: non-zero when a job failed (the report in the sweep folder names it)
        from compress_bench.report import callback, sweep

        code = sweep.exit_code(callback.LAST_REPORT)
        if code:
            sys.exit(code)
    except (UserError, HydraException, OmegaConfBaseException) as err:
        if debug:
            raise
        print(f"compress-bench: error: {one_line(err)}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print("compress-bench: interrupted; metrics written so far are kept", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
