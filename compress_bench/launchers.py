"""What the command's jobs need when a Hydra launcher runs them in other processes.

With ``hydra/launcher=joblib`` (loky worker processes) or submitit (``slurm``,
``slurm_local``, ``submitit_local``, ``submitit_slurm``) each job runs in a process where
``compress_bench.cli.main`` never ran: :class:`WorkerJobCallback` (``hydra.callbacks`` in
conf/config.yaml) gives such a job the command's signal handling for its duration
(:func:`compress_bench.signals.enter_worker_job`). Folders and logs need nothing: Hydra's
``run_job`` makes each job's folder and log in whichever process runs it, and the sweep
report runs in the launching process once every job has returned
(:mod:`compress_bench.report.callback`).

The grouping launchers (``runs_per_job``) are in ``hydra_plugins/compress_bench_launcher``:
Hydra instantiates launchers from the ``hydra_plugins`` package only.
"""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from compress_bench import signals


class WorkerJobCallback(Callback):
    """Signal handling for a job run by a launcher's worker process (a no-op in the command's
    own process, whose handlers ``main()`` installed)."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        signals.enter_worker_job()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        signals.leave_worker_job()
