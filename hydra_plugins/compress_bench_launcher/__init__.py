"""compress-bench's Hydra launchers: submitit (SLURM, or local processes) with grouping.

``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml) and ``hydra/launcher=slurm_local``
(the same on submitit's local executor: a SLURM sweep tried on one machine) run
``runs_per_job`` sweep jobs, one after the other, in each submitted job. A logistic-regression
run takes seconds, far less than a SLURM job's scheduling and start-up, so a sweep of a
thousand runs becomes, with ``runs_per_job=50``, twenty SLURM jobs.

Grouping changes nothing else: each sweep job still gets its own number, folder
(``<sweep dir>/<job number>/``), config record and log, exactly as with Hydra's basic
launcher, so the sweep report reads the same folders whatever the launcher. Jobs are chunked
in their sweep order: launcher job ``i`` runs sweep jobs ``i*runs_per_job`` up to
``(i+1)*runs_per_job - 1``.

A failing job is recorded in its folder and the others go on: the command's own job code
never raises on a failed run (``compress_bench.cli``), and a submitted job that dies as a
whole (killed, out of time, out of memory) is logged here with its submitit folder, its
results left out; the sweep report then names each of its jobs that did not finish (failed,
interrupted, "running or killed", or missing when never started).

Hydra instantiates launchers only from the ``hydra_plugins`` package, which is why this module
lives here rather than in ``compress_bench``. It needs hydra-submitit-launcher
(``pip install -e ".[cluster]"``); without it the launchers say so in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra.plugins.launcher import Launcher

from compress_bench.errors import UserError

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install -e ".[cluster]" (or pip install hydra-submitit-launcher)'


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    """``items`` cut into consecutive lists of ``size`` (the last one may be shorter)."""
    if size < 1:
        raise UserError(f"hydra.launcher.runs_per_job must be an integer >= 1, got {size}")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def runs_per_job_of(value: Any) -> int:
    """The ``runs_per_job`` setting as an integer >= 1 (a UserError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"hydra.launcher.runs_per_job must be an integer >= 1, got {value!r}")
    return value


try:
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
except ImportError:  # the optional plugin is missing: the launchers below say so
    BaseSubmititLauncher = None


if BaseSubmititLauncher is not None:

    class _Grouped(BaseSubmititLauncher):
        """The plugin's submitit launcher, submitting one job per chunk of ``runs_per_job``
        sweep jobs (the plugin submits one per sweep job)."""

        def __init__(self, runs_per_job: int = 1, **params: Any) -> None:
            self.runs_per_job = runs_per_job_of(runs_per_job)
            super().__init__(**params)

        def run_chunk(
            self, chunk: list[tuple[list[str], int]], singleton_state: dict
        ) -> list[JobReturn]:
            """Inside the submitted job: run its sweep jobs in order (each as the plugin runs
            one: its own config, folder and log)."""
            return [
                self(overrides, "hydra.sweep.dir", num, f"job_id_for_{num}", singleton_state)
                for overrides, num in chunk
            ]

        def _executor(self) -> Any:
            import submitit  # lazily, as the plugin does: plugin discovery stays fast

            params = dict(self.params)
            folder = params.pop("submitit_folder")
            specific_init = {"max_num_timeout"}  # a setting of the executor, not of the jobs
            init = {f"{self._EXECUTOR}_{k}": params.pop(k) for k in specific_init if k in params}
            executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=folder, **init)
            shared = set(BaseQueueConf.__dataclass_fields__)  # the executors' common keys
            executor.update_parameters(
                **{k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in params.items()}
            )
            return executor

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            assert self.config is not None and len(job_overrides) > 0
            executor = self._executor()
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            numbered = [
                (list(overrides), initial_job_idx + i) for i, overrides in enumerate(job_overrides)
            ]
            groups = chunks(numbered, self.runs_per_job)
            log.info(
                "Submitit '%s' sweep output dir: %s (%d jobs in %d submitted, %d per job)",
                self._EXECUTOR,
                sweep_dir,
                len(numbered),
                len(groups),
                self.runs_per_job,
            )
            for overrides, num in numbered:
                log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
            state = Singleton.get_state()
            submitted = executor.map_array(self.run_chunk, groups, [state] * len(groups))
            results: list[JobReturn] = []
            for job, group in zip(submitted, groups, strict=True):
                nums = f"{group[0][1]}-{group[-1][1]}" if len(group) > 1 else str(group[0][1])
                try:
                    results += job.results()[0]
                except Exception as err:  # the whole submitted job died: the others go on
                    reason = " ".join(str(err).split())[:300] or type(err).__name__
                    log.error(
                        "submitted job %s (sweep jobs %s) failed: %s (its output: %s)",
                        job.job_id,
                        nums,
                        reason,
                        job.paths.folder,
                    )
            return results

    class SlurmLauncher(_Grouped):
        """``hydra/launcher=slurm``: sweep jobs grouped into SLURM jobs."""

        _EXECUTOR = "slurm"

    class LocalLauncher(_Grouped):
        """``hydra/launcher=slurm_local``: the same, as local processes (submitit's local
        executor)."""

        _EXECUTOR = "local"

else:

    class _Missing(Launcher):
        """Stands in for a launcher whose plugin is not installed: says so in one line."""

        def __init__(self, **params: Any) -> None:
            raise UserError(
                f"{self.option} needs the Hydra plugin hydra-submitit-launcher: {INSTALL_HINT}"
            )

        def setup(self, **kwargs: Any) -> None:  # never reached: __init__ refuses
            raise NotImplementedError

        def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:  # never reached
            raise NotImplementedError

    class SlurmLauncher(_Missing):  # type: ignore[no-redef]
        option = "hydra/launcher=slurm"

    class LocalLauncher(_Missing):  # type: ignore[no-redef]
        option = "hydra/launcher=slurm_local"


def register() -> None:
    """Make the launchers known to Hydra. Its plugin scan does not see this package in an
    editable install (setuptools maps it through an import hook that ``pkgutil`` cannot list),
    so ``compress_bench.cli`` registers them itself; registering twice is harmless."""
    from hydra.core.plugins import Plugins

    for launcher in (SlurmLauncher, LocalLauncher):
        Plugins.instance().register(launcher)
